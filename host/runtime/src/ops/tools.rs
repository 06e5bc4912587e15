//! Operator tools over a data directory's log: verify, inspect, dump,
//! truncate. They read the log through the same code as replay and never
//! run a guest.

use std::collections::BTreeMap;
use std::path::Path;

use interstice_fs::Storage;
use interstice_log::{
    LogError, Record, RecordKind, Recovered, TxRecord, log_bytes, scan, truncate_after,
    truncate_to_last_valid,
};
use interstice_store::ModuleDef;
use interstice_store::json::{args_to_json, row_to_json};
use serde::Serialize;

use super::progress::{Progress, Throttled};
use crate::error::OpenError;
use crate::layout::{DirLock, LOG_DIR};
use crate::record::definition_of;
use crate::replay::Replayer;

/// What `log verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    pub last_tx_id: Option<u64>,
    /// Every damaged place: file, offset, reason.
    pub damage: Vec<String>,
    /// A record that passed its checksum but does not replay.
    pub replay_error: Option<String>,
    /// The snapshot replay started from, when the log does not reach back
    /// to transaction 1.
    pub snapshot_tx_id: Option<u64>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.damage.is_empty() && self.replay_error.is_none()
    }
}

/// Total bytes of the log, for a progress bar.
pub fn total_log_bytes(storage: &dyn Storage, data_dir: &Path) -> Result<u64, LogError> {
    let dir = data_dir.join(LOG_DIR);
    if !storage.exists(&dir) {
        return Ok(0);
    }
    log_bytes(storage, &dir, 1)
}

fn scan_dir(
    storage: &dyn Storage,
    data_dir: &Path,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    let dir = data_dir.join(LOG_DIR);
    if !storage.exists(&dir) {
        return Ok(Recovered::default());
    }
    scan(storage, &dir, visit)
}

/// Checks every segment header, record checksum and tx id, and replays every
/// record into scratch tables (no guest), changing nothing on disk.
pub fn verify(
    storage: &dyn Storage,
    data_dir: &Path,
    progress: Progress<'_>,
) -> Result<VerifyReport, LogError> {
    let mut progress = Throttled::new(progress, total_log_bytes(storage, data_dir)?);
    let (mut replayer, snapshot_tx_id) = verify_base(storage, data_dir);
    let mut replay_error = None;
    let report = scan_dir(storage, data_dir, &mut |rec| {
        progress.at(rec.log_offset);
        if rec.tx_id >= replayer.next_tx_id() {
            replayer.apply_noting(rec, &mut replay_error);
        }
        Ok(())
    })?;
    progress.done();
    Ok(VerifyReport {
        segments: report.segments.len(),
        records: report.records,
        bytes: report.bytes,
        last_tx_id: report.last_tx_id,
        damage: report.skipped.iter().map(|d| d.to_string()).collect(),
        replay_error,
        snapshot_tx_id,
    })
}

/// Where `log verify` starts replaying: from nothing when the log reaches
/// back to transaction 1, otherwise from the oldest snapshot that reads back
/// whole (retention removed the log before the oldest kept snapshot).
fn verify_base(storage: &dyn Storage, data_dir: &Path) -> (Replayer, Option<u64>) {
    let dir = data_dir.join(LOG_DIR);
    let first_base = if storage.exists(&dir) {
        interstice_log::list_segments(storage, &dir)
            .ok()
            .and_then(|s| s.first().map(|(base, _)| *base))
    } else {
        None
    };
    if first_base.is_none_or(|b| b <= 1) {
        return (Replayer::new(), None);
    }
    for (tx, path) in crate::snapshots::list(storage, data_dir).unwrap_or_default() {
        if let Ok(loaded) = interstice_store::snapshot::read(storage, &path) {
            return (Replayer::from_snapshot(loaded), Some(tx));
        }
    }
    (Replayer::new(), None)
}

/// Module definitions in force before the log's first record, from the
/// oldest snapshot whose definitions read (retention may have removed the
/// publication records).
fn definitions_before_log(
    storage: &dyn Storage,
    data_dir: &Path,
) -> BTreeMap<String, (ModuleDef, u32)> {
    for (_, path) in crate::snapshots::list(storage, data_dir).unwrap_or_default() {
        if let Ok((_, modules)) = interstice_store::snapshot::read_definitions(storage, &path) {
            return modules
                .into_iter()
                .map(|m| (m.name, (m.def, m.version)))
                .collect();
        }
    }
    BTreeMap::new()
}

/// One segment in `log inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    pub file: String,
    pub bytes: u64,
    pub transactions: u64,
    pub first_tx_id: Option<u64>,
    pub last_tx_id: Option<u64>,
}

/// A module in `log inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleReport {
    /// The latest publication of the module (first or new version); None
    /// when it lies before the log's first record (in a snapshot).
    pub published_tx_id: Option<u64>,
    /// The definition's version after the latest publication.
    pub version: u32,
    pub transactions: u64,
    /// Table name to the number of its mutations in the log.
    pub tables: BTreeMap<String, u64>,
}

