//! Schema evolution: what changes between two versions of a module's
//! definition, and how the tables of the old version become the tables of
//! the new one.
//!
//! Both halves are deterministic functions of the two definitions (and the
//! old tables), so replay recomputes a migration from the log instead of
//! logging every migrated row (`docs/migrations.md`).

use crate::codec;
use crate::error::DbError;
use crate::schema::{ColumnDef, IndexDef, ModuleDef, ReducerKind, TableDef};
use crate::tables::Tables;
use crate::types::{TypeChange, type_change};
use crate::value::Value;

/// Where one column of a carried table gets its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnSource {
    /// The old table's column at this position.
    Old(usize),
    /// This encoded value, for every row.
    Default(Vec<u8>),
}

/// Where one table of the new definition gets its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableSource {
    /// A table the old version did not have: it starts empty.
    New,
    /// The old table `from`'s rows, converted column by column.
    Carry {
        from: u32,
        columns: Vec<ColumnSource>,
    },
    /// The old table `from` changed beyond what the host converts (a column
    /// changed type, the primary key changed, a required column came
    /// without a default, or the table is ephemeral): it starts empty.
    Reset { from: u32 },
}

/// What publishing `new` over `old` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Indexed by the new definition's table ids.
    pub tables: Vec<TableSource>,
    /// Changes that migrate automatically, one line each.
    pub additive: Vec<String>,
    /// Changes that lose data or break callers, one line each: publication
    /// needs `--clear` or a migration reducer.
    pub breaking: Vec<String>,
}

impl Plan {
    /// Whether the new version may replace the old one without the
    /// operator's or the module author's say-so.
    pub fn is_additive(&self) -> bool {
        self.breaking.is_empty()
    }
}

