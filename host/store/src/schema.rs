//! Module definitions as the host holds them: tables, columns, indexes and
//! reducers, and the checks a definition must pass before it is used.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::error::SchemaError;
use crate::identity::Identity;
use crate::limits;
use crate::types::AlgebraicType;

/// The row-encoding and contract version this host writes. Version 1
/// (scalars and `option` of them) is a subset of version 2, with the same
/// bytes, so definitions of either version are accepted.
pub const ABI_VERSION: u32 = 2;

/// The oldest contract version this host still opens.
pub const ABI_VERSION_MIN: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: AlgebraicType,
    /// The value existing rows get when a later version of the module adds
    /// this column, in the row encoding of `ty` (`docs/row-encoding.md`).
    /// Optional columns without one default to none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub default: Option<Vec<u8>>,
}

impl ColumnDef {
    /// A column with no default.
    pub fn new(name: impl Into<String>, ty: AlgebraicType) -> Self {
        ColumnDef {
            name: name.into(),
            ty,
            default: None,
        }
    }

    /// The encoded value rows get when this column is added: the declared
    /// default, or none for an optional column.
    pub fn default_bytes(&self) -> Option<Vec<u8>> {
        match (&self.default, self.ty.is_optional()) {
            (Some(bytes), _) => Some(bytes.clone()),
            (None, true) => Some(vec![0]),
            (None, false) => None,
        }
    }
}

/// Default values appear in definitions (and `interstice schema`) as hex.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                s.serialize_some(&hex)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(hex) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(serde::de::Error::custom(
                "default is not an even run of hex digits",
            ));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// How an index finds rows.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Ordered: point lookups, prefixes of its columns and ranges.
    #[default]
    Btree,
    /// Point lookups of the whole key only.
    Hash,
}

impl std::fmt::Display for IndexKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexKind::Btree => "btree",
            IndexKind::Hash => "hash",
        })
    }
}

/// A secondary index over one or more columns; its key is their values in
/// the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IndexDefRepr")]
pub struct IndexDef {
    pub name: String,
    pub columns: Vec<u32>,
    pub unique: bool,
    pub kind: IndexKind,
}

impl IndexDef {
    /// A B-tree index over one column, as contract version 1 declared them.
    pub fn btree(name: impl Into<String>, column: u32, unique: bool) -> Self {
        IndexDef {
            name: name.into(),
            columns: vec![column],
            unique,
            kind: IndexKind::Btree,
        }
    }
}

/// What an index definition looks like in JSON: definitions written before
/// composite and hash indexes have `column` (one) and no `kind`.
#[derive(Deserialize)]
struct IndexDefRepr {
    name: String,
    #[serde(default)]
    column: Option<u32>,
    #[serde(default)]
    columns: Option<Vec<u32>>,
    unique: bool,
    #[serde(default)]
    kind: IndexKind,
}

impl TryFrom<IndexDefRepr> for IndexDef {
    type Error = String;

