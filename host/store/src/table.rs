//! One table: rows keyed by primary key, secondary indexes, auto-increment.
//!
//! Rows are stored as their canonical bytes (`Arc<[u8]>`), validated once on
//! the way in and shared, never re-encoded, with the transaction's redo list.
//! Index keys are decoded [`Value`]s. Every method here either changes the
//! table completely or not at all; undo and redo bookkeeping lives in
//! [`crate::tables`].

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::codec::{self, Extracted};
use crate::error::{DbError, DecodeError};
use crate::schema::{IndexKind, TableDef};
use crate::types::AlgebraicType;
use crate::value::Value;

/// Most rows [`Table::bulk_load`] reserves room for up front.
const BULK_RESERVE_ROWS_MAX: usize = 1 << 22;

/// A stored row in the canonical encoding.
pub type RowBytes = Arc<[u8]>;

/// The entries of one secondary index. A key is the indexed column's value,
/// or for an index over several columns a [`Value::Product`] of their values
/// in the index's order.
enum IndexData {
    /// Key to primary key, in key order.
    Unique(BTreeMap<Value, Value>),
    /// (key, primary key) pairs, in order.
    Multi(BTreeSet<(Value, Value)>),
    /// Key to primary key, unordered.
    HashUnique(HashMap<Value, Value>),
    /// Key to the primary keys holding it, in primary-key order.
    HashMulti(HashMap<Value, BTreeSet<Value>>),
}

impl IndexData {
    fn new(unique: bool, kind: IndexKind) -> Self {
        match (kind, unique) {
            (IndexKind::Btree, true) => IndexData::Unique(BTreeMap::new()),
            (IndexKind::Btree, false) => IndexData::Multi(BTreeSet::new()),
            (IndexKind::Hash, true) => IndexData::HashUnique(HashMap::new()),
            (IndexKind::Hash, false) => IndexData::HashMulti(HashMap::new()),
        }
    }

    /// The primary key holding `key` in a unique index.
    fn unique_holder(&self, key: &Value) -> Option<&Value> {
        match self {
            IndexData::Unique(map) => map.get(key),
            IndexData::HashUnique(map) => map.get(key),
            IndexData::Multi(_) | IndexData::HashMulti(_) => None,
        }
    }

    fn is_unique(&self) -> bool {
        matches!(self, IndexData::Unique(_) | IndexData::HashUnique(_))
    }

    /// Adds an entry; false if it was already there.
    fn add(&mut self, key: Value, pk: Value) -> bool {
        match self {
            IndexData::Unique(map) => map.insert(key, pk).is_none(),
            IndexData::Multi(set) => set.insert((key, pk)),
            IndexData::HashUnique(map) => map.insert(key, pk).is_none(),
            IndexData::HashMulti(map) => map.entry(key).or_default().insert(pk),
        }
    }

    /// Removes an entry; false if it was not there.
    fn remove(&mut self, key: &Value, pk: &Value) -> bool {
        match self {
            IndexData::Unique(map) => map.remove(key).is_some(),
            IndexData::HashUnique(map) => map.remove(key).is_some(),
            // The pair is rebuilt to look it up: a set of pairs cannot be
            // searched by references to its halves.
            IndexData::Multi(set) => set.remove(&(key.clone(), pk.clone())),
            IndexData::HashMulti(map) => match map.get_mut(key) {
                Some(pks) => {
                    let found = pks.remove(pk);
                    if pks.is_empty() {
                        map.remove(key);
                    }
                    found
                }
                None => false,
            },
        }
    }

    /// Fills an empty index from (key, primary key) pairs sorted by key and
    /// then primary key; `Err` with a key held twice in a unique index.
    fn fill(&mut self, list: Vec<(Value, Value)>) -> Result<(), Value> {
        if self.is_unique()
            && let Some(pair) = list.windows(2).find(|w| w[0].0 == w[1].0)
        {
            return Err(pair[0].0.clone());
        }
        match self {
            IndexData::Unique(map) => *map = list.into_iter().collect(),
            IndexData::Multi(set) => *set = list.into_iter().collect(),
            IndexData::HashUnique(map) => *map = list.into_iter().collect(),
            IndexData::HashMulti(map) => {
                map.reserve(list.len());
                for (key, pk) in list {
                    map.entry(key).or_default().insert(pk);
                }
            }
        }
        Ok(())
    }
}

