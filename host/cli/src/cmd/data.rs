//! The data commands: publish, call, query (locally or on a server), and
//! schema and replay (locally).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::args::{DataDir, Remote};
use crate::target::Target;

/// Store a module in the data directory and run its init reducer.
#[derive(clap::Args)]
pub struct Publish {
    /// The module: a component, or a core module built with the SDK.
    wasm: PathBuf,
    /// The module's name (default: the file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// For a new version whose changes are not additive: drop the
    /// module's data and start it afresh (its init reducer runs).
    #[arg(long)]
    clear: bool,
    /// The owner of a new module (64 hex digits): who may later publish
    /// over it or delete it with their own token. Default: whoever
    /// publishes (the operator, with the admin token or locally).
    #[arg(long, value_name = "IDENTITY")]
    owner: Option<String>,
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    dir: DataDir,
}

impl Publish {
    pub fn run(self) -> Result<()> {
        let name = match self.name {
            Some(n) => n,
            None => self
                .wasm
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.trim_end_matches(".component").to_string())
                .context("cannot derive a module name from the file name; pass --name")?,
        };
        Target::new(&self.remote, &self.dir)?.publish(
            &name,
            &self.wasm,
            self.clear,
            self.owner.as_deref(),
        )
    }
}

/// Call a reducer. Exit 0 when it committed.
#[derive(clap::Args)]
pub struct Call {
    module: String,
    reducer: String,
    /// Arguments: a JSON array in declaration order, or an object keyed
    /// by parameter name.
    #[arg(default_value = "[]")]
    args: String,
    /// Call as this identity (64 hex digits): the local CLI is the operator
    /// and may act as anyone. Default: the operator's identity. Over a
    /// server, the token says who calls.
    #[arg(long = "as", value_name = "IDENTITY")]
    as_identity: Option<String>,
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    dir: DataDir,
}

impl Call {
    pub fn run(self) -> Result<()> {
        Target::new(&self.remote, &self.dir)?.call(
            &self.module,
            &self.reducer,
            &self.args,
            self.as_identity.as_deref(),
        )
    }
}

/// Print a table's rows as JSON lines.
#[derive(clap::Args)]
pub struct Query {
    module: String,
    table: String,
    /// Only rows whose primary key or indexed column holds a value:
    /// COLUMN=VALUE.
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    filter: Option<String>,
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    dir: DataDir,
}

impl Query {
    pub fn run(self) -> Result<()> {
        Target::new(&self.remote, &self.dir)?.query(
            &self.module,
            &self.table,
            self.filter.as_deref(),
        )
    }
}

/// Print a module's schema as JSON.
#[derive(clap::Args)]
pub struct Schema {
    module: String,
    #[command(flatten)]
    dir: DataDir,
}

impl Schema {
    pub fn run(self) -> Result<()> {
        let db = self.dir.open()?;
        let def = db
            .module_def(&self.module)?
            .with_context(|| format!("no module named `{}`", self.module))?;
        println!("{}", serde_json::to_string_pretty(&*def)?);
        Ok(())
    }
}

/// Run the rows of schedule tables that are due now, once each (what
/// `serve` does continuously), and print how many ran and failed as JSON.
/// Nothing else in the offline CLI runs schedules.
#[derive(clap::Args)]
pub struct Tick {
    #[command(flatten)]
    dir: DataDir,
    /// Stop after this many runs (rows a run schedules for now run too).
    #[arg(long, default_value_t = 10_000)]
    max: usize,
}

impl Tick {
    pub fn run(self) -> Result<()> {
        let db = self.dir.open()?;
        let mut total = interstice_runtime::ScheduleRound::default();
        while total.ran + total.failed < self.max {
            let room = (self.max - total.ran - total.failed).min(interstice_runtime::ROUND_MAX);
            let round = db.run_due(room)?;
            total.ran += round.ran;
            total.failed += round.failed;
            total.skipped += round.skipped;
            // Failed rows back off; only what ran may have made more due.
            if round.ran == 0 {
                break;
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "ran": total.ran,
                "failed": total.failed,
                "next_due": db.next_due()?,
            })
        );
        Ok(())
    }
}

/// Open the data directory, replay the log (no guest runs) and print
/// what was replayed as JSON.
#[derive(clap::Args)]
pub struct Replay {
    #[command(flatten)]
    dir: DataDir,
}

impl Replay {
    pub fn run(self) -> Result<()> {
        let db = self.dir.open()?;
        println!("{}", serde_json::to_string_pretty(db.replay_stats())?);
        Ok(())
    }
}
