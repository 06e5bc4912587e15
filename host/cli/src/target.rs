//! Where a data command goes: a local data directory, opened here, or a
//! running server. Chosen once, from `--server`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use interstice_runtime::{
    CallError, CallOutcome, Caller, Database, Identity, PublishOptions, RowQuery,
};

use crate::args::{DataDir, Remote, parse_filter};
use crate::client::Client;

/// A local database or a server.
pub enum Target {
    Local(Box<Database>),
    Server(Client),
}

impl Target {
    /// The server when `--server` (or INTERSTICE_SERVER) names one, else the
    /// data directory, opened.
    pub fn new(remote: &Remote, dir: &DataDir) -> Result<Target> {
        match remote.client() {
            Some(client) => Ok(Target::Server(client)),
            None => Ok(Target::Local(Box::new(dir.open()?))),
        }
    }

    /// Publishes the module in `wasm` as `name`.
    pub fn publish(&self, name: &str, wasm: &Path, clear: bool, owner: Option<&str>) -> Result<()> {
        let db = match self {
            Target::Server(client) => return client.publish(name, wasm, clear, owner),
            Target::Local(db) => db,
        };
        let owner = owner.map(parse_identity).transpose()?;
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let options = PublishOptions {
            clear,
            owner,
            ..PublishOptions::default()
        };
        let published = db
            .publish_with(name, &bytes, options)
            .with_context(|| format!("publishing {}", wasm.display()))?;
        let verb = match (published.replaced, published.version) {
            (true, _) => "replaced the code of".to_string(),
            (false, 1) => "published".to_string(),
            (false, v) => format!("upgraded to version {v}"),
        };
        println!(
            "{verb} module `{name}`: {} tables, {} reducers",
            published.def.tables.len(),
            published.def.reducers.len()
        );
        for change in &published.changes {
            println!("  - {change}");
        }
        Ok(())
    }

    /// Calls a reducer with JSON arguments (text).
    pub fn call(
        &self,
        module: &str,
        reducer: &str,
        args: &str,
        as_identity: Option<&str>,
    ) -> Result<()> {
        let db = match self {
            Target::Server(_) if as_identity.is_some() => {
                bail!(
                    "--as works on a data directory only; over a server, the token says who calls"
                )
            }
            Target::Server(client) => return client.call(module, reducer, args),
            Target::Local(db) => db,
        };
        let caller = match as_identity {
            Some(text) => Caller::identity(parse_identity(text)?),
            None => Caller::operator(),
        };
        let args: serde_json::Value =
            serde_json::from_str(args).context("arguments are not valid JSON")?;
        report_call(
            module,
            reducer,
            db.call_json(module, reducer, &args, &caller),
        )
    }

    /// Prints a table's rows (or those matching `--where`) as JSON lines.
    pub fn query(&self, module: &str, table: &str, filter: Option<&str>) -> Result<()> {
        let db = match self {
            Target::Server(client) => return client.query(module, table, filter),
            Target::Local(db) => db,
        };
        let query = RowQuery {
            filter: parse_filter(filter)?,
            after: None,
            limit: usize::MAX,
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for row in db.query(module, table, &query)?.rows {
            writeln!(out, "{row}")?;
        }
        Ok(())
    }
}

impl Target {
    /// Runs one SQL query; its answer as JSON (`{"tx_id", "columns",
    /// "rows"}`). Locally the operator reads every table.
    pub fn sql(
        &self,
        module: &str,
        text: &str,
        budget: &interstice_runtime::sql::Budget,
    ) -> Result<serde_json::Value> {
        match self {
            Target::Server(client) => client.sql(module, text),
            Target::Local(db) => Ok(db
                .sql(module, text, interstice_runtime::Reader::Operator, budget)?
                .to_json()),
        }
    }
}

/// Prints a call's log lines and transaction, or fails with its error.
pub fn report_call(
    module: &str,
    reducer: &str,
    outcome: Result<CallOutcome, CallError>,
) -> Result<()> {
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

/// An identity given on the command line.
fn parse_identity(text: &str) -> Result<Identity> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not an identity: expected 64 hex digits"))
}
