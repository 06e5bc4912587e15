//! A bound query: which tables in which order, how each is reached, the
//! conditions and what is answered. Built by [`crate::bind`], run by
//! [`crate::exec`], shown by `EXPLAIN`.

use std::ops::Bound;

use interstice_store::{AlgebraicType, IndexId, TableDef, Value};

use crate::Column;

/// A bound `SELECT`.
#[derive(Debug)]
pub struct Plan {
    /// The tables in join order: the first is scanned, each other joined.
    pub(crate) sources: Vec<Source>,
    /// How each source is reached; `steps[0]` is a [`Step::Scan`].
    pub(crate) steps: Vec<Step>,
    /// `WHERE` conditions, each checked right after the step that binds
    /// the last source it reads (`filters[k]` after step k).
    pub(crate) filters: Vec<Vec<Expr>>,
    pub(crate) output: Output,
}

#[derive(Debug)]
pub(crate) struct Source {
    pub table: String,
    /// The name the query calls it by (its alias, or its name).
    pub alias: String,
    pub def: TableDef,
    pub types: Vec<AlgebraicType>,
    /// The columns the query reads; the others are never decoded.
    pub needed: Vec<bool>,
}

#[derive(Debug)]
pub(crate) enum Step {
    Scan(Access),
    Join {
        /// `LEFT JOIN`: a row with no match goes on with NULLs.
        left_outer: bool,
        method: JoinMethod,
        /// The `ON` conditions, all of them (the method only narrows which
        /// rows are tried).
        on: Vec<Expr>,
    },
}

/// Which rows of the first table are read.
#[derive(Debug)]
pub(crate) enum Access {
    Full,
    /// The rows holding each of these keys (sorted, distinct).
    Points {
        index: IndexId,
        name: String,
        keys: Vec<Value>,
    },
    /// The rows within the bounds, in the index's order. For an index over
    /// several columns a bound is a prefix of the key.
    Range {
        index: IndexId,
        name: String,
        lower: Bound<Value>,
        upper: Bound<Value>,
    },
}

#[derive(Debug)]
pub(crate) enum JoinMethod {
    /// For each row so far, the joined table's rows whose indexed column
    /// equals `key`: a point of the index, or a prefix of a B-tree index
    /// over several columns.
    Index {
        index: IndexId,
        name: String,
        key: Expr,
        /// The indexed column's type, which the key is converted to.
        ty: AlgebraicType,
        prefix: bool,
    },
    /// A hash table of the joined table by `right` columns, probed with
    /// `left` (values normalized so that equal numbers meet).
    Hash { right: Vec<usize>, left: Vec<Expr> },
    /// Every row of the joined table for each row so far.
    Loop,
}

#[derive(Debug)]
pub(crate) struct Output {
    pub columns: Vec<Column>,
    pub shape: Shape,
    pub order: Vec<OrderKey>,
    pub distinct: bool,
    pub limit: Option<u64>,
    pub offset: u64,
}

#[derive(Debug)]
pub(crate) enum Shape {
    /// One answer row per row of the join.
    Rows(Vec<Expr>),
    /// One answer row per group; the answer's expressions and `having`
    /// read [`Expr::Key`] and [`Expr::Agg`] only.
    Groups {
        keys: Vec<Expr>,
        aggs: Vec<Agg>,
        having: Option<Expr>,
        exprs: Vec<Expr>,
    },
}

