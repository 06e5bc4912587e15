//! `INSERT`, `UPDATE` and `DELETE`: bound against one table, then turned
//! into the rows they change on the tables as they stand ([`changes`]).
//!
//! This crate never changes a table: it says what a statement would
//! change, and the caller applies that as one transaction (the runtime's
//! commit path, which logs it). Values are literals only; the rows an
//! `UPDATE` or `DELETE` touches are those a `SELECT * FROM t WHERE ...` with
//! the same condition answers, found through the same plan (and index).

use interstice_store::codec::decode_key;
use interstice_store::{AlgebraicType, TableDef, Value};
use sqlparser::ast::{self as ast, Expr as AstExpr};

use crate::bind::{self, Binder, Operand};
use crate::plan::Plan;
use crate::values::{Lit, base};
use crate::{Access, Budget, SqlError, Tables};

fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::Unsupported(what.into())
}

/// A statement that changes one table.
#[derive(Debug)]
pub struct Write {
    /// The table it changes.
    pub table: String,
    pub(crate) kind: WriteKind,
}

#[derive(Debug)]
pub(crate) enum WriteKind {
    /// Whole rows, one value per column, each fitting its column's type.
    Insert(Vec<Vec<Value>>),
    /// The rows `matching` answers (whole rows), with columns set.
    Update {
        matching: Plan,
        set: Vec<(usize, Value)>,
    },
    /// The rows `matching` answers.
    Delete { matching: Plan },
}

impl Write {
    /// The statement's verb, for messages.
    pub fn verb(&self) -> &'static str {
        match self.kind {
            WriteKind::Insert(_) => "INSERT",
            WriteKind::Update { .. } => "UPDATE",
            WriteKind::Delete { .. } => "DELETE",
        }
    }
}

/// What a [`Write`] changes: whole rows, as values in column order.
#[derive(Debug, Default)]
pub struct Changes {
    pub table: String,
    pub insert: Vec<Vec<Value>>,
    /// Old row, new row.
    pub update: Vec<(Vec<Value>, Vec<Value>)>,
    pub delete: Vec<Vec<Value>>,
}

impl Changes {
    /// Rows the statement inserts, changes or deletes.
    pub fn count(&self) -> usize {
        self.insert.len() + self.update.len() + self.delete.len()
    }
}

/// Binds an `INSERT`, `UPDATE` or `DELETE`; `None` for any other statement.
pub(crate) fn bind_write(
    tables: &dyn Tables,
    access: Access,
    statement: &ast::Statement,
) -> Result<Option<Write>, SqlError> {
    match statement {
        ast::Statement::Insert(i) => bind_insert(tables, access, i).map(Some),
        ast::Statement::Update(u) => bind_update(tables, access, u).map(Some),
        ast::Statement::Delete(d) => bind_delete(tables, access, d).map(Some),
        _ => Ok(None),
    }
}

/// The table a statement names, if `access` may change it.
fn target<'t>(
    tables: &'t dyn Tables,
    access: Access,
    name: &ast::ObjectName,
) -> Result<&'t TableDef, SqlError> {
    let id = bind::ident_name(name)?;
    let table = tables
        .table(&id.value)
        .ok_or_else(|| SqlError::UnknownTable(id.value.clone()))?;
    let def = table.def();
    if !crate::readable(access, def) {
        return Err(SqlError::Private(def.name.clone()));
    }
    Ok(def)
}

/// A literal value for column `col`: converted exactly to its type, or
/// refused. A string is read as JSON reads a value of the type (an enum's
/// variant name, an identity's hex, a timestamp), and for a struct, list or
/// enum with payload as JSON text (`'{"x": 1, "y": 2}'`).
fn value_for(def: &TableDef, col: usize, e: &AstExpr) -> Result<Value, SqlError> {
    let column = &def.columns[col];
    let ty = &column.ty;
    let not_literal = || {
        unsupported(format!(
            "`{e}` as the value of `{}`: values are literals",
            column.name
        ))
    };
    if matches!(
        e,
        AstExpr::Identifier(_) | AstExpr::CompoundIdentifier(_) | AstExpr::Function(_)
    ) {
        return Err(not_literal());
    }
    let lit = match Binder::empty().value(e)? {
        Operand::Lit(l) => l,
        Operand::Typed(..) => return Err(not_literal()),
    };
    let bad = |why: String| SqlError::Type(format!("column `{}` ({ty}): {why}", column.name));
    let value = match (&lit, base(ty)) {
        (Lit::Null, AlgebraicType::Option(_)) => Value::Null,
        (Lit::Null, _) => {
            return Err(bad(format!(
                "NULL is not a value of type {ty} (only option columns hold NULL)"
            )));
        }
        (
            Lit::Str(s),
            t @ (AlgebraicType::Product(_) | AlgebraicType::Sum(_) | AlgebraicType::Vec(_)),
        ) => {
            let as_string = serde_json::Value::String(s.clone());
            interstice_store::json::value_from_json(&as_string, t)
                .or_else(|first| match serde_json::from_str::<serde_json::Value>(s) {
                    Ok(json) => interstice_store::json::value_from_json(&json, t),
                    Err(_) => Err(first),
                })
                .map_err(bad)?
        }
        (Lit::Float(_), t) if crate::values::is_integer(t) => {
            return Err(bad(format!("{e} is not an integer")));
        }
        _ => lit.coerce(ty).map_err(bad)?,
    };
    if !value.fits(ty) {
        return Err(bad(format!("{e} is out of range")));
    }
    Ok(value)
}

