//! Query subscriptions (docs/sql.md "Subscriptions").
//!
//! A live query is registered with the database held, so the answer it
//! starts from is that of one transaction; from then on the committing
//! thread brings it up to date with each transaction of its module, on the
//! state the transaction leaves, before the next one runs. What changed in
//! the answer rides with the transaction on the feed ([`QueryDelta`]), and
//! so reaches subscribers in commit order and only once durable, like the
//! transaction itself.
//!
//! Subscribers to the same text with the same access share one live query:
//! a transaction costs one evaluation whatever their number.

use std::collections::BTreeMap;

use interstice_sql::{Access, Budget, Change, Live, SqlError};
use interstice_store::{ModuleDef, Mutation, RowBytes, Table, Tables, Value, codec};

use crate::feed::QueryDelta;

/// A module's tables by name, for the SQL engine.
pub(crate) struct ModuleTables<'a> {
    pub def: &'a ModuleDef,
    pub tables: &'a Tables,
}

impl interstice_sql::Tables for ModuleTables<'_> {
    fn table(&self, name: &str) -> Option<&Table> {
        let id = self.def.table_id(name)?;
        self.tables.table(id).ok()
    }
}

struct Shared {
    id: u64,
    text: String,
    access: Access,
    live: Live,
    subscribers: usize,
}

/// Every module's live queries.
#[derive(Default)]
pub(crate) struct LiveQueries {
    last_id: u64,
    modules: BTreeMap<String, Vec<Shared>>,
}

/// What a new subscriber starts from: the query it follows, the table its
/// rows are of, and those rows now.
pub(crate) struct Started {
    pub query_id: u64,
    pub table: String,
    pub rows: Vec<RowBytes>,
}

impl LiveQueries {
    /// One more subscriber to `text` on `module`: the live query already
    /// followed for the same text and access, or a new one.
    pub fn subscribe(
        &mut self,
        module: &str,
        tables: ModuleTables<'_>,
        text: &str,
        access: Access,
        budget: &Budget,
    ) -> Result<Started, SqlError> {
        let queries = self.modules.entry(module.to_string()).or_default();
        if let Some(shared) = queries
            .iter_mut()
            .find(|s| s.text == text && s.access == access)
        {
            let rows = shared.live.rows(&tables)?;
            shared.subscribers += 1;
            return Ok(Started {
                query_id: shared.id,
                table: shared.live.table().to_string(),
                rows,
            });
        }
        let (live, rows) = Live::start(&tables, access, text, budget)?;
        self.last_id += 1;
        let id = self.last_id;
        let table = live.table().to_string();
        queries.push(Shared {
            id,
            text: text.to_string(),
            access,
            live,
            subscribers: 1,
        });
        Ok(Started {
            query_id: id,
            table,
            rows,
        })
    }

    /// Whether a live query of `text` with `access` is followed already.
    pub fn follows(&self, module: &str, text: &str, access: Access) -> bool {
        self.modules
            .get(module)
            .is_some_and(|q| q.iter().any(|s| s.text == text && s.access == access))
    }

    /// One subscriber fewer; the live query ends with its last.
    pub fn unsubscribe(&mut self, module: &str, query_id: u64) {
        let Some(queries) = self.modules.get_mut(module) else {
            return;
        };
        if let Some(i) = queries.iter().position(|s| s.id == query_id) {
            queries[i].subscribers -= 1;
            if queries[i].subscribers == 0 {
                queries.swap_remove(i);
            }
        }
        if queries.is_empty() {
            self.modules.remove(module);
        }
    }

    /// The module got a new definition or was deleted: its live queries
    /// end (their subscribers are told by the transaction's event).
    pub fn forget(&mut self, module: &str) {
        self.modules.remove(module);
    }

    /// Live queries followed now, across modules, and their subscribers.
    pub fn counts(&self) -> (usize, usize) {
        let queries = self.modules.values().map(Vec::len).sum();
        let subscribers = self.modules.values().flatten().map(|s| s.subscribers).sum();
        (queries, subscribers)
    }

    /// Brings the module's live queries up to date with a transaction's
    /// `mutations`, on the state it left; what changed in each answer. A
    /// query that cannot follow (a stored row that does not decode) ends,
    /// and its subscribers are told why.
    pub fn evaluate(
        &mut self,
        module: &str,
        tables: ModuleTables<'_>,
        mutations: &[Mutation],
    ) -> Vec<QueryDelta> {
        let Some(queries) = self.modules.get_mut(module) else {
            return Vec::new();
        };
        let def = tables.def;
        let mut out = Vec::new();
        // Each changed row decoded once, for the queries that can skip it
        // (none when no query has an equality to skip by).
        let decoded: Vec<Option<Vec<Value>>> =
            match queries.iter().any(|q| q.live.equality().is_some()) {
                false => Vec::new(),
                true => mutations
                    .iter()
                    .map(|m| {
                        let t = def.tables.get(m.table as usize)?;
                        codec::decode_row(&m.row, &t.column_types()).ok()
                    })
                    .collect(),
            };
        queries.retain_mut(|shared| {
            let skips = |i: usize, m: &Mutation| -> bool {
                let (Some((col, value)), Some(Some(values))) =
                    (shared.live.equality(), decoded.get(i))
                else {
                    return false;
                };
                let pk = def.tables[m.table as usize].primary_key as usize;
                values.get(col) != Some(value) && !shared.live.holds(&values[pk])
            };
            let changes: Vec<Change<'_>> = mutations
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let table = def.tables.get(m.table as usize)?.name.as_str();
                    (shared.live.reads(table) && !skips(i, m)).then_some(Change {
                        table,
                        op: m.op,
                        row: &m.row,
                    })
                })
                .collect();
            if changes.is_empty() {
                return true;
            }
            match shared.live.apply(&tables, &changes) {
                Ok(deltas) if deltas.is_empty() => true,
                Ok(deltas) => {
                    out.push(QueryDelta {
                        query_id: shared.id,
                        changes: Ok(deltas),
                    });
                    true
                }
                Err(e) => {
                    out.push(QueryDelta {
                        query_id: shared.id,
                        changes: Err(e.to_string()),
                    });
                    false
                }
            }
        });
        out
    }
}
