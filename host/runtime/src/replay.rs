//! Replay: rebuilding every module's tables from the log.
//!
//! This module is the replay phase's code. It sees the store and the log and
//! nothing of wasmtime: it cannot name the engine, a linker, a store or a
//! runner, so it cannot run a guest even by mistake. The runtime half of the
//! guard ([`crate::ReplayGuard`]) refuses any instantiation or call while
//! replay is in progress, and the counters prove none happened.

use std::collections::BTreeMap;
use std::sync::Arc;

use interstice_log::{Record, RecordKind, TxRecord};
use interstice_store::snapshot::Loaded;
use interstice_store::{ModuleDef, Tables, migrate};

use crate::record::{definition_of, op_from_log};

/// One module as replay rebuilt it.
pub(crate) struct ReplayedModule {
    pub def: Arc<ModuleDef>,
    /// 1 at first publication, one more at each schema change.
    pub version: u32,
    pub tables: Tables,
}

/// Applies log records, in order, to tables: from nothing, or from a
/// snapshot.
#[derive(Default)]
pub(crate) struct Replayer {
    pub modules: BTreeMap<String, ReplayedModule>,
    pub last_timestamp_micros: i64,
    /// The last transaction applied (or the snapshot's).
    pub last_tx_id: u64,
    /// Whether the next record must follow `last_tx_id` directly: true until
    /// the first record, so a log that does not reach back to the snapshot
    /// (or, without one, to transaction 1) is refused instead of leaving a
    /// silent hole.
    pub check_start: bool,
    /// The snapshot replay started from, and its rows.
    pub snapshot_tx_id: Option<u64>,
    pub snapshot_rows: u64,
    /// Why newer snapshots were passed over, named when the log then
    /// turns out not to reach back far enough.
    pub passed_over: Vec<String>,
    pub transactions: u64,
    pub publications: u64,
    pub mutations: u64,
}

impl Replayer {
    /// A replayer for a whole log, from transaction 1.
    pub fn new() -> Self {
        Replayer {
            check_start: true,
            ..Replayer::default()
        }
    }

    /// A replayer starting from a snapshot's state.
    pub fn from_snapshot(loaded: Loaded) -> Self {
        let modules = loaded
            .modules
            .into_iter()
            .map(|m| {
                let module = ReplayedModule {
                    def: Arc::new(m.def),
                    version: m.version,
                    tables: m.tables,
                };
                (m.name, module)
            })
            .collect();
        Replayer {
            modules,
            last_timestamp_micros: loaded.header.last_timestamp_micros,
            last_tx_id: loaded.header.tx_id,
            check_start: true,
            snapshot_tx_id: Some(loaded.header.tx_id),
            snapshot_rows: loaded.rows,
            ..Replayer::default()
        }
    }

    /// Tables of every module, and the rows in them.
    pub fn tables_and_rows(&self) -> (usize, u64) {
        let tables = self.modules.values().map(|m| m.tables.tables().len()).sum();
        let rows = self
            .modules
            .values()
            .flat_map(|m| m.tables.tables().iter().map(|t| t.len() as u64))
            .sum();
        (tables, rows)
    }

    /// The first transaction this replayer needs from the log.
    pub fn next_tx_id(&self) -> u64 {
        self.last_tx_id + 1
    }

    /// Applies `rec` unless an earlier record failed; the first failure is
    /// kept in `failed`, with the segment, offset and transaction it is at.
    /// For scans that go on reading after a record does not replay.
    pub fn apply_noting(&mut self, rec: Record<'_>, failed: &mut Option<String>) {
        if failed.is_none()
            && let Err(e) = self.apply(rec)
        {
            *failed = Some(format!(
                "{}: offset {}: tx {}: {e}",
                rec.segment.display(),
                rec.offset,
                rec.tx_id
            ));
        }
    }

