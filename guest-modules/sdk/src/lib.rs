//! Write Interstice tables and reducers in Rust.
//!
//! A module is one `#[interstice_sdk::module]` on an inline `mod` holding
//! `#[table]` structs and `#[reducer]` functions:
//!
//! ```ignore
//! #[interstice_sdk::module]
//! mod bank {
//!     use interstice_sdk::prelude::*;
//!
//!     #[table(name = accounts)]
//!     pub struct Account {
//!         #[primary_key]
//!         pub id: u64,
//!         pub balance: u64,
//!     }
//!
//!     #[reducer]
//!     pub fn deposit(ctx: &ReducerContext, id: u64, amount: u64) -> Result<(), String> {
//!         let mut account = ctx.db.accounts().find(&id).ok_or("no such account")?;
//!         account.balance += amount;
//!         ctx.db.accounts().update(account)?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Columns and reducer parameters may be of any type that implements
//! [`Column`]: `bool`, every integer from `u8`/`i8` to `u128`/`i128`, `f32`,
//! `f64`, `String`, `Vec<u8>` (bytes), [`Identity`], [`Timestamp`],
//! [`Duration`], `Option<T>`, `Vec<T>`, and structs and enums that
//! `#[derive(Type)]`:
//!
//! ```ignore
//! #[derive(Type, Clone, Debug, PartialEq)]
//! pub enum Kind { Sword, Bow(u8), Staff { power: u16 } }
//!
//! #[derive(Type, Clone, Debug, PartialEq)]
//! pub struct Item { pub kind: Kind, pub count: u32 }
//! ```
//!
//! Every reducer call is one transaction: returning `Err` (or panicking)
//! undoes every change it made. Guests have no clock, randomness, files or
//! network; the [`ReducerContext`] carries the transaction's time, caller
//! and seed.

extern crate self as interstice_sdk;

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

pub use interstice_sdk_macros::{Type, module, reducer, table};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "module",
        pub_export_macro: true,
        export_macro_name: "__export_module",
        default_bindings_module: "::interstice_sdk::bindings",
        runtime_path: "::interstice_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::interstice::module::host;
pub use bindings::interstice::module::types::{
    ColumnDef, FieldDef, IndexDef, IndexKind, LogLevel, ModuleDef, ParamDef, ProductDef,
    ReducerDef, ReducerKind, ScalarType, SumDef, TableDef, TypeDef, VariantDef, VariantShape,
};

mod index;
mod special;
mod typespace;

pub use index::{
    BTreeIndex, CompositeHashIndex, CompositeIndex, HashIndex, IndexKey, IndexPrefix,
    UniqueCompositeHashIndex, UniqueCompositeIndex, UniqueHashIndex, UniqueIndex,
};
pub use special::{Duration, Identity, ScheduleAt, Timestamp};
pub use typespace::Typespace;

/// Everything a module usually needs.
pub mod prelude {
    pub use crate::{
        BTreeIndex, Column, CompositeHashIndex, CompositeIndex, DbError, Duration, HashIndex,
        Identity, ReducerContext, ScheduleAt, Table, TableHandle, Timestamp, TokenClaims, Type,
        UniqueCompositeHashIndex, UniqueCompositeIndex, UniqueHashIndex, UniqueIndex, log, reducer,
        table,
    };
}

/// The encoding version this SDK writes (docs/row-encoding.md).
pub const ABI_VERSION: u32 = 2;

/// Rows fetched from the host per cursor batch.
const SCAN_BATCH_ROWS: u32 = 64;

/// What a reducer knows about its call.
pub struct ReducerContext {
    /// Id of this transaction; increases with every committed transaction.
    pub tx_id: u64,
    /// Logical time of the transaction.
    pub timestamp: Timestamp,
    /// The same time, in microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// Who made the call, as the host verified it from their token (or the
    /// operator's identity, for the admin token and the local CLI).
    pub sender: Identity,
    /// What the caller's token said: issuer, subject and audience. `None`
    /// for the operator and for calls the host makes itself.
    pub token: Option<TokenClaims>,
    /// The session, in `client_connected` and `client_disconnected`.
    pub connection_id: Option<u64>,
    /// A per-transaction seed: the only source of randomness.
    pub seed: u64,
    /// The module's tables.
    pub db: Db,
    owner: Identity,
    identity: Identity,
}

/// The claims of a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub issuer: String,
    pub subject: String,
    pub audience: Vec<String>,
}