#[derive(Debug)]
pub(crate) struct OrderKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggFn {
    CountAll,
    Count,
    /// Over integers: an integer, an error past `i64`.
    SumInt,
    SumFloat,
    Avg,
    Min,
    Max,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Agg {
    pub func: AggFn,
    /// `None` for `COUNT(*)`.
    pub arg: Option<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => o == Equal,
            CmpOp::Ne => o != Equal,
            CmpOp::Lt => o == Less,
            CmpOp::Le => o != Greater,
            CmpOp::Gt => o == Greater,
            CmpOp::Ge => o != Less,
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// One token of a compiled `LIKE` pattern.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LikeTok {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    Char(char),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// A column of a source, or a field of one (`pos.x`: `path` is the
    /// field's position at each level).
    Col {
        src: usize,
        col: usize,
        path: Vec<usize>,
    },
    Lit(Value),
    /// A `GROUP BY` key of the group.
    Key(usize),
    /// An aggregate of the group.
    Agg(usize),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `IS NULL` (`IS NOT NULL` when the flag is set).
    IsNull(Box<Expr>, bool),
    /// `IS TRUE` / `IS FALSE` (never NULL).
    IsBool(Box<Expr>, bool),
    /// `IN (...)` (`NOT IN` when the flag is set).
    In(Box<Expr>, Vec<Expr>, bool),
    /// `LIKE` (`NOT LIKE` when the flag is set).
    Like(Box<Expr>, Vec<LikeTok>, bool),
}

impl Expr {
    /// Marks every column this expression reads.
    pub fn mark(&self, needed: &mut [Vec<bool>]) {
        match self {
            Expr::Col { src, col, .. } => needed[*src][*col] = true,
            Expr::Lit(_) | Expr::Key(_) | Expr::Agg(_) => {}
            Expr::Cmp(_, a, b) => {
                a.mark(needed);
                b.mark(needed);
            }
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.mark(needed)),
            Expr::Not(e) | Expr::IsNull(e, _) | Expr::IsBool(e, _) | Expr::Like(e, _, _) => {
                e.mark(needed)
            }
            Expr::In(e, list, _) => {
                e.mark(needed);
                list.iter().for_each(|e| e.mark(needed));
            }
        }
    }

    /// Calls `f` with every source this expression reads.
    pub fn sources(&self, f: &mut impl FnMut(usize)) {
        match self {
            Expr::Col { src, .. } => f(*src),
            Expr::Lit(_) | Expr::Key(_) | Expr::Agg(_) => {}
            Expr::Cmp(_, a, b) => {
                a.sources(f);
                b.sources(f);
            }
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.sources(f)),
            Expr::Not(e) | Expr::IsNull(e, _) | Expr::IsBool(e, _) | Expr::Like(e, _, _) => {
                e.sources(f)
            }
            Expr::In(e, list, _) => {
                e.sources(f);
                list.iter().for_each(|e| e.sources(f));
            }
        }
    }

    /// The last source this expression reads, if any.
    pub fn last_source(&self) -> Option<usize> {
        let mut last = None;
        self.sources(&mut |s| last = Some(last.map_or(s, |l: usize| l.max(s))));
        last
    }

    fn show(&self, plan: &Plan, out: &mut String) {
        match self {
            Expr::Col { src, col, path } => {
                let source = &plan.sources[*src];
                out.push_str(&source.alias);
                out.push('.');
                out.push_str(&source.def.columns[*col].name);
                let mut ty = &source.types[*col];
                for i in path {
                    let fields = match ty {
                        AlgebraicType::Product(p) => &p.fields,
                        AlgebraicType::Option(inner) => match &**inner {
                            AlgebraicType::Product(p) => &p.fields,
                            _ => break,
                        },
                        _ => break,
                    };
                    out.push('.');
                    out.push_str(&fields[*i].name);
                    ty = &fields[*i].ty;
                }
            }
            Expr::Lit(v) => out.push_str(&v.to_string()),
            Expr::Key(i) => out.push_str(&format!("key#{i}")),
            Expr::Agg(i) => out.push_str(&format!("agg#{i}")),
            Expr::Cmp(op, a, b) => {
                a.show(plan, out);
                out.push_str(&format!(" {} ", op.symbol()));
                b.show(plan, out);
            }
            Expr::And(v) | Expr::Or(v) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                out.push('(');
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    e.show(plan, out);
                }
                out.push(')');
            }
            Expr::Not(e) => {
                out.push_str("NOT ");
                e.show(plan, out);
            }
            Expr::IsNull(e, negated) => {
                e.show(plan, out);
                out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Expr::IsBool(e, b) => {
                e.show(plan, out);
                out.push_str(if *b { " IS TRUE" } else { " IS FALSE" });
            }
            Expr::In(e, list, negated) => {
                e.show(plan, out);
                out.push_str(if *negated { " NOT IN (" } else { " IN (" });
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    e.show(plan, out);
                }
                out.push(')');
            }
            Expr::Like(e, _, negated) => {
                e.show(plan, out);
                out.push_str(if *negated {
                    " NOT LIKE <pattern>"
                } else {
                    " LIKE <pattern>"
                });
            }
        }
    }
}

