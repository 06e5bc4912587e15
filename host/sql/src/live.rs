//! Query subscriptions: a query whose answer is kept up to date from each
//! transaction's changes, without running the query again.
//!
//! Two shapes are followed (docs/sql.md "Subscriptions"):
//!
//! - a filter, `SELECT * FROM t WHERE cond`: a changed row of `t` is checked
//!   against `cond`; the primary keys of the rows in the answer tell an
//!   update that enters, stays or leaves;
//! - a semi-join, `SELECT a.* FROM a JOIN b ON a.x = b.y WHERE cond_b [AND
//!   cond_a]`: the rows of `a` with at least one row of `b` that meets them
//!   and `cond_b`. For the rows of `b` that meet `cond_b` it keeps their
//!   join key, and how many there are per key; a changed row of `b` moves
//!   those counts, and only a key whose count comes to or leaves zero needs
//!   the rows of `a` holding it (an index probe on `a.x`, or a scan of `a`
//!   when `a.x` has no index). A changed row of `a` needs its key's count.
//!
//! Work per transaction is the changed rows plus those probes, never the
//! tables. [`Live::apply`] runs on the state just after the transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::rc::Rc;

use interstice_store::codec::{decode_row, encode_row};
use interstice_store::{AlgebraicType, IndexId, IndexKind, MutationOp, RowBytes, Table, Value};

use crate::exec::{eval_on, holds_on};
use crate::plan::{CmpOp, Expr, Plan, Shape, Step};
use crate::values::{base, normalized};
use crate::{Access, Budget, SqlError, Tables};

fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::Unsupported(what.into())
}

fn corrupt(e: impl std::fmt::Display) -> SqlError {
    SqlError::Corrupt(e.to_string())
}

/// One table a live query reads: its name, column types and primary key.
#[derive(Debug)]
struct Side {
    table: String,
    types: Vec<AlgebraicType>,
    pk: usize,
}

impl Side {
    fn decode(&self, row: &[u8]) -> Result<Rc<Vec<Value>>, SqlError> {
        decode_row(row, &self.types)
            .map(Rc::new)
            .map_err(|e| corrupt(format!("table `{}`: {e}", self.table)))
    }

    fn get<'t>(&self, tables: &'t dyn Tables) -> Result<&'t Table, SqlError> {
        tables
            .table(&self.table)
            .ok_or_else(|| SqlError::UnknownTable(self.table.clone()))
    }
}

/// What a live query follows. One per query, never in bulk: the size of
/// the larger variant costs nothing worth boxing for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Followed {
    Filter {
        conds: Vec<Expr>,
    },
    Semi {
        /// `a.x`, over source 0.
        a_key: Expr,
        /// Conditions on `a` alone, over source 0.
        a_conds: Vec<Expr>,
        /// An index of `a` whose key is `a.x` (or begins with it), the
        /// column's type and whether the key is a prefix.
        a_index: Option<(IndexId, AlgebraicType, bool)>,
        b: Side,
        /// `b.y`, over source 1.
        b_key: Expr,
        /// Conditions on `b` alone, over source 1.
        b_conds: Vec<Expr>,
        /// The rows of `b` meeting `b_conds`: primary key → join key.
        b_held: BTreeMap<Value, Value>,
        /// How many of them hold each join key.
        counts: BTreeMap<Value, u32>,
        /// The answer's rows by join key.
        by_key: BTreeMap<Value, BTreeSet<Value>>,
    },
}

/// A query kept up to date ([`Live::apply`]). Its answer is rows of one
/// table ([`Live::table`]), each once, by primary key.
#[derive(Debug)]
pub struct Live {
    a: Side,
    shape: Followed,
    /// The answer: primary key → the row's join key (a filter's is NULL).
    held: BTreeMap<Value, Value>,
}

/// One change to a live query's answer: a row that enters (`Insert`),
/// changes while in it (`Update`) or leaves it (`Delete`, with the row as
/// it was last seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub op: MutationOp,
    pub row: RowBytes,
}

/// One row change of a transaction, as [`Live::apply`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub table: &'a str,
    pub op: MutationOp,
    pub row: &'a [u8],
}

/// Whether `e` is a plain column of source `src`.
fn plain_column(e: &Expr, src: usize) -> Option<usize> {
    match e {
        Expr::Col { src: s, col, path } if *s == src && path.is_empty() => Some(*col),
        _ => None,
    }
}

fn reads_only(e: &Expr, src: usize) -> bool {
    let mut only = true;
    e.sources(&mut |s| only &= s == src);
    only
}

