//! A module's tables and the transaction bookkeeping around them.
//!
//! Transactions are serial: one [`TxLog`] is open at a time per [`Tables`].
//! Every change records how to undo it (for rollback) and, unless its table
//! is ephemeral, what to log (the redo list handed to the durable log on
//! commit).

use std::ops::Bound;

use crate::error::DbError;
use crate::limits::{MUTATIONS_PER_TX_MAX, REDO_BYTES_PER_TX_MAX};
use crate::schema::ModuleDef;
use crate::table::{IndexId, RowBytes, ScanPosition, Table};
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutationOp {
    Insert,
    Update,
    Delete,
}

/// One committed change to one row, as the log and subscribers see it. For a
/// delete, `row` is the row that was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    pub table: u32,
    pub op: MutationOp,
    pub row: RowBytes,
}

enum Undo {
    Inserted { table: u32, pk: Value },
    Deleted { table: u32, row: RowBytes },
    Updated { table: u32, old: RowBytes },
    AutoInc { table: u32, previous: u64 },
}

/// The undo and redo lists of the open transaction.
#[derive(Default)]
pub struct TxLog {
    undo: Vec<Undo>,
    redo: Vec<Mutation>,
    /// Sum of the row lengths in `redo`.
    redo_bytes: usize,
}

impl TxLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.undo.is_empty()
    }

    /// What the open transaction changed so far, in order (ephemeral
    /// tables' changes left out).
    pub fn mutations(&self) -> &[Mutation] {
        &self.redo
    }

    fn check_room(&self) -> Result<(), DbError> {
        if self.undo.len() >= MUTATIONS_PER_TX_MAX {
            return Err(DbError::LimitExceeded(format!(
                "a transaction may make at most {MUTATIONS_PER_TX_MAX} changes"
            )));
        }
        if self.redo_bytes > REDO_BYTES_PER_TX_MAX {
            return Err(DbError::LimitExceeded(format!(
                "a transaction may write at most {REDO_BYTES_PER_TX_MAX} bytes of rows"
            )));
        }
        Ok(())
    }
}

/// All tables of one module.
pub struct Tables {
    tables: Vec<Table>,
}

impl Tables {
    /// Empty tables for a validated module definition.
    pub fn new(def: &ModuleDef) -> Self {
        Tables {
            tables: def.tables.iter().cloned().map(Table::new).collect(),
        }
    }

    /// No tables: a placeholder while the real ones are elsewhere.
    pub fn empty() -> Self {
        Tables { tables: Vec::new() }
    }

    pub fn table(&self, id: u32) -> Result<&Table, DbError> {
        self.tables.get(id as usize).ok_or(DbError::NoSuchTable(id))
    }

    fn table_mut(&mut self, id: u32) -> Result<&mut Table, DbError> {
        self.tables
            .get_mut(id as usize)
            .ok_or(DbError::NoSuchTable(id))
    }

    fn record(&self, tx: &mut TxLog, table: u32, op: MutationOp, row: RowBytes) {
        if !self.tables[table as usize].def().ephemeral {
            tx.redo_bytes += row.len();
            tx.redo.push(Mutation { table, op, row });
        }
    }

    pub fn insert(&mut self, tx: &mut TxLog, table: u32, row: &[u8]) -> Result<RowBytes, DbError> {
        tx.check_room()?;
        let inserted = self.table_mut(table)?.insert(row)?;
        if let Some(previous) = inserted.previous_auto_inc {
            tx.undo.push(Undo::AutoInc { table, previous });
        }
        tx.undo.push(Undo::Inserted {
            table,
            pk: inserted.pk,
        });
        self.record(tx, table, MutationOp::Insert, inserted.row.clone());
        Ok(inserted.row)
    }

    pub fn update(&mut self, tx: &mut TxLog, table: u32, row: &[u8]) -> Result<(), DbError> {
        tx.check_room()?;
        let t = self.table_mut(table)?;
        let counter = t.next_auto_inc();
        let (old, new) = t.update(row)?;
        if t.next_auto_inc() != counter {
            tx.undo.push(Undo::AutoInc {
                table,
                previous: counter,
            });
        }
        tx.undo.push(Undo::Updated { table, old });
        self.record(tx, table, MutationOp::Update, new);
        Ok(())
    }