fn show_bound(b: &Bound<Value>, lower: bool) -> String {
    match (b, lower) {
        (Bound::Unbounded, true) => "(-inf".to_string(),
        (Bound::Unbounded, false) => "+inf)".to_string(),
        (Bound::Included(v), true) => format!("[{v}"),
        (Bound::Excluded(v), true) => format!("({v}"),
        (Bound::Included(v), false) => format!("{v}]"),
        (Bound::Excluded(v), false) => format!("{v})"),
    }
}

impl Plan {
    fn conditions(&self, exprs: &[Expr]) -> String {
        let mut out = String::new();
        for (i, e) in exprs.iter().enumerate() {
            if i > 0 {
                out.push_str(" AND ");
            }
            e.show(self, &mut out);
        }
        out
    }

    /// The plan as lines of text, one per step, as `EXPLAIN` shows it.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (k, step) in self.steps.iter().enumerate() {
            let source = &self.sources[k];
            let named = if source.alias == source.table {
                source.table.clone()
            } else {
                format!("{} AS {}", source.table, source.alias)
            };
            let mut line = match step {
                Step::Scan(Access::Full) => format!("scan {named}: every row"),
                Step::Scan(Access::Points { name, keys, .. }) => {
                    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                    format!("scan {named}: index {name} at {}", keys.join(", "))
                }
                Step::Scan(Access::Range {
                    name, lower, upper, ..
                }) => format!(
                    "scan {named}: index {name} over {}, {}",
                    show_bound(lower, true),
                    show_bound(upper, false)
                ),
                Step::Join {
                    left_outer,
                    method,
                    on,
                } => {
                    let kind = if *left_outer { "left join" } else { "join" };
                    let how = match method {
                        JoinMethod::Index {
                            name, key, prefix, ..
                        } => {
                            let mut k = String::new();
                            key.show(self, &mut k);
                            let what = if *prefix { "prefix" } else { "lookup" };
                            format!("index {name} {what} by {k}")
                        }
                        JoinMethod::Hash { right, left } => {
                            let cols: Vec<&str> = right
                                .iter()
                                .map(|c| source.def.columns[*c].name.as_str())
                                .collect();
                            format!(
                                "hash join on ({}) = ({})",
                                cols.join(", "),
                                self.conditions(left).replace(" AND ", ", ")
                            )
                        }
                        JoinMethod::Loop => "nested loop over every row".to_string(),
                    };
                    let mut line = format!("{kind} {named}: {how}");
                    if !on.is_empty() {
                        line.push_str(&format!("; on {}", self.conditions(on)));
                    }
                    line
                }
            };
            if !self.filters[k].is_empty() {
                line.push_str(&format!("; filter {}", self.conditions(&self.filters[k])));
            }
            lines.push(line);
        }
        let out = &self.output;
        if let Shape::Groups {
            keys, aggs, having, ..
        } = &out.shape
        {
            let mut line = format!(
                "group by {} key(s) into {} aggregate(s)",
                keys.len(),
                aggs.len()
            );
            if let Some(h) = having {
                let mut text = String::new();
                h.show(self, &mut text);
                line.push_str(&format!("; having {text}"));
            }
            lines.push(line);
        }
        if !out.order.is_empty() {
            lines.push(format!("sort by {} key(s)", out.order.len()));
        }
        if out.distinct {
            lines.push("distinct".to_string());
        }
        if out.limit.is_some() || out.offset > 0 {
            let limit = out.limit.map_or("none".to_string(), |l| l.to_string());
            lines.push(format!("limit {limit} offset {}", out.offset));
        }
        lines
    }
}