/// An index of `t` that finds rows by column `col`.
fn index_for(t: &Table, col: usize) -> Option<(IndexId, AlgebraicType, bool)> {
    let def = t.def();
    let ty = def.columns[col].ty.clone();
    if def.primary_key as usize == col {
        return Some((IndexId::PrimaryKey, ty, false));
    }
    let col = col as u32;
    if let Some(i) = def.indexes.iter().position(|ix| ix.columns == [col]) {
        return Some((IndexId::Secondary(i), ty, false));
    }
    def.indexes
        .iter()
        .position(|ix| ix.kind == IndexKind::Btree && ix.columns.first() == Some(&col))
        .map(|i| (IndexId::Secondary(i), ty, true))
}

impl Live {
    /// Binds `text` as a live query and computes its answer on the tables
    /// as they stand, within `budget`. Refuses any query that is not one of
    /// the two shapes.
    pub fn start(
        tables: &dyn Tables,
        access: Access,
        text: &str,
        budget: &Budget,
    ) -> Result<(Live, Vec<RowBytes>), SqlError> {
        let statement = crate::bind::parse(text)?;
        let (plan, explain) = crate::bind::bind(tables, access, &statement)?;
        if explain {
            return Err(unsupported("subscribing to EXPLAIN"));
        }
        let mut live = Live::shape_of(tables, &plan)?;
        let rows = live.initial(tables, &plan, budget)?;
        Ok((live, rows))
    }

