//! One table: rows keyed by primary key, secondary indexes, auto-increment.
//!
//! Rows are stored as their canonical bytes (`Arc<[u8]>`), validated once on
//! the way in and shared, never re-encoded, with the transaction's redo list.
//! Index keys are decoded [`Value`]s. Every method here either changes the
//! table completely or not at all; undo and redo bookkeeping lives in
//! [`crate::tables`].

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::codec::{self, Extracted};
use crate::error::{DbError, DecodeError};
use crate::schema::TableDef;
use crate::types::AlgebraicType;
use crate::value::Value;

/// Most rows [`Table::bulk_load`] reserves room for up front.
const BULK_RESERVE_ROWS_MAX: usize = 1 << 22;

/// A stored row in the canonical encoding.
pub type RowBytes = Arc<[u8]>;

enum IndexData {
    /// Indexed value to primary key.
    Unique(BTreeMap<Value, Value>),
    /// (indexed value, primary key) pairs.
    Multi(BTreeSet<(Value, Value)>),
}

/// Which index a scan walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexId {
    PrimaryKey,
    Secondary(usize),
}

impl IndexId {
    /// Index ids as the WIT contract numbers them: 0 is the primary key.
    pub fn from_wire(id: u32) -> Self {
        match id {
            0 => IndexId::PrimaryKey,
            n => IndexId::Secondary(n as usize - 1),
        }
    }
}

/// Where a scan stopped: the last (indexed value, primary key) it returned.
#[derive(Clone, Debug)]
pub struct ScanPosition {
    pub key: Value,
    pub pk: Value,
}

pub struct Table {
    def: TableDef,
    types: Vec<AlgebraicType>,
    /// Columns whose values [`codec::scan_row`] extracts.
    wanted: Vec<bool>,
    pk_slot: usize,
    auto_inc: Option<AutoInc>,
    /// Slot of each secondary index's column among the extracted values.
    index_slots: Vec<usize>,
    rows: BTreeMap<Value, RowBytes>,
    indexes: Vec<IndexData>,
    next_auto_inc: u64,
}

#[derive(Clone, Copy)]
struct AutoInc {
    slot: usize,
    column: usize,
}

/// What an insert did, for the caller's undo and redo logs.
pub struct Inserted {
    pub row: RowBytes,
    pub pk: Value,
    /// The auto-increment counter before this insert, when it changed.
    pub previous_auto_inc: Option<u64>,
}

impl Table {
    /// A new, empty table. `def` must have passed
    /// [`crate::ModuleDef::validate`].
    pub fn new(def: TableDef) -> Self {
        let types = def.column_types();
        let mut wanted = vec![false; types.len()];
        wanted[def.primary_key as usize] = true;
        if let Some(col) = def.auto_inc {
            wanted[col as usize] = true;
        }
        for index in &def.indexes {
            wanted[index.column as usize] = true;
        }
        let slot_of = |col: u32| wanted[..col as usize].iter().filter(|w| **w).count();
        let pk_slot = slot_of(def.primary_key);
        let auto_inc = def.auto_inc.map(|col| AutoInc {
            slot: slot_of(col),
            column: col as usize,
        });
        let index_slots = def.indexes.iter().map(|i| slot_of(i.column)).collect();
        let indexes = def
            .indexes
            .iter()
            .map(|i| {
                if i.unique {
                    IndexData::Unique(BTreeMap::new())
                } else {
                    IndexData::Multi(BTreeSet::new())
                }
            })
            .collect();
        Table {
            def,
            types,
            wanted,
            pk_slot,
            auto_inc,
            index_slots,
            rows: BTreeMap::new(),
            indexes,
            next_auto_inc: 1,
        }
    }