/// Compares two validated definitions of one module.
pub fn plan(old: &ModuleDef, new: &ModuleDef) -> Plan {
    let mut additive = Vec::new();
    let mut breaking = Vec::new();
    let mut tables = Vec::with_capacity(new.tables.len());
    for t in &new.tables {
        match old.table_id(&t.name) {
            None => {
                additive.push(format!("table `{}` added", t.name));
                tables.push(TableSource::New);
            }
            Some(from) => {
                let source = plan_table(
                    from,
                    &old.tables[from as usize],
                    t,
                    &mut additive,
                    &mut breaking,
                );
                tables.push(source);
            }
        }
    }
    for t in &old.tables {
        if new.table_id(&t.name).is_none() {
            if t.name == crate::system::SESSIONS_TABLE {
                // The host's own table: a module without lifecycle reducers
                // has no sessions to end.
                additive.push(format!(
                    "table `{}` removed: the module no longer has lifecycle reducers",
                    t.name
                ));
            } else if t.name == crate::system::SCHEDULE_TABLE {
                additive.push(format!(
                    "table `{}` removed: the module no longer has schedule tables",
                    t.name
                ));
            } else {
                breaking.push(format!("table `{}` removed, with all its rows", t.name));
            }
        }
    }
    // Init and migration reducers run only at publication: they are not
    // part of what callers see.
    let callable = |d: &ModuleDef| {
        d.reducers
            .iter()
            .filter(|r| r.kind == ReducerKind::Normal)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (old_r, new_r) = (callable(old), callable(new));
    for r in &new_r {
        match old_r.iter().find(|o| o.name == r.name) {
            None => additive.push(format!("reducer `{}` added", r.name)),
            Some(o) if o.params != r.params => breaking.push(format!(
                "reducer `{}` changes its parameters from ({}) to ({})",
                r.name,
                params(&o.params),
                params(&r.params)
            )),
            Some(_) => {}
        }
    }
    for o in &old_r {
        if !new_r.iter().any(|r| r.name == o.name) {
            breaking.push(format!("reducer `{}` removed", o.name));
        }
    }
    Plan {
        tables,
        additive,
        breaking,
    }
}

fn params(p: &[crate::schema::ParamDef]) -> String {
    p.iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares one table of the old definition with its namesake in the new
/// one: notes every change, then says where the new table's rows come from.
fn plan_table(
    from: u32,
    old: &TableDef,
    new: &TableDef,
    additive: &mut Vec<String>,
    breaking: &mut Vec<String>,
) -> TableSource {
    let mut notes = Notes {
        table: &new.name,
        additive,
        breaking,
    };
    let key_reset = key_changes(old, new, &mut notes);
    let (columns, column_reset) = column_sources(old, new, &mut notes);
    removed_columns(old, new, &mut notes);
    index_changes(old, new, &mut notes);
    if key_reset || column_reset || new.ephemeral {
        TableSource::Reset { from }
    } else {
        TableSource::Carry { from, columns }
    }
}

/// Where the lines a table's comparison finds go.
struct Notes<'a> {
    table: &'a str,
    additive: &'a mut Vec<String>,
    breaking: &'a mut Vec<String>,
}

/// Logging, primary key and auto-increment. Returns whether the rows cannot
/// be carried (the primary key changed).
fn key_changes(old: &TableDef, new: &TableDef, notes: &mut Notes<'_>) -> bool {
    let name = notes.table;
    if old.ephemeral != new.ephemeral {
        notes.breaking.push(format!(
            "table `{name}` becomes {}",
            if new.ephemeral { "ephemeral" } else { "logged" }
        ));
    }
    if old.public != new.public {
        notes.additive.push(format!(
            "table `{name}` becomes {}",
            if new.public { "public" } else { "private" }
        ));
    }
    if old.scheduled != new.scheduled {
        notes.additive.push(match &new.scheduled {
            Some(r) => format!("table `{name}` is a schedule table run by `{r}`"),
            None => format!("table `{name}` is no longer a schedule table"),
        });
    }
    let mut reset = false;
    let old_pk = &old.columns[old.primary_key as usize].name;
    let new_pk = &new.columns[new.primary_key as usize].name;
    if old_pk != new_pk {
        notes.breaking.push(format!(
            "table `{name}`: primary key changes from `{old_pk}` to `{new_pk}`"
        ));
        reset = true;
    }
    let auto = |t: &TableDef| t.auto_inc.map(|c| t.columns[c as usize].name.clone());
    if auto(old) != auto(new) {
        notes
            .breaking
            .push(format!("table `{name}`: auto-increment column changes"));
    }
    reset
}

/// Where each column of `new` gets its values, and whether some column
/// cannot get them from the old rows (a changed type, or a required column
/// without a default), so that the table must start empty.
fn column_sources(
    old: &TableDef,
    new: &TableDef,
    notes: &mut Notes<'_>,
) -> (Vec<ColumnSource>, bool) {
    let name = notes.table;
    let mut columns = Vec::with_capacity(new.columns.len());
    let mut reset = false;
    // Whether every column added so far came with a default: a defaulted
    // column after one that did not is not appended to carried rows.
    let mut appended = true;
    for (i, c) in new.columns.iter().enumerate() {
        match old.column_index(&c.name) {
            Some(j) => match carried(&old.columns[j], j, c, i, notes) {
                Some(source) => columns.push(source),
                None => reset = true,
            },
            None => match c.default_bytes() {
                Some(bytes) => {
                    if i >= old.columns.len() && appended {
                        notes.additive.push(format!(
                            "table `{name}`: column `{}` ({}) added",
                            c.name, c.ty
                        ));
                    } else {
                        notes.breaking.push(format!(
                            "table `{name}`: column `{}` added before existing columns",
                            c.name
                        ));
                    }
                    columns.push(ColumnSource::Default(bytes));
                }
                None => {
                    appended = false;
                    notes.breaking.push(format!(
                        "table `{name}`: required column `{}` added without a default",
                        c.name
                    ));
                    reset = true;
                }
            },
        }
    }
    (columns, reset)
}

/// Where column `c` (at `i` in the new table) gets its values from its
/// namesake `from` (at `j` in the old one); `None` when the old values do not
/// carry over.
fn carried(
    from: &ColumnDef,
    j: usize,
    c: &ColumnDef,
    i: usize,
    notes: &mut Notes<'_>,
) -> Option<ColumnSource> {
    let name = notes.table;
    match type_change(&from.ty, &c.ty) {
        TypeChange::Same => {}
        TypeChange::Extended(added) => {
            for what in added {
                notes
                    .additive
                    .push(format!("table `{name}`: column `{}`: {what}", c.name));
            }
        }
        TypeChange::Breaking(why) => {
            let detail = why.map(|w| format!(" ({w})")).unwrap_or_default();
            notes.breaking.push(format!(
                "table `{name}`: column `{}` changes type from {} to {}{detail}",
                c.name, from.ty, c.ty
            ));
            return None;
        }
    }
    if i != j {
        notes.breaking.push(format!(
            "table `{name}`: column `{}` moves from position {j} to {i}",
            c.name
        ));
    }
    Some(ColumnSource::Old(j))
}

fn removed_columns(old: &TableDef, new: &TableDef, notes: &mut Notes<'_>) {
    for c in &old.columns {
        if new.column_index(&c.name).is_none() {
            notes.breaking.push(format!(
                "table `{}`: column `{}` removed, with its values",
                notes.table, c.name
            ));
        }
    }
}

/// Indexes hold no data of their own: the new version's are built from its
/// rows, so adding, removing or changing an index is additive (a new unique
/// index over duplicate values fails in [`apply`]).
fn index_changes(old: &TableDef, new: &TableDef, notes: &mut Notes<'_>) {
    let name = notes.table;
    let describe = |t: &TableDef, i: &IndexDef| {
        let columns: Vec<&str> = i
            .columns
            .iter()
            .map(|c| t.columns[*c as usize].name.as_str())
            .collect();
        format!(
            "{}{} index `{}` on ({})",
            if i.unique { "unique " } else { "" },
            i.kind,
            i.name,
            columns.join(", ")
        )
    };
    for i in &new.indexes {
        match old.indexes.iter().find(|o| o.name == i.name) {
            None => notes
                .additive
                .push(format!("table `{name}`: {} added", describe(new, i))),
            Some(o) => {
                let (before, after) = (describe(old, o), describe(new, i));
                if before != after {
                    notes
                        .additive
                        .push(format!("table `{name}`: {before} becomes {after}"));
                }
            }
        }
    }
    for o in &old.indexes {
        if !new.indexes.iter().any(|i| i.name == o.name) {
            notes
                .additive
                .push(format!("table `{name}`: {} removed", describe(old, o)));
        }
    }
}

/// Builds the new version's tables from the old version's, as `plan` says.
/// The old tables are not changed. Fails when a carried row breaks a
/// constraint of the new definition (a new unique index over duplicate
/// values).
pub fn apply(plan: &Plan, old: &Tables, new: &ModuleDef) -> Result<Tables, DbError> {
    let mut tables = Tables::new(new);
    for (id, source) in plan.tables.iter().enumerate() {
        let TableSource::Carry { from, columns } = source else {
            continue;
        };
        let old_table = old.table(*from)?;
        let old_types = old_table.def().column_types();
        let new_def = &new.tables[id];
        let new_types = new_def.column_types();
        let invalid = |source| DbError::InvalidRow {
            table: new_def.name.clone(),
            source,
        };
        let defaults: Vec<Option<Value>> = columns
            .iter()
            .zip(&new_types)
            .map(|(c, ty)| match c {
                ColumnSource::Default(bytes) => codec::decode_key(bytes, ty).map(Some),
                ColumnSource::Old(_) => Ok(None),
            })
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        let rows = old_table.iter().map(|row| {
            let values = codec::decode_row(row, &old_types).map_err(invalid)?;
            let converted: Vec<Value> = columns
                .iter()
                .zip(&defaults)
                .map(|(c, d)| match c {
                    ColumnSource::Old(j) => values[*j].clone(),
                    ColumnSource::Default(_) => d.clone().unwrap_or(Value::Null),
                })
                .collect();
            Ok(crate::table::RowBytes::from(codec::encode_row(
                &converted, &new_types,
            )))
        });
        let same_counter = old_table
            .def()
            .auto_inc
            .map(|c| &old_table.def().columns[c as usize].name)
            == new_def.auto_inc.map(|c| &new_def.columns[c as usize].name);
        let counter = if same_counter {
            old_table.next_auto_inc()
        } else {
            1
        };
        tables.bulk_load(id as u32, rows, counter)?;
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ABI_VERSION, IndexDef, IndexKind, ParamDef, ReducerDef};
    use crate::tables::TxLog;
    use crate::types::{AlgebraicType, Field, Variant, VariantShape};

    /// A change to the base definition, named by the line it should cause.
    type Change = Box<dyn FnOnce(&mut ModuleDef)>;

    fn u64c(name: &str) -> ColumnDef {
        ColumnDef::new(name, AlgebraicType::U64)
    }

    fn base() -> ModuleDef {
        ModuleDef {
            owner: None,
            abi_version: ABI_VERSION,
            tables: vec![TableDef {
                public: false,
                name: "t".into(),
                columns: vec![u64c("id"), u64c("a"), u64c("b")],
                primary_key: 0,
                auto_inc: Some(0),
                indexes: vec![IndexDef::btree("a", 1, false)],
                ephemeral: false,
                scheduled: None,
            }],
            reducers: vec![ReducerDef {
                name: "r".into(),
                params: vec![ParamDef {
                    name: "x".into(),
                    ty: AlgebraicType::U64,
                }],
                kind: ReducerKind::Normal,
            }],
        }
    }

    fn changed(f: impl FnOnce(&mut ModuleDef)) -> Plan {
        let mut new = base();
        f(&mut new);
        new.validate().expect("the changed definition is valid");
        plan(&base(), &new)
    }

    fn kind(variants: &[&str]) -> AlgebraicType {
        AlgebraicType::sum(
            "Kind",
            variants
                .iter()
                .map(|v| Variant {
                    name: v.to_string(),
                    shape: VariantShape::Unit,
                    fields: vec![],
                })
                .collect(),
        )
    }

    fn pos(fields: &[&str]) -> AlgebraicType {
        AlgebraicType::product(
            "Pos",
            fields
                .iter()
                .map(|f| Field {
                    name: f.to_string(),
                    ty: AlgebraicType::F32,
                })
                .collect(),
        )
    }

    /// The base definition with column `b` of type `ty`.
    fn with_b(ty: AlgebraicType) -> ModuleDef {
        let mut d = base();
        d.tables[0].columns[2].ty = ty;
        d
    }

    #[test]
    fn type_changes_follow_the_migration_rules() {
        let plan_of = |old: AlgebraicType, new: AlgebraicType| {
            let (old, new) = (with_b(old), with_b(new));
            old.validate().unwrap();
            new.validate().unwrap();
            plan(&old, &new)
        };
        // A variant added at the end: additive, the rows carry over as they
        // are.
        let p = plan_of(
            AlgebraicType::vec(kind(&["Sword", "Bow"])),
            AlgebraicType::vec(kind(&["Sword", "Bow", "Axe"])),
        );
        assert_eq!(
            p.additive,
            ["table `t`: column `b`: enum `Kind` gains variant `Axe`"]
        );
        assert!(p.is_additive(), "{:?}", p.breaking);
        assert!(
            matches!(&p.tables[0], TableSource::Carry { columns, .. } if columns[2] == ColumnSource::Old(2))
        );
        // Reordered variants, a field added to a struct, a changed type: not
        // additive, and the table would start empty.
        for (old, new, why) in [
            (
                kind(&["Sword", "Bow"]),
                kind(&["Bow", "Sword"]),
                "variant `Sword` changes or moves",
            ),
            (
                pos(&["x"]),
                pos(&["x", "y"]),
                "(struct `Pos`: fields (x) become (x, y))",
            ),
            (
                AlgebraicType::vec(AlgebraicType::U32),
                AlgebraicType::vec(AlgebraicType::I32),
                "u32 becomes i32",
            ),
        ] {
            let p = plan_of(old, new);
            assert_eq!(p.breaking.len(), 1, "{:?}", p.breaking);
            assert!(
                p.breaking[0].starts_with("table `t`: column `b` changes type from"),
                "{}",
                p.breaking[0]
            );
            assert!(p.breaking[0].contains(why), "{}", p.breaking[0]);
            assert!(matches!(p.tables[0], TableSource::Reset { .. }));
        }
    }

    #[test]
    fn allowed_changes_are_additive() {
        let cases: Vec<(&str, Change)> = vec![
            (
                "table `u` added",
                Box::new(|d| {
                    let mut t = d.tables[0].clone();
                    t.name = "u".into();
                    d.tables.insert(0, t);
                }),
            ),
            (
                "column `c` (u64) added",
                Box::new(|d| {
                    let mut c = u64c("c");
                    c.default = Some(5u64.to_le_bytes().to_vec());
                    d.tables[0].columns.push(c);
                }),
            ),
            (
                "column `o` (option<string>) added",
                Box::new(|d| {
                    d.tables[0].columns.push(ColumnDef::new(
                        "o",
                        AlgebraicType::option(AlgebraicType::String),
                    ));
                }),
            ),
            (
                "btree index `b` on (b) added",
                Box::new(|d| {
                    d.tables[0].indexes.push(IndexDef::btree("b", 2, false));
                }),
            ),
            (
                "hash index `ab` on (a, b) added",
                Box::new(|d| {
                    d.tables[0].indexes.push(IndexDef {
                        name: "ab".into(),
                        columns: vec![1, 2],
                        unique: false,
                        kind: IndexKind::Hash,
                    });
                }),
            ),
            (
                "btree index `a` on (a) removed",
                Box::new(|d| {
                    d.tables[0].indexes.clear();
                }),
            ),
            (
                "btree index `a` on (a) becomes unique btree index `a` on (a)",
                Box::new(|d| {
                    d.tables[0].indexes[0].unique = true;
                }),
            ),
            (
                "btree index `a` on (a) becomes hash index `a` on (b, a)",
                Box::new(|d| {
                    d.tables[0].indexes[0].columns = vec![2, 1];
                    d.tables[0].indexes[0].kind = IndexKind::Hash;
                }),
            ),
            (
                "reducer `s` added",
                Box::new(|d| {
                    let mut r = d.reducers[0].clone();
                    r.name = "s".into();
                    d.reducers.push(r);
                }),
            ),
        ];
        for (expected, change) in cases {
            let p = changed(change);
            assert!(p.is_additive(), "{expected}: {:?}", p.breaking);
            assert!(
                p.additive.iter().any(|l| l.contains(expected)),
                "{expected}: {:?}",
                p.additive
            );
        }
    }

    #[test]
    fn refused_changes_are_named() {
        let cases: Vec<(&str, Change)> = vec![
            (
                "table `t` removed",
                Box::new(|d| d.tables[0].name = "renamed".into()),
            ),
            (
                "column `b` removed",
                Box::new(|d| {
                    d.tables[0].columns.pop();
                }),
            ),
            (
                "column `b` changes type from u64 to i64",
                Box::new(|d| {
                    d.tables[0].columns[2].ty = AlgebraicType::I64;
                }),
            ),
            (
                "column `b` moves from position 2 to 1",
                Box::new(|d| {
                    d.tables[0].columns.swap(1, 2);
                    d.tables[0].indexes[0].columns = vec![2];
                }),
            ),
            (
                "column `c` added before existing columns",
                Box::new(|d| {
                    let mut c = u64c("c");
                    c.default = Some(vec![0; 8]);
                    d.tables[0].columns.insert(1, c);
                    d.tables[0].indexes[0].columns = vec![2];
                }),
            ),
            (
                "required column `c` added without a default",
                Box::new(|d| {
                    d.tables[0].columns.push(u64c("c"));
                }),
            ),
            (
                "primary key changes from `id` to `b`",
                Box::new(|d| {
                    d.tables[0].primary_key = 2;
                    d.tables[0].auto_inc = None;
                }),
            ),
            (
                "auto-increment column changes",
                Box::new(|d| d.tables[0].auto_inc = None),
            ),
            (
                "becomes ephemeral",
                Box::new(|d| d.tables[0].ephemeral = true),
            ),
            (
                "reducer `r` removed",
                Box::new(|d| {
                    d.reducers.clear();
                }),
            ),
            (
                "reducer `r` changes its parameters from (x: u64) to ()",
                Box::new(|d| {
                    d.reducers[0].params.clear();
                }),
            ),
        ];
        for (expected, change) in cases {
            let p = changed(change);
            assert!(
                p.breaking.iter().any(|l| l.contains(expected)),
                "{expected}: {:?}",
                p.breaking
            );
        }
    }

    fn row(values: &[u64]) -> Vec<u8> {
        let t = AlgebraicType::U64;
        codec::encode_row(
            &values.iter().map(|v| Value::U64(*v)).collect::<Vec<_>>(),
            &vec![t; values.len()],
        )
    }

    #[test]
    fn apply_carries_rows_with_defaults_and_checks_new_constraints() {
        let old = base();
        let mut tables = Tables::new(&old);
        let mut tx = TxLog::new();
        for (id, a) in [(1, 10), (2, 10), (3, 30)] {
            tables.insert(&mut tx, 0, &row(&[id, a, id * 100])).unwrap();
        }
        tables.commit(&mut tx);

        let mut new = base();
        let mut c = u64c("c");
        c.default = Some(9u64.to_le_bytes().to_vec());
        new.tables[0].columns.push(c);
        new.tables.insert(
            0,
            TableDef {
                name: "fresh".into(),
                ..old.tables[0].clone()
            },
        );
        let p = plan(&old, &new);
        assert!(p.is_additive());
        let migrated = apply(&p, &tables, &new).unwrap();
        assert_eq!(migrated.table(0).unwrap().len(), 0);
        let t = migrated.table(1).unwrap();
        let rows: Vec<Vec<u8>> = t.iter().map(|r| r.to_vec()).collect();
        assert_eq!(
            rows,
            vec![
                row(&[1, 10, 100, 9]),
                row(&[2, 10, 200, 9]),
                row(&[3, 30, 300, 9])
            ]
        );
        assert_eq!(t.next_auto_inc(), 4);
        // The old tables are untouched.
        assert_eq!(
            tables.table(0).unwrap().iter().next().unwrap().to_vec(),
            row(&[1, 10, 100])
        );

        // A unique index over values that repeat cannot be built.
        let mut unique = base();
        unique.tables[0].indexes[0].unique = true;
        let err = apply(&plan(&old, &unique), &tables, &unique).err().unwrap();
        assert!(err.to_string().contains("unique constraint `a`"), "{err}");

        // A removed column is projected away.
        let mut fewer = base();
        fewer.tables[0].columns.pop();
        let t = apply(&plan(&old, &fewer), &tables, &fewer).unwrap();
        assert_eq!(
            t.table(0).unwrap().iter().next().unwrap().to_vec(),
            row(&[1, 10])
        );

        // A changed type resets the table.
        let mut retyped = base();
        retyped.tables[0].columns[2].ty = AlgebraicType::I64;
        let p = plan(&old, &retyped);
        assert_eq!(p.tables[0], TableSource::Reset { from: 0 });
        assert_eq!(
            apply(&p, &tables, &retyped)
                .unwrap()
                .table(0)
                .unwrap()
                .len(),
            0
        );
    }
}
