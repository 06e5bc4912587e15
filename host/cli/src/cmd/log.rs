//! `interstice log`: verify, inspect, dump or repair the durable log.

use anyhow::{Result, bail};
use interstice_runtime::fs::RealFs;
use interstice_runtime::tools::{self, DumpFilter, TruncateTo};

use crate::args::{LogDir, with_progress};

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Check every segment, checksum and transaction id, and replay the log
    /// into scratch tables. Exit 0 only when the whole log is intact.
    Verify {
        #[command(flatten)]
        dir: LogDir,
    },
    /// Segments, sizes, transaction counts and ranges, time range, modules
    /// and tables, as JSON.
    Inspect {
        #[command(flatten)]
        dir: LogDir,
    },
    /// The log in readable form: one line per transaction, one per mutation.
    Dump {
        /// Only transactions of this module.
        #[arg(long)]
        module: Option<String>,
        /// Only mutations of this table (and transactions that have some).
        #[arg(long)]
        table: Option<String>,
        /// First transaction id to show.
        #[arg(long)]
        from: Option<u64>,
        /// Last transaction id to show.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        dir: LogDir,
    },
    /// Repair: cut the log. What is cut is moved to `log/quarantine/`.
    Truncate {
        /// Keep transactions up to and including this id.
        #[arg(
            long,
            conflicts_with = "to_last_valid",
            required_unless_present = "to_last_valid"
        )]
        after: Option<u64>,
        /// Keep everything before the first damaged record.
        #[arg(long)]
        to_last_valid: bool,
        #[command(flatten)]
        dir: LogDir,
    },
}

impl LogCommand {
    pub fn run(self) -> Result<()> {
        match self {
            LogCommand::Verify { dir } => verify(&dir),
            LogCommand::Inspect { dir } => {
                let report =
                    with_progress("reading", |p| tools::inspect(&RealFs, &dir.data_dir, p))?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            LogCommand::Dump {
                module,
                table,
                from,
                to,
                dir,
            } => {
                let filter = DumpFilter {
                    module,
                    table,
                    from_tx: from,
                    to_tx: to,
                };
                dump(&dir, &filter)
            }
            LogCommand::Truncate {
                after,
                to_last_valid: _,
                dir,
            } => {
                let to = match after {
                    Some(tx) => TruncateTo::After(tx),
                    None => TruncateTo::LastValid,
                };
                truncate(&dir, to)
            }
        }
    }
}

fn verify(dir: &LogDir) -> Result<()> {
    let report = with_progress("verifying", |p| tools::verify(&RealFs, &dir.data_dir, p))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.intact() {
        for d in &report.damage {
            eprintln!("damaged: {d}");
        }
        if let Some(e) = &report.replay_error {
            eprintln!("does not replay: {e}");
        }
        bail!("the log in {} is damaged", dir.data_dir.display());
    }
    Ok(())
}

fn dump(dir: &LogDir, filter: &DumpFilter) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let report = tools::dump(&RealFs, &dir.data_dir, filter, &mut out)?;
    std::io::Write::flush(&mut out)?;
    for d in &report.skipped {
        eprintln!("damaged: {d}");
    }
    Ok(())
}

fn truncate(dir: &LogDir, to: TruncateTo) -> Result<()> {
    let report = tools::truncate(&RealFs, &dir.data_dir, to)?;
    match report.last_tx_id {
        Some(tx) => println!("the log now ends at tx {tx}"),
        None => println!("the log is now empty"),
    }
    for q in &report.quarantined {
        println!("moved aside: {}", q.display());
    }
    Ok(())
}
