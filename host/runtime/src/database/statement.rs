//! One SQL statement on the held database (docs/sql.md). A query answers
//! from the state as it stands. An `INSERT`, `UPDATE` or `DELETE`, which
//! only the module's owner and the operator may run, is one transaction
//! through the commit path like any call: its rows change in a transaction
//! of the store that commits or rolls back whole, schedule rows it touches
//! keep `st_schedule` up to date, and its record (kind 5: the statement's
//! text and the rows it changed) is durable before it is answered.

use interstice_sql::{Budget, Changes, SqlError, Statement};
use interstice_store::{AlgebraicType, ModuleDef, Tables, TxLog, Value, codec};

use super::catalog::Catalog;
use super::commit::{Change, Draft, Pending, Pipeline};
use super::live::ModuleTables;
use super::query::{QueryError, Reader, SqlAnswer};
use super::schedule;
use crate::caller::Caller;

/// Runs `text` as `reader`. A write comes back with its transaction, to be
/// made durable once the database is let go.
pub(crate) fn run<'l>(
    catalog: &mut Catalog,
    pipeline: &'l Pipeline,
    module: &str,
    text: &str,
    reader: Reader<'_>,
    budget: &Budget,
) -> Result<(SqlAnswer, Option<Pending<'l>>), QueryError> {
    let entry = catalog
        .modules
        .get(module)
        .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
    let writer = reader.writer(&entry.def);
    let access = reader.access(&entry.def);
    let tables = ModuleTables {
        def: &entry.def,
        tables: &entry.tables,
    };
    let write = match interstice_sql::prepare_statement(&tables, access, text)? {
        Statement::Query { plan, explain } => {
            let answer = interstice_sql::answer(&tables, &plan, explain, budget)?;
            let answer = SqlAnswer {
                tx_id: catalog.clock.last_tx_id(),
                columns: answer.columns,
                rows: answer.rows,
            };
            return Ok((answer, None));
        }
        Statement::Write(write) => write,
    };
    let Some(by) = writer else {
        return Err(SqlError::ReadOnly(write.verb()).into());
    };
    pipeline.writable().map_err(QueryError::Durability)?;
    let changes = interstice_sql::changes(&tables, &write, budget)?;
    let changed = changes.count() as u64;
    let owner = entry.def.owner();
    let ctx = catalog.clock.next(&Caller::identity(by), owner, module);
    let entry = catalog
        .modules
        .get_mut(module)
        .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
    let mut tx = TxLog::new();
    if let Err(e) = apply(
        &entry.def,
        &mut entry.tables,
        &mut tx,
        &changes,
        ctx.timestamp_micros,
    ) {
        entry.tables.rollback(&mut tx);
        return Err(e);
    }
    let mutations = entry.tables.commit(&mut tx);
    let tables = ModuleTables {
        def: &entry.def,
        tables: &entry.tables,
    };
    let queries = catalog.live.evaluate(module, tables, &mutations);
    let draft = Draft {
        ctx: &ctx,
        module,
        change: Change::Sql { text },
        reducer: "",
        mutations: &mutations,
        def: Some(&entry.def),
        queries,
    };
    let has_schedules = entry.def.has_schedules();
    let pending = pipeline
        .commit(&mut catalog.clock, draft, false)
        .map_err(QueryError::Durability)?;
    if has_schedules {
        catalog.scheduler.wake();
    }
    let answer = SqlAnswer {
        tx_id: ctx.tx_id,
        columns: vec![interstice_sql::Column {
            name: "rows_changed".to_string(),
            ty: AlgebraicType::U64,
        }],
        rows: vec![vec![Value::U64(changed)]],
    };
    Ok((answer, Some(pending)))
}

/// Applies what a write changes, in `tx`: deletions first, then updates
/// (one that moves a row to another primary key deletes the old row before
/// any new one is inserted), then insertions.
fn apply(
    def: &ModuleDef,
    tables: &mut Tables,
    tx: &mut TxLog,
    changes: &Changes,
    now: i64,
) -> Result<(), QueryError> {
    let id = def
        .table_id(&changes.table)
        .ok_or_else(|| SqlError::UnknownTable(changes.table.clone()))?;
    if id as usize >= def.guest_table_count() {
        return Err(SqlError::Refused(format!(
            "`{}` is kept by the host; change it through the module's reducers",
            changes.table
        ))
        .into());
    }
    let table = &def.tables[id as usize];
    let types = table.column_types();
    let pk = table.primary_key as usize;
    let refused = |e: interstice_store::DbError| QueryError::from(SqlError::Refused(e.to_string()));
    let key = |row: &[Value]| {
        let mut out = Vec::new();
        codec::encode_value(&row[pk], &types[pk], &mut out);
        out
    };
    for old in &changes.delete {
        tables.delete(tx, id, &key(old)).map_err(refused)?;
    }
    let (moved, in_place): (Vec<_>, Vec<_>) = changes
        .update
        .iter()
        .partition(|(old, new)| old[pk] != new[pk]);
    for (old, _) in &moved {
        tables.delete(tx, id, &key(old)).map_err(refused)?;
    }
    for (_, new) in &moved {
        tables
            .insert(tx, id, &codec::encode_row(new, &types))
            .map_err(refused)?;
    }
    for (_, new) in &in_place {
        tables
            .update(tx, id, &codec::encode_row(new, &types))
            .map_err(refused)?;
    }
    for row in &changes.insert {
        tables
            .insert(tx, id, &codec::encode_row(row, &types))
            .map_err(refused)?;
    }
    schedule::track(def, tables, tx, 0, now)
        .map_err(|e| QueryError::from(SqlError::Refused(e.to_string())))
}
