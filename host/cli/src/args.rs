//! Arguments several commands share, and opening a data directory from them.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use interstice_runtime::log::{LogConfig, RecoveryMode, SyncPolicy, limits::SEGMENT_BYTES_DEFAULT};
use interstice_runtime::{Database, RuntimeConfig, SnapshotConfig};

use crate::client;

#[derive(clap::Args, Clone)]
pub struct DataDir {
    /// The data directory.
    #[arg(long, default_value = "./interstice-data", env = "INTERSTICE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// When a transaction is acknowledged: `always` (after fdatasync),
    /// `interval=<ms>` or `never` (after the write reaches the operating
    /// system; a power loss can lose acknowledged transactions).
    #[arg(long, default_value = "always", env = "INTERSTICE_SYNC")]
    sync: SyncPolicy,
    /// What to do with damage found in the log on open (docs/recovery.md).
    #[arg(
        long,
        default_value = "tolerate-tail",
        env = "INTERSTICE_RECOVERY_MODE"
    )]
    recovery_mode: RecoveryMode,
    /// Size at which the log starts a new segment, in bytes.
    #[arg(long, default_value_t = SEGMENT_BYTES_DEFAULT)]
    segment_size: u64,
    /// Take a snapshot after this many transactions (0: not by count).
    #[arg(long, default_value_t = SnapshotConfig::default().every_tx, env = "INTERSTICE_SNAPSHOT_EVERY_TX")]
    snapshot_every_tx: u64,
    /// Take a snapshot after this many bytes of log (0: not by size).
    #[arg(long, default_value_t = SnapshotConfig::default().every_log_bytes, env = "INTERSTICE_SNAPSHOT_EVERY_BYTES")]
    snapshot_every_bytes: u64,
    /// Snapshots to keep; the log before the oldest kept one is removed.
    #[arg(long, default_value_t = SnapshotConfig::default().keep, value_parser = parse_keep)]
    snapshots_keep: usize,
    /// Move log segments no kept snapshot needs here instead of deleting
    /// them (same file system as the data directory).
    #[arg(long, env = "INTERSTICE_ARCHIVE_DIR")]
    archive_dir: Option<PathBuf>,
}

impl DataDir {
    fn config(&self) -> RuntimeConfig {
        RuntimeConfig {
            log: LogConfig {
                sync: self.sync,
                segment_bytes_max: self.segment_size,
                recovery: self.recovery_mode,
                salt_seed: None,
            },
            snapshots: SnapshotConfig {
                every_tx: self.snapshot_every_tx,
                every_log_bytes: self.snapshot_every_bytes,
                keep: self.snapshots_keep,
                archive_dir: self.archive_dir.clone(),
            },
            ..RuntimeConfig::default()
        }
    }

    /// Opens the data directory, with a progress bar over the replay. The
    /// database itself warns (on stderr, through tracing) about a weak sync
    /// policy and anything recovery cut, skipped or moved aside.
    pub fn open(&self) -> Result<Database> {
        let config = self.config();
        with_progress("replaying", |progress| {
            Database::open_with_progress(&self.data_dir, config, progress)
        })
        .with_context(|| format!("opening data directory {}", self.data_dir.display()))
    }
}

/// A running server to talk to instead of opening the data directory.
#[derive(clap::Args, Clone)]
pub struct Remote {
    /// Talk to `interstice serve` at this URL (e.g. http://127.0.0.1:3000)
    /// instead of opening the data directory.
    #[arg(long, env = "INTERSTICE_SERVER")]
    server: Option<String>,
    /// File holding the server's admin token, for publishing (or set
    /// INTERSTICE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// An identity token (from `POST /v1/identity` or an outside issuer) to
    /// act as, instead of the admin token.
    #[arg(long, env = "INTERSTICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    pub fn client(&self) -> Option<client::Client> {
        self.server
            .as_deref()
            .map(|s| client::Client::new(s, self.token_file.clone(), self.token.clone()))
    }
}

/// A data directory for the tools that do not open the database.
#[derive(clap::Args, Clone)]
pub struct LogDir {
    /// The data directory.
    #[arg(long, default_value = "./interstice-data", env = "INTERSTICE_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs `work` with a progress bar over the log's bytes on stderr, when
/// stderr is a terminal; quiet otherwise.
pub fn with_progress<T>(what: &str, work: impl FnOnce(&mut dyn FnMut(u64, u64)) -> T) -> T {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        bar
    } else {
        ProgressBar::hidden()
    };
    let out = work(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    out
}

fn parse_keep(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("keep at least one snapshot".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `COLUMN=VALUE` of `--where`.
pub fn parse_filter(filter: Option<&str>) -> Result<Option<(String, String)>> {
    match filter.map(|f| f.split_once('=')) {
        None => Ok(None),
        Some(Some((c, v))) => Ok(Some((c.to_string(), v.to_string()))),
        Some(None) => anyhow::bail!("--where takes COLUMN=VALUE"),
    }
}
