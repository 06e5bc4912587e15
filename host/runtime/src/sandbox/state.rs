//! What a guest's store holds while a reducer runs, and the host imports
//! that act on it.
//!
//! The module's [`Tables`] are moved into the store for the duration of one
//! call and moved out again afterwards, whatever the outcome, so the tables
//! never live inside a store that could be discarded after a trap.

use std::ops::Bound;

use interstice_store::{DbError, IndexId, ScanPosition, Tables, TxLog, Value};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::bindings::{host, types};
use super::module::CallContext;
use super::wasi::{self, CallState, GuestOutput};
use crate::limits;

/// A host-owned range scan: bounds plus where the last batch stopped.
pub struct Cursor {
    table: u32,
    index: IndexId,
    lower: Bound<Value>,
    upper: Bound<Value>,
    after: Option<ScanPosition>,
    done: bool,
}

/// A log line a guest wrote during the current call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: types::LogLevel,
    pub message: String,
}

impl LogLine {
    /// The level's name: `error`, `warn`, `info`, `debug` or `trace`.
    pub fn level_name(&self) -> &'static str {
        match self.level {
            types::LogLevel::Error => "error",
            types::LogLevel::Warn => "warn",
            types::LogLevel::Info => "info",
            types::LogLevel::Debug => "debug",
            types::LogLevel::Trace => "trace",
        }
    }
}

pub struct InstanceState {
    pub(crate) tables: Tables,
    /// The table ids the guest declared; the host's own tables
    /// (`interstice_store::system`) come after them and are not the guest's.
    guest_tables: u32,
    pub(crate) tx: TxLog,
    resources: ResourceTable,
    limits: StoreLimits,
    memory_bytes_max: usize,
    /// Set when the guest tried to grow memory past the limit.
    pub(crate) memory_limit_hit: bool,
    log: Vec<LogLine>,
    log_dropped: usize,
    open_cursors: usize,
    /// WASI as a guest that imports it sees it ([`wasi::context`]): its
    /// clocks and generators read `wasi_call`.
    wasi: wasmtime_wasi::WasiCtx,
    /// The time and randomness of the current call.
    wasi_call: CallState,
    /// What the guest wrote to stdout and stderr during the current call.
    output: GuestOutput,
}

impl InstanceState {
    pub fn new(memory_bytes_max: usize) -> Self {
        let output = GuestOutput::default();
        let wasi_call = CallState::default();
        InstanceState {
            tables: Tables::empty(),
            guest_tables: 0,
            tx: TxLog::new(),
            resources: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(limits::RESOURCES_PER_INSTANCE_MAX);
                table
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes_max)
                .table_elements(limits::TABLE_ELEMENTS_MAX)
                .instances(limits::CORE_INSTANCES_MAX)
                .build(),
            memory_bytes_max,
            memory_limit_hit: false,
            log: Vec::new(),
            log_dropped: 0,
            open_cursors: 0,
            wasi: wasi::context(&wasi_call, &output),
            wasi_call,
            output,
        }
    }

    /// Clears per-call state before a call.
    pub(crate) fn begin_call(&mut self, tables: Tables, guest_tables: u32) {
        self.tables = tables;
        self.guest_tables = guest_tables;
        debug_assert!(
            self.tx.is_empty(),
            "the previous call ended its transaction"
        );
        self.memory_limit_hit = false;
        self.log.clear();
        self.log_dropped = 0;
        self.output.clear();
    }

    /// Gives a WASI guest the clocks and randomness of `ctx` (or of no
    /// transaction, for `describe`).
    pub(crate) fn begin_wasi(&mut self, ctx: Option<&CallContext>) {
        self.wasi_call.enter(ctx);
    }

    pub(crate) fn wasi_call(&self) -> &CallState {
        &self.wasi_call
    }

    /// The call's log: its `host.log` lines, then its stdout and stderr
    /// lines under the same bounds; then, past the bound, a line counting
    /// the lines dropped and one saying how much output was cut.
    pub(crate) fn take_log(&mut self) -> Vec<LogLine> {
        let (output, cut) = self.output.drain();
        for line in output {
            self.push_log(line.level, line.message);
        }
        let mut log = std::mem::take(&mut self.log);
        if self.log_dropped > 0 {
            log.push(LogLine {
                level: types::LogLevel::Warn,
                message: format!(
                    "{} more log lines dropped (at most {} per call)",
                    self.log_dropped,
                    limits::LOG_LINES_PER_CALL_MAX
                ),
            });
            self.log_dropped = 0;
        }
        log.extend(cut);
        log
    }

    fn push_log(&mut self, level: types::LogLevel, mut message: String) {
        if self.log.len() >= limits::LOG_LINES_PER_CALL_MAX {
            self.log_dropped += 1;
            return;
        }
        if message.len() > limits::LOG_LINE_BYTES_MAX {
            let mut cut = limits::LOG_LINE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.log.push(LogLine { level, message });
    }

    fn cursor(&mut self, cursor: &Resource<Cursor>) -> Option<&mut Cursor> {
        self.resources.get_mut(cursor).ok()
    }
}

impl wasmtime_wasi::WasiView for InstanceState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.resources,
        }
    }
}