    /// Deletes by encoded primary key; `false` when no row had it.
    pub fn delete(&mut self, tx: &mut TxLog, table: u32, key: &[u8]) -> Result<bool, DbError> {
        tx.check_room()?;
        let t = self.table_mut(table)?;
        let pk = t.decode_pk(key)?;
        let Some(old) = t.delete(&pk) else {
            return Ok(false);
        };
        tx.undo.push(Undo::Deleted {
            table,
            row: old.clone(),
        });
        self.record(tx, table, MutationOp::Delete, old);
        Ok(true)
    }

    pub fn get(&self, table: u32, key: &[u8]) -> Result<Option<RowBytes>, DbError> {
        let t = self.table(table)?;
        let pk = t.decode_pk(key)?;
        Ok(t.get(&pk).cloned())
    }

    pub fn lookup_unique(
        &self,
        table: u32,
        index: u32,
        key: &[u8],
    ) -> Result<Option<RowBytes>, DbError> {
        let t = self.table(table)?;
        let IndexId::Secondary(i) = IndexId::from_wire(index) else {
            return Ok(t.get(&t.decode_pk(key)?).cloned());
        };
        t.check_index(IndexId::Secondary(i))?;
        let value = t.decode_index_key(IndexId::Secondary(i), key)?;
        Ok(t.lookup_unique(i, &value)?.cloned())
    }

    /// One batch of a range scan; see [`Table::scan`].
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        table: u32,
        index: IndexId,
        lower: &Bound<Value>,
        upper: &Bound<Value>,
        after: Option<&ScanPosition>,
        max: usize,
        out: &mut Vec<(ScanPosition, RowBytes)>,
    ) -> Result<(), DbError> {
        self.table(table)?
            .scan(index, lower, upper, after, max, out)
    }

    pub fn count(&self, table: u32) -> Result<u64, DbError> {
        Ok(self.table(table)?.len() as u64)
    }

    /// Ends the transaction successfully and returns what it changed. `tx`
    /// is left empty, its undo capacity kept for the next transaction.
    pub fn commit(&mut self, tx: &mut TxLog) -> Vec<Mutation> {
        tx.undo.clear();
        tx.redo_bytes = 0;
        std::mem::take(&mut tx.redo)
    }

    /// Undoes every change of the transaction, newest first. `tx` is left
    /// empty.
    pub fn rollback(&mut self, tx: &mut TxLog) {
        tx.redo.clear();
        tx.redo_bytes = 0;
        while let Some(undo) = tx.undo.pop() {
            match undo {
                Undo::Inserted { table, pk } => {
                    let removed = self.tables[table as usize].delete(&pk);
                    assert!(removed.is_some(), "rollback: inserted row missing");
                }
                Undo::Deleted { table, row } | Undo::Updated { table, old: row } => {
                    self.tables[table as usize].restore(row);
                }
                Undo::AutoInc { table, previous } => {
                    self.tables[table as usize].set_next_auto_inc(previous);
                }
            }
        }
    }

    /// Applies a committed mutation (replay). Rows are validated again: the
    /// log is input, not trusted memory. Auto-increment counters follow the
    /// values inserted, as they did when the transaction ran.
    pub fn apply(&mut self, table: u32, op: MutationOp, row: &[u8]) -> Result<(), DbError> {
        let t = self.table_mut(table)?;
        match op {
            MutationOp::Insert => t.insert(row).map(drop),
            MutationOp::Update => t.update(row).map(drop),
            MutationOp::Delete => {
                let values =
                    crate::codec::decode_row(row, &t.def().column_types()).map_err(|source| {
                        DbError::InvalidRow {
                            table: t.def().name.clone(),
                            source,
                        }
                    })?;
                let pk = values[t.def().primary_key as usize].clone();
                match t.delete(&pk) {
                    Some(_) => Ok(()),
                    None => Err(DbError::NotFound {
                        table: t.def().name.clone(),
                    }),
                }
            }
        }
    }

    /// Fills empty table `table` from rows in primary-key order (see
    /// [`Table::bulk_load`]).
    pub fn bulk_load(
        &mut self,
        table: u32,
        rows: impl IntoIterator<Item = Result<RowBytes, DbError>>,
        next_auto_inc: u64,
    ) -> Result<(), DbError> {
        self.table_mut(table)?.bulk_load(rows, next_auto_inc)
    }

    /// Rows of every table, for comparing two states.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }
}