impl ReducerContext {
    #[doc(hidden)]
    pub fn __new(ctx: bindings::interstice::module::types::ReducerContext) -> Self {
        let identity = |bytes: Vec<u8>| {
            // The host always sends 32 bytes; anything else is a host bug
            // and names nobody.
            Identity::from_bytes(bytes.try_into().unwrap_or([0; 32]))
        };
        ReducerContext {
            tx_id: ctx.tx_id,
            timestamp: Timestamp::from_micros(ctx.timestamp_micros),
            timestamp_micros: ctx.timestamp_micros,
            sender: identity(ctx.sender),
            token: ctx.token.map(|t| TokenClaims {
                issuer: t.issuer,
                subject: t.subject,
                audience: t.audience,
            }),
            connection_id: ctx.connection_id,
            seed: ctx.seed,
            db: Db { _private: () },
            owner: identity(ctx.owner),
            identity: identity(ctx.identity),
        }
    }

    /// The module's owner: whoever it was first published for.
    pub fn owner(&self) -> Identity {
        self.owner
    }

    /// The module's own identity: the sender when the host runs a
    /// scheduled reducer. A scheduled reducer that clients must not call
    /// directly starts with `if ctx.sender != ctx.identity() { return
    /// Err(...) }`.
    pub fn identity(&self) -> Identity {
        self.identity
    }
}

/// Access to the module's tables: `ctx.db.<table>()`.
pub struct Db {
    _private: (),
}

/// A refused table operation. `?` turns it into a reducer error, which rolls
/// the transaction back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(String);

impl DbError {
    fn from_host(e: host::DbError) -> Self {
        DbError(match e {
            host::DbError::NoSuchTable(id) => format!("no table with id {id}"),
            host::DbError::NoSuchIndex(id) => format!("no index with id {id}"),
            host::DbError::InvalidRow(m) => format!("invalid row: {m}"),
            host::DbError::UniqueViolation(m) => m,
            host::DbError::NotFound => "no row with that primary key".to_string(),
            host::DbError::LimitExceeded(m) => m,
        })
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl From<DbError> for String {
    fn from(e: DbError) -> String {
        e.0
    }
}

/// Bytes the host handed back that do not decode: a host/SDK mismatch.
#[derive(Debug)]
pub struct DecodeError(pub &'static str);

/// Reads values of the canonical encoding.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(DecodeError("truncated value"))?;
        self.bytes = rest;
        Ok(*head)
    }

    pub fn take_slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError("truncated value"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

/// A type that can be a column or a reducer parameter: every scalar,
/// `Option<T>`, `Vec<T>`, [`Identity`], [`Timestamp`], [`Duration`], and
/// structs and enums with `#[derive(Type)]`. `docs/row-encoding.md` gives
/// each one's bytes.
pub trait Column: Sized + 'static {
    /// Whether this is `u8`, so that `Vec<u8>` is the `bytes` type.
    #[doc(hidden)]
    const IS_BYTE: bool = false;
    /// Adds this type (and the types inside it) to `space`; returns its
    /// index there.
    fn type_index(space: &mut Typespace) -> u32;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The elements of a `Vec<Self>`, one after another (`u8` copies them
    /// at once).
    #[doc(hidden)]
    fn encode_all(items: &[Self], out: &mut Vec<u8>) {
        for item in items {
            item.encode(out);
        }
    }

    /// `len` elements of a `Vec<Self>`.
    #[doc(hidden)]
    fn decode_all(r: &mut Reader<'_>, len: usize) -> Result<Vec<Self>, DecodeError> {
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(Self::decode(r)?);
        }
        Ok(items)
    }
}

macro_rules! fixed_column {
    ($t:ty, $scalar:ident, $n:literal) => {
        impl Column for $t {
            fn type_index(space: &mut Typespace) -> u32 {
                space.scalar(ScalarType::$scalar)
            }
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.take::<$n>()?))
            }
        }
    };
}

fixed_column!(i8, I8, 1);
fixed_column!(i16, I16, 2);
fixed_column!(i32, I32, 4);
fixed_column!(i64, I64, 8);
fixed_column!(i128, I128, 16);
fixed_column!(u16, U16, 2);
fixed_column!(u32, U32, 4);
fixed_column!(u64, U64, 8);
fixed_column!(u128, U128, 16);
fixed_column!(f32, F32, 4);
fixed_column!(f64, F64, 8);