/// A secondary index and where its key comes from.
struct Index {
    data: IndexData,
    /// Slot of each of the index's columns among the extracted values.
    slots: Box<[usize]>,
    /// Types of the index's columns, in the index's order.
    types: Box<[AlgebraicType]>,
}

impl Index {
    fn composite(&self) -> bool {
        self.slots.len() > 1
    }

    /// The index key of a row, from its extracted values.
    fn key(&self, values: &[Extracted]) -> Value {
        match *self.slots {
            [slot] => values[slot].value.clone(),
            ref slots => Value::Product(slots.iter().map(|s| values[*s].value.clone()).collect()),
        }
    }
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
    rows: BTreeMap<Value, RowBytes>,
    indexes: Vec<Index>,
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
            for &column in &index.columns {
                wanted[column as usize] = true;
            }
        }
        let slot_of = |col: u32| wanted[..col as usize].iter().filter(|w| **w).count();
        let pk_slot = slot_of(def.primary_key);
        let auto_inc = def.auto_inc.map(|col| AutoInc {
            slot: slot_of(col),
            column: col as usize,
        });
        let indexes = def
            .indexes
            .iter()
            .map(|i| Index {
                data: IndexData::new(i.unique, i.kind),
                slots: i.columns.iter().map(|c| slot_of(*c)).collect(),
                types: i
                    .columns
                    .iter()
                    .map(|c| types[*c as usize].clone())
                    .collect(),
            })
            .collect();
        Table {
            def,
            types,
            wanted,
            pk_slot,
            auto_inc,
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
        let mut out = Vec::with_capacity(1 + self.indexes.len());
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

    /// Decodes a key of the given index: the whole key, or for an index
    /// over several columns a prefix of one or more of them (a
    /// [`Value::Product`] of that many values).
    pub fn decode_index_key(&self, index: IndexId, key: &[u8]) -> Result<Value, DbError> {
        match index {
            IndexId::PrimaryKey => self.decode_pk(key),
            IndexId::Secondary(i) => {
                let index = self.index(i)?;
                if index.composite() {
                    codec::decode_key_prefix(key, &index.types)
                        .map(|values| Value::Product(values.into()))
                        .map_err(|e| self.invalid(e))
                } else {
                    codec::decode_key(key, &index.types[0]).map_err(|e| self.invalid(e))
                }
            }
        }
    }

    /// The key of index `index` made of these leading column values (all of
    /// them, or for an index over several columns a prefix).
    pub fn index_key(&self, index: IndexId, mut values: Vec<Value>) -> Result<Value, DbError> {
        let composite = match index {
            IndexId::PrimaryKey => false,
            IndexId::Secondary(i) => self.index(i)?.composite(),
        };
        if composite {
            Ok(Value::Product(values.into()))
        } else if values.len() == 1 {
            Ok(values.swap_remove(0))
        } else {
            Err(DbError::LimitExceeded(format!(
                "a key of a one-column index has one value, not {}",
                values.len()
            )))
        }
    }

    fn index(&self, i: usize) -> Result<&Index, DbError> {
        self.indexes
            .get(i)
            .ok_or(DbError::NoSuchIndex(i as u32 + 1))
    }

    pub fn check_index(&self, index: IndexId) -> Result<(), DbError> {
        match index {
            IndexId::PrimaryKey => Ok(()),
            IndexId::Secondary(i) => self.index(i).map(|_| ()),
        }
    }

    /// Whether `index` keeps its keys in order (the primary key and B-tree
    /// indexes do; hash indexes answer point lookups only).
    pub fn is_ordered(&self, index: IndexId) -> Result<bool, DbError> {
        Ok(match index {
            IndexId::PrimaryKey => true,
            IndexId::Secondary(i) => matches!(
                self.index(i)?.data,
                IndexData::Unique(_) | IndexData::Multi(_)
            ),
        })
    }

    pub fn get(&self, pk: &Value) -> Option<&RowBytes> {
        self.rows.get(pk)
    }

    fn misuse(&self, i: usize, reason: &'static str) -> DbError {
        DbError::IndexUse {
            id: i as u32 + 1,
            table: self.def.name.clone(),
            index: self.def.indexes[i].name.clone(),
            reason,
        }
    }

    /// Whether `key` (from [`Table::decode_index_key`]) is a whole key of
    /// secondary index `i`, not a prefix.
    fn is_whole_key(&self, i: usize, key: &Value) -> bool {
        let index = &self.indexes[i];
        match key {
            Value::Product(parts) if index.composite() => parts.len() == index.slots.len(),
            _ => !index.composite(),
        }
    }

    /// The row whose unique index `index` holds `key`.
    pub fn lookup_unique(&self, index: usize, key: &Value) -> Result<Option<&RowBytes>, DbError> {
        let data = &self.index(index)?.data;
        if !data.is_unique() {
            return Err(DbError::NoSuchIndex(index as u32 + 1));
        }
        if !self.is_whole_key(index, key) {
            return Err(self.misuse(index, "looks up whole keys, not a prefix"));
        }
        Ok(data.unique_holder(key).and_then(|pk| self.rows.get(pk)))
    }

    fn check_unique(&self, values: &[Extracted], owner: Option<&Value>) -> Result<(), DbError> {
        for (i, index) in self.indexes.iter().enumerate() {
            if !index.data.is_unique() {
                continue;
            }
            let key = index.key(values);
            if let Some(holder) = index.data.unique_holder(&key)
                && Some(holder) != owner
            {
                return Err(DbError::UniqueViolation {
                    table: self.def.name.clone(),
                    index: self.def.indexes[i].name.clone(),
                    value: key.to_string(),
                });
            }
        }
        Ok(())
    }

    fn add_index_entries(&mut self, values: &[Extracted], pk: &Value) {
        for index in &mut self.indexes {
            let key = index.key(values);
            let fresh = index.data.add(key, pk.clone());
            assert!(fresh, "index entry already present");
        }
    }

    fn remove_index_entries(&mut self, values: &[Extracted], pk: &Value) {
        for index in &mut self.indexes {
            let key = index.key(values);
            let found = index.data.remove(&key, pk);
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
        let mut values = Vec::with_capacity(1 + self.indexes.len());
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
            for (list, index) in entries.iter_mut().zip(&self.indexes) {
                list.push((index.key(&values), pk.clone()));
            }
            sorted.push((pk, row));
        }
        for (i, mut list) in entries.into_iter().enumerate() {
            list.sort_unstable();
            if let Err(key) = self.indexes[i].data.fill(list) {
                return Err(DbError::UniqueViolation {
                    table: self.def.name.clone(),
                    index: self.def.indexes[i].name.clone(),
                    value: key.to_string(),
                });
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

    /// Up to `max` rows of `index` within the bounds, after `after`. For an
    /// index over several columns a bound may be a prefix of the key
    /// ([`Table::decode_index_key`]): `Included((a,))` as a lower bound
    /// starts at the first key beginning with `a`, as an upper bound ends
    /// after the last. A hash index answers one point: both bounds
    /// `Included` with the same whole key.
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
        let prefixes = match index {
            IndexId::PrimaryKey => false,
            IndexId::Secondary(i) => self.indexes[i].composite(),
        };
        let mut batch = Batch {
            lower,
            upper,
            prefixes,
            max,
            out,
        };
        match index {
            IndexId::PrimaryKey => {
                let start = match after {
                    Some(pos) => Bound::Excluded(&pos.pk),
                    None => as_ref(lower),
                };
                for (pk, row) in self.rows.range((start, Bound::Unbounded)) {
                    if !batch.take(pk, pk, row) {
                        break;
                    }
                }
            }
            IndexId::Secondary(i) => self.scan_secondary(i, after, &mut batch)?,
        }
        Ok(())
    }

    fn scan_secondary(
        &self,
        i: usize,
        after: Option<&ScanPosition>,
        batch: &mut Batch<'_>,
    ) -> Result<(), DbError> {
        // A lower bound that is a prefix is sought as the smallest key
        // beginning with it; `Batch::take` skips what an excluded prefix
        // leaves out.
        let lower = batch.lower;
        let seek = match lower {
            Bound::Excluded(v) if batch.prefixes && !self.is_whole_key(i, v) => Bound::Included(v),
            other => as_ref(other),
        };
        match &self.indexes[i].data {
            IndexData::Unique(map) => {
                let start = match after {
                    Some(pos) => Bound::Excluded(&pos.key),
                    None => seek,
                };
                for (key, pk) in map.range((start, Bound::Unbounded)) {
                    if !batch.take(key, pk, &self.rows[pk]) {
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
                    if !batch.take(key, pk, &self.rows[pk]) {
                        break;
                    }
                }
            }
            IndexData::HashUnique(map) => {
                let key = self.point(i, batch)?;
                if after.is_none()
                    && let Some(pk) = map.get(key)
                {
                    batch.take(key, pk, &self.rows[pk]);
                }
            }
            IndexData::HashMulti(map) => {
                let key = self.point(i, batch)?;
                let Some(pks) = map.get(key) else {
                    return Ok(());
                };
                let start = match after {
                    Some(pos) => Bound::Excluded(&pos.pk),
                    None => Bound::Unbounded,
                };
                for pk in pks.range((start, Bound::Unbounded)) {
                    if !batch.take(key, pk, &self.rows[pk]) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The one key a scan of hash index `i` may ask for.
    fn point<'b>(&self, i: usize, batch: &Batch<'b>) -> Result<&'b Value, DbError> {
        match (batch.lower, batch.upper) {
            (Bound::Included(l), Bound::Included(u)) if l == u && self.is_whole_key(i, l) => Ok(l),
            _ => Err(self.misuse(
                i,
                "is a hash index: it finds the rows of one whole key, not a range or a prefix",
            )),
        }
    }
}

/// One batch of a scan being filled.
struct Batch<'a> {
    lower: &'a Bound<Value>,
    upper: &'a Bound<Value>,
    /// Whether keys are products that bounds may give a prefix of.
    prefixes: bool,
    max: usize,
    out: &'a mut Vec<(ScanPosition, RowBytes)>,
}

impl Batch<'_> {
    /// How `key` compares with a bound: for an index over several columns,
    /// only as many leading columns as the bound has are compared.
    fn cmp(&self, key: &Value, bound: &Value) -> Ordering {
        match (key, bound) {
            (Value::Product(key), Value::Product(bound)) if self.prefixes => {
                let n = bound.len().min(key.len());
                key[..n].cmp(&bound[..n])
            }
            _ => key.cmp(bound),
        }
    }

    /// Pushes one entry if its key is within the bounds; false once the
    /// batch is full or the key is past the upper bound.
    fn take(&mut self, key: &Value, pk: &Value, row: &RowBytes) -> bool {
        let in_upper = match self.upper {
            Bound::Unbounded => true,
            Bound::Included(u) => self.cmp(key, u) != Ordering::Greater,
            Bound::Excluded(u) => self.cmp(key, u) == Ordering::Less,
        };
        if self.out.len() >= self.max || !in_upper {
            return false;
        }
        let in_lower = match self.lower {
            Bound::Unbounded => true,
            Bound::Included(l) => self.cmp(key, l) != Ordering::Less,
            Bound::Excluded(l) => self.cmp(key, l) == Ordering::Greater,
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