impl ResourceLimiter for InstanceState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed || desired > self.memory_bytes_max {
            self.memory_limit_hit = true;
            wasmtime::bail!(
                "memory limit exceeded: the guest asked for {desired} bytes, the limit is {} bytes",
                self.memory_bytes_max
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

fn wire_error(e: DbError) -> host::DbError {
    match e {
        DbError::NoSuchTable(id) => host::DbError::NoSuchTable(id),
        DbError::NoSuchIndex(id) => host::DbError::NoSuchIndex(id),
        // The contract's `no-such-index` also means "not of the kind the
        // operation needs"; the reason is in the host's log.
        e @ DbError::IndexUse { id, .. } => {
            tracing::debug!("{e}");
            host::DbError::NoSuchIndex(id)
        }
        e @ DbError::InvalidRow { .. } => host::DbError::InvalidRow(e.to_string()),
        e @ DbError::UniqueViolation { .. } => host::DbError::UniqueViolation(e.to_string()),
        DbError::NotFound { .. } => host::DbError::NotFound,
        e => host::DbError::LimitExceeded(e.to_string()),
    }
}

fn decode_bound(
    tables: &Tables,
    table: u32,
    index: IndexId,
    bound: host::Bound,
) -> Result<Bound<Value>, DbError> {
    let t = tables.table(table)?;
    Ok(match bound {
        host::Bound::Unbounded => Bound::Unbounded,
        host::Bound::Included(k) => Bound::Included(t.decode_index_key(index, &k)?),
        host::Bound::Excluded(k) => Bound::Excluded(t.decode_index_key(index, &k)?),
    })
}

impl types::Host for InstanceState {}

impl InstanceState {
    /// Refuses a table id past the guest's own tables.
    fn guest_table(&self, table: u32) -> Result<(), host::DbError> {
        if table < self.guest_tables {
            Ok(())
        } else {
            Err(host::DbError::NoSuchTable(table))
        }
    }
}

impl host::Host for InstanceState {
    fn insert(&mut self, table: u32, row: Vec<u8>) -> Result<Vec<u8>, host::DbError> {
        self.guest_table(table)?;
        self.tables
            .insert(&mut self.tx, table, &row)
            .map(|stored| stored.to_vec())
            .map_err(wire_error)
    }

    fn update(&mut self, table: u32, row: Vec<u8>) -> Result<(), host::DbError> {
        self.guest_table(table)?;
        self.tables
            .update(&mut self.tx, table, &row)
            .map_err(wire_error)
    }

    fn delete(&mut self, table: u32, key: Vec<u8>) -> Result<bool, host::DbError> {
        self.guest_table(table)?;
        self.tables
            .delete(&mut self.tx, table, &key)
            .map_err(wire_error)
    }

    fn get(&mut self, table: u32, key: Vec<u8>) -> Result<Option<Vec<u8>>, host::DbError> {
        self.guest_table(table)?;
        self.tables
            .get(table, &key)
            .map(|row| row.map(|r| r.to_vec()))
            .map_err(wire_error)
    }

    fn lookup_unique(
        &mut self,
        table: u32,
        index: u32,
        key: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, host::DbError> {
        self.guest_table(table)?;
        self.tables
            .lookup_unique(table, index, &key)
            .map(|row| row.map(|r| r.to_vec()))
            .map_err(wire_error)
    }

    fn scan(
        &mut self,
        table: u32,
        index: u32,
        lower: host::Bound,
        upper: host::Bound,
    ) -> Result<Resource<Cursor>, host::DbError> {
        self.guest_table(table)?;
        let index_id = IndexId::from_wire(index);
        let t = self.tables.table(table).map_err(wire_error)?;
        t.check_index(index_id).map_err(wire_error)?;
        let lower = decode_bound(&self.tables, table, index_id, lower).map_err(wire_error)?;
        let upper = decode_bound(&self.tables, table, index_id, upper).map_err(wire_error)?;
        if self.open_cursors >= limits::CURSORS_PER_CALL_MAX {
            return Err(host::DbError::LimitExceeded(format!(
                "at most {} cursors may be open at once",
                limits::CURSORS_PER_CALL_MAX
            )));
        }
        let cursor = Cursor {
            table,
            index: index_id,
            lower,
            upper,
            after: None,
            done: false,
        };
        let handle = self
            .resources
            .push(cursor)
            .map_err(|e| host::DbError::LimitExceeded(e.to_string()))?;
        self.open_cursors += 1;
        Ok(handle)
    }

    fn count(&mut self, table: u32) -> Result<u64, host::DbError> {
        self.guest_table(table)?;
        self.tables.count(table).map_err(wire_error)
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        self.push_log(level, message);
    }
}

impl host::HostCursor for InstanceState {
    fn next_batch(&mut self, cursor: Resource<Cursor>, max_rows: u32) -> Vec<Vec<u8>> {
        let max = (max_rows as usize).clamp(1, limits::SCAN_BATCH_ROWS_MAX);
        let Some(c) = self.resources.get(&cursor).ok() else {
            return Vec::new();
        };
        if c.done {
            return Vec::new();
        }
        let mut batch = Vec::with_capacity(max.min(64));
        let scanned = self.tables.scan(
            c.table,
            c.index,
            &c.lower,
            &c.upper,
            c.after.as_ref(),
            max,
            &mut batch,
        );
        let Some(c) = self.cursor(&cursor) else {
            return Vec::new();
        };
        if scanned.is_err() || batch.len() < max {
            c.done = true;
        }
        if let Some((last, _)) = batch.last() {
            c.after = Some(last.clone());
        }
        batch.into_iter().map(|(_, row)| row.to_vec()).collect()
    }

    fn drop(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<()> {
        self.resources.delete(cursor)?;
        self.open_cursors -= 1;
        Ok(())
    }
}