impl Column for u8 {
    const IS_BYTE: bool = true;
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::U8)
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(r.take::<1>()?[0])
    }
    fn encode_all(items: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(items);
    }
    fn decode_all(r: &mut Reader<'_>, len: usize) -> Result<Vec<u8>, DecodeError> {
        Ok(r.take_slice(len)?.to_vec())
    }
}

impl Column for bool {
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::Bool)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.take::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("invalid bool")),
        }
    }
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).expect("value longer than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn encode_len_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    encode_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn decode_len(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    Ok(u32::from_le_bytes(r.take::<4>()?) as usize)
}

fn decode_len_prefixed<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let len = decode_len(r)?;
    r.take_slice(len)
}

impl Column for String {
    fn type_index(space: &mut Typespace) -> u32 {
        space.scalar(ScalarType::String)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len_prefixed(self.as_bytes(), out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let raw = decode_len_prefixed(r)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError("invalid UTF-8"))
    }
}

/// `Vec<u8>` is the `bytes` type; any other `Vec<T>` is `vec<T>`. Both are
/// a `u32` count followed by the elements, so the bytes are the same.
impl<T: Column> Column for Vec<T> {
    fn type_index(space: &mut Typespace) -> u32 {
        if T::IS_BYTE {
            return space.scalar(ScalarType::Bytes);
        }
        let inner = T::type_index(space);
        space.add(TypeDef::Vec(inner))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        T::encode_all(self, out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = decode_len(r)?;
        // Every element takes at least one byte: a count beyond what is
        // left cannot be right, and must not allocate.
        if len > r.remaining() {
            return Err(DecodeError("truncated value"));
        }
        T::decode_all(r, len)
    }
}

impl<T: Column> Column for Option<T> {
    fn type_index(space: &mut Typespace) -> u32 {
        let inner = T::type_index(space);
        space.add(TypeDef::Option(inner))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.take::<1>()?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            _ => Err(DecodeError("invalid option tag")),
        }
    }
}

/// Implemented by `#[table]` for each table's row struct.
pub trait Table: Sized {
    const TABLE_ID: u32;
    const NAME: &'static str;
    /// Whether inserting may change the row (an auto-increment column).
    const HAS_AUTO_INC: bool;
    type PrimaryKey: Column;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn primary_key(&self) -> &Self::PrimaryKey;
}

fn encode_row<T: Table>(row: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    row.encode(&mut out);
    out
}

fn encode_key<K: Column>(key: &K) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    key.encode(&mut out);
    out
}

fn decode_row<T: Table>(bytes: &[u8]) -> T {
    let mut r = Reader::new(bytes);
    match T::decode(&mut r).and_then(|row| r.finish().map(|()| row)) {
        Ok(row) => row,
        Err(e) => panic!(
            "host returned a row of `{}` that does not decode: {}",
            T::NAME,
            e.0
        ),
    }
}

/// Host errors that only a broken SDK or host can cause.
fn internal<T>(result: Result<T, host::DbError>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("host refused an SDK request: {}", DbError::from_host(e)),
    }
}

/// Typed access to one table: `ctx.db.accounts()`.
pub struct TableHandle<T: Table> {
    _row: PhantomData<fn() -> T>,
}

impl<T: Table> TableHandle<T> {
    #[doc(hidden)]
    pub fn __new() -> Self {
        TableHandle { _row: PhantomData }
    }

    /// Inserts a row; returns it as stored (with a generated auto-increment
    /// value when the column was 0). Fails on a duplicate primary key or
    /// unique value.
    pub fn insert(&self, row: T) -> Result<T, DbError> {
        let stored = host::insert(T::TABLE_ID, &encode_row(&row)).map_err(DbError::from_host)?;
        if T::HAS_AUTO_INC {
            Ok(decode_row(&stored))
        } else {
            Ok(row)
        }
    }

    /// Replaces the row that has the same primary key.
    pub fn update(&self, row: T) -> Result<(), DbError> {
        host::update(T::TABLE_ID, &encode_row(&row)).map_err(DbError::from_host)
    }

    /// Deletes the row with this primary key; `false` if there was none.
    pub fn delete(&self, pk: &T::PrimaryKey) -> bool {
        internal(host::delete(T::TABLE_ID, &encode_key(pk)))
    }

    /// The row with this primary key.
    pub fn find(&self, pk: &T::PrimaryKey) -> Option<T> {
        internal(host::get(T::TABLE_ID, &encode_key(pk))).map(|b| decode_row(&b))
    }

    /// Every row, in primary-key order.
    pub fn iter(&self) -> RowIter<T> {
        RowIter::open(0, Bound::Unbounded, Bound::Unbounded)
    }