/// What `log inspect` shows.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    pub segments: Vec<SegmentReport>,
    pub bytes: u64,
    pub transactions: u64,
    pub first_tx_id: Option<u64>,
    pub last_tx_id: Option<u64>,
    /// Logical timestamps (µs since the Unix epoch) of the first and last
    /// transaction.
    pub first_timestamp_micros: Option<i64>,
    pub last_timestamp_micros: Option<i64>,
    pub modules: BTreeMap<String, ModuleReport>,
    pub damage: Vec<String>,
}

/// What `log inspect` counts per module as it reads the log.
struct Tally {
    modules: BTreeMap<String, ModuleReport>,
    defs: BTreeMap<String, ModuleDef>,
}

impl Tally {
    /// Starts from the definitions in force before the log's first record.
    fn new(seeded: BTreeMap<String, (ModuleDef, u32)>) -> Tally {
        let modules = seeded
            .iter()
            .map(|(name, (def, version))| {
                let report = ModuleReport {
                    published_tx_id: None,
                    version: *version,
                    transactions: 0,
                    tables: def.tables.iter().map(|t| (t.name.clone(), 0)).collect(),
                };
                (name.clone(), report)
            })
            .collect();
        let defs = seeded.into_iter().map(|(n, (d, _))| (n, d)).collect();
        Tally { modules, defs }
    }

    fn record(&mut self, tx_id: u64, tx: &TxRecord<'_>) {
        let module = tx.header.module;
        if matches!(tx.header.kind, RecordKind::Publish | RecordKind::Upgrade)
            && let Ok((def, version, _)) = definition_of(tx)
        {
            // A new version keeps the counts so far; its new tables join.
            let report = self
                .modules
                .entry(module.to_string())
                .or_insert_with(|| ModuleReport {
                    published_tx_id: None,
                    version: 0,
                    transactions: 0,
                    tables: BTreeMap::new(),
                });
            report.published_tx_id = Some(tx_id);
            report.version = version;
            for t in &def.tables {
                report.tables.entry(t.name.clone()).or_insert(0);
            }
            self.defs.insert(module.to_string(), def);
        }
        if let (Some(m), Some(def)) = (self.modules.get_mut(module), self.defs.get(module)) {
            m.transactions += 1;
            for mutation in &tx.mutations {
                if let Some(t) = def.tables.get(mutation.table as usize) {
                    *m.tables.entry(t.name.clone()).or_default() += 1;
                }
            }
        }
    }
}

pub fn inspect(
    storage: &dyn Storage,
    data_dir: &Path,
    progress: Progress<'_>,
) -> Result<InspectReport, LogError> {
    let mut progress = Throttled::new(progress, total_log_bytes(storage, data_dir)?);
    let mut first_ts = None;
    let mut last_ts = None;
    let mut tally = Tally::new(definitions_before_log(storage, data_dir));
    let report = scan_dir(storage, data_dir, &mut |rec| {
        progress.at(rec.log_offset);
        let Ok(tx) = TxRecord::decode(rec.payload) else {
            return Ok(());
        };
        first_ts.get_or_insert(tx.header.timestamp_micros);
        last_ts = Some(tx.header.timestamp_micros);
        tally.record(rec.tx_id, &tx);
        Ok(())
    })?;
    progress.done();
    Ok(InspectReport {
        segments: report
            .segments
            .iter()
            .map(|s| SegmentReport {
                file: s.path.display().to_string(),
                bytes: s.bytes,
                transactions: s.records,
                first_tx_id: s.first_tx_id,
                last_tx_id: s.last_tx_id,
            })
            .collect(),
        bytes: report.bytes,
        transactions: report.records,
        first_tx_id: report.segments.iter().find_map(|s| s.first_tx_id),
        last_tx_id: report.last_tx_id,
        first_timestamp_micros: first_ts,
        last_timestamp_micros: last_ts,
        modules: tally.modules,
        damage: report.skipped.iter().map(|d| d.to_string()).collect(),
    })
}

/// Which records `log dump` prints.
#[derive(Clone, Debug, Default)]
pub struct DumpFilter {
    pub module: Option<String>,
    pub table: Option<String>,
    pub from_tx: Option<u64>,
    pub to_tx: Option<u64>,
}

