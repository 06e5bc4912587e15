//! The tables the host keeps inside a module's definition, beside the
//! guest's own: today one, `st_client`, the sessions open on the module.
//!
//! A module that declares a `client_connected` or `client_disconnected`
//! reducer gets `st_client` as its last table when it is published
//! ([`ModuleDef::with_system_tables`]). Its rows are written by the host in
//! the same transaction as the lifecycle reducer, and logged, snapshotted
//! and replayed like any table's, so a crash cannot lose the set of open
//! sessions: at the next start the server ends each one with
//! `client_disconnected`. Guests never see the table: the ids they use
//! stop before it.

use crate::error::SchemaError;
use crate::schema::{ColumnDef, ModuleDef, ReducerKind, TableDef};
use crate::types::AlgebraicType;

/// The name of the sessions table. No guest may declare a table by it.
pub const SESSIONS_TABLE: &str = "st_client";

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

    /// A guest's definition as the host records it: with `st_client`
    /// appended when the module has lifecycle reducers. Refuses a guest
    /// table of that name.
    pub fn with_system_tables(mut self) -> Result<ModuleDef, SchemaError> {
        if self.tables.iter().any(|t| t.name == SESSIONS_TABLE) {
            return Err(SchemaError::Invalid(format!(
                "table name `{SESSIONS_TABLE}` is reserved for the host"
            )));
        }
        if self.has_lifecycle() {
            self.tables.push(sessions_table());
        }
        Ok(self)
    }

    /// The id of `st_client`, when the module keeps sessions.
    pub fn sessions_table_id(&self) -> Option<u32> {
        let last = self.tables.len().checked_sub(1)?;
        (self.tables[last].name == SESSIONS_TABLE).then_some(last as u32)
    }

    /// How many tables the guest declared: the ids it may use.
    pub fn guest_table_count(&self) -> usize {
        self.tables.len() - usize::from(self.sessions_table_id().is_some())
    }

    /// Whether table `id` is one the host keeps.
    pub fn is_system_table(&self, id: u32) -> bool {
        self.sessions_table_id() == Some(id)
    }
}

/// A recorded definition holds `st_client` exactly when it has lifecycle
/// reducers, as its last table and exactly as [`sessions_table`] says.
pub(crate) fn check(def: &ModuleDef) -> Result<(), SchemaError> {
    let positions: Vec<usize> = def
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| t.name == SESSIONS_TABLE)
        .map(|(i, _)| i)
        .collect();
    let ok = match positions.as_slice() {
        [] => !def.has_lifecycle(),
        [at] => {
            *at + 1 == def.tables.len()
                && def.tables[*at] == sessions_table()
                && def.has_lifecycle()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(SchemaError::Invalid(format!(
            "table `{SESSIONS_TABLE}` is the host's: it is the last table of a module with \
             lifecycle reducers, and of no other"
        )))
    }
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
}
