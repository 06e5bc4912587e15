//! Reads: rows of a table by primary key or indexed value, in pages, as
//! JSON; a whole module state as JSON, for comparisons; what SQL answers.

use std::ops::Bound;
use std::sync::Arc;

use interstice_store::json::{row_to_json, value_to_json};
use interstice_store::{IndexId, ModuleDef, RowBytes, ScanPosition, Table, Value};

use super::catalog::{Catalog, ModuleEntry};

/// Which rows [`Database::query`] returns.
#[derive(Clone, Debug, Default)]
pub struct RowQuery {
    /// Only rows whose column (the primary key or an indexed column) holds
    /// this value, given as JSON of the column's type (or, for a string
    /// column, the string itself).
    pub filter: Option<(String, String)>,
    /// Only rows after the one with this primary key (as `filter`'s value).
    pub after: Option<String>,
    /// At most this many rows.
    pub limit: usize,
}

/// One page of [`Database::query`].
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<serde_json::Value>,
    /// The primary key to pass as `after` for the next page, when more rows
    /// may follow.
    pub next_after: Option<serde_json::Value>,
    /// The last transaction whose changes the rows include.
    pub tx_id: u64,
    /// The module's definition the rows were read under.
    pub def: Arc<ModuleDef>,
}

/// A module's table by name.
pub(crate) fn table_of<'a>(
    catalog: &'a Catalog,
    module: &str,
    table: &str,
) -> Result<(&'a ModuleEntry, &'a Table), QueryError> {
    let entry = catalog
        .modules
        .get(module)
        .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
    let table_id = entry
        .def
        .table_id(table)
        .ok_or_else(|| QueryError::UnknownTable {
            module: module.to_string(),
            table: table.to_string(),
        })?;
    let t = entry
        .tables
        .table(table_id)
        .map_err(|e| QueryError::Corrupt(e.to_string()))?;
    Ok((entry, t))
}

fn corrupt(e: impl std::fmt::Display) -> QueryError {
    QueryError::Corrupt(e.to_string())
}

/// A row as JSON under its table's definition.
fn json_of(row: &[u8], t: &Table) -> Result<serde_json::Value, QueryError> {
    row_to_json(row, t.def()).map_err(corrupt)
}

/// One page of rows: all of them in primary-key order, or those whose
/// indexed column holds a value.
pub(crate) fn page(
    catalog: &Catalog,
    module: &str,
    table: &str,
    query: &RowQuery,
) -> Result<Page, QueryError> {
    let (entry, t) = table_of(catalog, module, table)?;
    let limit = query.limit.max(1);
    let (index, lower, upper) = bounds(t, query)?;
    let after = match &query.after {
        None => None,
        Some(raw) => {
            let pk_col = &t.def().columns[t.def().primary_key as usize];
            let pk = value_from_query(raw, &pk_col.ty).map_err(|reason| QueryError::BadValue {
                column: pk_col.name.clone(),
                reason,
            })?;
            let key = match &lower {
                Bound::Included(v) => v.clone(),
                _ => pk.clone(),
            };
            Some(ScanPosition { key, pk })
        }
    };
    // One more than asked tells whether another page follows.
    let mut out = Vec::new();
    t.scan(
        index,
        &lower,
        &upper,
        after.as_ref(),
        limit.saturating_add(1),
        &mut out,
    )
    .map_err(corrupt)?;
    let more = out.len() > limit;
    out.truncate(limit);
    let next_after = match more {
        true => out.last().map(|(pos, _)| {
            value_to_json(&pos.pk, &t.def().columns[t.def().primary_key as usize].ty)
        }),
        false => None,
    };
    let rows = out
        .iter()
        .map(|(_, row)| json_of(row, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        rows,
        next_after,
        tx_id: catalog.clock.last_tx_id(),
        def: entry.def.clone(),
    })
}

/// The index a query scans and its bounds.
fn bounds(
    t: &Table,
    query: &RowQuery,
) -> Result<(IndexId, Bound<Value>, Bound<Value>), QueryError> {
    let Some((column, raw)) = &query.filter else {
        return Ok((IndexId::PrimaryKey, Bound::Unbounded, Bound::Unbounded));
    };
    let (index, ty) = index_on(t.def(), column)?;
    let value = value_from_query(raw, ty).map_err(|reason| QueryError::BadValue {
        column: column.clone(),
        reason,
    })?;
    let key = t
        .index_key(index, vec![value])
        .map_err(|e| QueryError::Corrupt(e.to_string()))?;
    Ok((index, Bound::Included(key.clone()), Bound::Included(key)))
}

/// A table's rows as JSON objects, in primary-key order.
pub(crate) fn rows_json(t: &Table) -> Result<Vec<serde_json::Value>, QueryError> {
    t.iter().map(|row| json_of(row, t)).collect()
}

/// The row whose primary key is `key` (JSON of the key column's type).
pub(crate) fn get_json(
    t: &Table,
    key: &serde_json::Value,
) -> Result<Option<serde_json::Value>, QueryError> {
    let pk_type = &t.def().columns[t.def().primary_key as usize].ty;
    let pk = interstice_store::json::value_from_json(key, pk_type).map_err(QueryError::BadKey)?;
    t.get(&pk).map(|row| json_of(row, t)).transpose()
}

/// The row whose primary key is `key`, in the row encoding.
pub(crate) fn get_row(t: &Table, key: &Value) -> Option<RowBytes> {
    t.get(key).cloned()
}