/// Writes the log in readable form: a line per transaction and an indented
/// line per mutation, rows and arguments as JSON.
pub fn dump(
    storage: &dyn Storage,
    data_dir: &Path,
    filter: &DumpFilter,
    out: &mut dyn std::io::Write,
) -> Result<Recovered, LogError> {
    let mut defs: BTreeMap<String, ModuleDef> = definitions_before_log(storage, data_dir)
        .into_iter()
        .map(|(n, (d, _))| (n, d))
        .collect();
    scan_dir(storage, data_dir, &mut |rec| {
        let tx = match TxRecord::decode(rec.payload) {
            Ok(tx) => tx,
            Err(e) => {
                return writeln!(out, "tx {}: undecodable payload: {e}", rec.tx_id)
                    .map_err(|e| e.to_string());
            }
        };
        if matches!(tx.header.kind, RecordKind::Publish | RecordKind::Upgrade)
            && let Ok((def, _, _)) = definition_of(&tx)
        {
            defs.insert(tx.header.module.to_string(), def);
        }
        let in_range = filter.from_tx.is_none_or(|f| rec.tx_id >= f)
            && filter.to_tx.is_none_or(|t| rec.tx_id <= t);
        let in_module = filter
            .module
            .as_deref()
            .is_none_or(|m| m == tx.header.module);
        if !in_range || !in_module {
            return Ok(());
        }
        dump_tx(rec.tx_id, &tx, defs.get(tx.header.module), filter, out).map_err(|e| e.to_string())
    })
}

/// One transaction of `log dump`, unless the table filter leaves nothing.
fn dump_tx(
    tx_id: u64,
    tx: &TxRecord<'_>,
    def: Option<&ModuleDef>,
    filter: &DumpFilter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let table_name = |id: u32| {
        def.and_then(|d| d.tables.get(id as usize))
            .map_or_else(|| format!("#{id}"), |t| t.name.clone())
    };
    let shown: Vec<_> = tx
        .mutations
        .iter()
        .filter(|m| {
            filter
                .table
                .as_deref()
                .is_none_or(|t| t == table_name(m.table))
        })
        .collect();
    if filter.table.is_some() && shown.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "tx {tx_id} @{} by {:?}: {}",
        tx.header.timestamp_micros,
        tx.header.caller,
        describe_tx(tx, def)
    )?;
    for m in &shown {
        let table = def.and_then(|d| d.tables.get(m.table as usize));
        let row = table
            .and_then(|t| row_to_json(m.row, t).ok())
            .map_or_else(|| format!("{} bytes", m.row.len()), |j| j.to_string());
        writeln!(out, "  {} {} {row}", m.op.name(), table_name(m.table))?;
    }
    Ok(())
}

/// What a transaction did, in a few words.
fn describe_tx(tx: &TxRecord<'_>, def: Option<&ModuleDef>) -> String {
    let module = tx.header.module;
    match tx.header.kind {
        RecordKind::Publish if tx.header.reducer.is_empty() => format!("publish {module}"),
        RecordKind::Publish => format!("publish {module} (init {})", tx.header.reducer),
        RecordKind::Upgrade => {
            let version = definition_of(tx).map_or(0, |(_, v, _)| v);
            match tx.header.reducer {
                "" => format!("upgrade {module} to version {version}"),
                r => format!("upgrade {module} to version {version} (ran {r})"),
            }
        }
        RecordKind::Drop => format!("delete module {module}"),
        RecordKind::Sql => format!("sql {module}: {}", String::from_utf8_lossy(tx.header.args)),
        RecordKind::Call => {
            let args = def
                .and_then(|d| d.reducers.iter().find(|r| r.name == tx.header.reducer))
                .and_then(|r| args_to_json(tx.header.args, &r.params).ok())
                .map_or_else(
                    || format!("{} bytes", tx.header.args.len()),
                    |j| j.to_string(),
                );
            format!("call {module}.{} {args}", tx.header.reducer)
        }
    }
}

/// How `log truncate` cuts.
#[derive(Clone, Copy, Debug)]
pub enum TruncateTo {
    /// Keep transactions up to and including this one.
    After(u64),
    /// Keep everything before the first damage.
    LastValid,
}

/// Cuts the log (the data directory must not be open elsewhere). What is
/// cut is moved to the log's quarantine directory, never deleted.
pub fn truncate(
    storage: &dyn Storage,
    data_dir: &Path,
    to: TruncateTo,
) -> Result<Recovered, OpenError> {
    let _lock = DirLock::acquire(data_dir)?;
    let dir = data_dir.join(LOG_DIR);
    let mut report = match to {
        TruncateTo::After(tx) => truncate_after(storage, &dir, tx)?,
        TruncateTo::LastValid => truncate_to_last_valid(storage, &dir)?,
    };
    // A snapshot past the cut holds what was cut: it goes aside too, or the
    // next open would start from it.
    let kept = report.last_tx_id.unwrap_or(0);
    let snapshots = crate::snapshots::list(storage, data_dir)?;
    let beyond: Vec<_> = snapshots.iter().filter(|(tx, _)| *tx > kept).collect();
    if beyond.is_empty() {
        return Ok(report);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { path, source }
    };
    let qdir = dir.join(interstice_log::QUARANTINE_DIR);
    storage.create_dir_all(&qdir).map_err(io(&qdir))?;
    for (_, path) in beyond {
        let to = qdir.join(path.file_name().unwrap_or_default());
        storage.rename(path, &to).map_err(io(path))?;
        report.quarantined.push(to);
    }
    for d in [&qdir, &crate::snapshots::dir_of(data_dir), &dir] {
        storage.sync_dir(d).map_err(io(d))?;
    }
    Ok(report)
}
