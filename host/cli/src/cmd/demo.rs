//! `interstice demo`: publish, write, close, reopen by replay, compare.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use interstice_runtime::Database;

use crate::args::DataDir;
use crate::target::report_call;

/// Build and publish the bundled `bank` module, run a few transfers and
/// print the accounts.
#[derive(clap::Args)]
pub struct Demo {
    #[command(flatten)]
    dir: DataDir,
}

/// The bundled example crate, found relative to this source tree.
pub fn bundled_bank() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-modules/examples/bank")
}

impl Demo {
    pub fn run(self) -> Result<()> {
        let crate_dir = bundled_bank();
        eprintln!("building {} ...", crate_dir.display());
        let component = interstice_guest_build::build_component(&crate_dir, None, None)
            .context("building the bundled bank module")?;
        let wasm = std::fs::read(&component)?;
        let before = {
            let db = self.dir.open()?;
            write(&db, &self.dir, &wasm)?
            // The database closes here: the log is synced and the lock released.
        };
        println!("closed; reopening (replay runs no guest) ...");
        let db = self.dir.open()?;
        let stats = db.replay_stats();
        println!(
            "replayed {} transactions ({} mutations, {} bytes of log) in {:.1} ms; guest instantiations {}, guest calls {}, fuel {}",
            stats.transactions_replayed,
            stats.mutations_replayed,
            stats.log_bytes,
            stats.duration_ms,
            stats.guest_instantiations,
            stats.guest_calls,
            stats.fuel_consumed
        );
        let after = db.rows_json("bank", "accounts")?;
        if after != before {
            bail!("state after replay differs from the state before closing");
        }
        println!("accounts after replay are identical ({} rows)", after.len());
        Ok(())
    }
}

/// Publishes the bank, opens accounts (once) and transfers; returns the
/// accounts.
fn write(db: &Database, dir: &DataDir, wasm: &[u8]) -> Result<Vec<serde_json::Value>> {
    let published = db.publish("bank", wasm)?;
    println!(
        "{} `bank` in {} ({} tables, {} reducers); {} transactions replayed on open",
        if published.replaced {
            "updated"
        } else {
            "published"
        },
        dir.data_dir.display(),
        published.def.tables.len(),
        published.def.reducers.len(),
        db.replay_stats().transactions_replayed,
    );
    let call = |reducer: &str, args: serde_json::Value| {
        report_call(
            "bank",
            reducer,
            db.call_json(
                "bank",
                reducer,
                &args,
                &interstice_runtime::Caller::operator(),
            ),
        )
    };
    if db.rows_json("bank", "accounts")?.is_empty() {
        for (id, balance) in [(1, 1000), (2, 500), (3, 0)] {
            call("open_account", serde_json::json!([id, balance]))?;
        }
    }
    for (from, to, amount) in [(1, 2, 250), (2, 3, 100), (3, 1, 10)] {
        call("transfer", serde_json::json!([from, to, amount]))?;
    }
    match db.call_json(
        "bank",
        "transfer",
        &serde_json::json!([3, 1, 1_000_000]),
        &interstice_runtime::Caller::operator(),
    ) {
        Ok(_) => bail!("an overdraft was accepted"),
        Err(e) => println!("refused as expected: transfer 3 -> 1 of 1000000: {e}"),
    }
    println!("accounts:");
    let rows = db.rows_json("bank", "accounts")?;
    for row in &rows {
        println!("{row}");
    }
    Ok(rows)
}