/// The position of a column named in a statement.
fn column_of(def: &TableDef, name: &ast::ObjectName) -> Result<usize, SqlError> {
    let id = match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(id)] => id,
        _ => {
            return Err(unsupported(format!(
                "`{name}`: name a whole column (fields of a struct are set as the whole value)"
            )));
        }
    };
    def.columns
        .iter()
        .position(|c| bind::names(id, &c.name))
        .ok_or_else(|| SqlError::UnknownColumn(id.value.clone()))
}

fn bind_insert(tables: &dyn Tables, access: Access, i: &ast::Insert) -> Result<Write, SqlError> {
    let refused = i.or.is_some()
        || i.ignore
        || i.table_alias.is_some()
        || i.overwrite
        || !i.assignments.is_empty()
        || i.partitioned.is_some()
        || !i.after_columns.is_empty()
        || i.overriding.is_some()
        || i.on.is_some()
        || i.returning.is_some()
        || i.output.is_some()
        || i.replace_into
        || i.priority.is_some()
        || i.insert_alias.is_some()
        || i.settings.is_some()
        || i.format_clause.is_some()
        || i.multi_table_insert_type.is_some()
        || !i.multi_table_into_clauses.is_empty()
        || !i.multi_table_when_clauses.is_empty()
        || i.multi_table_else_clause.is_some();
    if refused {
        return Err(unsupported(
            "INSERT options (OR, IGNORE, ON CONFLICT, RETURNING, SET, ...); write INSERT INTO t (a, b) VALUES (...)",
        ));
    }
    let ast::TableObject::TableName(name) = &i.table else {
        return Err(unsupported("INSERT into a table function"));
    };
    let def = target(tables, access, name)?;
    let mut order = Vec::with_capacity(i.columns.len());
    for c in &i.columns {
        let col = column_of(def, c)?;
        if order.contains(&col) {
            return Err(SqlError::Type(format!(
                "column `{}` is named twice",
                def.columns[col].name
            )));
        }
        order.push(col);
    }
    if i.columns.is_empty() {
        order = (0..def.columns.len()).collect();
    }
    let Some(source) = &i.source else {
        return Err(unsupported("INSERT without VALUES"));
    };
    let values = match &*source.body {
        ast::SetExpr::Values(v)
            if source.with.is_none()
                && source.order_by.is_none()
                && source.limit_clause.is_none() =>
        {
            v
        }
        _ => return Err(unsupported("INSERT ... SELECT; list the rows with VALUES")),
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for given in &values.rows {
        let given = &given.content;
        if given.len() != order.len() {
            return Err(SqlError::Type(format!(
                "a row of {} values for {} columns",
                given.len(),
                order.len()
            )));
        }
        let mut row: Vec<Option<Value>> = vec![None; def.columns.len()];
        for (&col, e) in order.iter().zip(given) {
            row[col] = Some(value_for(def, col, e)?);
        }
        let row = row
            .into_iter()
            .enumerate()
            .map(|(col, v)| match v {
                Some(v) => Ok(v),
                None => omitted(def, col),
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(Write {
        table: def.name.clone(),
        kind: WriteKind::Insert(rows),
    })
}

/// The value of a column an `INSERT` leaves out: the next auto-increment
/// value (written as 0, which the table replaces), the column's default,
/// or NULL for an option column.
fn omitted(def: &TableDef, col: usize) -> Result<Value, SqlError> {
    let column = &def.columns[col];
    if def.auto_inc == Some(col as u32) {
        return Value::from_auto_inc(0, &column.ty)
            .ok_or_else(|| SqlError::Corrupt(format!("auto-increment column `{}`", column.name)));
    }
    match column.default_bytes() {
        Some(bytes) => decode_key(&bytes, &column.ty).map_err(|e| {
            SqlError::Corrupt(format!("the default of column `{}`: {e}", column.name))
        }),
        None => Err(SqlError::Type(format!(
            "column `{}` has no default: give it a value",
            column.name
        ))),
    }
}

fn bind_update(tables: &dyn Tables, access: Access, u: &ast::Update) -> Result<Write, SqlError> {
    if u.from.is_some()
        || u.returning.is_some()
        || u.output.is_some()
        || u.or.is_some()
        || !u.order_by.is_empty()
        || u.limit.is_some()
        || u.settings.is_some()
        || u.on_cluster.is_some()
        || !u.table.joins.is_empty()
    {
        return Err(unsupported(
            "UPDATE with FROM, joins, RETURNING, ORDER BY or LIMIT",
        ));
    }
    let ast::TableFactor::Table { name, alias, .. } = &u.table.relation else {
        return Err(unsupported("UPDATE of a subquery"));
    };
    if alias.is_some() {
        return Err(unsupported("an alias in UPDATE"));
    }
    let def = target(tables, access, name)?;
    let mut set: Vec<(usize, Value)> = Vec::with_capacity(u.assignments.len());
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(c) = &a.target else {
            return Err(unsupported("assigning a tuple of columns"));
        };
        let col = column_of(def, c)?;
        if set.iter().any(|(c, _)| *c == col) {
            return Err(SqlError::Type(format!(
                "column `{}` is set twice",
                def.columns[col].name
            )));
        }
        set.push((col, value_for(def, col, &a.value)?));
    }
    let matching = matching(tables, access, &u.table, u.selection.as_ref())?;
    Ok(Write {
        table: def.name.clone(),
        kind: WriteKind::Update { matching, set },
    })
}

fn bind_delete(tables: &dyn Tables, access: Access, d: &ast::Delete) -> Result<Write, SqlError> {
    if !d.tables.is_empty()
        || d.using.is_some()
        || d.returning.is_some()
        || d.output.is_some()
        || !d.order_by.is_empty()
        || d.limit.is_some()
        || d.settings.is_some()
        || d.on_cluster.is_some()
    {
        return Err(unsupported(
            "DELETE with USING, RETURNING, ORDER BY or LIMIT",
        ));
    }
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
    };
    let [table] = from.as_slice() else {
        return Err(unsupported("DELETE from more than one table"));
    };
    if !table.joins.is_empty() {
        return Err(unsupported("DELETE with joins"));
    }
    let ast::TableFactor::Table { name, alias, .. } = &table.relation else {
        return Err(unsupported("DELETE from a subquery"));
    };
    if alias.is_some() {
        return Err(unsupported("an alias in DELETE"));
    }
    let def = target(tables, access, name)?;
    let matching = matching(tables, access, table, d.selection.as_ref())?;
    Ok(Write {
        table: def.name.clone(),
        kind: WriteKind::Delete { matching },
    })
}

/// `SELECT * FROM table WHERE selection`, bound: the rows a statement
/// changes, found as a query would find them.
fn matching(
    tables: &dyn Tables,
    access: Access,
    table: &ast::TableWithJoins,
    selection: Option<&AstExpr>,
) -> Result<Plan, SqlError> {
    let template = bind::parse("SELECT * FROM t")?;
    let ast::Statement::Query(mut q) = template else {
        return Err(SqlError::Corrupt("the SELECT template".into()));
    };
    let ast::SetExpr::Select(select) = &mut *q.body else {
        return Err(SqlError::Corrupt("the SELECT template".into()));
    };
    select.from = vec![table.clone()];
    select.selection = selection.cloned();
    bind::bind_query(tables, access, &q)
}

/// What `write` changes on the tables as they stand: the rows its
/// condition matches, read within `budget`.
pub(crate) fn changes(
    tables: &dyn Tables,
    write: &Write,
    budget: &Budget,
) -> Result<Changes, SqlError> {
    let mut out = Changes {
        table: write.table.clone(),
        ..Changes::default()
    };
    match &write.kind {
        WriteKind::Insert(rows) => out.insert = rows.clone(),
        WriteKind::Update { matching, set } => {
            for old in crate::exec::run(tables, matching, budget)?.rows {
                let mut new = old.clone();
                for (col, v) in set {
                    new[*col] = v.clone();
                }
                out.update.push((old, new));
            }
        }
        WriteKind::Delete { matching } => {
            out.delete = crate::exec::run(tables, matching, budget)?.rows;
        }
    }
    Ok(out)
}