    /// Rows whose primary key lies in `range`, in order.
    pub fn range(&self, range: impl RangeBounds<T::PrimaryKey>) -> RowIter<T> {
        RowIter::open(
            0,
            encode_bound(range.start_bound()),
            encode_bound(range.end_bound()),
        )
    }

    /// Number of rows.
    pub fn count(&self) -> u64 {
        internal(host::count(T::TABLE_ID))
    }
}

fn encode_bound<K: Column>(bound: Bound<&K>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Included(encode_key(k)),
        Bound::Excluded(k) => Bound::Excluded(encode_key(k)),
    }
}

fn wire_bound(bound: Bound<Vec<u8>>) -> host::Bound {
    match bound {
        Bound::Unbounded => host::Bound::Unbounded,
        Bound::Included(k) => host::Bound::Included(k),
        Bound::Excluded(k) => host::Bound::Excluded(k),
    }
}

/// Rows of a scan, fetched from the host in batches.
pub struct RowIter<T: Table> {
    cursor: Option<host::Cursor>,
    batch: std::vec::IntoIter<Vec<u8>>,
    _row: PhantomData<fn() -> T>,
}

impl<T: Table> RowIter<T> {
    fn open(index: u32, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        let cursor = internal(host::scan(
            T::TABLE_ID,
            index,
            &wire_bound(lower),
            &wire_bound(upper),
        ));
        RowIter {
            cursor: Some(cursor),
            batch: Vec::new().into_iter(),
            _row: PhantomData,
        }
    }
}

impl<T: Table> Iterator for RowIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(bytes) = self.batch.next() {
                return Some(decode_row(&bytes));
            }
            let cursor = self.cursor.as_ref()?;
            let batch = cursor.next_batch(SCAN_BATCH_ROWS);
            if batch.is_empty() {
                self.cursor = None;
                return None;
            }
            self.batch = batch.into_iter();
        }
    }
}

/// Writes a line to the module's log.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use super::*;

    /// Called by the generated `call-reducer` before a reducer runs.
    pub fn enter() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                host::log(LogLevel::Error, &format!("panic: {info}"));
            }));
        });
    }

    pub fn decode_arg<C: Column>(r: &mut Reader<'_>, name: &str) -> Result<C, String> {
        C::decode(r).map_err(|e| format!("argument `{name}`: {}", e.0))
    }

    pub fn finish_args(r: &Reader<'_>) -> Result<(), String> {
        r.finish().map_err(|e| format!("arguments: {}", e.0))
    }

    /// Reducers may return `()` or `Result<(), E>` with `E: Into<String>`.
    pub trait IntoReducerResult {
        fn into_reducer_result(self) -> Result<(), String>;
    }

    impl IntoReducerResult for () {
        fn into_reducer_result(self) -> Result<(), String> {
            Ok(())
        }
    }

    impl<E: Into<String>> IntoReducerResult for Result<(), E> {
        fn into_reducer_result(self) -> Result<(), String> {
            self.map_err(Into::into)
        }
    }

    pub fn column_def<T: Column>(space: &mut Typespace, name: &str) -> ColumnDef {
        ColumnDef {
            name: name.to_string(),
            ty: T::type_index(space),
            default: None,
        }
    }

    /// A column declared with `#[default(value)]`.
    pub fn column_def_with_default<T: Column>(
        space: &mut Typespace,
        name: &str,
        value: T,
    ) -> ColumnDef {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        ColumnDef {
            name: name.to_string(),
            ty: T::type_index(space),
            default: Some(bytes),
        }
    }

    pub fn param_def<T: Column>(space: &mut Typespace, name: &str) -> ParamDef {
        ParamDef {
            name: name.to_string(),
            ty: T::type_index(space),
        }
    }

    pub fn index_def(name: &str, columns: &[u32], unique: bool, hash: bool) -> IndexDef {
        IndexDef {
            name: name.to_string(),
            columns: columns.to_vec(),
            unique,
            kind: if hash {
                IndexKind::Hash
            } else {
                IndexKind::Btree
            },
        }
    }

    pub fn field_def<T: Column>(space: &mut Typespace, name: &str) -> FieldDef {
        FieldDef {
            name: name.to_string(),
            ty: T::type_index(space),
        }
    }

    /// Reads an enum's variant tag.
    pub fn decode_tag(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
        Ok(r.take::<1>()?[0])
    }

    pub fn invalid_variant() -> DecodeError {
        DecodeError("invalid variant tag")
    }
}