    /// Applies one record: a publication creates the module's tables from
    /// the definition it carries; every mutation is validated against the
    /// schema in force and applied.
    pub fn apply(&mut self, record: Record<'_>) -> Result<(), String> {
        if std::mem::take(&mut self.check_start) && record.tx_id != self.next_tx_id() {
            let gap = match self.last_tx_id {
                0 => format!(
                    "the log starts at transaction {} and no valid snapshot holds the ones before it; restore a backup, or move the archived segments back into the log directory",
                    record.tx_id
                ),
                t => format!(
                    "the newest valid snapshot ends at transaction {t} but the log resumes at {}; transactions {}..{} are missing (restore a backup, or move the archived segments back)",
                    record.tx_id,
                    t + 1,
                    record.tx_id - 1
                ),
            };
            return Err(if self.passed_over.is_empty() {
                gap
            } else {
                format!(
                    "{gap}. Snapshots passed over: {}",
                    self.passed_over.join("; ")
                )
            });
        }
        let tx = TxRecord::decode(record.payload).map_err(|e| format!("bad payload: {e}"))?;
        if tx.header.timestamp_micros <= self.last_timestamp_micros {
            return Err(format!(
                "timestamp {} does not follow the previous transaction's {}",
                tx.header.timestamp_micros, self.last_timestamp_micros
            ));
        }
        match tx.header.kind {
            RecordKind::Publish => self.publish(&tx)?,
            RecordKind::Upgrade => self.upgrade(&tx)?,
            RecordKind::Drop => return self.drop_module(record.tx_id, &tx),
            // A SQL statement's record is replayed like a call's: its
            // mutations, never its text.
            RecordKind::Call | RecordKind::Sql => {}
        }
        let module = self.modules.get_mut(tx.header.module).ok_or_else(|| {
            format!(
                "transaction on module `{}`, never published",
                tx.header.module
            )
        })?;
        for (i, m) in tx.mutations.iter().enumerate() {
            module
                .tables
                .apply(m.table, op_from_log(m.op), m.row)
                .map_err(|e| format!("mutation {i} ({} on table {}): {e}", m.op.name(), m.table))?;
        }
        self.last_timestamp_micros = tx.header.timestamp_micros;
        self.last_tx_id = record.tx_id;
        self.transactions += 1;
        self.mutations += tx.mutations.len() as u64;
        Ok(())
    }

    fn publish(&mut self, tx: &TxRecord<'_>) -> Result<(), String> {
        let (def, version, _) = definition_of(tx)?;
        if self.modules.contains_key(tx.header.module) {
            return Err(format!("module `{}` published twice", tx.header.module));
        }
        let tables = Tables::new(&def);
        self.modules.insert(
            tx.header.module.to_string(),
            ReplayedModule {
                def: Arc::new(def),
                version,
                tables,
            },
        );
        self.publications += 1;
        Ok(())
    }

    /// A deleted module: its tables go with it.
    fn drop_module(&mut self, tx_id: u64, tx: &TxRecord<'_>) -> Result<(), String> {
        let name = tx.header.module;
        if self.modules.remove(name).is_none() {
            return Err(format!("module `{name}` deleted, but it does not exist"));
        }
        if !tx.mutations.is_empty() {
            return Err(format!("deletion of module `{name}` carries mutations"));
        }
        self.last_timestamp_micros = tx.header.timestamp_micros;
        self.last_tx_id = tx_id;
        self.transactions += 1;
        self.publications += 1;
        Ok(())
    }

    /// A new version: the same migration the publication computed, from
    /// the two definitions and the tables as they stand.
    fn upgrade(&mut self, tx: &TxRecord<'_>) -> Result<(), String> {
        let (def, version, clear) = definition_of(tx)?;
        let name = tx.header.module;
        let module = self
            .modules
            .get_mut(name)
            .ok_or_else(|| format!("new version of module `{name}`, never published"))?;
        if version != module.version + 1 {
            return Err(format!(
                "module `{name}` goes from version {} to {version}",
                module.version
            ));
        }
        let tables = if clear {
            Tables::new(&def)
        } else {
            let plan = migrate::plan(&module.def, &def);
            migrate::apply(&plan, &module.tables, &def)
                .map_err(|e| format!("module `{name}` does not migrate: {e}"))?
        };
        *module = ReplayedModule {
            def: Arc::new(def),
            version,
            tables,
        };
        self.publications += 1;
        Ok(())
    }
}