    fn shape_of(tables: &dyn Tables, plan: &Plan) -> Result<Live, SqlError> {
        let whole_rows = || {
            unsupported(
                "this subscription: subscribe to SELECT * FROM t WHERE ..., or SELECT a.* FROM a \
                 JOIN b ON a.x = b.y WHERE ... (no ORDER BY, LIMIT, DISTINCT, GROUP BY)",
            )
        };
        let out = &plan.output;
        let Shape::Rows(exprs) = &out.shape else {
            return Err(whole_rows());
        };
        if !out.order.is_empty() || out.limit.is_some() || out.offset != 0 || out.distinct {
            return Err(whole_rows());
        }
        let first = &plan.sources[0];
        let every_column = exprs.len() == first.types.len()
            && exprs
                .iter()
                .enumerate()
                .all(|(i, e)| plain_column(e, 0) == Some(i));
        if !every_column {
            return Err(whole_rows());
        }
        let side = |k: usize| Side {
            table: plan.sources[k].table.clone(),
            types: plan.sources[k].types.clone(),
            pk: plan.sources[k].def.primary_key as usize,
        };
        let shape = match plan.sources.len() {
            1 => Followed::Filter {
                conds: plan.filters[0].clone(),
            },
            2 => {
                if matches!(
                    plan.steps[1],
                    Step::Join {
                        left_outer: true,
                        ..
                    }
                ) {
                    return Err(unsupported("a LEFT JOIN subscription; write JOIN"));
                }
                let mut key = None;
                let mut b_conds = Vec::new();
                for c in &plan.filters[1] {
                    let pair = match c {
                        Expr::Cmp(CmpOp::Eq, x, y) if key.is_none() => {
                            match (
                                reads_only(x, 0),
                                reads_only(y, 1),
                                reads_only(x, 1),
                                reads_only(y, 0),
                            ) {
                                (true, true, _, _)
                                    if x.last_source().is_some() && y.last_source().is_some() =>
                                {
                                    Some(((**x).clone(), (**y).clone()))
                                }
                                (_, _, true, true)
                                    if x.last_source().is_some() && y.last_source().is_some() =>
                                {
                                    Some(((**y).clone(), (**x).clone()))
                                }
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    match pair {
                        Some(p) => key = Some(p),
                        None if reads_only(c, 1) => b_conds.push(c.clone()),
                        None => {
                            return Err(unsupported(
                                "a join subscription's conditions other than its one equality read one table each",
                            ));
                        }
                    }
                }
                let Some((a_key, b_key)) = key else {
                    return Err(unsupported(
                        "a join subscription without an equality a.x = b.y",
                    ));
                };
                let a_table = side(0).get(tables)?;
                let a_index = plain_column(&a_key, 0).and_then(|c| index_for(a_table, c));
                Followed::Semi {
                    a_key,
                    a_conds: plan.filters[0].clone(),
                    a_index,
                    b: side(1),
                    b_key,
                    b_conds,
                    b_held: BTreeMap::new(),
                    counts: BTreeMap::new(),
                    by_key: BTreeMap::new(),
                }
            }
            _ => return Err(unsupported("a subscription joining more than two tables")),
        };
        Ok(Live {
            a: side(0),
            shape,
            held: BTreeMap::new(),
        })
    }

    /// The answer now, and everything kept to follow it.
    fn initial(
        &mut self,
        tables: &dyn Tables,
        plan: &Plan,
        budget: &Budget,
    ) -> Result<Vec<RowBytes>, SqlError> {
        let answer = crate::exec::run(tables, plan, budget)?;
        if let Followed::Semi {
            b,
            b_key,
            b_conds,
            b_held,
            counts,
            ..
        } = &mut self.shape
        {
            let t = b.get(tables)?;
            if t.len() as u64 > budget.rows {
                return Err(SqlError::Budget {
                    what: "rows read, joined or answered",
                    limit: format!("{} rows", budget.rows),
                });
            }
            for row in t.iter() {
                let values = b.decode(row)?;
                let tuple = [None, Some(values.clone())];
                if b_conds.iter().all(|c| holds_on(c, &tuple)) {
                    let k = normalized(&eval_on(b_key, &tuple));
                    if k != Value::Null {
                        b_held.insert(values[b.pk].clone(), k.clone());
                        *counts.entry(k).or_default() += 1;
                    }
                }
            }
        }
        let mut rows = Vec::new();
        for values in answer.rows {
            let pk = values[self.a.pk].clone();
            if self.held.contains_key(&pk) {
                continue;
            }
            let row = RowBytes::from(encode_row(&values, &self.a.types));
            let key = self.key_of(&Rc::new(values));
            self.hold(pk, key);
            rows.push(row);
        }
        Ok(rows)
    }

    /// The table whose rows the answer holds.
    pub fn table(&self) -> &str {
        &self.a.table
    }

    /// Whether a change of `table` may change the answer.
    pub fn reads(&self, table: &str) -> bool {
        table == self.a.table || matches!(&self.shape, Followed::Semi { b, .. } if b.table == table)
    }

    /// For a filter whose condition requires `column = value` (a conjunct
    /// comparing a plain column with a literal): that column and value. A
    /// change of a row that neither holds the value nor is in the answer
    /// ([`Live::holds`]) cannot change the answer, so a caller following
    /// many such queries need not [`apply`](Live::apply) it to each.
    pub fn equality(&self) -> Option<(usize, &Value)> {
        let Followed::Filter { conds } = &self.shape else {
            return None;
        };
        conds.iter().find_map(|c| match c {
            Expr::Cmp(CmpOp::Eq, x, y) => match (&**x, &**y) {
                // Not on floats: SQL's equality (0.0 = -0.0) is not the
                // values' own.
                (col, Expr::Lit(v)) | (Expr::Lit(v), col) => plain_column(col, 0)
                    .filter(|c| !crate::values::is_float(base(&self.a.types[*c])))
                    .map(|c| (c, v)),
                _ => None,
            },
            _ => None,
        })
    }

    /// Whether the row with primary key `pk` is in the answer.
    pub fn holds(&self, pk: &Value) -> bool {
        self.held.contains_key(pk)
    }

    /// Rows in the answer.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The answer's rows as they stand in `tables`, in primary-key order.
    pub fn rows(&self, tables: &dyn Tables) -> Result<Vec<RowBytes>, SqlError> {
        let t = self.a.get(tables)?;
        self.held
            .keys()
            .map(|pk| {
                t.get(pk)
                    .cloned()
                    .ok_or_else(|| corrupt("a row of a live answer is missing"))
            })
            .collect()
    }

    fn key_of(&self, values: &Rc<Vec<Value>>) -> Value {
        match &self.shape {
            Followed::Filter { .. } => Value::Null,
            Followed::Semi { a_key, .. } => {
                normalized(&eval_on(a_key, &[Some(values.clone()), None]))
            }
        }
    }

    fn hold(&mut self, pk: Value, key: Value) {
        if let Followed::Semi { by_key, .. } = &mut self.shape {
            by_key.entry(key.clone()).or_default().insert(pk.clone());
        }
        self.held.insert(pk, key);
    }

    fn release(&mut self, pk: &Value) {
        let Some(key) = self.held.remove(pk) else {
            return;
        };
        if let Followed::Semi { by_key, .. } = &mut self.shape
            && let Some(set) = by_key.get_mut(&key)
        {
            set.remove(pk);
            if set.is_empty() {
                by_key.remove(&key);
            }
        }
    }

    /// Whether a row of `a` (decoded) belongs in the answer, with its key.
    fn belongs(&self, values: &Rc<Vec<Value>>) -> (bool, Value) {
        let tuple = [Some(values.clone()), None];
        match &self.shape {
            Followed::Filter { conds } => (conds.iter().all(|c| holds_on(c, &tuple)), Value::Null),
            Followed::Semi {
                a_key,
                a_conds,
                counts,
                ..
            } => {
                let key = normalized(&eval_on(a_key, &tuple));
                let ok = key != Value::Null
                    && counts.get(&key).is_some_and(|n| *n > 0)
                    && a_conds.iter().all(|c| holds_on(c, &tuple));
                (ok, key)
            }
        }
    }

    /// The changes a transaction's row changes (`changes`, in order) make
    /// to the answer, with `tables` as they stand after it.
    pub fn apply(
        &mut self,
        tables: &dyn Tables,
        changes: &[Change<'_>],
    ) -> Result<Vec<Delta>, SqlError> {
        // Rows of `a` to look at again, with the last bytes seen of each
        // (a deleted row is gone from the table).
        let mut candidates: BTreeMap<Value, Option<RowBytes>> = BTreeMap::new();
        let mut mutated: BTreeSet<Value> = BTreeSet::new();
        // Keys whose count came to or left zero.
        let mut moved_keys: BTreeSet<Value> = BTreeSet::new();
        for c in changes {
            if let Followed::Semi {
                b,
                b_key,
                b_conds,
                b_held,
                counts,
                ..
            } = &mut self.shape
                && c.table == b.table
            {
                let values = b.decode(c.row)?;
                let pk = &values[b.pk];
                if let Some(old) = b_held.remove(pk)
                    && let Some(n) = counts.get_mut(&old)
                {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&old);
                        moved_keys.insert(old);
                    }
                }
                if c.op != MutationOp::Delete {
                    let tuple = [None, Some(values.clone())];
                    if b_conds.iter().all(|e| holds_on(e, &tuple)) {
                        let k = normalized(&eval_on(b_key, &tuple));
                        if k != Value::Null {
                            b_held.insert(pk.clone(), k.clone());
                            let n = counts.entry(k.clone()).or_default();
                            *n += 1;
                            if *n == 1 {
                                moved_keys.insert(k);
                            }
                        }
                    }
                }
            }
            if c.table == self.a.table {
                let values = self.a.decode(c.row)?;
                let pk = values[self.a.pk].clone();
                mutated.insert(pk.clone());
                candidates.insert(pk, Some(RowBytes::from(c.row)));
            }
        }
        let a = self.a.get(tables)?;
        if let Followed::Semi {
            a_index,
            a_key,
            by_key,
            counts,
            ..
        } = &self.shape
        {
            for k in &moved_keys {
                // Leaving: the rows held under the key.
                for pk in by_key.get(k).into_iter().flatten() {
                    candidates.entry(pk.clone()).or_insert(None);
                }
                // Entering: the rows of `a` holding the key now.
                if counts.get(k).is_some_and(|n| *n > 0) {
                    for row in probe(a, a_index.as_ref(), a_key, &self.a, k)? {
                        let values = self.a.decode(&row)?;
                        candidates
                            .entry(values[self.a.pk].clone())
                            .or_insert(Some(row));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (pk, seen) in candidates {
            let now = a.get(&pk).cloned();
            let (is_in, key) = match &now {
                Some(row) => self.belongs(&self.a.decode(row)?),
                None => (false, Value::Null),
            };
            let was_in = self.held.contains_key(&pk);
            match (was_in, is_in) {
                (false, true) => {
                    self.hold(pk, key);
                    out.push(Delta {
                        op: MutationOp::Insert,
                        row: now.unwrap_or_default(),
                    });
                }
                (true, true) => {
                    if self.held.get(&pk) != Some(&key) {
                        self.release(&pk);
                        self.hold(pk.clone(), key);
                    }
                    if mutated.contains(&pk) {
                        out.push(Delta {
                            op: MutationOp::Update,
                            row: now.unwrap_or_default(),
                        });
                    }
                }
                (true, false) => {
                    self.release(&pk);
                    let row = now.or(seen).unwrap_or_default();
                    out.push(Delta {
                        op: MutationOp::Delete,
                        row,
                    });
                }
                (false, false) => {}
            }
        }
        Ok(out)
    }
}

/// The rows of `a` whose join key is `key`: through the index when there
/// is one, else by a scan.
fn probe(
    a: &Table,
    index: Option<&(IndexId, AlgebraicType, bool)>,
    a_key: &Expr,
    side: &Side,
    key: &Value,
) -> Result<Vec<RowBytes>, SqlError> {
    if let Some((index, ty, prefix)) = index
        && let Some(exact) = crate::values::convert_exact(key, ty)
    {
        if *index == IndexId::PrimaryKey {
            return Ok(a.get(&exact).cloned().into_iter().collect());
        }
        let exact = match prefix {
            true => Value::Product(vec![exact].into()),
            false => exact,
        };
        let bound = Bound::Included(exact);
        let mut out = Vec::new();
        a.scan(*index, &bound, &bound, None, usize::MAX, &mut out)
            .map_err(corrupt)?;
        return Ok(out.into_iter().map(|(_, row)| row).collect());
    }
    if index.is_some() {
        // The key is not a value of the column's type: no row holds it.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for row in a.iter() {
        let values = side.decode(row)?;
        if normalized(&eval_on(a_key, &[Some(values), None])) == *key {
            out.push(row.clone());
        }
    }
    Ok(out)
}
