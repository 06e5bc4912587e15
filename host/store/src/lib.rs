//! Interstice's in-memory store: module schemas, the canonical row encoding,
//! tables with their indexes, and serial transactions with undo and redo.
//!
//! This crate knows nothing of WebAssembly. It touches files only to write
//! and read snapshots ([`snapshot`]), and then only through the file-system
//! seam of `interstice-fs`. The runtime feeds it rows from guests; the durable log and
//! snapshots feed it rows on replay; all go through the same validation.
//!
//! ```
//! use interstice_store::{
//!     codec, AlgebraicType, ColumnDef, ModuleDef, TableDef, Tables, TxLog, Value, ABI_VERSION,
//! };
//!
//! let u64_col = AlgebraicType::U64;
//! let def = ModuleDef {
//!     abi_version: ABI_VERSION,
//!     tables: vec![TableDef {
//!         name: "accounts".into(),
//!         columns: vec![
//!             ColumnDef::new("id", u64_col.clone()),
//!             ColumnDef::new("balance", u64_col.clone()),
//!         ],
//!         primary_key: 0,
//!         auto_inc: None,
//!         indexes: vec![],
//!         ephemeral: false,
//!         public: true,
//!         scheduled: None,
//!     }],
//!     reducers: vec![],
//!     owner: None,
//! };
//! def.validate()?;
//! let mut tables = Tables::new(&def);
//! let mut tx = TxLog::new();
//! let row = codec::encode_row(&[Value::U64(1), Value::U64(100)], &[u64_col.clone(), u64_col]);
//! tables.insert(&mut tx, 0, &row)?;
//! let mutations = tables.commit(&mut tx);
//! assert_eq!(mutations.len(), 1);
//! assert_eq!(tables.count(0)?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod identity;
pub mod json;
pub mod limits;
pub mod migrate;
mod schema;
pub mod snapshot;
pub mod system;
mod table;
mod tables;
mod types;
mod value;

pub use error::{DbError, DecodeError, SchemaError};
pub use identity::{Identity, IdentityParseError};
pub use schema::{
    ABI_VERSION, ABI_VERSION_MIN, ColumnDef, IndexDef, IndexKind, ModuleDef, ParamDef, ReducerDef,
    ReducerKind, TableDef,
};
pub use table::{IndexId, RowBytes, ScanPosition, Table};
pub use tables::{Mutation, MutationOp, Tables, TxLog};
pub use types::{
    AlgebraicType, Field, ProductType, SCALARS, SumType, TypeChange, TypeDef, Typespace, Variant,
    VariantDef, VariantShape, type_change,
};
pub use value::Value;