    fn try_from(r: IndexDefRepr) -> Result<Self, String> {
        let columns = match (r.columns, r.column) {
            (Some(columns), None) => columns,
            (None, Some(column)) => vec![column],
            _ => {
                return Err(format!(
                    "index `{}` needs exactly one of `columns` and `column`",
                    r.name
                ));
            }
        };
        Ok(IndexDef {
            name: r.name,
            columns,
            unique: r.unique,
            kind: r.kind,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub primary_key: u32,
    pub auto_inc: Option<u32>,
    pub indexes: Vec<IndexDef>,
    pub ephemeral: bool,
    /// Whether clients may read the table (rows, subscriptions, counts).
    /// A private table is readable by reducers, the operator and the
    /// local CLI only. Definitions written before this field are private.
    #[serde(default)]
    pub public: bool,
    /// The reducer that runs each row when it is due: this is a schedule
    /// table (`crate::system`, docs/module-authoring.md "Schedules").
    /// Definitions written before this field have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
}

impl TableDef {
    pub fn column_types(&self) -> Vec<AlgebraicType> {
        self.columns.iter().map(|c| c.ty.clone()).collect()
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReducerKind {
    Normal,
    Init,
    /// Runs once, in the publication transaction of a new version of the
    /// module, after its tables were migrated (`docs/migrations.md`).
    Migrate,
    /// Runs when a client with a token opens a session; an error refuses
    /// the session.
    #[serde(rename = "client_connected")]
    ClientConnected,
    /// Runs when a session closes, or at the next start for a session that
    /// was open when the server stopped.
    #[serde(rename = "client_disconnected")]
    ClientDisconnected,
}

impl ReducerKind {
    /// The name definitions and messages use.
    pub fn name(self) -> &'static str {
        match self {
            ReducerKind::Normal => "normal",
            ReducerKind::Init => "init",
            ReducerKind::Migrate => "migrate",
            ReducerKind::ClientConnected => "client_connected",
            ReducerKind::ClientDisconnected => "client_disconnected",
        }
    }

    /// Whether a client may call a reducer of this kind by name.
    pub fn callable(self) -> bool {
        self == ReducerKind::Normal
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamDef {
    pub name: String,
    pub ty: AlgebraicType,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducerDef {
    pub name: String,
    pub params: Vec<ParamDef>,
    pub kind: ReducerKind,
}

impl ReducerDef {
    pub fn param_types(&self) -> Vec<AlgebraicType> {
        self.params.iter().map(|p| p.ty.clone()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDef {
    pub abi_version: u32,
    pub tables: Vec<TableDef>,
    pub reducers: Vec<ReducerDef>,
    /// Who owns the module: set by the host at first publication and
    /// carried to every later version. `None` in definitions written
    /// before owners existed, which the operator owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Identity>,
}

impl ModuleDef {
    /// Whether two definitions declare the same tables and reducers, whatever
    /// contract version each was built for: a version-1 row is a valid
    /// version-2 row of the same types.
    pub fn same_as(&self, other: &ModuleDef) -> bool {
        self.tables == other.tables && self.reducers == other.reducers
    }

    /// A fingerprint of what clients see of the module: its tables and
    /// reducers (the same whenever [`ModuleDef::same_as`] holds), as 64 hex
    /// digits of the SHA-256 of their JSON. Generated clients carry it and
    /// are told on connect when the module's differs.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            serde_json::to_vec(&self.tables),
            serde_json::to_vec(&self.reducers),
        ] {
            // Definitions are plain data: they always serialize.
            hash.update(part.unwrap_or_default());
            hash.update([0u8]);
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The module's owner; the operator for definitions from before owners.
    pub fn owner(&self) -> Identity {
        self.owner.unwrap_or_else(Identity::operator)
    }

    pub fn table_id(&self, name: &str) -> Option<u32> {
        self.tables
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as u32)
    }

    pub fn reducer_id(&self, name: &str) -> Option<u32> {
        self.reducers
            .iter()
            .position(|r| r.name == name)
            .map(|i| i as u32)
    }

    pub fn init_reducer(&self) -> Option<u32> {
        self.reducer_of_kind(ReducerKind::Init)
    }

    pub fn migrate_reducer(&self) -> Option<u32> {
        self.reducer_of_kind(ReducerKind::Migrate)
    }

    /// The reducer of a kind a module has at most one of.
    pub fn reducer_of(&self, kind: ReducerKind) -> Option<u32> {
        self.reducer_of_kind(kind)
    }

    fn reducer_of_kind(&self, kind: ReducerKind) -> Option<u32> {
        self.reducers
            .iter()
            .position(|r| r.kind == kind)
            .map(|i| i as u32)
    }

    /// Checks everything the host relies on. A definition that passes can be
    /// turned into tables without further checks.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if !(ABI_VERSION_MIN..=ABI_VERSION).contains(&self.abi_version) {
            return Err(SchemaError::AbiVersion {
                found: self.abi_version,
                min: ABI_VERSION_MIN,
                max: ABI_VERSION,
            });
        }
        if self.tables.len() > limits::TABLES_PER_MODULE_MAX {
            return Err(SchemaError::TooMany {
                what: "tables",
                max: limits::TABLES_PER_MODULE_MAX,
            });
        }
        if self.reducers.len() > limits::REDUCERS_PER_MODULE_MAX {
            return Err(SchemaError::TooMany {
                what: "reducers",
                max: limits::REDUCERS_PER_MODULE_MAX,
            });
        }
        check_unique_names("table", self.tables.iter().map(|t| t.name.as_str()), "")?;
        for table in &self.tables {
            validate_table(table)?;
        }
        check_unique_names("reducer", self.reducers.iter().map(|r| r.name.as_str()), "")?;
        for kind in [
            ReducerKind::Init,
            ReducerKind::Migrate,
            ReducerKind::ClientConnected,
            ReducerKind::ClientDisconnected,
        ] {
            let count = self.reducers.iter().filter(|r| r.kind == kind).count();
            if count > 1 {
                return Err(SchemaError::Invalid(format!(
                    "{count} {} reducers; a module has at most one",
                    kind.name()
                )));
            }
        }
        crate::system::check(self)?;
        for reducer in &self.reducers {
            validate_reducer(reducer)?;
        }
        Ok(())
    }
}

fn validate_reducer(reducer: &ReducerDef) -> Result<(), SchemaError> {
    check_name("reducer", &reducer.name)?;
    if reducer.params.len() > limits::COLUMNS_PER_TABLE_MAX {
        return Err(SchemaError::TooMany {
            what: "reducer parameters",
            max: limits::COLUMNS_PER_TABLE_MAX,
        });
    }
    check_unique_names(
        "parameter",
        reducer.params.iter().map(|p| p.name.as_str()),
        &format!(" of reducer `{}`", reducer.name),
    )?;
    for param in &reducer.params {
        param.ty.validate().map_err(|e| {
            SchemaError::Invalid(format!(
                "parameter `{}` of reducer `{}`: {e}",
                param.name, reducer.name
            ))
        })?;
    }
    if reducer.kind != ReducerKind::Normal && !reducer.params.is_empty() {
        return Err(SchemaError::Invalid(format!(
            "{} reducer `{}` takes parameters; it must take none",
            reducer.kind.name(),
            reducer.name
        )));
    }
    Ok(())
}

fn validate_table(table: &TableDef) -> Result<(), SchemaError> {
    check_name("table", &table.name)?;
    validate_columns(table)?;
    let pk = column_at(table, table.primary_key, "primary key")?;
    if pk.ty.is_optional() {
        return Err(SchemaError::Invalid(format!(
            "primary key `{}` of table `{}` is optional; a primary key must always have a value",
            pk.name, table.name
        )));
    }
    if let Some(auto) = table.auto_inc {
        let col = column_at(table, auto, "auto-increment column")?;
        if !col.ty.is_auto_inc_integer() {
            return Err(SchemaError::Invalid(format!(
                "auto-increment column `{}` of table `{}` is {}; it must be a non-optional integer of at most 64 bits",
                col.name, table.name, col.ty
            )));
        }
    }
    validate_indexes(table)
}

/// The column a table's primary key, auto-increment or index names.
fn column_at<'t>(
    table: &'t TableDef,
    position: u32,
    role: &str,
) -> Result<&'t ColumnDef, SchemaError> {
    table.columns.get(position as usize).ok_or_else(|| {
        SchemaError::Invalid(format!(
            "{role} of table `{}` names column {position}, but the table has {} columns",
            table.name,
            table.columns.len()
        ))
    })
}

fn validate_columns(table: &TableDef) -> Result<(), SchemaError> {
    if table.columns.is_empty() {
        return Err(SchemaError::Invalid(format!(
            "table `{}` has no columns",
            table.name
        )));
    }
    if table.columns.len() > limits::COLUMNS_PER_TABLE_MAX {
        return Err(SchemaError::TooMany {
            what: "columns",
            max: limits::COLUMNS_PER_TABLE_MAX,
        });
    }
    let at = format!(" in table `{}`", table.name);
    check_unique_names("column", table.columns.iter().map(|c| c.name.as_str()), &at)?;
    for column in &table.columns {
        check_name("column", &column.name)?;
        column.ty.validate().map_err(|e| {
            SchemaError::Invalid(format!(
                "column `{}` of table `{}`: {e}",
                column.name, table.name
            ))
        })?;
        if let Some(default) = &column.default {
            crate::codec::decode_key(default, &column.ty).map_err(|e| {
                SchemaError::Invalid(format!(
                    "default of column `{}` in table `{}` is not a {} value: {e}",
                    column.name, table.name, column.ty
                ))
            })?;
        }
    }
    Ok(())
}

fn validate_indexes(table: &TableDef) -> Result<(), SchemaError> {
    if table.indexes.len() > limits::INDEXES_PER_TABLE_MAX {
        return Err(SchemaError::TooMany {
            what: "indexes",
            max: limits::INDEXES_PER_TABLE_MAX,
        });
    }
    let at = format!(" in table `{}`", table.name);
    check_unique_names("index", table.indexes.iter().map(|i| i.name.as_str()), &at)?;
    let mut keys = BTreeSet::new();
    for index in &table.indexes {
        check_name("index", &index.name)?;
        let invalid = |what: String| {
            SchemaError::Invalid(format!(
                "index `{}` of table `{}` {what}",
                index.name, table.name
            ))
        };
        if index.columns.is_empty() {
            return Err(invalid("has no columns".into()));
        }
        if index.columns.len() > limits::INDEX_COLUMNS_MAX {
            return Err(invalid(format!(
                "has {} columns; an index has at most {}",
                index.columns.len(),
                limits::INDEX_COLUMNS_MAX
            )));
        }
        let mut names = Vec::with_capacity(index.columns.len());
        for &column in &index.columns {
            let col = column_at(table, column, &format!("index `{}`", index.name))?;
            if names.contains(&col.name.as_str()) {
                return Err(invalid(format!("names column `{}` twice", col.name)));
            }
            names.push(col.name.as_str());
        }
        if index.columns == [table.primary_key] {
            return Err(invalid(format!(
                "is on the primary key `{}`, which is already indexed",
                names[0]
            )));
        }
        if !keys.insert((index.columns.clone(), index.kind)) {
            return Err(SchemaError::Invalid(format!(
                "table `{}` has two {} indexes on ({})",
                table.name,
                index.kind,
                names.join(", ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<(), SchemaError> {
    let ok = !name.is_empty()
        && name.len() <= limits::NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SchemaError::Invalid(format!(
            "{what} name {name:?} is not an identifier (ASCII letters, digits, `_`, `-`, not starting with a digit, at most {} bytes)",
            limits::NAME_LEN_MAX
        )))
    }
}

pub(crate) fn check_unique_names<'a>(
    what: &str,
    names: impl Iterator<Item = &'a str>,
    at: &str,
) -> Result<(), SchemaError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(SchemaError::Duplicate {
                what: what.to_string(),
                name: name.to_string(),
                at: at.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: AlgebraicType) -> ColumnDef {
        ColumnDef::new(name, ty)
    }

    fn table() -> TableDef {
        TableDef {
            public: false,
            name: "t".into(),
            columns: vec![
                col("id", AlgebraicType::U64),
                col("name", AlgebraicType::String),
            ],
            primary_key: 0,
            auto_inc: Some(0),
            indexes: vec![IndexDef::btree("name", 1, true)],
            ephemeral: false,
            scheduled: None,
        }
    }

    fn module(tables: Vec<TableDef>) -> ModuleDef {
        ModuleDef {
            owner: None,
            abi_version: ABI_VERSION,
            tables,
            reducers: vec![],
        }
    }

    fn err(def: ModuleDef) -> String {
        def.validate().unwrap_err().to_string()
    }

    #[test]
    fn valid_module_passes() {
        module(vec![table()]).validate().unwrap();
    }

    #[test]
    fn each_rule_has_a_clear_error() {
        let mut m = module(vec![table(), table()]);
        assert_eq!(err(m.clone()), "duplicate table name `t`");
        m.tables.pop();
        m.abi_version = 9;
        assert_eq!(
            err(m),
            "module was built for ABI version 9; this host supports versions 1 to 2"
        );

        let mut t = table();
        t.primary_key = 5;
        assert!(err(module(vec![t])).contains("primary key of table `t` names column 5"));

        let mut t = table();
        t.columns[0].ty = AlgebraicType::option(AlgebraicType::U64);
        t.auto_inc = None;
        assert!(err(module(vec![t])).contains("is optional"));

        let mut t = table();
        t.auto_inc = Some(1);
        assert!(err(module(vec![t])).contains("must be a non-optional integer"));

        let mut t = table();
        t.indexes[0].columns = vec![7];
        assert!(err(module(vec![t])).contains("index `name` of table `t` names column 7"));

        let mut t = table();
        t.indexes[0].columns = vec![0];
        assert!(err(module(vec![t])).contains("already indexed"));

        let mut t = table();
        t.indexes.push(IndexDef::btree("again", 1, false));
        assert!(err(module(vec![t])).contains("two btree indexes on (name)"));

        let mut t = table();
        t.columns[1].name = "id".into();
        assert_eq!(
            err(module(vec![t])),
            "duplicate column name `id` in table `t`"
        );

        let mut t = table();
        t.columns.clear();
        assert!(err(module(vec![t])).contains("has no columns"));

        let mut t = table();
        t.name = "no spaces".into();
        assert!(err(module(vec![t])).contains("is not an identifier"));

        let mut m = module(vec![table()]);
        let reducer = ReducerDef {
            name: "r".into(),
            params: vec![],
            kind: ReducerKind::Init,
        };
        m.reducers = vec![reducer.clone(), reducer.clone()];
        assert_eq!(err(m.clone()), "duplicate reducer name `r`");
        m.reducers[1].name = "s".into();
        assert!(err(m.clone()).contains("2 init reducers"));
        m.reducers.pop();
        m.reducers[0].params.push(ParamDef {
            name: "x".into(),
            ty: AlgebraicType::U32,
        });
        assert!(err(m.clone()).contains("must take none"));
        m.reducers[0].params.clear();
        m.reducers.push(ReducerDef {
            name: "m1".into(),
            params: vec![],
            kind: ReducerKind::Migrate,
        });
        m.validate().unwrap();
        let mut two = m.clone();
        two.reducers.push(ReducerDef {
            name: "m2".into(),
            params: vec![],
            kind: ReducerKind::Migrate,
        });
        assert!(err(two).contains("2 migrate reducers"));

        let mut t = table();
        t.columns[1].default = Some(vec![1, 0]);
        assert!(
            err(module(vec![t]))
                .contains("default of column `name` in table `t` is not a string value")
        );
        let mut t = table();
        t.columns[1].default = Some(vec![2, 0, 0, 0, b'h', b'i']);
        module(vec![t.clone()]).validate().unwrap();
        let json = serde_json::to_string(&t.columns[1]).unwrap();
        assert!(json.contains(r#""default":"020000006869""#), "{json}");
        assert_eq!(
            serde_json::from_str::<ColumnDef>(&json).unwrap(),
            t.columns[1]
        );
        assert!(
            !serde_json::to_string(&t.columns[0])
                .unwrap()
                .contains("default")
        );
    }
}
