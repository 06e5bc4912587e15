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

/// Run one SQL statement (docs/sql.md): a SELECT, EXPLAIN SELECT for its
/// plan, or an INSERT, UPDATE or DELETE (one logged transaction; answers
/// rows_changed). Prints a table, or with --json a line with the columns
/// and then one JSON array per row. Over a server, the token decides which
/// tables may be read and whether it may write; locally, everything may.
#[derive(clap::Args)]
pub struct Sql {
    module: String,
    query: String,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Most rows the query may read, join or answer (locally; a server has
    /// its own `sql_max_rows`).
    #[arg(long, default_value_t = 100_000_000)]
    max_rows: u64,
    /// Most milliseconds the query may take (locally; a server has its own
    /// `sql_max_millis`).
    #[arg(long, default_value_t = 60_000)]
    max_millis: u64,
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    dir: DataDir,
}

impl Sql {
    pub fn run(self) -> Result<()> {
        let budget = interstice_runtime::sql::Budget {
            rows: self.max_rows,
            time: std::time::Duration::from_millis(self.max_millis),
        };
        let answer =
            Target::new(&self.remote, &self.dir)?.sql(&self.module, &self.query, &budget)?;
        print_sql(&answer, self.json)
    }
}

/// Prints a SQL answer (`{"tx_id", "columns", "rows"}`) as a table or as
/// JSON lines.
fn print_sql(answer: &serde_json::Value, json: bool) -> Result<()> {
    use std::io::Write;
    let columns = answer["columns"].as_array().cloned().unwrap_or_default();
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"tx_id": answer["tx_id"], "columns": columns})
        )?;
        for row in &rows {
            writeln!(out, "{row}")?;
        }
        return Ok(());
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "NULL".to_string(),
        other => other.to_string(),
    };
    let mut table: Vec<Vec<String>> = vec![
        columns
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect(),
    ];
    for row in &rows {
        table.push(
            row.as_array()
                .map(|r| r.iter().map(cell).collect())
                .unwrap_or_default(),
        );
    }
    let mut widths = vec![0; columns.len()];
    for line in &table {
        for (i, c) in line.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for (n, line) in table.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join(" | ").trim_end())?;
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(out, "{}", rule.join("-+-"))?;
        }
    }
    let n = rows.len();
    writeln!(
        out,
        "({n} row{}, as of transaction {})",
        if n == 1 { "" } else { "s" },
        answer["tx_id"]
    )?;
    Ok(())
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