/// Every module's every table: rows as JSON in primary-key order, and the
/// next auto-increment value.
pub(crate) fn state_json(catalog: &Catalog) -> Result<serde_json::Value, QueryError> {
    let mut out = serde_json::Map::new();
    for (name, entry) in &catalog.modules {
        let mut tables = serde_json::Map::new();
        for t in entry.tables.tables() {
            tables.insert(
                t.def().name.clone(),
                serde_json::json!({"rows": rows_json(t)?, "next_auto_inc": t.next_auto_inc()}),
            );
        }
        out.insert(name.clone(), serde_json::Value::Object(tables));
    }
    Ok(serde_json::Value::Object(out))
}

/// An index that finds the rows holding one value of `column`, and the
/// column's type: the primary key, an index over that column alone, or a
/// B-tree index whose first column it is (a prefix of its key).
pub fn index_on<'t>(
    table: &'t interstice_store::TableDef,
    column: &str,
) -> Result<(IndexId, &'t interstice_store::AlgebraicType), QueryError> {
    let not_indexed = || QueryError::NotIndexed {
        table: table.name.clone(),
        column: column.to_string(),
    };
    let col = table.column_index(column).ok_or_else(not_indexed)?;
    let ty = &table.columns[col].ty;
    if col == table.primary_key as usize {
        return Ok((IndexId::PrimaryKey, ty));
    }
    let col = col as u32;
    let alone = table.indexes.iter().position(|ix| ix.columns == [col]);
    let first = || {
        table.indexes.iter().position(|ix| {
            ix.kind == interstice_store::IndexKind::Btree && ix.columns.first() == Some(&col)
        })
    };
    let i = alone.or_else(first).ok_or_else(not_indexed)?;
    Ok((IndexId::Secondary(i), ty))
}

/// A column value from a query string: JSON of the column's type, or the
/// text itself as a JSON string when it is not JSON (`alice`, an identity's
/// hex, a timestamp) or when the column holds strings.
pub fn value_from_query(
    raw: &str,
    ty: &interstice_store::AlgebraicType,
) -> Result<interstice_store::Value, String> {
    use interstice_store::AlgebraicType;
    let base = match ty {
        AlgebraicType::Option(inner) => &**inner,
        other => other,
    };
    // Strings as typed; 128-bit integers as their digits, which a JSON
    // number (a float to serde_json) would round.
    let text_as_is = matches!(
        base,
        AlgebraicType::String | AlgebraicType::U128 | AlgebraicType::I128
    );
    let json = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::String(_)) => v,
        Ok(v) if !text_as_is => v,
        _ => serde_json::Value::String(raw.to_string()),
    };
    interstice_store::json::value_from_json(&json, ty)
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}` has no table named `{table}`")]
    UnknownTable { module: String, table: String },
    #[error("stored row does not decode: {0}")]
    Corrupt(String),
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("table `{table}` has no index on a column named `{column}`")]
    NotIndexed { table: String, column: String },
    #[error("bad value for column `{column}`: {reason}")]
    BadValue { column: String, reason: String },
    #[error(transparent)]
    Sql(#[from] interstice_sql::SqlError),
    #[error("the server follows {0} live queries already; subscribe to one of them, or try later")]
    TooManyLive(usize),
    #[error("the statement is not durable: {0}")]
    Durability(interstice_log::AppendError),
    /// One of several queries asked for at once failed.
    #[error("query {index}: {source}")]
    InQuery {
        /// Its position among the queries, from 0.
        index: usize,
        source: Box<QueryError>,
    },
    #[error("the database is unusable after an internal error in another thread")]
    Poisoned,
}

/// Who runs a SQL query: the module's owner and the operator read every
/// table, everyone else the public ones.
#[derive(Clone, Copy, Debug)]
pub enum Reader<'a> {
    Operator,
    Identity(&'a interstice_store::Identity),
    Anonymous,
}

impl Reader<'_> {
    /// Who may change the module's tables with SQL: the operator and the
    /// module's owner.
    pub(crate) fn writer(&self, def: &ModuleDef) -> Option<interstice_store::Identity> {
        match self {
            Reader::Operator => Some(interstice_store::Identity::operator()),
            Reader::Identity(id) if **id == def.owner() => Some(**id),
            Reader::Identity(_) | Reader::Anonymous => None,
        }
    }

    /// Which tables of the module it reads: every one for a writer, the
    /// public ones for everyone else.
    pub(crate) fn access(&self, def: &ModuleDef) -> interstice_sql::Access {
        match self.writer(def) {
            Some(_) => interstice_sql::Access::All,
            None => interstice_sql::Access::PublicOnly,
        }
    }
}

/// A new subscriber's start: the live query it follows, and its answer as
/// of transaction `tx_id`, rows of `table` under `def` (module version
/// `version`).
#[derive(Debug)]
pub struct LiveStart {
    pub query_id: u64,
    pub tx_id: u64,
    pub table: String,
    pub def: Arc<ModuleDef>,
    pub version: u32,
    pub rows: Vec<RowBytes>,
}

/// What a SQL query answered, as of transaction `tx_id`.
#[derive(Debug)]
pub struct SqlAnswer {
    pub tx_id: u64,
    pub columns: Vec<interstice_sql::Column>,
    pub rows: Vec<Vec<Value>>,
}

impl SqlAnswer {
    /// `{"tx_id": N, "columns": [{"name", "type"}], "rows": [[...]]}`,
    /// values as JSON of their column's type (docs/sql.md).
    pub fn to_json(&self) -> serde_json::Value {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": c.ty.to_string()}))
            .collect();
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                serde_json::Value::Array(
                    row.iter()
                        .zip(&self.columns)
                        .map(|(v, c)| value_to_json(v, &c.ty))
                        .collect(),
                )
            })
            .collect();
        serde_json::json!({"tx_id": self.tx_id, "columns": columns, "rows": rows})
    }
}
