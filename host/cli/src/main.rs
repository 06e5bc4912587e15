//! The `interstice` binary: argument parsing and wiring only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use interstice_runtime::{CallError, CallOutcome, Database, RuntimeConfig};

/// Run WebAssembly reducer modules against durable state.
#[derive(Parser)]
#[command(name = "interstice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DataDir {
    /// The data directory.
    #[arg(long, default_value = "./interstice-data", env = "INTERSTICE_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Build a guest crate into a module component.
    Build {
        /// The guest crate's directory.
        crate_dir: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Store a module in the data directory and run its init reducer.
    Publish {
        /// The module: a component, or a core module built with the SDK.
        wasm: PathBuf,
        /// The module's name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Call a reducer. Exit 0 when it committed.
    Call {
        module: String,
        reducer: String,
        /// Arguments: a JSON array in declaration order, or an object keyed
        /// by parameter name.
        #[arg(default_value = "[]")]
        args: String,
        /// Caller identity handed to the reducer.
        #[arg(long, default_value = "cli")]
        caller: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a table's rows as JSON lines.
    Query {
        module: String,
        table: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a module's schema as JSON.
    Schema {
        module: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Build and publish the bundled `bank` module, run a few transfers and
    /// print the accounts.
    Demo {
        #[command(flatten)]
        dir: DataDir,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INTERSTICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &DataDir) -> Result<Database> {
    Database::open(&dir.data_dir, RuntimeConfig::default())
        .with_context(|| format!("opening data directory {}", dir.data_dir.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build { crate_dir, out } => {
            let path = interstice_guest_build::build_component(&crate_dir, out.as_deref())
                .with_context(|| format!("building {}", crate_dir.display()))?;
            println!("{}", path.display());
        }
        Command::Publish { wasm, name, dir } => {
            let name = match name {
                Some(n) => n,
                None => wasm
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(|s| s.trim_end_matches(".component").to_string())
                    .context("cannot derive a module name from the file name; pass --name")?,
            };
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let mut db = open(&dir)?;
            let published = db
                .publish(&name, &bytes)
                .with_context(|| format!("publishing {}", wasm.display()))?;
            let verb = if published.replaced {
                "replaced"
            } else {
                "published"
            };
            println!(
                "{verb} module `{name}`: {} tables, {} reducers",
                published.def.tables.len(),
                published.def.reducers.len()
            );
        }
        Command::Call {
            module,
            reducer,
            args,
            caller,
            dir,
        } => {
            let args: serde_json::Value =
                serde_json::from_str(&args).context("arguments are not valid JSON")?;
            let mut db = open(&dir)?;
            let outcome = db.call_json(&module, &reducer, &args, &caller);
            report_call(&module, &reducer, outcome)?;
        }
        Command::Query { module, table, dir } => {
            let db = open(&dir)?;
            for row in db.rows_json(&module, &table)? {
                println!("{row}");
            }
        }
        Command::Schema { module, dir } => {
            let db = open(&dir)?;
            let entry = db
                .module(&module)
                .with_context(|| format!("no module named `{module}`"))?;
            println!("{}", serde_json::to_string_pretty(&**entry.def())?);
        }
        Command::Demo { dir } => demo(&dir)?,
    }
    Ok(())
}

fn report_call(module: &str, reducer: &str, outcome: Result<CallOutcome, CallError>) -> Result<()> {
    match outcome {
        Ok(outcome) => {
            for line in &outcome.log {
                eprintln!("[{module}] {:?}: {}", line.level, line.message);
            }
            println!(
                "{}",
                serde_json::json!({"tx_id": outcome.tx_id, "timestamp": outcome.timestamp_micros})
            );
            Ok(())
        }
        Err(e) => bail!("{module}.{reducer}: {e}"),
    }
}

/// The bundled example crate, found relative to this source tree.
fn bundled_bank() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-modules/examples/bank")
}

fn demo(dir: &DataDir) -> Result<()> {
    let crate_dir = bundled_bank();
    eprintln!("building {} ...", crate_dir.display());
    let component = interstice_guest_build::build_component(&crate_dir, None)
        .context("building the bundled bank module")?;
    let wasm = std::fs::read(&component)?;
    let mut db = open(dir)?;
    let published = db.publish("bank", &wasm)?;
    println!(
        "published `bank` into {} ({} tables, {} reducers)",
        dir.data_dir.display(),
        published.def.tables.len(),
        published.def.reducers.len()
    );
    let existing = db.rows_json("bank", "accounts")?.len();
    if existing == 0 {
        for (id, balance) in [(1, 1000), (2, 500), (3, 0)] {
            let call = db.call_json(
                "bank",
                "open_account",
                &serde_json::json!([id, balance]),
                "demo",
            );
            report_call("bank", "open_account", call)?;
        }
    }
    for (from, to, amount) in [(1, 2, 250), (2, 3, 100), (3, 1, 10)] {
        let call = db.call_json(
            "bank",
            "transfer",
            &serde_json::json!([from, to, amount]),
            "demo",
        );
        report_call("bank", "transfer", call)?;
    }
    match db.call_json(
        "bank",
        "transfer",
        &serde_json::json!([3, 1, 1_000_000]),
        "demo",
    ) {
        Ok(_) => bail!("an overdraft was accepted"),
        Err(e) => println!("refused as expected: transfer 3 -> 1 of 1000000: {e}"),
    }
    println!("accounts:");
    for row in db.rows_json("bank", "accounts")? {
        println!("{row}");
    }
    Ok(())
}
