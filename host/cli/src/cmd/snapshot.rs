//! `interstice snapshot`: create, list or verify snapshots.

use anyhow::{Result, bail};
use interstice_runtime::fs::RealFs;
use interstice_runtime::snapshots;

use crate::args::{DataDir, LogDir};

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of every table now (the database must not be open
    /// in another process), then apply retention.
    Create {
        #[command(flatten)]
        dir: DataDir,
    },
    /// The snapshots in the data directory, with what their headers say.
    List {
        #[command(flatten)]
        dir: LogDir,
    },
    /// Read every snapshot whole, checking checksums and rows. Exit 0 only
    /// when all are intact.
    Verify {
        #[command(flatten)]
        dir: LogDir,
    },
}

impl SnapshotCommand {
    pub fn run(self) -> Result<()> {
        match self {
            SnapshotCommand::Create { dir } => {
                let db = dir.open()?;
                match db.snapshot()? {
                    Some(info) => println!("{}", serde_json::to_string_pretty(&info)?),
                    None => println!(
                        "{}",
                        serde_json::json!({"tx_id": db.next_tx_id()? - 1, "note": "a snapshot at this transaction exists already"})
                    ),
                }
            }
            SnapshotCommand::List { dir } => {
                let list = snapshots::describe_all(&RealFs, &dir.data_dir)?;
                println!("{}", serde_json::to_string_pretty(&list)?);
            }
            SnapshotCommand::Verify { dir } => {
                let report = snapshots::verify_all(&RealFs, &dir.data_dir)?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                let bad: Vec<_> = report.iter().filter_map(|s| s.error.as_ref()).collect();
                for e in &bad {
                    eprintln!("damaged: {e}");
                }
                if !bad.is_empty() {
                    bail!("{} of {} snapshots are damaged", bad.len(), report.len());
                }
            }
        }
        Ok(())
    }
}
