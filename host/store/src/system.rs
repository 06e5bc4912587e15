//! The tables the host keeps inside a module's definition, beside the
//! guest's own, and the rules of schedule tables.
//!
//! - `st_client`, the sessions open on the module. A module that declares
//!   a `client_connected` or `client_disconnected` reducer gets it when it
//!   is published. Its rows are written by the host in the same
//!   transaction as the lifecycle reducer, so a crash cannot lose the set
//!   of open sessions: at the next start the server ends each one with
//!   `client_disconnected`.
//! - `st_schedule`, when each row of the module's schedule tables is due
//!   next. A module with a schedule table gets it. The host writes an entry
//!   in the transaction that inserts, changes or deletes a schedule row,
//!   and moves or removes it in the transaction that runs the row. An
//!   index on `next_at` finds what is due without a scan.
//!
//! Both are logged, snapshotted and replayed like any table, and come after
//! the guest's tables (`st_client` first), so the ids guests use stop
//! before them. Guests never see them.

use std::sync::Arc;

use crate::error::SchemaError;
use crate::schema::{ColumnDef, IndexDef, ModuleDef, ReducerKind, TableDef};
use crate::types::{AlgebraicType, Field, ProductType, SumType, Variant, VariantShape};
use crate::value::Value;

/// The name of the sessions table. No guest may declare a table by it.
pub const SESSIONS_TABLE: &str = "st_client";

/// The name of the schedule table. No guest may declare a table by it.
pub const SCHEDULE_TABLE: &str = "st_schedule";

/// The type of a schedule table's `scheduled_at` column.
pub const SCHEDULE_AT: &str = "ScheduleAt";

/// Shortest interval of a repeating schedule, in microseconds (1 ms).
pub const INTERVAL_MIN_MICROS: i64 = 1_000;

/// `st_client`: `connection_id: u64` (primary key, auto-increment),
/// `identity: identity`, `connected_at: timestamp`. Private.
pub fn sessions_table() -> TableDef {
    TableDef {
        name: SESSIONS_TABLE.to_string(),
        columns: vec![
            ColumnDef::new("connection_id", AlgebraicType::U64),
            ColumnDef::new("identity", AlgebraicType::Identity),
            ColumnDef::new("connected_at", AlgebraicType::Timestamp),
        ],
        primary_key: 0,
        auto_inc: Some(0),
        indexes: vec![],
        ephemeral: false,
        public: false,
        scheduled: None,
    }
}

/// `st_schedule`: `key: string` (primary key, `TABLE/SCHEDULED_ID`),
/// `table: string`, `scheduled_id: u64`, `next_at: timestamp` (B-tree
/// index `next_at`), `every: duration` (the interval; 0 for a one-shot
/// row). Private.
pub fn schedule_table() -> TableDef {
    TableDef {
        name: SCHEDULE_TABLE.to_string(),
        columns: vec![
            ColumnDef::new("key", AlgebraicType::String),
            ColumnDef::new("table", AlgebraicType::String),
            ColumnDef::new("scheduled_id", AlgebraicType::U64),
            ColumnDef::new("next_at", AlgebraicType::Timestamp),
            ColumnDef::new("every", AlgebraicType::Duration),
        ],
        primary_key: 0,
        auto_inc: None,
        indexes: vec![IndexDef::btree("next_at", 3, false)],
        ephemeral: false,
        public: false,
        scheduled: None,
    }
}

/// The primary key of a row's entry in `st_schedule`.
pub fn schedule_key(table: &str, scheduled_id: u64) -> String {
    format!("{table}/{scheduled_id}")
}

/// `ScheduleAt`: `Time(timestamp)`, run once at that time, or
/// `Interval(duration)`, run every so often.
pub fn schedule_at_type() -> AlgebraicType {
    let tuple = |name: &str, ty: AlgebraicType| Variant {
        name: name.to_string(),
        shape: VariantShape::Tuple,
        fields: vec![Field {
            name: "0".to_string(),
            ty,
        }],
    };
    AlgebraicType::Sum(Arc::new(SumType {
        name: SCHEDULE_AT.to_string(),
        variants: vec![
            tuple("Time", AlgebraicType::Timestamp),
            tuple("Interval", AlgebraicType::Duration),
        ],
    }))
}

