//! The four contract versions a component may be built against, and what
//! each one's definitions become in the store's terms.
//!
//! Version 4 (`wit/interstice.wit`) declares schedule tables and gives
//! reducers the module's own identity. Version 3 (`wit/v3/interstice.wit`)
//! gave reducers the verified sender, declared public tables and lifecycle
//! reducers. Version 2
//! (`wit/v2/interstice.wit`) gave the caller as a string, which older
//! guests now get as the sender's 64 hex digits. Version 1
//! (`wit/v1/interstice.wit`) had scalars and `option` of them only. Their
//! host interfaces differ only in the package they belong to, so the older
//! imports convert their arguments and call version 4's. The row encoding
//! is the same for all: version 1's types are a subset of version 2's, with
//! the same bytes.

use interstice_store::{
    ABI_VERSION, AlgebraicType, ColumnDef, IndexDef, ModuleDef, ParamDef, ReducerDef, ReducerKind,
    TableDef,
};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::{self, types, v1, v2, v3};
use super::module::CallContext;
use super::state::InstanceState;
use crate::error::ModuleError;

/// Which contract a component was built against, from the version of the
/// `interstice:module` interfaces it imports.
pub(crate) fn version_of(engine: &wasmtime::Engine, component: &Component) -> u32 {
    for (name, _) in component.component_type().imports(engine) {
        if let Some(version) = name
            .strip_prefix("interstice:module/")
            .and_then(|rest| rest.split('@').nth(1))
        {
            if version.starts_with("0.1.") {
                return 1;
            }
            if version.starts_with("0.2.") {
                return 2;
            }
            if version.starts_with("0.3.") {
                return 3;
            }
        }
    }
    4
}

/// A compiled component, ready to instantiate with its contract's bindings.
pub(crate) enum Pre {
    V1(v1::ModulePre<InstanceState>),
    V2(v2::ModulePre<InstanceState>),
    V3(v3::ModulePre<InstanceState>),
    V4(bindings::ModulePre<InstanceState>),
}

/// A live instance and its contract's bindings.
pub(crate) enum Bindings {
    V1(v1::Module),
    V2(v2::Module),
    V3(v3::Module),
    V4(bindings::Module),
}

impl Pre {
    pub fn new(version: u32, pre: InstancePre<InstanceState>) -> wasmtime::Result<Pre> {
        Ok(match version {
            1 => Pre::V1(v1::ModulePre::new(pre)?),
            2 => Pre::V2(v2::ModulePre::new(pre)?),
            3 => Pre::V3(v3::ModulePre::new(pre)?),
            _ => Pre::V4(bindings::ModulePre::new(pre)?),
        })
    }

    pub fn instantiate(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V1(pre) => Bindings::V1(pre.instantiate(store)?),
            Pre::V2(pre) => Bindings::V2(pre.instantiate(store)?),
            Pre::V3(pre) => Bindings::V3(pre.instantiate(store)?),
            Pre::V4(pre) => Bindings::V4(pre.instantiate(store)?),
        })
    }
}

/// What `describe` answered, before it is checked.
pub(crate) enum Described {
    V1(v1::types::ModuleDef),
    V2(v2::types::ModuleDef),
    V3(v3::types::ModuleDef),
    V4(types::ModuleDef),
}