    pub fn def(&self) -> &TableDef {
        &self.def
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The next value the auto-increment column would receive.
    pub fn next_auto_inc(&self) -> u64 {
        self.next_auto_inc
    }

    /// Rows in primary-key order.
    pub fn iter(&self) -> impl Iterator<Item = &RowBytes> {
        self.rows.values()
    }

    fn invalid(&self, source: DecodeError) -> DbError {
        DbError::InvalidRow {
            table: self.def.name.clone(),
            source,
        }
    }

    fn extract(&self, bytes: &[u8]) -> Result<Vec<Extracted>, DecodeError> {
        let mut out = Vec::with_capacity(1 + self.index_slots.len());
        codec::scan_row(bytes, &self.types, &self.wanted, &mut out)?;
        Ok(out)
    }

    /// Index values of a row that is already stored (and so valid).
    fn extract_stored(&self, bytes: &[u8]) -> Vec<Extracted> {
        match self.extract(bytes) {
            Ok(values) => values,
            Err(e) => panic!(
                "stored row of table `{}` no longer decodes: {e}",
                self.def.name
            ),
        }
    }

    /// Decodes a primary-key value.
    pub fn decode_pk(&self, key: &[u8]) -> Result<Value, DbError> {
        codec::decode_key(key, &self.types[self.def.primary_key as usize])
            .map_err(|e| self.invalid(e))
    }

    /// Decodes a key of the given index.
    pub fn decode_index_key(&self, index: IndexId, key: &[u8]) -> Result<Value, DbError> {
        let col = match index {
            IndexId::PrimaryKey => self.def.primary_key,
            IndexId::Secondary(i) => self.def.indexes[i].column,
        };
        codec::decode_key(key, &self.types[col as usize]).map_err(|e| self.invalid(e))
    }

    pub fn check_index(&self, index: IndexId) -> Result<(), DbError> {
        match index {
            IndexId::PrimaryKey => Ok(()),
            IndexId::Secondary(i) if i < self.indexes.len() => Ok(()),
            IndexId::Secondary(i) => Err(DbError::NoSuchIndex(i as u32 + 1)),
        }
    }

    pub fn get(&self, pk: &Value) -> Option<&RowBytes> {
        self.rows.get(pk)
    }

    /// The row whose unique index `index` holds `key`.
    pub fn lookup_unique(&self, index: usize, key: &Value) -> Result<Option<&RowBytes>, DbError> {
        match self.indexes.get(index) {
            Some(IndexData::Unique(map)) => Ok(map.get(key).and_then(|pk| self.rows.get(pk))),
            _ => Err(DbError::NoSuchIndex(index as u32 + 1)),
        }
    }

    fn check_unique(&self, values: &[Extracted], owner: Option<&Value>) -> Result<(), DbError> {
        for (i, index) in self.indexes.iter().enumerate() {
            if let IndexData::Unique(map) = index {
                let value = &values[self.index_slots[i]].value;
                if let Some(holder) = map.get(value)
                    && Some(holder) != owner
                {
                    return Err(DbError::UniqueViolation {
                        table: self.def.name.clone(),
                        index: self.def.indexes[i].name.clone(),
                        value: value.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    fn add_index_entries(&mut self, values: &[Extracted], pk: &Value) {
        for (i, index) in self.indexes.iter_mut().enumerate() {
            let value = values[self.index_slots[i]].value.clone();
            let fresh = match index {
                IndexData::Unique(map) => map.insert(value, pk.clone()).is_none(),
                IndexData::Multi(set) => set.insert((value, pk.clone())),
            };
            assert!(fresh, "index entry already present");
        }
    }

    fn remove_index_entries(&mut self, values: &[Extracted], pk: &Value) {
        for (i, index) in self.indexes.iter_mut().enumerate() {
            let value = &values[self.index_slots[i]].value;
            let found = match index {
                IndexData::Unique(map) => map.remove(value).is_some(),
                IndexData::Multi(set) => set.remove(&(value.clone(), pk.clone())),
            };
            assert!(found, "index entry missing");
        }
    }

    /// Fills in a zero auto-increment column and returns the counter before.
    /// A generated value is written into a copy of `row` left in `patched`.
    fn assign_auto_inc(
        &mut self,
        row: &[u8],
        values: &mut [Extracted],
        patched: &mut Option<Vec<u8>>,
    ) -> Result<Option<u64>, DbError> {
        let Some(auto) = self.auto_inc else {
            return Ok(None);
        };
        let slot = &mut values[auto.slot];
        let given = slot
            .value
            .as_auto_inc()
            .expect("auto-inc column is an integer");
        if given != 0 {
            return Ok(self.observe_auto_inc(&slot.value));
        }
        let next = self.next_auto_inc;
        let ty = &self.types[auto.column];
        let width = ty
            .fixed_len()
            .expect("validated: auto-inc column is an integer");
        let value = Value::from_auto_inc(next, ty).ok_or_else(|| {
            DbError::LimitExceeded(format!(
                "auto-increment column of table `{}` is exhausted",
                self.def.name
            ))
        })?;
        let offset = slot.offset;
        let bytes = patched.insert(row.to_vec());
        bytes[offset..offset + width].copy_from_slice(&next.to_le_bytes()[..width]);
        slot.value = value;
        let previous = self.next_auto_inc;
        self.next_auto_inc = next.checked_add(1).ok_or_else(|| {
            DbError::LimitExceeded(format!(
                "auto-increment column of table `{}` is exhausted",
                self.def.name
            ))
        })?;
        Ok(Some(previous))
    }

    /// Raises the counter past an explicitly given positive value.
    fn observe_auto_inc(&mut self, value: &Value) -> Option<u64> {
        let positive = match *value {
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            _ => None,
        }?;
        let after = positive.saturating_add(1);
        if after > self.next_auto_inc {
            let previous = self.next_auto_inc;
            self.next_auto_inc = after;
            Some(previous)
        } else {
            None
        }
    }

    /// Fills an empty table from rows in strictly increasing primary-key
    /// order (a snapshot), validating each row as [`Table::insert`] does and
    /// building the indexes in bulk. `next_auto_inc` is the counter the rows
    /// were saved with; it is raised past any auto-increment value found.
    /// On error the table is left empty.
    pub fn bulk_load(
        &mut self,
        rows: impl IntoIterator<Item = Result<RowBytes, DbError>>,
        next_auto_inc: u64,
    ) -> Result<(), DbError> {
        assert!(self.rows.is_empty(), "bulk_load needs an empty table");
        let result = self.bulk_load_inner(rows, next_auto_inc);
        if result.is_err() {
            *self = Table::new(self.def.clone());
        }
        result
    }

    fn bulk_load_inner(
        &mut self,
        rows: impl IntoIterator<Item = Result<RowBytes, DbError>>,
        next_auto_inc: u64,
    ) -> Result<(), DbError> {
        self.next_auto_inc = next_auto_inc.max(1);
        let rows = rows.into_iter();
        // Reserve for the announced rows (bounded: the count may come from a
        // damaged file), so a large table is not copied at every doubling.
        let announced = rows.size_hint().1.unwrap_or(0).min(BULK_RESERVE_ROWS_MAX);
        let mut sorted: Vec<(Value, RowBytes)> = Vec::with_capacity(announced);
        let mut entries: Vec<Vec<(Value, Value)>> = vec![Vec::new(); self.indexes.len()];
        let mut values = Vec::with_capacity(1 + self.index_slots.len());
        for row in rows {
            let row = row?;
            values.clear();
            codec::scan_row(&row, &self.types, &self.wanted, &mut values)
                .map_err(|e| self.invalid(e))?;
            let pk = values[self.pk_slot].value.clone();
            if let Some((last, _)) = sorted.last()
                && *last >= pk
            {
                return Err(DbError::LimitExceeded(format!(
                    "rows of table `{}` are not in strictly increasing primary-key order at {pk}",
                    self.def.name
                )));
            }
            if let Some(auto) = self.auto_inc {
                let value = values[auto.slot].value.clone();
                self.observe_auto_inc(&value);
            }
            for (i, slot) in self.index_slots.iter().enumerate() {
                entries[i].push((values[*slot].value.clone(), pk.clone()));
            }
            sorted.push((pk, row));
        }
        for (i, mut list) in entries.into_iter().enumerate() {
            list.sort_unstable();
            match &mut self.indexes[i] {
                IndexData::Unique(map) => {
                    if let Some(pair) = list.windows(2).find(|w| w[0].0 == w[1].0) {
                        return Err(DbError::UniqueViolation {
                            table: self.def.name.clone(),
                            index: self.def.indexes[i].name.clone(),
                            value: pair[0].0.to_string(),
                        });
                    }
                    *map = list.into_iter().collect();
                }
                IndexData::Multi(set) => *set = list.into_iter().collect(),
            }
        }
        self.rows = sorted.into_iter().collect();
        Ok(())
    }

    /// Restores the auto-increment counter (rollback).
    pub fn set_next_auto_inc(&mut self, next: u64) {
        self.next_auto_inc = next;
    }

    /// Validates and inserts a row from outside (a guest, replay).
    pub fn insert(&mut self, row: &[u8]) -> Result<Inserted, DbError> {
        let mut values = self.extract(row).map_err(|e| self.invalid(e))?;
        // Constraint checks need the final values, so they run after
        // auto-increment; the counter is restored if they fail.
        let counter = self.next_auto_inc;
        let mut patched = None;
        let previous_auto_inc = self.assign_auto_inc(row, &mut values, &mut patched)?;
        let pk = values[self.pk_slot].value.clone();
        if let Err(e) = self.check_unique(&values, None) {
            self.next_auto_inc = counter;
            return Err(e);
        }
        let row: RowBytes = match patched {
            Some(bytes) => bytes.into(),
            None => row.into(),
        };
        match self.rows.entry(pk.clone()) {
            Entry::Occupied(_) => {
                self.next_auto_inc = counter;
                return Err(self.pk_violation(&pk));
            }
            Entry::Vacant(slot) => {
                slot.insert(row.clone());
            }
        }
        self.add_index_entries(&values, &pk);
        Ok(Inserted {
            row,
            pk,
            previous_auto_inc,
        })
    }

    fn pk_violation(&self, pk: &Value) -> DbError {
        DbError::UniqueViolation {
            table: self.def.name.clone(),
            index: "primary key".to_string(),
            value: pk.to_string(),
        }
    }

    /// Replaces the row with the same primary key; returns the old row.
    pub fn update(&mut self, row: &[u8]) -> Result<(RowBytes, RowBytes), DbError> {
        let values = self.extract(row).map_err(|e| self.invalid(e))?;
        let pk = values[self.pk_slot].value.clone();
        if self.indexes.is_empty() {
            // Nothing but the row itself to maintain: one tree walk.
            let Some(slot) = self.rows.get_mut(&pk) else {
                return Err(DbError::NotFound {
                    table: self.def.name.clone(),
                });
            };
            let new: RowBytes = row.into();
            let old = std::mem::replace(slot, new.clone());
            if let Some(auto) = self.auto_inc {
                self.observe_auto_inc(&values[auto.slot].value);
            }
            return Ok((old, new));
        }
        let Some(old) = self.rows.get(&pk).cloned() else {
            return Err(DbError::NotFound {
                table: self.def.name.clone(),
            });
        };
        self.check_unique(&values, Some(&pk))?;
        if !self.indexes.is_empty() {
            let old_values = self.extract_stored(&old);
            self.remove_index_entries(&old_values, &pk);
            self.add_index_entries(&values, &pk);
        }
        if let Some(auto) = self.auto_inc {
            let value = values[auto.slot].value.clone();
            self.observe_auto_inc(&value);
        }
        let new: RowBytes = row.into();
        let slot = self.rows.get_mut(&pk).expect("the row was found above");
        *slot = new.clone();
        Ok((old, new))
    }

    /// Removes the row with this primary key and returns it.
    pub fn delete(&mut self, pk: &Value) -> Option<RowBytes> {
        let old = self.rows.remove(pk)?;
        if !self.indexes.is_empty() {
            let values = self.extract_stored(&old);
            self.remove_index_entries(&values, pk);
        }
        Some(old)
    }

    /// Puts back a row exactly as it was (rollback of a delete or update).
    pub fn restore(&mut self, row: RowBytes) {
        let values = self.extract_stored(&row);
        let pk = values[self.pk_slot].value.clone();
        if let Some(current) = self.rows.get(&pk).cloned() {
            let current_values = self.extract_stored(&current);
            self.remove_index_entries(&current_values, &pk);
        }
        self.add_index_entries(&values, &pk);
        self.rows.insert(pk, row);
    }

    /// Up to `max` rows of `index` within the bounds, after `after`.
    pub fn scan(
        &self,
        index: IndexId,
        lower: &Bound<Value>,
        upper: &Bound<Value>,
        after: Option<&ScanPosition>,
        max: usize,
        out: &mut Vec<(ScanPosition, RowBytes)>,
    ) -> Result<(), DbError> {
        self.check_index(index)?;
        let mut batch = Batch {
            lower,
            upper,
            max,
            out,
        };
        let mut take = |key: &Value, pk: &Value, row: &RowBytes| batch.take(key, pk, row);
        match index {
            IndexId::PrimaryKey => {
                let start = match after {
                    Some(pos) => Bound::Excluded(&pos.pk),
                    None => as_ref(lower),
                };
                for (pk, row) in self.rows.range((start, Bound::Unbounded)) {
                    if !take(pk, pk, row) {
                        break;
                    }
                }
            }
            IndexId::Secondary(i) => match &self.indexes[i] {
                IndexData::Unique(map) => {
                    let start = match after {
                        Some(pos) => Bound::Excluded(&pos.key),
                        None => as_ref(lower),
                    };
                    for (key, pk) in map.range((start, Bound::Unbounded)) {
                        if !take(key, pk, &self.rows[pk]) {
                            break;
                        }
                    }
                }
                IndexData::Multi(set) => {
                    // `Value::Null` sorts first, so (v, Null) precedes every
                    // (v, pk).
                    let start = match (after, lower) {
                        (Some(pos), _) => Bound::Excluded((pos.key.clone(), pos.pk.clone())),
                        (None, Bound::Unbounded) => Bound::Unbounded,
                        (None, Bound::Included(v) | Bound::Excluded(v)) => {
                            Bound::Included((v.clone(), Value::Null))
                        }
                    };
                    for (key, pk) in set.range((start, Bound::Unbounded)) {
                        if !take(key, pk, &self.rows[pk]) {
                            break;
                        }
                    }
                }
            },
        }
        Ok(())
    }
}

/// One batch of a scan being filled.
struct Batch<'a> {
    lower: &'a Bound<Value>,
    upper: &'a Bound<Value>,
    max: usize,
    out: &'a mut Vec<(ScanPosition, RowBytes)>,
}

impl Batch<'_> {
    /// Pushes one entry if its key is within the bounds; false once the
    /// batch is full or the key is past the upper bound.
    fn take(&mut self, key: &Value, pk: &Value, row: &RowBytes) -> bool {
        let in_upper = match self.upper {
            Bound::Unbounded => true,
            Bound::Included(u) => key <= u,
            Bound::Excluded(u) => key < u,
        };
        if self.out.len() >= self.max || !in_upper {
            return false;
        }
        let in_lower = match self.lower {
            Bound::Unbounded => true,
            Bound::Included(l) => key >= l,
            Bound::Excluded(l) => key > l,
        };
        if in_lower {
            let pos = ScanPosition {
                key: key.clone(),
                pk: pk.clone(),
            };
            self.out.push((pos, row.clone()));
        }
        true
    }
}

fn as_ref(bound: &Bound<Value>) -> Bound<&Value> {
    match bound {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
    }
}