/// A `scheduled_at` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleAt {
    /// Once, at this many microseconds since the Unix epoch.
    Time(i64),
    /// Every this many microseconds.
    Interval(i64),
}

impl ScheduleAt {
    /// The value of a `scheduled_at` column, once its row decoded.
    pub fn from_value(value: &Value) -> Option<ScheduleAt> {
        match value {
            Value::Sum { tag: 0, fields } => match fields.as_ref() {
                [Value::Timestamp(t)] => Some(ScheduleAt::Time(*t)),
                _ => None,
            },
            Value::Sum { tag: 1, fields } => match fields.as_ref() {
                [Value::Duration(d)] => Some(ScheduleAt::Interval(*d)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl ModuleDef {
    /// Whether the module runs reducers on sessions, and so keeps them.
    pub fn has_lifecycle(&self) -> bool {
        self.reducers.iter().any(|r| {
            matches!(
                r.kind,
                ReducerKind::ClientConnected | ReducerKind::ClientDisconnected
            )
        })
    }

    /// Whether the module has a schedule table, and so keeps `st_schedule`.
    pub fn has_schedules(&self) -> bool {
        self.tables.iter().any(|t| t.scheduled.is_some())
    }

    /// A guest's definition as the host records it: with `st_client`
    /// appended when the module has lifecycle reducers, then `st_schedule`
    /// when it has schedule tables. Refuses a guest table of either name.
    pub fn with_system_tables(mut self) -> Result<ModuleDef, SchemaError> {
        for reserved in [SESSIONS_TABLE, SCHEDULE_TABLE] {
            if self.tables.iter().any(|t| t.name == reserved) {
                return Err(SchemaError::Invalid(format!(
                    "table name `{reserved}` is reserved for the host"
                )));
            }
        }
        if self.has_lifecycle() {
            self.tables.push(sessions_table());
        }
        if self.has_schedules() {
            self.tables.push(schedule_table());
        }
        Ok(self)
    }

    /// The id of a host table among the last two.
    fn system_table_id(&self, name: &str) -> Option<u32> {
        let n = self.tables.len();
        (n.saturating_sub(2)..n)
            .find(|&i| self.tables[i].name == name)
            .map(|i| i as u32)
    }

    /// The id of `st_client`, when the module keeps sessions.
    pub fn sessions_table_id(&self) -> Option<u32> {
        self.system_table_id(SESSIONS_TABLE)
    }

    /// The id of `st_schedule`, when the module has schedule tables.
    pub fn schedule_table_id(&self) -> Option<u32> {
        self.system_table_id(SCHEDULE_TABLE)
    }

    /// How many tables the guest declared: the ids it may use.
    pub fn guest_table_count(&self) -> usize {
        self.tables.len()
            - usize::from(self.sessions_table_id().is_some())
            - usize::from(self.schedule_table_id().is_some())
    }

    /// Whether table `id` is one the host keeps.
    pub fn is_system_table(&self, id: u32) -> bool {
        id as usize >= self.guest_table_count() && (id as usize) < self.tables.len()
    }
}

/// A recorded definition holds `st_client` exactly when it has lifecycle
/// reducers and `st_schedule` exactly when it has schedule tables, after
/// the guest's tables in that order and exactly as [`sessions_table`] and
/// [`schedule_table`] say; and each schedule table follows the rules of
/// [`check_schedule_table`].
pub(crate) fn check(def: &ModuleDef) -> Result<(), SchemaError> {
    let expected: Vec<TableDef> = [
        def.has_lifecycle().then(sessions_table),
        def.has_schedules().then(schedule_table),
    ]
    .into_iter()
    .flatten()
    .collect();
    let guest = def.tables.len().checked_sub(expected.len());
    let ok = guest.is_some_and(|guest| {
        def.tables[guest..] == expected[..]
            && def.tables[..guest]
                .iter()
                .all(|t| t.name != SESSIONS_TABLE && t.name != SCHEDULE_TABLE)
    });
    if !ok {
        return Err(SchemaError::Invalid(format!(
            "tables `{SESSIONS_TABLE}` and `{SCHEDULE_TABLE}` are the host's: they come last, \
             `{SESSIONS_TABLE}` in a module with lifecycle reducers, `{SCHEDULE_TABLE}` in one \
             with schedule tables, and in no other"
        )));
    }
    for table in &def.tables {
        if table.scheduled.is_some() {
            check_schedule_table(def, table)?;
        }
    }
    Ok(())
}

/// A schedule table has a `scheduled_id: u64` primary key that is its
/// auto-increment column and a `scheduled_at: ScheduleAt` column, is not
/// ephemeral, and names a normal reducer whose one parameter is the
/// table's row (a struct of the same fields, in the same order).
fn check_schedule_table(def: &ModuleDef, table: &TableDef) -> Result<(), SchemaError> {
    let reducer_name = table.scheduled.as_deref().unwrap_or_default();
    let bad = |why: String| {
        Err(SchemaError::Invalid(format!(
            "schedule table `{}`: {why}",
            table.name
        )))
    };
    let id = table.column_index("scheduled_id");
    let at = table.column_index("scheduled_at");
    match id {
        Some(i)
            if table.columns[i].ty == AlgebraicType::U64
                && table.primary_key as usize == i
                && table.auto_inc == Some(i as u32) => {}
        _ => return bad("needs `#[primary_key] #[auto_inc] scheduled_id: u64`".into()),
    }
    match at {
        Some(i) if table.columns[i].ty == schedule_at_type() => {}
        _ => return bad("needs a column `scheduled_at: ScheduleAt`".into()),
    }
    if table.ephemeral {
        return bad("is ephemeral; schedules must survive a restart".into());
    }
    let Some(reducer) = def.reducers.iter().find(|r| r.name == reducer_name) else {
        return bad(format!(
            "names reducer `{reducer_name}`, which the module lacks"
        ));
    };
    if reducer.kind != ReducerKind::Normal {
        return bad(format!(
            "names the {} reducer `{reducer_name}`",
            reducer.kind.name()
        ));
    }
    let row = ProductType {
        name: String::new(),
        fields: table
            .columns
            .iter()
            .map(|c| Field {
                name: c.name.clone(),
                ty: c.ty.clone(),
            })
            .collect(),
    };
    let takes_row = match reducer.params.as_slice() {
        [p] => matches!(&p.ty, AlgebraicType::Product(t) if t.fields == row.fields),
        _ => false,
    };
    if !takes_row {
        return bad(format!(
            "reducer `{reducer_name}` must take one parameter: the table's row"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ABI_VERSION, ReducerDef};

    fn module(kinds: &[ReducerKind]) -> ModuleDef {
        let mut table = sessions_table();
        table.name = "things".into();
        ModuleDef {
            abi_version: ABI_VERSION,
            tables: vec![table],
            reducers: kinds
                .iter()
                .enumerate()
                .map(|(i, &kind)| ReducerDef {
                    name: format!("r{i}"),
                    params: vec![],
                    kind,
                })
                .collect(),
            owner: None,
        }
    }

    #[test]
    fn only_modules_with_lifecycle_reducers_get_the_sessions_table() {
        let plain = module(&[ReducerKind::Normal]).with_system_tables().unwrap();
        assert_eq!(plain.tables.len(), 1);
        assert_eq!(plain.sessions_table_id(), None);
        assert_eq!(plain.guest_table_count(), 1);
        plain.validate().unwrap();
        for kind in [
            ReducerKind::ClientConnected,
            ReducerKind::ClientDisconnected,
        ] {
            let def = module(&[ReducerKind::Normal, kind])
                .with_system_tables()
                .unwrap();
            assert_eq!(def.sessions_table_id(), Some(1));
            assert_eq!(def.guest_table_count(), 1);
            assert!(def.is_system_table(1) && !def.is_system_table(0));
            def.validate().unwrap();
        }
    }

    #[test]
    fn the_sessions_table_is_the_hosts_alone() {
        // A guest may not declare it.
        let mut def = module(&[ReducerKind::ClientConnected]);
        def.tables.push(sessions_table());
        let e = def.clone().with_system_tables().unwrap_err().to_string();
        assert!(e.contains("reserved for the host"), "{e}");
        // A recorded definition holds it last, unchanged, and only with
        // lifecycle reducers.
        def.validate().unwrap();
        def.tables.swap(0, 1);
        assert!(def.validate().is_err());
        def.tables.swap(0, 1);
        def.tables[1].public = true;
        assert!(def.validate().is_err());
        let mut plain = module(&[ReducerKind::Normal]);
        plain.tables.push(sessions_table());
        assert!(plain.validate().is_err());
        let two = module(&[ReducerKind::ClientConnected, ReducerKind::ClientConnected]);
        let e = two.validate().unwrap_err().to_string();
        assert!(e.contains("2 client_connected reducers"), "{e}");
    }

    fn reminders(reducer_param: AlgebraicType) -> ModuleDef {
        let table = TableDef {
            name: "reminders".into(),
            columns: vec![
                ColumnDef::new("scheduled_id", AlgebraicType::U64),
                ColumnDef::new("scheduled_at", schedule_at_type()),
                ColumnDef::new("text", AlgebraicType::String),
            ],
            primary_key: 0,
            auto_inc: Some(0),
            indexes: vec![],
            ephemeral: false,
            public: false,
            scheduled: Some("remind".into()),
        };
        ModuleDef {
            abi_version: ABI_VERSION,
            tables: vec![table],
            reducers: vec![ReducerDef {
                name: "remind".into(),
                params: vec![crate::schema::ParamDef {
                    name: "row".into(),
                    ty: reducer_param,
                }],
                kind: ReducerKind::Normal,
            }],
            owner: None,
        }
    }

    fn row_type(def: &ModuleDef) -> AlgebraicType {
        AlgebraicType::Product(Arc::new(ProductType {
            name: "Reminder".into(),
            fields: def.tables[0]
                .columns
                .iter()
                .map(|c| Field {
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                })
                .collect(),
        }))
    }

    #[test]
    fn a_schedule_table_gets_st_schedule_and_follows_its_rules() {
        let def = reminders(AlgebraicType::U64);
        let def = reminders(row_type(&def)).with_system_tables().unwrap();
        assert_eq!(def.schedule_table_id(), Some(1));
        assert_eq!(def.sessions_table_id(), None);
        assert_eq!(def.guest_table_count(), 1);
        def.validate().unwrap();

        // With lifecycle reducers too: st_client, then st_schedule.
        let mut both = reminders(row_type(&def));
        both.reducers.push(ReducerDef {
            name: "hello".into(),
            params: vec![],
            kind: ReducerKind::ClientConnected,
        });
        let both = both.with_system_tables().unwrap();
        assert_eq!(both.sessions_table_id(), Some(1));
        assert_eq!(both.schedule_table_id(), Some(2));
        assert_eq!(both.guest_table_count(), 1);
        assert!(both.is_system_table(1) && both.is_system_table(2));
        both.validate().unwrap();
        let mut swapped = both.clone();
        swapped.tables.swap(1, 2);
        assert!(swapped.validate().is_err());

        let refused = |change: &dyn Fn(&mut ModuleDef), why: &str| {
            let mut bad = def.clone();
            change(&mut bad);
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        };
        refused(
            &|d| d.tables[0].auto_inc = None,
            "#[auto_inc] scheduled_id: u64",
        );
        refused(
            &|d| d.tables[0].columns[1].ty = AlgebraicType::Timestamp,
            "scheduled_at: ScheduleAt",
        );
        refused(&|d| d.tables[0].ephemeral = true, "is ephemeral");
        refused(
            &|d| d.tables[0].scheduled = Some("nobody".into()),
            "names reducer `nobody`",
        );
        refused(
            &|d| d.reducers[0].params[0].ty = AlgebraicType::U64,
            "must take one parameter: the table's row",
        );
        refused(
            &|d| d.reducers[0].params.clear(),
            "must take one parameter: the table's row",
        );
        // Without its st_schedule, a definition is not as the host records it.
        refused(&|d| drop(d.tables.pop()), "are the host's");
        // A guest may not name a table st_schedule.
        let mut guest = reminders(row_type(&def));
        guest.tables.push(schedule_table());
        let e = guest.with_system_tables().unwrap_err().to_string();
        assert!(e.contains("reserved for the host"), "{e}");
    }

    #[test]
    fn schedule_at_values_read_back() {
        let time = Value::Sum {
            tag: 0,
            fields: vec![Value::Timestamp(5)].into(),
        };
        let every = Value::Sum {
            tag: 1,
            fields: vec![Value::Duration(7)].into(),
        };
        assert_eq!(ScheduleAt::from_value(&time), Some(ScheduleAt::Time(5)));
        assert_eq!(
            ScheduleAt::from_value(&every),
            Some(ScheduleAt::Interval(7))
        );
        assert_eq!(ScheduleAt::from_value(&Value::U64(1)), None);
    }
}