impl Bindings {
    pub fn describe(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<Described> {
        Ok(match self {
            Bindings::V1(b) => Described::V1(b.call_describe(store)?),
            Bindings::V2(b) => Described::V2(b.call_describe(store)?),
            Bindings::V3(b) => Described::V3(b.call_describe(store)?),
            Bindings::V4(b) => Described::V4(b.call_describe(store)?),
        })
    }

    pub fn call_reducer(
        &self,
        store: &mut Store<InstanceState>,
        ctx: &CallContext,
        reducer: u32,
        args: &[u8],
    ) -> wasmtime::Result<Result<(), String>> {
        // Older contracts named the caller with a string: the sender's hex.
        let caller = || ctx.caller.identity.to_string();
        match self {
            Bindings::V1(b) => {
                let wire = v1::types::ReducerContext {
                    tx_id: ctx.tx_id,
                    timestamp_micros: ctx.timestamp_micros,
                    caller: caller(),
                    seed: ctx.seed,
                };
                b.call_call_reducer(store, &wire, reducer, args)
            }
            Bindings::V2(b) => {
                let wire = v2::types::ReducerContext {
                    tx_id: ctx.tx_id,
                    timestamp_micros: ctx.timestamp_micros,
                    caller: caller(),
                    seed: ctx.seed,
                };
                b.call_call_reducer(store, &wire, reducer, args)
            }
            Bindings::V3(b) => {
                let wire = v3::types::ReducerContext {
                    tx_id: ctx.tx_id,
                    timestamp_micros: ctx.timestamp_micros,
                    sender: ctx.caller.identity.as_bytes().to_vec(),
                    token: ctx.caller.token.as_ref().map(|t| v3::types::TokenClaims {
                        issuer: t.issuer.clone(),
                        subject: t.subject.clone(),
                        audience: t.audience.clone(),
                    }),
                    connection_id: ctx.connection_id,
                    owner: ctx.owner.as_bytes().to_vec(),
                    seed: ctx.seed,
                };
                b.call_call_reducer(store, &wire, reducer, args)
            }
            Bindings::V4(b) => {
                let wire = types::ReducerContext {
                    tx_id: ctx.tx_id,
                    timestamp_micros: ctx.timestamp_micros,
                    sender: ctx.caller.identity.as_bytes().to_vec(),
                    token: ctx.caller.token.as_ref().map(|t| types::TokenClaims {
                        issuer: t.issuer.clone(),
                        subject: t.subject.clone(),
                        audience: t.audience.clone(),
                    }),
                    connection_id: ctx.connection_id,
                    owner: ctx.owner.as_bytes().to_vec(),
                    identity: ctx.module.as_bytes().to_vec(),
                    seed: ctx.seed,
                };
                b.call_call_reducer(store, &wire, reducer, args)
            }
        }
    }
}

impl Described {
    /// The definition in the store's terms. A version-1 definition is
    /// recorded as version 2: its rows are already in that encoding, so the
    /// log says which encoding its rows use, whatever the guest's contract.
    pub fn into_def(self) -> Result<ModuleDef, ModuleError> {
        match self {
            Described::V1(def) => Ok(from_v1(def)),
            Described::V2(def) => from_v2::from(def).map_err(ModuleError::from),
            Described::V3(def) => from_v3::from(def).map_err(ModuleError::from),
            Described::V4(def) => from_v4::from(def).map_err(ModuleError::from),
        }
    }
}

/// The conversions of a typespace contract (version 2 and later) into the
/// store's terms, for the contract's `types` interface `$types`. Versions
/// differ in whether tables say if they are public or scheduled, and in the
/// reducer kinds they know.
macro_rules! typespace_contract {
    ($name:ident, $types:path, public: $public:expr, scheduled: $scheduled:expr, kinds: { $($wit:ident => $ours:ident),* $(,)? }) => {
        mod $name {
            use interstice_store::{
                AlgebraicType, ColumnDef, IndexDef, IndexKind, ModuleDef, ParamDef, ReducerDef,
                ReducerKind, SchemaError, TableDef, TypeDef, Typespace, VariantDef, VariantShape,
            };
            use $types as types;

            pub(super) fn from(def: types::ModuleDef) -> Result<ModuleDef, SchemaError> {
                let space = Typespace {
                    types: def.typespace.into_iter().map(type_def).collect(),
                };
                // Each entry resolved once, whatever number of columns use it.
                let resolved = space.resolve_all()?;
                let ty = |index: u32| {
                    resolved.get(index as usize).cloned().ok_or_else(|| {
                        SchemaError::Invalid(format!(
                            "type reference {index} is past the end of the typespace ({} types)",
                            resolved.len()
                        ))
                    })
                };
                let mut tables = Vec::with_capacity(def.tables.len());
                for t in def.tables {
                    let public = $public(&t);
                    let scheduled = $scheduled(&t);
                    let columns = t
                        .columns
                        .into_iter()
                        .map(|c| {
                            Ok(ColumnDef {
                                name: c.name,
                                ty: ty(c.ty)?,
                                default: c.default,
                            })
                        })
                        .collect::<Result<_, SchemaError>>()?;
                    let indexes = t.indexes.into_iter().map(index_def).collect();
                    tables.push(TableDef {
                        name: t.name,
                        columns,
                        primary_key: t.primary_key,
                        auto_inc: t.auto_inc,
                        indexes,
                        ephemeral: t.ephemeral,
                        public,
                        scheduled,
                    });
                }
                let mut reducers = Vec::with_capacity(def.reducers.len());
                for r in def.reducers {
                    let params = r
                        .params
                        .into_iter()
                        .map(|p| {
                            Ok(ParamDef {
                                name: p.name,
                                ty: ty(p.ty)?,
                            })
                        })
                        .collect::<Result<_, SchemaError>>()?;
                    reducers.push(ReducerDef {
                        name: r.name,
                        params,
                        kind: match r.kind { $(types::ReducerKind::$wit => ReducerKind::$ours,)* },
                    });
                }
                Ok(ModuleDef {
                    abi_version: def.abi_version,
                    tables,
                    reducers,
                    owner: None,
                })
            }

            fn index_def(i: types::IndexDef) -> IndexDef {
                IndexDef {
                    name: i.name,
                    columns: i.columns,
                    unique: i.unique,
                    kind: match i.kind {
                        types::IndexKind::Btree => IndexKind::Btree,
                        types::IndexKind::Hash => IndexKind::Hash,
                    },
                }
            }

            fn type_def(t: types::TypeDef) -> TypeDef {
                let fields = |f: Vec<types::FieldDef>| f.into_iter().map(|f| (f.name, f.ty)).collect();
                match t {
                    types::TypeDef::Scalar(s) => TypeDef::Scalar(scalar(s)),
                    types::TypeDef::Option(i) => TypeDef::Option(i),
                    types::TypeDef::Vec(i) => TypeDef::Vec(i),
                    types::TypeDef::Product(p) => TypeDef::Product {
                        name: p.name,
                        fields: fields(p.fields),
                    },
                    types::TypeDef::Sum(s) => TypeDef::Sum {
                        name: s.name,
                        variants: s
                            .variants
                            .into_iter()
                            .map(|v| VariantDef {
                                name: v.name,
                                shape: match v.shape {
                                    types::VariantShape::Unit => VariantShape::Unit,
                                    types::VariantShape::Tuple => VariantShape::Tuple,
                                    types::VariantShape::Struct => VariantShape::Struct,
                                },
                                fields: fields(v.fields),
                            })
                            .collect(),
                    },
                }
            }

            fn scalar(s: types::ScalarType) -> AlgebraicType {
                use types::ScalarType as S;
                match s {
                    S::Bool => AlgebraicType::Bool,
                    S::U8 => AlgebraicType::U8,
                    S::U16 => AlgebraicType::U16,
                    S::U32 => AlgebraicType::U32,
                    S::U64 => AlgebraicType::U64,
                    S::U128 => AlgebraicType::U128,
                    S::I8 => AlgebraicType::I8,
                    S::I16 => AlgebraicType::I16,
                    S::I32 => AlgebraicType::I32,
                    S::I64 => AlgebraicType::I64,
                    S::I128 => AlgebraicType::I128,
                    S::F32 => AlgebraicType::F32,
                    S::F64 => AlgebraicType::F64,
                    S::String => AlgebraicType::String,
                    S::Bytes => AlgebraicType::Bytes,
                    S::Identity => AlgebraicType::Identity,
                    S::Timestamp => AlgebraicType::Timestamp,
                    S::Duration => AlgebraicType::Duration,
                }
            }
        }
    };
}

typespace_contract!(
    from_v4,
    super::bindings::types,
    public: |t: &types::TableDef| t.public,
    scheduled: |t: &types::TableDef| t.scheduled.clone(),
    kinds: {
        Normal => Normal,
        Init => Init,
        Migrate => Migrate,
        ClientConnected => ClientConnected,
        ClientDisconnected => ClientDisconnected,
    }
);

// Version 3 had no schedule tables.
typespace_contract!(
    from_v3,
    super::bindings::v3::types,
    public: |t: &types::TableDef| t.public,
    scheduled: |_: &types::TableDef| None,
    kinds: {
        Normal => Normal,
        Init => Init,
        Migrate => Migrate,
        ClientConnected => ClientConnected,
        ClientDisconnected => ClientDisconnected,
    }
);

// Version 2 had no `public`: its tables are private, like every table
// declared without it.
typespace_contract!(
    from_v2,
    super::bindings::v2::types,
    public: |_: &types::TableDef| false,
    scheduled: |_: &types::TableDef| None,
    kinds: { Normal => Normal, Init => Init, Migrate => Migrate }
);

/// A type of contract version 1: a scalar, optionally nullable.
fn v1_type(ty: v1::types::ColumnType) -> AlgebraicType {
    use v1::types::ScalarType as S;
    let scalar = match ty.scalar {
        S::Bool => AlgebraicType::Bool,
        S::I32 => AlgebraicType::I32,
        S::I64 => AlgebraicType::I64,
        S::U32 => AlgebraicType::U32,
        S::U64 => AlgebraicType::U64,
        S::F64 => AlgebraicType::F64,
        S::String => AlgebraicType::String,
        S::Bytes => AlgebraicType::Bytes,
    };
    if ty.optional {
        AlgebraicType::option(scalar)
    } else {
        scalar
    }
}

fn from_v1(def: v1::types::ModuleDef) -> ModuleDef {
    let table = |t: v1::types::TableDef| TableDef {
        name: t.name,
        columns: t
            .columns
            .into_iter()
            .map(|c| ColumnDef {
                name: c.name,
                ty: v1_type(c.ty),
                default: c.default,
            })
            .collect(),
        primary_key: t.primary_key,
        auto_inc: t.auto_inc,
        indexes: t
            .indexes
            .into_iter()
            .map(|i| IndexDef::btree(i.name, i.column, i.unique))
            .collect(),
        ephemeral: t.ephemeral,
        public: false,
        scheduled: None,
    };
    let reducer = |r: v1::types::ReducerDef| ReducerDef {
        name: r.name,
        params: r
            .params
            .into_iter()
            .map(|p| ParamDef {
                name: p.name,
                ty: v1_type(p.ty),
            })
            .collect(),
        kind: match r.kind {
            v1::types::ReducerKind::Normal => ReducerKind::Normal,
            v1::types::ReducerKind::Init => ReducerKind::Init,
            v1::types::ReducerKind::Migrate => ReducerKind::Migrate,
        },
    };
    ModuleDef {
        // Only a version the host knows reaches here as 1; anything else is
        // kept so that validation refuses it by name.
        abi_version: if def.abi_version == 1 {
            ABI_VERSION
        } else {
            def.abi_version
        },
        tables: def.tables.into_iter().map(table).collect(),
        reducers: def.reducers.into_iter().map(reducer).collect(),
        owner: None,
    }
}

// The older host interfaces: the same calls as version 4's, on types that
// differ only in the package they belong to.
macro_rules! older_host {
    ($v:ident, $name:ident) => {
        mod $name {
            use wasmtime::component::Resource;

            use crate::sandbox::bindings::{host, types, $v};
            use crate::sandbox::state::{Cursor, InstanceState};

            fn bound(b: $v::host::Bound) -> host::Bound {
                match b {
                    $v::host::Bound::Unbounded => host::Bound::Unbounded,
                    $v::host::Bound::Included(k) => host::Bound::Included(k),
                    $v::host::Bound::Excluded(k) => host::Bound::Excluded(k),
                }
            }

            fn error(e: host::DbError) -> $v::host::DbError {
                use $v::host::DbError as E;
                match e {
                    host::DbError::NoSuchTable(t) => E::NoSuchTable(t),
                    host::DbError::NoSuchIndex(i) => E::NoSuchIndex(i),
                    host::DbError::InvalidRow(m) => E::InvalidRow(m),
                    host::DbError::UniqueViolation(m) => E::UniqueViolation(m),
                    host::DbError::NotFound => E::NotFound,
                    host::DbError::LimitExceeded(m) => E::LimitExceeded(m),
                }
            }

            fn level(level: $v::types::LogLevel) -> types::LogLevel {
                use $v::types::LogLevel as L;
                match level {
                    L::Error => types::LogLevel::Error,
                    L::Warn => types::LogLevel::Warn,
                    L::Info => types::LogLevel::Info,
                    L::Debug => types::LogLevel::Debug,
                    L::Trace => types::LogLevel::Trace,
                }
            }

            impl $v::types::Host for InstanceState {}

            impl $v::host::Host for InstanceState {
                fn insert(
                    &mut self,
                    table: u32,
                    row: Vec<u8>,
                ) -> Result<Vec<u8>, $v::host::DbError> {
                    host::Host::insert(self, table, row).map_err(error)
                }

                fn update(&mut self, table: u32, row: Vec<u8>) -> Result<(), $v::host::DbError> {
                    host::Host::update(self, table, row).map_err(error)
                }

                fn delete(&mut self, table: u32, key: Vec<u8>) -> Result<bool, $v::host::DbError> {
                    host::Host::delete(self, table, key).map_err(error)
                }

                fn get(
                    &mut self,
                    table: u32,
                    key: Vec<u8>,
                ) -> Result<Option<Vec<u8>>, $v::host::DbError> {
                    host::Host::get(self, table, key).map_err(error)
                }

                fn lookup_unique(
                    &mut self,
                    table: u32,
                    index: u32,
                    key: Vec<u8>,
                ) -> Result<Option<Vec<u8>>, $v::host::DbError> {
                    host::Host::lookup_unique(self, table, index, key).map_err(error)
                }

                fn scan(
                    &mut self,
                    table: u32,
                    index: u32,
                    lower: $v::host::Bound,
                    upper: $v::host::Bound,
                ) -> Result<Resource<Cursor>, $v::host::DbError> {
                    host::Host::scan(self, table, index, bound(lower), bound(upper)).map_err(error)
                }

                fn count(&mut self, table: u32) -> Result<u64, $v::host::DbError> {
                    host::Host::count(self, table).map_err(error)
                }

                fn log(&mut self, level_: $v::types::LogLevel, message: String) {
                    host::Host::log(self, level(level_), message);
                }
            }

            impl $v::host::HostCursor for InstanceState {
                fn next_batch(&mut self, cursor: Resource<Cursor>, max_rows: u32) -> Vec<Vec<u8>> {
                    host::HostCursor::next_batch(self, cursor, max_rows)
                }

                fn drop(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<()> {
                    host::HostCursor::drop(self, cursor)
                }
            }
        }
    };
}

older_host!(v1, host_v1);
older_host!(v2, host_v2);
older_host!(v3, host_v3);
