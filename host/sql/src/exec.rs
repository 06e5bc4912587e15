//! Runs a [`Plan`] over the tables: depth first through the joins, each
//! row counted against the budget, then grouping, order, distinct and
//! limit.

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::time::Instant;

use interstice_store::codec::decode_row_into;
use interstice_store::{IndexId, Table, Value};

use crate::plan::{Access, Agg, AggFn, Expr, JoinMethod, Plan, Shape, Step};
use crate::values::{convert_exact, like, normalized, order_cmp, sql_cmp};
use crate::{Answer, Budget, SqlError, Tables};

/// One table's decoded row; `None` is the NULL side of a left join.
type Row = Option<Rc<Vec<Value>>>;

static NULL: Value = Value::Null;

/// How often (in counted rows) the clock is read.
const CLOCK_EVERY: u64 = 256;

/// What is read while an expression is evaluated.
struct Env<'a> {
    tuple: &'a [Row],
    keys: &'a [Value],
    aggs: &'a [Value],
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn three(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Bool)
}

fn eval<'a>(e: &'a Expr, env: &Env<'a>) -> Cow<'a, Value> {
    match e {
        Expr::Col { src, col, path } => {
            let Some(row) = &env.tuple[*src] else {
                return Cow::Borrowed(&NULL);
            };
            let mut v = &row[*col];
            for i in path {
                v = match v {
                    Value::Product(fields) => &fields[*i],
                    _ => &NULL,
                };
            }
            Cow::Borrowed(v)
        }
        Expr::Lit(v) => Cow::Borrowed(v),
        Expr::Key(i) => Cow::Borrowed(&env.keys[*i]),
        Expr::Agg(i) => Cow::Borrowed(&env.aggs[*i]),
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, env), eval(b, env));
            Cow::Owned(three(sql_cmp(&a, &b).map(|o| op.holds(o))))
        }
        Expr::And(v) => {
            let mut unknown = false;
            for e in v {
                match truth(&eval(e, env)) {
                    Some(false) => return Cow::Owned(Value::Bool(false)),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            Cow::Owned(if unknown {
                Value::Null
            } else {
                Value::Bool(true)
            })
        }
        Expr::Or(v) => {
            let mut unknown = false;
            for e in v {
                match truth(&eval(e, env)) {
                    Some(true) => return Cow::Owned(Value::Bool(true)),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            Cow::Owned(if unknown {
                Value::Null
            } else {
                Value::Bool(false)
            })
        }
        Expr::Not(a) => Cow::Owned(three(truth(&eval(a, env)).map(|b| !b))),
        Expr::IsNull(a, negated) => Cow::Owned(Value::Bool(
            matches!(*eval(a, env), Value::Null) != *negated,
        )),
        Expr::IsBool(a, want) => Cow::Owned(Value::Bool(truth(&eval(a, env)) == Some(*want))),
        Expr::In(a, list, negated) => {
            let x = eval(a, env);
            let mut unknown = false;
            let mut found = false;
            for item in list {
                match sql_cmp(&x, &eval(item, env)) {
                    Some(Ordering::Equal) => {
                        found = true;
                        break;
                    }
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            let r = if found {
                Some(true)
            } else if unknown {
                None
            } else {
                Some(false)
            };
            Cow::Owned(three(r.map(|b| b != *negated)))
        }
        Expr::Like(a, pattern, negated) => match &*eval(a, env) {
            Value::String(s) => Cow::Owned(Value::Bool(like(s, pattern) != *negated)),
            _ => Cow::Borrowed(&NULL),
        },
    }
}

fn holds(e: &Expr, env: &Env<'_>) -> bool {
    matches!(*eval(e, env), Value::Bool(true))
}

/// `e` over one row per source (`None`: not bound), outside any group.
pub(crate) fn eval_on(e: &Expr, tuple: &[Row]) -> Value {
    let env = Env {
        tuple,
        keys: &[],
        aggs: &[],
    };
    eval(e, &env).into_owned()
}

/// Whether condition `e` holds over one row per source.
pub(crate) fn holds_on(e: &Expr, tuple: &[Row]) -> bool {
    let env = Env {
        tuple,
        keys: &[],
        aggs: &[],
    };
    holds(e, &env)
}

/// The work done so far, against the budget.
struct Meter {
    count: Cell<u64>,
    max: u64,
    start: Instant,
    budget: Budget,
}

impl Meter {
    fn tick(&self, n: u64) -> Result<(), SqlError> {
        let before = self.count.get();
        let now = before.saturating_add(n);
        self.count.set(now);
        if now > self.max {
            return Err(SqlError::Budget {
                what: "rows read, joined or answered",
                limit: format!("{} rows", self.max),
            });
        }
        if before / CLOCK_EVERY != now / CLOCK_EVERY && self.start.elapsed() > self.budget.time {
            return Err(SqlError::Budget {
                what: "time",
                limit: format!("{} ms", self.budget.time.as_millis()),
            });
        }
        Ok(())
    }

    fn left(&self) -> usize {
        usize::try_from(self.max.saturating_sub(self.count.get()))
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }
}

/// Decodes the columns of source `k` that the query reads into `out`.
fn decode_into(
    plan: &Plan,
    k: usize,
    t: &Table,
    bytes: &[u8],
    out: &mut Vec<Value>,
) -> Result<(), SqlError> {
    let s = &plan.sources[k];
    decode_row_into(bytes, &s.types, &s.needed, out)
        .map_err(|e| SqlError::Corrupt(format!("table `{}`: {e}", t.def().name)))
}

fn decode(plan: &Plan, k: usize, t: &Table, bytes: &[u8]) -> Result<Rc<Vec<Value>>, SqlError> {
    let mut out = Vec::with_capacity(plan.sources[k].types.len());
    decode_into(plan, k, t, bytes, &mut out)?;
    Ok(Rc::new(out))
}

/// Rows of the joined table, prepared before the join runs.
enum Prepared {
    None,
    Hash(HashMap<Vec<Value>, Vec<Rc<Vec<Value>>>>),
    All(Vec<Rc<Vec<Value>>>),
}

struct Run<'p> {
    plan: &'p Plan,
    tables: Vec<&'p Table>,
    prepared: Vec<Prepared>,
    meter: Meter,
}

/// What the sink says after each row: go on, or stop (enough rows).
type Sink<'s> = dyn FnMut(&[Row]) -> Result<bool, SqlError> + 's;

impl Run<'_> {
    /// Rows of the first table.
    fn scan(&self, tuple: &mut Vec<Row>, sink: &mut Sink<'_>) -> Result<bool, SqlError> {
        let t = self.tables[0];
        let Step::Scan(access) = &self.plan.steps[0] else {
            return Err(SqlError::Eval("the first step is not a scan".into()));
        };
        // One row buffer, reused while nothing downstream keeps the row.
        let mut spare: Rc<Vec<Value>> = Rc::new(Vec::new());
        let mut each = |bytes: &[u8], tuple: &mut Vec<Row>| -> Result<bool, SqlError> {
            self.meter.tick(1)?;
            let mut row = std::mem::take(&mut spare);
            match Rc::get_mut(&mut row) {
                Some(buf) => decode_into(self.plan, 0, t, bytes, buf)?,
                None => row = decode(self.plan, 0, t, bytes)?,
            }
            tuple.push(Some(row));
            let more = self.after_step(0, tuple, sink);
            if let Some(Some(row)) = tuple.pop() {
                spare = row;
            }
            more
        };
        match access {
            Access::Full => {
                for bytes in t.iter() {
                    if !each(bytes, tuple)? {
                        return Ok(false);
                    }
                }
            }
            Access::Points { index, keys, .. } => {
                for key in keys {
                    for bytes in self.lookup(t, *index, key, false)? {
                        if !each(&bytes, tuple)? {
                            return Ok(false);
                        }
                    }
                }
            }
            Access::Range {
                index,
                lower,
                upper,
                ..
            } => {
                let mut out = Vec::new();
                t.scan(*index, lower, upper, None, self.meter.left(), &mut out)
                    .map_err(|e| SqlError::Corrupt(e.to_string()))?;
                for (_, bytes) in out {
                    if !each(&bytes, tuple)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// The rows of `t` whose `index` holds `key` (or begins with it).
    fn lookup(
        &self,
        t: &Table,
        index: IndexId,
        key: &Value,
        prefix: bool,
    ) -> Result<Vec<interstice_store::RowBytes>, SqlError> {
        if index == IndexId::PrimaryKey {
            return Ok(t.get(key).cloned().into_iter().collect());
        }
        let key = if prefix {
            Value::Product(vec![key.clone()].into())
        } else {
            key.clone()
        };
        let bound = Bound::Included(key);
        let mut out = Vec::new();
        t.scan(index, &bound, &bound, None, self.meter.left(), &mut out)
            .map_err(|e| SqlError::Corrupt(e.to_string()))?;
        Ok(out.into_iter().map(|(_, row)| row).collect())
    }

    /// After step `k` bound its row: its filters, then the next step.
    fn after_step(
        &self,
        k: usize,
        tuple: &mut Vec<Row>,
        sink: &mut Sink<'_>,
    ) -> Result<bool, SqlError> {
        let env = Env {
            tuple,
            keys: &[],
            aggs: &[],
        };
        if !self.plan.filters[k].iter().all(|f| holds(f, &env)) {
            return Ok(true);
        }
        if k + 1 == self.plan.steps.len() {
            self.meter.tick(1)?;
            return sink(tuple);
        }
        self.join(k + 1, tuple, sink)
    }

    fn join(&self, k: usize, tuple: &mut Vec<Row>, sink: &mut Sink<'_>) -> Result<bool, SqlError> {
        let Step::Join {
            left_outer,
            method,
            on,
        } = &self.plan.steps[k]
        else {
            return Err(SqlError::Eval("a later step is not a join".into()));
        };
        let t = self.tables[k];
        let candidates: Vec<Rc<Vec<Value>>> = match (method, &self.prepared[k]) {
            (
                JoinMethod::Index {
                    index,
                    key,
                    ty,
                    prefix,
                    ..
                },
                _,
            ) => {
                let env = Env {
                    tuple,
                    keys: &[],
                    aggs: &[],
                };
                match convert_exact(&eval(key, &env), ty) {
                    None => Vec::new(),
                    Some(key) => self
                        .lookup(t, *index, &key, *prefix)?
                        .iter()
                        .map(|bytes| decode(self.plan, k, t, bytes))
                        .collect::<Result<_, _>>()?,
                }
            }
            (JoinMethod::Hash { left, .. }, Prepared::Hash(map)) => {
                let env = Env {
                    tuple,
                    keys: &[],
                    aggs: &[],
                };
                let key: Option<Vec<Value>> = left
                    .iter()
                    .map(|e| {
                        let v = eval(e, &env);
                        (!matches!(*v, Value::Null)).then(|| normalized(&v))
                    })
                    .collect();
                key.and_then(|k| map.get(&k).cloned()).unwrap_or_default()
            }
            (JoinMethod::Loop, Prepared::All(rows)) => rows.clone(),
            _ => return Err(SqlError::Eval("a join's rows were not prepared".into())),
        };
        let mut matched = false;
        for row in candidates {
            self.meter.tick(1)?;
            tuple.push(Some(row));
            let env = Env {
                tuple,
                keys: &[],
                aggs: &[],
            };
            let more = if on.iter().all(|c| holds(c, &env)) {
                matched = true;
                self.after_step(k, tuple, sink)
            } else {
                Ok(true)
            };
            tuple.pop();
            if !more? {
                return Ok(false);
            }
        }
        if *left_outer && !matched {
            tuple.push(None);
            let more = self.after_step(k, tuple, sink);
            tuple.pop();
            return more;
        }
        Ok(true)
    }
}

/// One aggregate's running state.
#[derive(Clone)]
enum Acc {
    Count(u64),
    SumInt(Option<i128>),
    /// Neumaier's compensated sum, as SQLite keeps one.
    SumFloat(Option<(f64, f64)>),
    Avg(f64, f64, u64),
    Min(Value),
    Max(Value),
}

impl Acc {
    fn new(f: AggFn) -> Acc {
        match f {
            AggFn::CountAll | AggFn::Count => Acc::Count(0),
            AggFn::SumInt => Acc::SumInt(None),
            AggFn::SumFloat => Acc::SumFloat(None),
            AggFn::Avg => Acc::Avg(0.0, 0.0, 0),
            AggFn::Min => Acc::Min(Value::Null),
            AggFn::Max => Acc::Max(Value::Null),
        }
    }

    fn add(&mut self, agg: &Agg, env: &Env<'_>) -> Result<(), SqlError> {
        let v = match &agg.arg {
            None => {
                if let Acc::Count(n) = self {
                    *n += 1;
                }
                return Ok(());
            }
            Some(e) => eval(e, env),
        };
        if matches!(*v, Value::Null) {
            return Ok(());
        }
        match self {
            Acc::Count(n) => *n += 1,
            Acc::SumInt(s) => {
                let x = int_of(&v)?;
                *s = Some(
                    s.unwrap_or(0)
                        .checked_add(x)
                        .ok_or_else(|| SqlError::Eval("integer overflow in SUM".into()))?,
                );
            }
            Acc::SumFloat(s) => {
                let x = float_of(&v);
                let (sum, c) = s.unwrap_or((0.0, 0.0));
                *s = Some(neumaier(sum, c, x));
            }
            Acc::Avg(sum, c, n) => {
                let (s2, c2) = neumaier(*sum, *c, float_of(&v));
                *sum = s2;
                *c = c2;
                *n += 1;
            }
            Acc::Min(m) => {
                if matches!(m, Value::Null) || order_cmp(&v, m) == Ordering::Less {
                    *m = v.into_owned();
                }
            }
            Acc::Max(m) => {
                if matches!(m, Value::Null) || order_cmp(&v, m) == Ordering::Greater {
                    *m = v.into_owned();
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Value, SqlError> {
        Ok(match self {
            Acc::Count(n) => Value::U64(n),
            Acc::SumInt(None) | Acc::SumFloat(None) => Value::Null,
            Acc::SumInt(Some(s)) => Value::I64(
                i64::try_from(s).map_err(|_| SqlError::Eval("integer overflow in SUM".into()))?,
            ),
            Acc::SumFloat(Some((s, c))) => Value::F64(s + c),
            Acc::Avg(_, _, 0) => Value::Null,
            Acc::Avg(s, c, n) => Value::F64((s + c) / n as f64),
            Acc::Min(v) | Acc::Max(v) => v,
        })
    }
}

fn neumaier(sum: f64, c: f64, x: f64) -> (f64, f64) {
    let t = sum + x;
    let c = if sum.abs() >= x.abs() {
        c + ((sum - t) + x)
    } else {
        c + ((x - t) + sum)
    };
    (t, c)
}

fn int_of(v: &Value) -> Result<i128, SqlError> {
    Ok(match v {
        Value::U8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::U128(x) => {
            i128::try_from(**x).map_err(|_| SqlError::Eval("integer overflow in SUM".into()))?
        }
        Value::I8(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::I64(x) => *x as i128,
        Value::I128(x) => **x,
        _ => {
            return Err(SqlError::Eval(
                "SUM of a value that is not an integer".into(),
            ));
        }
    })
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::F32(x) => *x as f64,
        Value::F64(x) => *x,
        other => int_of(other).map_or(f64::NAN, |i| i as f64),
    }
}

/// Orders answer rows by their sort keys.
fn sort(rows: &mut [(Vec<Value>, Vec<Value>)], plan: &Plan) {
    let order = &plan.output.order;
    rows.sort_by(|(a, _), (b, _)| {
        for (k, key) in order.iter().enumerate() {
            let (x, y) = (&a[k], &b[k]);
            let o = match (matches!(x, Value::Null), matches!(y, Value::Null)) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if key.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if key.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (false, false) => {
                    let o = order_cmp(x, y);
                    if key.desc { o.reverse() } else { o }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

pub(crate) fn run(tables: &dyn Tables, plan: &Plan, budget: &Budget) -> Result<Answer, SqlError> {
    let meter = Meter {
        count: Cell::new(0),
        max: budget.rows,
        start: Instant::now(),
        budget: *budget,
    };
    let mut found = Vec::with_capacity(plan.sources.len());
    for s in &plan.sources {
        found.push(
            tables
                .table(&s.table)
                .ok_or_else(|| SqlError::UnknownTable(s.table.clone()))?,
        );
    }
    // The tables that joins read whole: hashed, or listed for a loop.
    let mut prepared = Vec::with_capacity(plan.steps.len());
    for (k, step) in plan.steps.iter().enumerate() {
        let t = found[k];
        prepared.push(match step {
            Step::Join {
                method: JoinMethod::Hash { right, .. },
                ..
            } => {
                let mut map: HashMap<Vec<Value>, Vec<Rc<Vec<Value>>>> = HashMap::new();
                for bytes in t.iter() {
                    meter.tick(1)?;
                    let row = decode(plan, k, t, bytes)?;
                    if right.iter().any(|c| matches!(row[*c], Value::Null)) {
                        continue;
                    }
                    let key = right.iter().map(|c| normalized(&row[*c])).collect();
                    map.entry(key).or_default().push(row);
                }
                Prepared::Hash(map)
            }
            Step::Join {
                method: JoinMethod::Loop,
                ..
            } => {
                let mut rows = Vec::with_capacity(t.len().min(meter.left()));
                for bytes in t.iter() {
                    meter.tick(1)?;
                    rows.push(decode(plan, k, t, bytes)?);
                }
                Prepared::All(rows)
            }
            _ => Prepared::None,
        });
    }
    let run = Run {
        plan,
        tables: found,
        prepared,
        meter,
    };
    let out = &plan.output;
    // Rows may stop early when nothing after them needs the rest.
    let wanted = match (&out.shape, out.order.is_empty() && !out.distinct, out.limit) {
        (Shape::Rows(_), true, Some(limit)) => Some(limit.saturating_add(out.offset)),
        _ => None,
    };
    let mut rows: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    let mut tuple = Vec::with_capacity(plan.sources.len());
    match &out.shape {
        Shape::Rows(exprs) => {
            if wanted != Some(0) {
                run.scan(&mut tuple, &mut |t: &[Row]| {
                    let env = Env {
                        tuple: t,
                        keys: &[],
                        aggs: &[],
                    };
                    let keys = out
                        .order
                        .iter()
                        .map(|o| eval(&o.expr, &env).into_owned())
                        .collect();
                    let row = exprs.iter().map(|e| eval(e, &env).into_owned()).collect();
                    rows.push((keys, row));
                    Ok(wanted.is_none_or(|w| (rows.len() as u64) < w))
                })?;
            }
        }
        Shape::Groups {
            keys,
            aggs,
            having,
            exprs,
        } => {
            let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
            let mut groups: Vec<(Vec<Value>, Vec<Acc>)> = Vec::new();
            run.scan(&mut tuple, &mut |t: &[Row]| {
                let env = Env {
                    tuple: t,
                    keys: &[],
                    aggs: &[],
                };
                let key: Vec<Value> = keys.iter().map(|k| eval(k, &env).into_owned()).collect();
                let norm: Vec<Value> = key.iter().map(normalized).collect();
                let g = match index.get(&norm) {
                    Some(g) => *g,
                    None => {
                        run.meter.tick(1)?;
                        index.insert(norm, groups.len());
                        groups.push((key, aggs.iter().map(|a| Acc::new(a.func)).collect()));
                        groups.len() - 1
                    }
                };
                for (acc, agg) in groups[g].1.iter_mut().zip(aggs) {
                    acc.add(agg, &env)?;
                }
                Ok(true)
            })?;
            // Aggregates without GROUP BY answer one row, even of nothing.
            if keys.is_empty() && groups.is_empty() {
                groups.push((Vec::new(), aggs.iter().map(|a| Acc::new(a.func)).collect()));
            }
            for (key, accs) in groups {
                let values = accs
                    .into_iter()
                    .map(Acc::finish)
                    .collect::<Result<Vec<_>, _>>()?;
                let env = Env {
                    tuple: &[],
                    keys: &key,
                    aggs: &values,
                };
                if let Some(h) = having
                    && !holds(h, &env)
                {
                    continue;
                }
                let order = out
                    .order
                    .iter()
                    .map(|o| eval(&o.expr, &env).into_owned())
                    .collect();
                let row = exprs.iter().map(|e| eval(e, &env).into_owned()).collect();
                rows.push((order, row));
            }
        }
    }
    if !out.order.is_empty() {
        sort(&mut rows, plan);
    }
    let mut answer: Vec<Vec<Value>> = Vec::new();
    let mut seen = HashSet::new();
    let offset = usize::try_from(out.offset).unwrap_or(usize::MAX);
    let limit = out
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut skipped = 0;
    for (_, row) in rows {
        if out.distinct && !seen.insert(row.iter().map(normalized).collect::<Vec<_>>()) {
            continue;
        }
        if skipped < offset {
            skipped += 1;
            continue;
        }
        if answer.len() >= limit {
            break;
        }
        answer.push(row);
    }
    Ok(Answer {
        columns: out.columns.clone(),
        rows: answer,
    })
}
