//! `interstice backup` and `interstice restore`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use interstice_runtime::fs::RealFs;
use interstice_runtime::{RuntimeConfig, backup};

use crate::args::LogDir;

/// Copy the data directory consistently into DEST (new or empty), while
/// the database may keep serving writes in another process.
#[derive(clap::Args)]
pub struct Backup {
    dest: PathBuf,
    #[command(flatten)]
    dir: LogDir,
}

impl Backup {
    pub fn run(self) -> Result<()> {
        let manifest = backup::backup(&RealFs, &self.dir.data_dir, &self.dest)
            .with_context(|| format!("backing up {}", self.dir.data_dir.display()))?;
        println!(
            "{}",
            serde_json::json!({
                "backup": self.dest,
                "tx_id": manifest.tx_id,
                "snapshot_tx_id": manifest.snapshot_tx_id,
                "modules": manifest.modules,
                "rows": manifest.rows,
                "files": manifest.files.len(),
                "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
            })
        );
        Ok(())
    }
}

/// Verify the backup in BACKUP_DIR and restore it into DATA_DIR (new or
/// empty); the result is opened to prove it replays.
#[derive(clap::Args)]
pub struct Restore {
    backup_dir: PathBuf,
    data_dir: PathBuf,
}

impl Restore {
    pub fn run(self) -> Result<()> {
        let restored = backup::restore(&self.backup_dir, &self.data_dir, RuntimeConfig::default())
            .with_context(|| format!("restoring {}", self.backup_dir.display()))?;
        println!("{}", serde_json::to_string(&restored)?);
        Ok(())
    }
}
