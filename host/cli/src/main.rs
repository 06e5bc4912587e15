//! The `interstice` binary: argument parsing and wiring only.

mod client;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use interstice_runtime::log::{LogConfig, RecoveryMode, SyncPolicy, limits::SEGMENT_BYTES_DEFAULT};
use interstice_runtime::tools::{self, DumpFilter, TruncateTo};
use interstice_runtime::{
    CallError, CallOutcome, Database, PublishOptions, RowQuery, RuntimeConfig, SnapshotConfig,
    backup, snapshots,
};
use interstice_server::{ServerConfig, auth};

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

/// A running server to talk to instead of opening the data directory.
#[derive(clap::Args, Clone)]
struct Remote {
    /// Talk to `interstice serve` at this URL (e.g. http://127.0.0.1:3000)
    /// instead of opening the data directory.
    #[arg(long, env = "INTERSTICE_SERVER")]
    server: Option<String>,
    /// File holding the server's admin token, for publishing (or set
    /// INTERSTICE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl Remote {
    fn client(&self) -> Option<client::Client> {
        self.server
            .as_deref()
            .map(|s| client::Client::new(s, self.token_file.clone()))
    }
}

/// A data directory for the log tools, which do not open the database.
#[derive(clap::Args, Clone)]
struct LogDir {
    /// The data directory.
    #[arg(long, default_value = "./interstice-data", env = "INTERSTICE_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum LogCommand {
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

#[derive(Subcommand)]
enum SnapshotCommand {
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

#[derive(Subcommand)]
enum Command {
    /// Build a guest into a module component: a Rust crate, or a directory
    /// with a Python `app.py` (built with componentize-py, installed from
    /// PyPI on first use).
    Build {
        /// The guest's directory.
        crate_dir: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Rust target: wasm32-unknown-unknown (default) or wasm32-wasip2.
        #[arg(long, value_parser = ["wasm32-unknown-unknown", "wasm32-wasip2"])]
        target: Option<String>,
    },
    /// Store a module in the data directory and run its init reducer.
    Publish {
        /// The module: a component, or a core module built with the SDK.
        wasm: PathBuf,
        /// The module's name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        /// For a new version whose changes are not additive: drop the
        /// module's data and start it afresh (its init reducer runs).
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        remote: Remote,
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
        remote: Remote,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a table's rows as JSON lines.
    Query {
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
    },
    /// Serve the data directory's modules over HTTP and WebSocket
    /// (docs/http-api.md) until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on (default 127.0.0.1:3000, or the config
        /// file's `listen`).
        #[arg(long, env = "INTERSTICE_LISTEN")]
        listen: Option<String>,
        /// Server settings (docs/http-api.md lists the keys).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Build and publish the bundled `bank` example first, unless a
        /// module of that name exists.
        #[arg(long)]
        with_example: bool,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Follow a table on a server: its rows, then every committed change,
    /// as JSON lines.
    Subscribe {
        module: String,
        table: String,
        /// Only rows whose primary key or indexed column holds a value:
        /// COLUMN=VALUE.
        #[arg(long = "where", value_name = "COLUMN=VALUE")]
        filter: Option<String>,
        /// Stop after this many messages.
        #[arg(long)]
        max_messages: Option<u64>,
        /// The server's URL.
        #[arg(long, env = "INTERSTICE_SERVER")]
        server: String,
    },
    /// Follow a module's log lines on a server (admin token required).
    Logs {
        module: String,
        /// Stop after this many lines.
        #[arg(long)]
        max_messages: Option<u64>,
        #[command(flatten)]
        remote: Remote,
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
    /// Open the data directory, replay the log (no guest runs) and print
    /// what was replayed as JSON.
    Replay {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Verify, inspect, dump or repair the durable log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Create, list or verify snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Copy the data directory consistently into DEST (new or empty), while
    /// the database may keep serving writes in another process.
    Backup {
        dest: PathBuf,
        #[command(flatten)]
        dir: LogDir,
    },
    /// Verify the backup in BACKUP_DIR and restore it into DATA_DIR (new or
    /// empty); the result is opened to prove it replays.
    Restore {
        backup_dir: PathBuf,
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INTERSTICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` with a progress bar over the log's bytes on stderr, when
/// stderr is a terminal; quiet otherwise.
fn with_progress<T>(what: &str, work: impl FnOnce(&mut dyn FnMut(u64, u64)) -> T) -> T {
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

fn open(dir: &DataDir) -> Result<Database> {
    let config = RuntimeConfig {
        log: LogConfig {
            sync: dir.sync,
            segment_bytes_max: dir.segment_size,
            recovery: dir.recovery_mode,
            salt_seed: None,
        },
        snapshots: SnapshotConfig {
            every_tx: dir.snapshot_every_tx,
            every_log_bytes: dir.snapshot_every_bytes,
            keep: dir.snapshots_keep,
            archive_dir: dir.archive_dir.clone(),
        },
        ..RuntimeConfig::default()
    };
    let db = with_progress("replaying", |progress| {
        Database::open_with_progress(&dir.data_dir, config, progress)
    })
    .with_context(|| format!("opening data directory {}", dir.data_dir.display()));
    // The database itself warns (on stderr, through tracing) about a weak
    // sync policy and anything recovery cut, skipped or moved aside.
    db
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build {
            crate_dir,
            out,
            target,
        } => {
            let target = match target.as_deref() {
                Some(interstice_guest_build::WASIP2_TARGET) => {
                    Some(interstice_guest_build::WASIP2_TARGET)
                }
                Some(_) => Some(interstice_guest_build::WASM_TARGET),
                None => None,
            };
            let path = interstice_guest_build::build_component(&crate_dir, out.as_deref(), target)
                .with_context(|| format!("building {}", crate_dir.display()))?;
            println!("{}", path.display());
        }
        Command::Publish {
            wasm,
            name,
            clear,
            remote,
            dir,
        } => {
            let name = match name {
                Some(n) => n,
                None => wasm
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(|s| s.trim_end_matches(".component").to_string())
                    .context("cannot derive a module name from the file name; pass --name")?,
            };
            if let Some(client) = remote.client() {
                return client.publish(&name, &wasm, clear);
            }
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let db = open(&dir)?;
            let published = db
                .publish_with(&name, &bytes, PublishOptions { clear })
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
        }
        Command::Call {
            module,
            reducer,
            args,
            caller,
            remote,
            dir,
        } => {
            if let Some(client) = remote.client() {
                return client.call(&module, &reducer, &args, &caller);
            }
            let args: serde_json::Value =
                serde_json::from_str(&args).context("arguments are not valid JSON")?;
            let db = open(&dir)?;
            let outcome = db.call_json(&module, &reducer, &args, &caller);
            report_call(&module, &reducer, outcome)?;
        }
        Command::Query {
            module,
            table,
            filter,
            remote,
            dir,
        } => {
            if let Some(client) = remote.client() {
                return client.query(&module, &table, filter.as_deref());
            }
            let filter = match filter.as_deref().map(|f| f.split_once('=')) {
                None => None,
                Some(Some((c, v))) => Some((c.to_string(), v.to_string())),
                Some(None) => bail!("--where takes COLUMN=VALUE"),
            };
            let db = open(&dir)?;
            let query = RowQuery {
                filter,
                after: None,
                limit: usize::MAX,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for row in db.query(&module, &table, &query)?.rows {
                writeln!(out, "{row}")?;
            }
        }
        Command::Serve {
            listen,
            config,
            with_example,
            dir,
        } => serve(&dir, listen, config.as_deref(), with_example)?,
        Command::Subscribe {
            module,
            table,
            filter,
            max_messages,
            server,
        } => client::Client::new(&server, None).subscribe(
            &module,
            &table,
            filter.as_deref(),
            max_messages,
        )?,
        Command::Logs {
            module,
            max_messages,
            remote,
        } => {
            let client = remote
                .client()
                .context("`logs` needs --server URL (or INTERSTICE_SERVER)")?;
            client.logs(&module, max_messages)?;
        }
        Command::Schema { module, dir } => {
            let db = open(&dir)?;
            let def = db
                .module_def(&module)
                .with_context(|| format!("no module named `{module}`"))?;
            println!("{}", serde_json::to_string_pretty(&*def)?);
        }
        Command::Demo { dir } => demo(&dir)?,
        Command::Replay { dir } => {
            let db = open(&dir)?;
            println!("{}", serde_json::to_string_pretty(db.replay_stats())?);
        }
        Command::Log { command } => log_command(command)?,
        Command::Snapshot { command } => snapshot_command(command)?,
        Command::Backup { dest, dir } => {
            let manifest = backup::backup(&dir.data_dir, &dest)
                .with_context(|| format!("backing up {}", dir.data_dir.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "backup": dest,
                    "tx_id": manifest.tx_id,
                    "snapshot_tx_id": manifest.snapshot_tx_id,
                    "modules": manifest.modules,
                    "rows": manifest.rows,
                    "files": manifest.files.len(),
                    "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
                })
            );
        }
        Command::Restore {
            backup_dir,
            data_dir,
        } => {
            let restored = backup::restore(&backup_dir, &data_dir, RuntimeConfig::default())
                .with_context(|| format!("restoring {}", backup_dir.display()))?;
            println!("{}", serde_json::to_string(&restored)?);
        }
    }
    Ok(())
}

fn snapshot_command(command: SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::Create { dir } => {
            let db = open(&dir)?;
            match db.snapshot()? {
                Some(info) => println!("{}", serde_json::to_string_pretty(&info)?),
                None => println!(
                    "{}",
                    serde_json::json!({"tx_id": db.next_tx_id() - 1, "note": "a snapshot at this transaction exists already"})
                ),
            }
        }
        SnapshotCommand::List { dir } => {
            let list = snapshots::describe_all(&interstice_runtime::fs::RealFs, &dir.data_dir)?;
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        SnapshotCommand::Verify { dir } => {
            let report = snapshots::verify_all(&interstice_runtime::fs::RealFs, &dir.data_dir)?;
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

fn log_command(command: LogCommand) -> Result<()> {
    match command {
        LogCommand::Verify { dir } => {
            let report = with_progress("verifying", |p| tools::verify(&dir.data_dir, p))?;
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
        }
        LogCommand::Inspect { dir } => {
            let report = with_progress("reading", |p| tools::inspect(&dir.data_dir, p))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
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
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let report = tools::dump(&dir.data_dir, &filter, &mut out)?;
            std::io::Write::flush(&mut out)?;
            for d in &report.skipped {
                eprintln!("damaged: {d}");
            }
        }
        LogCommand::Truncate {
            after,
            to_last_valid,
            dir,
        } => {
            let to = match (after, to_last_valid) {
                (Some(tx), _) => TruncateTo::After(tx),
                (None, _) => TruncateTo::LastValid,
            };
            let report = tools::truncate(&dir.data_dir, to)?;
            match report.last_tx_id {
                Some(tx) => println!("the log now ends at tx {tx}"),
                None => println!("the log is now empty"),
            }
            for q in &report.quarantined {
                println!("moved aside: {}", q.display());
            }
        }
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

/// `interstice serve`: opens the database, serves it until a signal, then
/// finishes requests in flight, syncs the log and releases the directory.
fn serve(
    dir: &DataDir,
    listen: Option<String>,
    config: Option<&Path>,
    with_example: bool,
) -> Result<()> {
    let mut server_config = match config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = listen {
        server_config.listen = listen;
    }
    let db = Arc::new(open(dir)?);
    if with_example && db.module_def("bank").is_none() {
        let crate_dir = bundled_bank();
        eprintln!("building {} ...", crate_dir.display());
        let component = interstice_guest_build::build_component(&crate_dir, None, None)
            .context("building the bundled bank module")?;
        let wasm = std::fs::read(&component)?;
        db.publish("bank", &wasm)
            .context("publishing the bundled bank module")?;
        eprintln!("published the example module `bank`");
    }
    let (token, source) = auth::admin_token(db.dir(), std::env::var(auth::TOKEN_ENV).ok())
        .context("setting up the admin token")?;
    match source {
        auth::TokenSource::Environment => {
            eprintln!("admin token: from {}", auth::TOKEN_ENV)
        }
        auth::TokenSource::File(p) => eprintln!("admin token: in {}", p.display()),
        auth::TokenSource::Generated(p) => {
            eprintln!("admin token: generated into {} (mode 0600)", p.display())
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async {
        let listener = interstice_server::bind(&server_config.listen).await?;
        let addr = listener.local_addr().context("reading the bound address")?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        interstice_server::serve(
            db.clone(),
            token,
            server_config,
            listener,
            interstice_server::signal(),
        )
        .await?;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(30));
    served?;
    match Arc::try_unwrap(db) {
        Ok(db) => {
            db.log().sync().context("syncing the log at shutdown")?;
            drop(db);
            eprintln!("stopped: every transaction is durable, the data directory is released");
        }
        Err(_) => bail!("requests were still running at shutdown; the log was not closed cleanly"),
    }
    Ok(())
}

/// The bundled example crate, found relative to this source tree.
fn bundled_bank() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-modules/examples/bank")
}

fn demo(dir: &DataDir) -> Result<()> {
    let crate_dir = bundled_bank();
    eprintln!("building {} ...", crate_dir.display());
    let component = interstice_guest_build::build_component(&crate_dir, None, None)
        .context("building the bundled bank module")?;
    let wasm = std::fs::read(&component)?;
    let before = {
        let db = open(dir)?;
        let published = db.publish("bank", &wasm)?;
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
        if db.rows_json("bank", "accounts")?.is_empty() {
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
        let rows = db.rows_json("bank", "accounts")?;
        for row in &rows {
            println!("{row}");
        }
        rows
        // The database closes here: the log is synced and the lock released.
    };
    println!("closed; reopening (replay runs no guest) ...");
    let db = open(dir)?;
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

fn parse_keep(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("keep at least one snapshot".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
