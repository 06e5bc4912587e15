//! From sqlparser's syntax tree to a [`Plan`]: names resolved against the
//! module's tables, literals typed by the columns they meet, conditions
//! placed at the earliest step that can check them, and an index chosen
//! for the first table and for each join.
//!
//! Everything the tree can say that is not listed in docs/sql.md is
//! refused with [`SqlError::Unsupported`], never ignored.

use std::ops::Bound;

use interstice_store::{AlgebraicType, IndexId, IndexKind, Value};
use sqlparser::ast::{self as ast, Expr as AstExpr};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::plan::{
    Access, Agg, AggFn, CmpOp, Expr, JoinMethod, OrderKey, Output, Plan, Shape, Source, Step,
};
use crate::values::{self, Lit, base, comparable, is_float, is_integer, is_number};
use crate::{
    Access as Readers, Column, LIKE_PATTERN_MAX, NESTING_MAX, OPERATORS_MAX, SqlError, TEXT_MAX,
    Tables,
};

fn unsupported(what: impl Into<String>) -> SqlError {
    SqlError::Unsupported(what.into())
}

/// One statement of the text.
pub(crate) fn parse(text: &str) -> Result<ast::Statement, SqlError> {
    if text.len() > TEXT_MAX {
        return Err(SqlError::TooLong(text.len()));
    }
    // Counted on the tokens, before any tree is built.
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR),
            Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat => true,
            _ => false,
        })
        .count();
    if operators > OPERATORS_MAX {
        return Err(SqlError::Parse(format!(
            "{operators} operators; at most {OPERATORS_MAX} are accepted (IN (...) lists many values with one)"
        )));
    }
    let mut statements = Parser::new(&GenericDialect {})
        .with_recursion_limit(NESTING_MAX)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(SqlError::Parse("no statement".into())),
        n => Err(SqlError::Parse(format!(
            "{n} statements; send one at a time"
        ))),
    }
}

/// Binds a `SELECT` (or `EXPLAIN SELECT`: the flag says so).
pub(crate) fn bind(
    tables: &dyn Tables,
    readers: Readers,
    statement: &ast::Statement,
) -> Result<(Plan, bool), SqlError> {
    match statement {
        ast::Statement::Query(q) => Ok((bind_query(tables, readers, q)?, false)),
        ast::Statement::Explain {
            statement,
            analyze: false,
            verbose: false,
            query_plan: false,
            estimate: false,
            format: None,
            options: None,
            ..
        } => match &**statement {
            ast::Statement::Query(q) => Ok((bind_query(tables, readers, q)?, true)),
            _ => Err(unsupported("EXPLAIN of anything but a SELECT")),
        },
        ast::Statement::Explain { .. } => Err(unsupported("EXPLAIN options")),
        ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_) => Err(
            unsupported("INSERT, UPDATE and DELETE in a read-only query"),
        ),
        _ => Err(unsupported("statements other than SELECT and EXPLAIN")),
    }
}

/// How one part of the `FROM` clause joins the ones before it.
enum JoinKind {
    First,
    Inner(Option<AstExpr>),
    Left(AstExpr),
    Cross,
}

pub(crate) struct Binder<'t> {
    sources: Vec<Source>,
    tables: &'t dyn Tables,
    /// How deep binding is in the expression being bound.
    depth: std::cell::Cell<usize>,
}

/// One level of [`Binder::depth`], given back when dropped.
struct Deeper<'b>(&'b std::cell::Cell<usize>);

impl Drop for Deeper<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// A bound operand: an expression with its type, or a literal waiting for
/// the type of what it meets.
pub(crate) enum Operand {
    Typed(Expr, AlgebraicType),
    Lit(Lit),
}

/// What an aggregate-aware binding collects: the `GROUP BY` keys (bound
/// over the rows) and the aggregates met so far.
struct Grouping {
    keys: Vec<Expr>,
    key_types: Vec<AlgebraicType>,
    aggs: Vec<Agg>,
    agg_types: Vec<AlgebraicType>,
}

pub(crate) fn bind_query(
    tables: &dyn Tables,
    readers: Readers,
    q: &ast::Query,
) -> Result<Plan, SqlError> {
    if q.with.is_some() {
        return Err(unsupported("WITH"));
    }
    if q.fetch.is_some()
        || !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return Err(unsupported(
            "FETCH, FOR, SETTINGS, FORMAT and pipe operators",
        ));
    }
    let select = match &*q.body {
        ast::SetExpr::Select(s) => s,
        ast::SetExpr::SetOperation { .. } => return Err(unsupported("UNION, INTERSECT, EXCEPT")),
        ast::SetExpr::Query(_) => return Err(unsupported("a parenthesized query")),
        _ => return Err(unsupported("anything but SELECT")),
    };
    check_select(select)?;
    let distinct = match &select.distinct {
        None | Some(ast::Distinct::All) => false,
        Some(ast::Distinct::Distinct) => true,
        Some(_) => return Err(unsupported("DISTINCT ON")),
    };

    let mut b = Binder {
        sources: Vec::new(),
        tables,
        depth: std::cell::Cell::new(0),
    };
    // FROM: each table in order, with how it joins the ones before it.
    let mut parts = Vec::new();
    if select.from.is_empty() {
        return Err(unsupported("SELECT without FROM"));
    }
    for (i, twj) in select.from.iter().enumerate() {
        let kind = if i == 0 {
            JoinKind::First
        } else {
            JoinKind::Cross
        };
        parts.push((&twj.relation, kind));
        for join in &twj.joins {
            if join.global {
                return Err(unsupported("GLOBAL JOIN"));
            }
            use ast::JoinConstraint as C;
            use ast::JoinOperator as J;
            let kind = match &join.join_operator {
                J::Join(c) | J::Inner(c) => match c {
                    C::On(e) => JoinKind::Inner(Some(e.clone())),
                    C::None => JoinKind::Inner(None),
                    _ => return Err(unsupported("USING and NATURAL joins; write ON a.x = b.y")),
                },
                J::Left(c) | J::LeftOuter(c) => match c {
                    C::On(e) => JoinKind::Left(e.clone()),
                    _ => return Err(unsupported("a LEFT JOIN without ON")),
                },
                J::CrossJoin(C::None) => JoinKind::Cross,
                J::Right(_) | J::RightOuter(_) => {
                    return Err(unsupported(
                        "RIGHT JOIN; swap the tables and write LEFT JOIN",
                    ));
                }
                _ => {
                    return Err(unsupported(
                        "joins other than [INNER] JOIN, LEFT JOIN, CROSS JOIN",
                    ));
                }
            };
            parts.push((&join.relation, kind));
        }
    }
    for (relation, _) in &parts {
        b.add_source(readers, relation)?;
    }

    // WHERE and ON conditions, split into conjuncts.
    let n = b.sources.len();
    let mut filters: Vec<Vec<Expr>> = (0..n).map(|_| Vec::new()).collect();
    if let Some(selection) = &select.selection {
        for c in conjuncts(b.predicate(selection, None)?) {
            let at = c.last_source().unwrap_or(0);
            filters[at].push(c);
        }
    }
    let mut ons: Vec<(bool, Vec<Expr>)> = Vec::new();
    for (k, (_, kind)) in parts.iter().enumerate() {
        let (left_outer, on) = match kind {
            JoinKind::First | JoinKind::Cross | JoinKind::Inner(None) => (false, None),
            JoinKind::Inner(Some(e)) => (false, Some(e)),
            JoinKind::Left(e) => (true, Some(e)),
        };
        let mut conds = Vec::new();
        if let Some(e) = on {
            for c in conjuncts(b.predicate(e, None)?) {
                if c.last_source().is_some_and(|s| s > k) {
                    return Err(SqlError::Type(format!(
                        "the ON of `{}` reads a table joined after it",
                        b.sources[k].alias
                    )));
                }
                if left_outer {
                    conds.push(c);
                } else {
                    // An inner join's ON is a WHERE by another name.
                    let at = c.last_source().unwrap_or(0);
                    filters[at].push(c);
                }
            }
        }
        ons.push((left_outer, conds));
    }

    // Steps: the first table's access, then each join's method.
    let mut steps = Vec::with_capacity(n);
    steps.push(Step::Scan(b.access(&filters[0])?));
    for (k, (left_outer, on)) in ons.into_iter().enumerate().skip(1) {
        // Equalities between this table and those before it: from ON for a
        // left join, from the conditions checked at this step otherwise.
        let candidates: &[Expr] = if left_outer { &on } else { &filters[k] };
        let method = b.join_method(k, candidates);
        steps.push(Step::Join {
            left_outer,
            method,
            on,
        });
    }

    let output = b.output(select, q, distinct)?;
    // The columns anything reads: only those are decoded.
    let mut needed: Vec<Vec<bool>> = b.sources.iter().map(|s| s.needed.clone()).collect();
    filters.iter().flatten().for_each(|e| e.mark(&mut needed));
    for (k, step) in steps.iter().enumerate() {
        if let Step::Join { method, on, .. } = step {
            on.iter().for_each(|e| e.mark(&mut needed));
            match method {
                JoinMethod::Index { key, .. } => key.mark(&mut needed),
                JoinMethod::Hash { right, left } => {
                    left.iter().for_each(|e| e.mark(&mut needed));
                    right.iter().for_each(|c| needed[k][*c] = true);
                }
                JoinMethod::Loop => {}
            }
        }
    }
    match &output.shape {
        Shape::Rows(exprs) => exprs.iter().for_each(|e| e.mark(&mut needed)),
        Shape::Groups { keys, aggs, .. } => {
            keys.iter().for_each(|e| e.mark(&mut needed));
            aggs.iter()
                .filter_map(|a| a.arg.as_ref())
                .for_each(|e| e.mark(&mut needed));
        }
    }
    output.order.iter().for_each(|o| o.expr.mark(&mut needed));
    for (source, needed) in b.sources.iter_mut().zip(needed) {
        source.needed = needed;
    }
    Ok(Plan {
        sources: b.sources,
        steps,
        filters,
        output,
    })
}

/// Refuses the clauses of other dialects that `SELECT` may carry.
fn check_select(s: &ast::Select) -> Result<(), SqlError> {
    let refuse = |what: &str| Err(unsupported(what.to_string()));
    if s.top.is_some() {
        return refuse("TOP; write LIMIT");
    }
    if s.into.is_some() {
        return refuse("SELECT INTO");
    }
    if !s.lateral_views.is_empty() {
        return refuse("LATERAL VIEW");
    }
    if s.prewhere.is_some() {
        return refuse("PREWHERE");
    }
    if !s.connect_by.is_empty() {
        return refuse("CONNECT BY");
    }
    if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() {
        return refuse("CLUSTER BY, DISTRIBUTE BY, SORT BY");
    }
    if !s.named_window.is_empty() || s.qualify.is_some() {
        return refuse("windows and QUALIFY");
    }
    if s.exclude.is_some() || s.select_modifiers.is_some() || s.value_table_mode.is_some() {
        return refuse("SELECT modifiers");
    }
    if !s.optimizer_hints.is_empty() {
        return refuse("optimizer hints");
    }
    if s.flavor != ast::SelectFlavor::Standard {
        return refuse("FROM-first SELECT");
    }
    Ok(())
}

/// The conjuncts of a condition: `a AND (b AND c)` is `[a, b, c]`.
fn conjuncts(e: Expr) -> Vec<Expr> {
    match e {
        Expr::And(v) => v.into_iter().flat_map(conjuncts).collect(),
        other => vec![other],
    }
}

pub(crate) fn ident_name(parts: &ast::ObjectName) -> Result<&ast::Ident, SqlError> {
    match parts.0.as_slice() {
        [ast::ObjectNamePart::Identifier(id)] => Ok(id),
        _ => Err(unsupported(format!(
            "table name `{parts}`: name a table of the module"
        ))),
    }
}

/// Whether an identifier of the query names `name`: exactly, or when it
/// was not quoted, regardless of ASCII case.
pub(crate) fn names(id: &ast::Ident, name: &str) -> bool {
    id.value == name || (id.quote_style.is_none() && id.value.eq_ignore_ascii_case(name))
}

fn int_literal(e: &AstExpr, what: &str) -> Result<u64, SqlError> {
    let bad = || SqlError::Type(format!("{what} must be a non-negative integer"));
    match e {
        AstExpr::Value(v) => match &v.value {
            ast::Value::Number(text, _) => text.parse::<u64>().map_err(|_| bad()),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

const AGGREGATES: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// The aggregate a function call is, if it is one.
fn aggregate_name(f: &ast::Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(id)] => {
            let lower = id.value.to_ascii_lowercase();
            AGGREGATES.contains(&lower.as_str()).then_some(lower)
        }
        _ => None,
    }
}

/// Whether an expression calls an aggregate anywhere.
fn has_aggregate(e: &AstExpr) -> bool {
    match e {
        AstExpr::Function(f) => aggregate_name(f).is_some(),
        AstExpr::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        AstExpr::UnaryOp { expr, .. }
        | AstExpr::Nested(expr)
        | AstExpr::IsNull(expr)
        | AstExpr::IsNotNull(expr)
        | AstExpr::IsTrue(expr)
        | AstExpr::IsFalse(expr)
        | AstExpr::IsNotTrue(expr)
        | AstExpr::IsNotFalse(expr) => has_aggregate(expr),
        AstExpr::Between {
            expr, low, high, ..
        } => has_aggregate(expr) || has_aggregate(low) || has_aggregate(high),
        AstExpr::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => has_aggregate(expr) || list.iter().any(has_aggregate),
        AstExpr::Like { expr, pattern, .. } => has_aggregate(expr) || has_aggregate(pattern),
        _ => false,
    }
}

/// No tables: what a binder of bare values reads.
struct NoTables;

impl Tables for NoTables {
    fn table(&self, _: &str) -> Option<&interstice_store::Table> {
        None
    }
}

impl Binder<'_> {
    /// A binder with no table in scope: for values alone.
    pub(crate) fn empty() -> Binder<'static> {
        Binder {
            sources: Vec::new(),
            tables: &NoTables,
            depth: std::cell::Cell::new(0),
        }
    }

    /// A bare operand (no aggregate in scope).
    pub(crate) fn value(&self, e: &AstExpr) -> Result<Operand, SqlError> {
        self.operand(e, None)
    }

    /// One level deeper into an expression; refused past [`NESTING_MAX`].
    fn deeper(&self) -> Result<Deeper<'_>, SqlError> {
        let d = self.depth.get() + 1;
        if d > NESTING_MAX {
            return Err(SqlError::Parse(format!(
                "expressions nest more than {NESTING_MAX} deep"
            )));
        }
        self.depth.set(d);
        Ok(Deeper(&self.depth))
    }

    fn add_source(
        &mut self,
        readers: Readers,
        relation: &ast::TableFactor,
    ) -> Result<(), SqlError> {
        let ast::TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            with_ordinality,
            partitions,
            json_path,
            sample,
            index_directives,
            inheritance,
        } = relation
        else {
            return Err(unsupported("subqueries and table functions in FROM"));
        };
        if args.is_some()
            || !with_hints.is_empty()
            || version.is_some()
            || *with_ordinality
            || !partitions.is_empty()
            || json_path.is_some()
            || sample.is_some()
            || !index_directives.is_empty()
            || inheritance.is_some()
        {
            return Err(unsupported("table options in FROM"));
        }
        let id = ident_name(name)?;
        let table = self
            .tables
            .table(&id.value)
            .ok_or_else(|| SqlError::UnknownTable(id.value.clone()))?;
        let def = table.def().clone();
        if !crate::readable(readers, &def) {
            return Err(SqlError::Private(def.name));
        }
        let alias = match alias {
            Some(a) if !a.columns.is_empty() => {
                return Err(unsupported("column aliases in FROM"));
            }
            Some(a) => a.name.value.clone(),
            None => def.name.clone(),
        };
        if self.sources.iter().any(|s| s.alias == alias) {
            return Err(SqlError::Type(format!(
                "`{alias}` names two tables of FROM: give one an alias"
            )));
        }
        self.sources.push(Source {
            table: def.name.clone(),
            alias,
            types: def.column_types(),
            needed: vec![false; def.columns.len()],
            def,
        });
        Ok(())
    }

    /// A column reference: `col`, `t.col`, `col.field…` or `t.col.field…`.
    fn column(&self, parts: &[ast::Ident]) -> Result<(Expr, AlgebraicType), SqlError> {
        let shown = || {
            parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join(".")
        };
        // Qualified by a table first, then a column of any table.
        let mut found = None;
        if parts.len() >= 2
            && let Some(src) = self.sources.iter().position(|s| names(&parts[0], &s.alias))
            && let Some(col) = self.sources[src]
                .def
                .columns
                .iter()
                .position(|c| names(&parts[1], &c.name))
        {
            found = Some((src, col, &parts[2..]));
        }
        if found.is_none() {
            let mut hits = self.sources.iter().enumerate().filter_map(|(src, s)| {
                s.def
                    .columns
                    .iter()
                    .position(|c| names(&parts[0], &c.name))
                    .map(|col| (src, col))
            });
            if let Some((src, col)) = hits.next() {
                if hits.next().is_some() {
                    return Err(SqlError::Ambiguous(parts[0].value.clone()));
                }
                found = Some((src, col, &parts[1..]));
            }
        }
        let (src, col, fields) = found.ok_or_else(|| SqlError::UnknownColumn(shown()))?;
        let mut ty = self.sources[src].types[col].clone();
        let mut path = Vec::new();
        for field in fields {
            let optional = matches!(ty, AlgebraicType::Option(_));
            let AlgebraicType::Product(p) = base(&ty) else {
                return Err(SqlError::UnknownColumn(shown()));
            };
            let i = p
                .fields
                .iter()
                .position(|f| names(field, &f.name))
                .ok_or_else(|| SqlError::UnknownColumn(shown()))?;
            let inner = p.fields[i].ty.clone();
            // A field of a struct that may be absent may be absent too.
            ty = if optional && !matches!(inner, AlgebraicType::Option(_)) {
                AlgebraicType::option(inner)
            } else {
                inner
            };
            path.push(i);
        }
        Ok((Expr::Col { src, col, path }, ty))
    }

    fn operand(&self, e: &AstExpr, g: Option<&mut Grouping>) -> Result<Operand, SqlError> {
        let _deeper = self.deeper()?;
        Ok(match e {
            AstExpr::Nested(inner) => return self.operand(inner, g),
            AstExpr::Value(v) => Operand::Lit(literal(&v.value)?),
            AstExpr::UnaryOp {
                op: ast::UnaryOperator::Minus,
                expr,
            } => match self.operand(expr, g)? {
                Operand::Lit(Lit::Int(n)) => Operand::Lit(Lit::Int(
                    n.checked_neg()
                        .ok_or_else(|| SqlError::Parse("an integer out of range".into()))?,
                )),
                Operand::Lit(Lit::Float(f)) => Operand::Lit(Lit::Float(-f)),
                _ => return Err(unsupported("arithmetic (unary minus on a non-literal)")),
            },
            AstExpr::UnaryOp {
                op: ast::UnaryOperator::Plus,
                expr,
            } => match self.operand(expr, g)? {
                lit @ Operand::Lit(Lit::Int(_) | Lit::Float(_)) => lit,
                _ => return Err(unsupported("arithmetic (unary plus on a non-literal)")),
            },
            AstExpr::Identifier(id) => {
                let (e, ty) = self.column(std::slice::from_ref(id))?;
                Operand::Typed(e, ty)
            }
            AstExpr::CompoundIdentifier(parts) => {
                let (e, ty) = self.column(parts)?;
                Operand::Typed(e, ty)
            }
            AstExpr::Function(f) => {
                let (e, ty) = self.aggregate(f, g)?;
                Operand::Typed(e, ty)
            }
            _ => {
                let e = self.predicate(e, g)?;
                Operand::Typed(e, AlgebraicType::Bool)
            }
        })
    }

    /// An operand on its own: a literal takes its default type.
    fn typed(
        &self,
        e: &AstExpr,
        g: Option<&mut Grouping>,
    ) -> Result<(Expr, AlgebraicType), SqlError> {
        Ok(match self.operand(e, g)? {
            Operand::Typed(e, ty) => (e, ty),
            Operand::Lit(l) => {
                let (v, ty) = l.default_typed();
                (Expr::Lit(v), ty)
            }
        })
    }

    /// Two operands that meet (a comparison, `IN`, `BETWEEN`): a literal
    /// takes the other side's type.
    fn pair(a: Operand, b: Operand) -> Result<(Expr, Expr), SqlError> {
        match (a, b) {
            (Operand::Typed(x, tx), Operand::Typed(y, ty)) => {
                if !comparable(&tx, &ty) {
                    return Err(SqlError::Type(format!(
                        "a value of type {tx} cannot be compared with a value of type {ty}"
                    )));
                }
                Ok((x, y))
            }
            (Operand::Typed(x, tx), Operand::Lit(l)) => {
                Ok((x, Expr::Lit(l.coerce(&tx).map_err(SqlError::Type)?)))
            }
            (Operand::Lit(l), Operand::Typed(y, ty)) => {
                Ok((Expr::Lit(l.coerce(&ty).map_err(SqlError::Type)?), y))
            }
            (Operand::Lit(l), Operand::Lit(m)) => {
                let (lv, lt) = l.default_typed();
                let (mv, mt) = m.default_typed();
                if !comparable(&lt, &mt) && !matches!(l, Lit::Null) && !matches!(m, Lit::Null) {
                    return Err(SqlError::Type(format!(
                        "a value of type {lt} cannot be compared with a value of type {mt}"
                    )));
                }
                Ok((Expr::Lit(lv), Expr::Lit(mv)))
            }
        }
    }

    /// A condition: an expression of type `bool`.
    fn predicate(&self, e: &AstExpr, mut g: Option<&mut Grouping>) -> Result<Expr, SqlError> {
        use ast::BinaryOperator as B;
        let cmp = |op: &B| -> Option<CmpOp> {
            Some(match op {
                B::Eq => CmpOp::Eq,
                B::NotEq => CmpOp::Ne,
                B::Lt => CmpOp::Lt,
                B::LtEq => CmpOp::Le,
                B::Gt => CmpOp::Gt,
                B::GtEq => CmpOp::Ge,
                _ => return None,
            })
        };
        let _deeper = self.deeper()?;
        Ok(match e {
            AstExpr::Nested(inner) => self.predicate(inner, g)?,
            AstExpr::BinaryOp { left, op, right } => match op {
                B::And | B::Or => {
                    // A chain `a AND b AND c` is a tree as deep as it is
                    // long: walk its left spine in a loop, not by recursion.
                    let mut operands = vec![&**right];
                    let mut at = &**left;
                    while let AstExpr::BinaryOp {
                        left: l,
                        op: o,
                        right: r,
                    } = at
                        && o == op
                    {
                        operands.push(r);
                        at = l;
                    }
                    operands.push(at);
                    operands.reverse();
                    let mut bound = Vec::with_capacity(operands.len());
                    for operand in operands {
                        bound.push(self.predicate(operand, g.as_deref_mut())?);
                    }
                    if *op == B::And {
                        Expr::And(bound)
                    } else {
                        Expr::Or(bound)
                    }
                }
                op => match cmp(op) {
                    Some(c) => {
                        let a = self.operand(left, g.as_deref_mut())?;
                        let b = self.operand(right, g)?;
                        let (x, y) = Self::pair(a, b)?;
                        Expr::Cmp(c, Box::new(x), Box::new(y))
                    }
                    None => return Err(unsupported(format!("the operator {op}"))),
                },
            },
            AstExpr::UnaryOp {
                op: ast::UnaryOperator::Not,
                expr,
            } => Expr::Not(Box::new(self.predicate(expr, g)?)),
            AstExpr::IsNull(inner) | AstExpr::IsNotNull(inner) => {
                let (x, _) = self.typed(inner, g)?;
                Expr::IsNull(Box::new(x), matches!(e, AstExpr::IsNotNull(_)))
            }
            AstExpr::IsTrue(inner)
            | AstExpr::IsFalse(inner)
            | AstExpr::IsNotTrue(inner)
            | AstExpr::IsNotFalse(inner) => {
                let x = self.predicate(inner, g)?;
                let is = Expr::IsBool(
                    Box::new(x),
                    matches!(e, AstExpr::IsTrue(_) | AstExpr::IsNotTrue(_)),
                );
                match e {
                    AstExpr::IsNotTrue(_) | AstExpr::IsNotFalse(_) => Expr::Not(Box::new(is)),
                    _ => is,
                }
            }
            AstExpr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.operand(expr, g.as_deref_mut())?;
                let lo = self.operand(low, g.as_deref_mut())?;
                let hi = self.operand(high, g.as_deref_mut())?;
                let x2 = self.operand(expr, g)?;
                let (a, lo) = Self::pair(x, lo)?;
                let (b, hi) = Self::pair(x2, hi)?;
                let both = Expr::And(vec![
                    Expr::Cmp(CmpOp::Ge, Box::new(a), Box::new(lo)),
                    Expr::Cmp(CmpOp::Le, Box::new(b), Box::new(hi)),
                ]);
                if *negated {
                    Expr::Not(Box::new(both))
                } else {
                    both
                }
            }
            AstExpr::In {
                expr,
                target,
                negated,
                global: false,
            } => {
                let ast::InTarget::List(list) = target else {
                    return Err(unsupported("IN of a subquery or table; list the values"));
                };
                let mut items = Vec::with_capacity(list.len());
                let mut x = None;
                for item in list {
                    let a = self.operand(expr, g.as_deref_mut())?;
                    let b = self.operand(item, g.as_deref_mut())?;
                    let (l, r) = Self::pair(a, b)?;
                    x.get_or_insert(l);
                    items.push(r);
                }
                let x = x.ok_or_else(|| SqlError::Parse("an empty IN list".into()))?;
                Expr::In(Box::new(x), items, *negated)
            }
            AstExpr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => {
                let (x, ty) = self.typed(expr, g)?;
                if *base(&ty) != AlgebraicType::String {
                    return Err(SqlError::Type(format!(
                        "LIKE needs a string, not a value of type {ty}"
                    )));
                }
                let pattern = match &**pattern {
                    AstExpr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        _ => return Err(SqlError::Type("a LIKE pattern must be a string".into())),
                    },
                    _ => return Err(unsupported("a LIKE pattern that is not a literal")),
                };
                if pattern.chars().count() > LIKE_PATTERN_MAX {
                    return Err(SqlError::Type(format!(
                        "a LIKE pattern may have at most {LIKE_PATTERN_MAX} characters"
                    )));
                }
                let escape = match escape_char.as_deref() {
                    None => None,
                    Some(AstExpr::Value(v)) => match &v.value {
                        ast::Value::SingleQuotedString(s) if s.chars().count() == 1 => {
                            s.chars().next()
                        }
                        _ => return Err(SqlError::Type("ESCAPE takes one character".into())),
                    },
                    Some(_) => return Err(SqlError::Type("ESCAPE takes one character".into())),
                };
                let toks = values::compile_like(&pattern, escape).map_err(SqlError::Type)?;
                Expr::Like(Box::new(x), toks, *negated)
            }
            AstExpr::Identifier(_) | AstExpr::CompoundIdentifier(_) | AstExpr::Function(_) => {
                let (x, ty) = self.typed(e, g)?;
                if *base(&ty) != AlgebraicType::Bool {
                    return Err(SqlError::Type(format!(
                        "`{e}` is of type {ty}, not a condition"
                    )));
                }
                x
            }
            AstExpr::Value(v) => match literal(&v.value)? {
                Lit::Bool(b) => Expr::Lit(Value::Bool(b)),
                Lit::Null => Expr::Lit(Value::Null),
                _ => return Err(SqlError::Type(format!("`{e}` is not a condition"))),
            },
            _ => return Err(unsupported(format!("the expression `{e}`"))),
        })
    }

    /// An aggregate call, in a query that groups.
    fn aggregate(
        &self,
        f: &ast::Function,
        g: Option<&mut Grouping>,
    ) -> Result<(Expr, AlgebraicType), SqlError> {
        let Some(name) = aggregate_name(f) else {
            return Err(unsupported(format!("the function {}", f.name)));
        };
        let Some(g) = g else {
            return Err(SqlError::Type(format!(
                "{} cannot be used here (only in SELECT, HAVING and ORDER BY)",
                name.to_uppercase()
            )));
        };
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return Err(unsupported("FILTER, OVER and WITHIN GROUP"));
        }
        let ast::FunctionArguments::List(list) = &f.args else {
            return Err(SqlError::Type(format!("{name} takes one argument")));
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return Err(unsupported(format!("DISTINCT and clauses inside {name}()")));
        }
        let arg = match list.args.as_slice() {
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)] if name == "count" => None,
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] => {
                if has_aggregate(e) {
                    return Err(SqlError::Type("aggregates cannot be nested".into()));
                }
                Some(self.typed(e, None)?)
            }
            _ => return Err(SqlError::Type(format!("{name} takes one argument"))),
        };
        let (func, ty) = match (name.as_str(), &arg) {
            ("count", None) => (AggFn::CountAll, AlgebraicType::U64),
            ("count", Some(_)) => (AggFn::Count, AlgebraicType::U64),
            ("sum", Some((_, t))) if is_integer(base(t)) => (AggFn::SumInt, AlgebraicType::I64),
            ("sum", Some((_, t))) if is_float(base(t)) => (AggFn::SumFloat, AlgebraicType::F64),
            ("avg", Some((_, t))) if is_number(base(t)) => (AggFn::Avg, AlgebraicType::F64),
            ("min", Some((_, t))) => (AggFn::Min, base(t).clone()),
            ("max", Some((_, t))) => (AggFn::Max, base(t).clone()),
            (_, Some((_, t))) => {
                return Err(SqlError::Type(format!(
                    "{} needs numbers, not values of type {t}",
                    name.to_uppercase()
                )));
            }
            _ => return Err(SqlError::Type(format!("{name} takes one argument"))),
        };
        let agg = Agg {
            func,
            arg: arg.map(|(e, _)| e),
        };
        let i = match g.aggs.iter().position(|a| *a == agg) {
            Some(i) => i,
            None => {
                g.aggs.push(agg);
                g.agg_types.push(ty.clone());
                g.aggs.len() - 1
            }
        };
        Ok((Expr::Agg(i), ty))
    }

    /// The rows of the first table that the conditions on it can narrow
    /// to through an index, best first: a primary-key point, a point of a
    /// unique index, a point of any index, a prefix of a B-tree index, a
    /// list of points (`IN`), a range of the primary key, a range of a
    /// B-tree index's first column. Every condition is still checked on
    /// every row the access yields.
    fn access(&self, conds: &[Expr]) -> Result<Access, SqlError> {
        let def = &self.sources[0].def;
        let types = &self.sources[0].types;
        // Column = literal (exactly of the column's type), per column.
        let mut eq: Vec<Option<Value>> = vec![None; def.columns.len()];
        let mut lists: Vec<Option<Vec<Value>>> = vec![None; def.columns.len()];
        let mut lower: Vec<Bound<Value>> = vec![Bound::Unbounded; def.columns.len()];
        let mut upper: Vec<Bound<Value>> = vec![Bound::Unbounded; def.columns.len()];
        let indexable = |col: usize, v: &Value| {
            let ty = base(&types[col]);
            !is_float(ty) && v.fits(ty) && !matches!(v, Value::Null)
        };
        for c in conds {
            for (col, op, v) in column_literal(c, 0) {
                if !indexable(col, &v) {
                    continue;
                }
                match op {
                    CmpOp::Eq => eq[col] = Some(v),
                    CmpOp::Gt => tighten_lower(&mut lower[col], Bound::Excluded(v)),
                    CmpOp::Ge => tighten_lower(&mut lower[col], Bound::Included(v)),
                    CmpOp::Lt => tighten_upper(&mut upper[col], Bound::Excluded(v)),
                    CmpOp::Le => tighten_upper(&mut upper[col], Bound::Included(v)),
                    CmpOp::Ne => {}
                }
            }
            if let Expr::In(x, items, false) = c
                && let Expr::Col { src: 0, col, path } = &**x
                && path.is_empty()
            {
                let values: Option<Vec<Value>> = items
                    .iter()
                    .map(|i| match i {
                        Expr::Lit(v) if indexable(*col, v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(mut values) = values {
                    values.sort();
                    values.dedup();
                    lists[*col] = Some(values);
                }
            }
        }
        let pk = def.primary_key as usize;
        let pk_name = || format!("{}(primary key {})", def.name, def.columns[pk].name);
        let index_name = |i: usize| def.indexes[i].name.clone();
        if let Some(v) = &eq[pk] {
            return Ok(Access::Points {
                index: IndexId::PrimaryKey,
                name: pk_name(),
                keys: vec![v.clone()],
            });
        }
        // Whole keys of indexes: unique ones first.
        let mut whole: Vec<usize> = (0..def.indexes.len())
            .filter(|i| {
                def.indexes[*i]
                    .columns
                    .iter()
                    .all(|c| eq[*c as usize].is_some())
            })
            .collect();
        whole.sort_by_key(|i| !def.indexes[*i].unique);
        if let Some(&i) = whole.first() {
            return Ok(Access::Points {
                index: IndexId::Secondary(i),
                name: index_name(i),
                keys: vec![key_of(&def.indexes[i].columns, &eq)],
            });
        }
        // The longest prefix of a B-tree index's columns held by equalities.
        let prefix = def
            .indexes
            .iter()
            .enumerate()
            .filter(|(_, ix)| ix.kind == IndexKind::Btree && ix.columns.len() > 1)
            .map(|(i, ix)| {
                let n = ix
                    .columns
                    .iter()
                    .take_while(|c| eq[**c as usize].is_some())
                    .count();
                (i, n)
            })
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n);
        if let Some((i, n)) = prefix {
            let cols = &def.indexes[i].columns[..n];
            let key = Value::Product(
                cols.iter()
                    .map(|c| eq[*c as usize].clone().unwrap_or(Value::Null))
                    .collect(),
            );
            return Ok(Access::Range {
                index: IndexId::Secondary(i),
                name: index_name(i),
                lower: Bound::Included(key.clone()),
                upper: Bound::Included(key),
            });
        }
        if let Some(keys) = &lists[pk] {
            return Ok(Access::Points {
                index: IndexId::PrimaryKey,
                name: pk_name(),
                keys: keys.clone(),
            });
        }
        for (i, ix) in def.indexes.iter().enumerate() {
            if let [col] = ix.columns[..]
                && let Some(keys) = &lists[col as usize]
            {
                return Ok(Access::Points {
                    index: IndexId::Secondary(i),
                    name: index_name(i),
                    keys: keys.clone(),
                });
            }
        }
        let ranged = |c: usize| {
            !matches!(lower[c], Bound::Unbounded) || !matches!(upper[c], Bound::Unbounded)
        };
        if ranged(pk) {
            return Ok(Access::Range {
                index: IndexId::PrimaryKey,
                name: pk_name(),
                lower: lower[pk].clone(),
                upper: upper[pk].clone(),
            });
        }
        for (i, ix) in def.indexes.iter().enumerate() {
            let first = ix.columns[0] as usize;
            if ix.kind == IndexKind::Btree && ranged(first) {
                let wrap = |b: &Bound<Value>| match (b, ix.columns.len()) {
                    (b, 1) => b.clone(),
                    (Bound::Included(v), _) => {
                        Bound::Included(Value::Product(vec![v.clone()].into()))
                    }
                    (Bound::Excluded(v), _) => {
                        Bound::Excluded(Value::Product(vec![v.clone()].into()))
                    }
                    (Bound::Unbounded, _) => Bound::Unbounded,
                };
                return Ok(Access::Range {
                    index: IndexId::Secondary(i),
                    name: index_name(i),
                    lower: wrap(&lower[first]),
                    upper: wrap(&upper[first]),
                });
            }
        }
        Ok(Access::Full)
    }

    /// How source `k` is joined: through an index on a column that an
    /// equality ties to the sources before it, else a hash table on every
    /// such equality, else a loop over every row.
    fn join_method(&self, k: usize, conds: &[Expr]) -> JoinMethod {
        let def = &self.sources[k].def;
        let types = &self.sources[k].types;
        let mut pairs: Vec<(usize, Expr)> = Vec::new();
        for c in conds {
            let Expr::Cmp(CmpOp::Eq, a, b) = c else {
                continue;
            };
            for (this, other) in [(a, b), (b, a)] {
                if let Expr::Col { src, col, path } = &**this
                    && *src == k
                    && path.is_empty()
                    && other.last_source().is_none_or(|s| s < k)
                {
                    pairs.push((*col, (**other).clone()));
                    break;
                }
            }
        }
        let pk = def.primary_key as usize;
        let usable = |col: usize| !is_float(base(&types[col]));
        for (col, key) in &pairs {
            if !usable(*col) {
                continue;
            }
            let found = if *col == pk {
                Some((
                    IndexId::PrimaryKey,
                    format!("{}(primary key {})", def.name, def.columns[pk].name),
                    false,
                ))
            } else {
                let alone = def
                    .indexes
                    .iter()
                    .position(|ix| ix.columns == [*col as u32]);
                let first = || {
                    def.indexes.iter().position(|ix| {
                        ix.kind == IndexKind::Btree && ix.columns.first() == Some(&(*col as u32))
                    })
                };
                match (alone, first()) {
                    (Some(i), _) => {
                        Some((IndexId::Secondary(i), def.indexes[i].name.clone(), false))
                    }
                    (None, Some(i)) => {
                        Some((IndexId::Secondary(i), def.indexes[i].name.clone(), true))
                    }
                    (None, None) => None,
                }
            };
            if let Some((index, name, prefix)) = found {
                return JoinMethod::Index {
                    index,
                    name,
                    key: key.clone(),
                    ty: types[*col].clone(),
                    prefix,
                };
            }
        }
        if pairs.is_empty() {
            return JoinMethod::Loop;
        }
        let (right, left) = pairs.into_iter().unzip();
        JoinMethod::Hash { right, left }
    }

    /// The answer: projections, grouping, order, distinct, limit.
    fn output(&self, s: &ast::Select, q: &ast::Query, distinct: bool) -> Result<Output, SqlError> {
        let group_exprs = match &s.group_by {
            ast::GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                exprs.clone()
            }
            ast::GroupByExpr::Expressions(..) => return Err(unsupported("GROUP BY modifiers")),
            ast::GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        let order_items: Vec<ast::OrderByExpr> = match &q.order_by {
            None => Vec::new(),
            Some(ob) => {
                if ob.interpolate.is_some() {
                    return Err(unsupported("INTERPOLATE"));
                }
                match &ob.kind {
                    ast::OrderByKind::Expressions(v) => v.clone(),
                    ast::OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
                }
            }
        };
        let projected_aggregate = s.projection.iter().any(|item| match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        });
        let grouped = !group_exprs.is_empty()
            || s.having.is_some()
            || projected_aggregate
            || order_items.iter().any(|o| has_aggregate(&o.expr));

        // The projection's items, as (AST, name); wildcards expanded.
        enum Item<'a> {
            Ast(&'a AstExpr, String),
            Col(usize, usize),
        }
        let mut items = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        AstExpr::Identifier(id) => id.value.clone(),
                        AstExpr::CompoundIdentifier(parts) => {
                            parts.last().map(|p| p.value.clone()).unwrap_or_default()
                        }
                        other => other.to_string(),
                    };
                    items.push(Item::Ast(e, name));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    items.push(Item::Ast(expr, alias.value.clone()))
                }
                ast::SelectItem::Wildcard(opts) => {
                    check_wildcard(opts)?;
                    for (src, source) in self.sources.iter().enumerate() {
                        for col in 0..source.def.columns.len() {
                            items.push(Item::Col(src, col));
                        }
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, opts) => {
                    check_wildcard(opts)?;
                    let ast::SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return Err(unsupported("a wildcard of an expression"));
                    };
                    let id = ident_name(name)?;
                    let src = self
                        .sources
                        .iter()
                        .position(|s| names(id, &s.alias))
                        .ok_or_else(|| SqlError::UnknownTable(id.value.clone()))?;
                    for col in 0..self.sources[src].def.columns.len() {
                        items.push(Item::Col(src, col));
                    }
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("several aliases for one expression"));
                }
            }
        }

        let mut grouping = Grouping {
            keys: Vec::new(),
            key_types: Vec::new(),
            aggs: Vec::new(),
            agg_types: Vec::new(),
        };
        let mut columns = Vec::new();
        let mut exprs = Vec::new();
        let mut asts: Vec<Option<&AstExpr>> = Vec::new();
        // GROUP BY keys: an output alias, a position, or an expression.
        if grouped {
            for e in &group_exprs {
                let resolved = self.output_ref(
                    e,
                    &items
                        .iter()
                        .map(|i| match i {
                            Item::Ast(a, name) => (Some(*a), name.clone()),
                            Item::Col(..) => (None, String::new()),
                        })
                        .collect::<Vec<_>>(),
                )?;
                let ast = resolved.unwrap_or(e);
                if has_aggregate(ast) {
                    return Err(SqlError::Type("GROUP BY cannot hold an aggregate".into()));
                }
                let (key, ty) = self.typed(ast, None)?;
                grouping.keys.push(key);
                grouping.key_types.push(ty);
            }
        }
        for item in &items {
            let (name, expr, ty, ast) = match item {
                Item::Ast(e, name) => {
                    let (expr, ty) = if grouped {
                        self.typed(e, Some(&mut grouping))?
                    } else {
                        self.typed(e, None)?
                    };
                    (name.clone(), expr, ty, Some(*e))
                }
                Item::Col(src, col) => (
                    self.sources[*src].def.columns[*col].name.clone(),
                    Expr::Col {
                        src: *src,
                        col: *col,
                        path: Vec::new(),
                    },
                    self.sources[*src].types[*col].clone(),
                    None,
                ),
            };
            columns.push(Column { name, ty });
            exprs.push(expr);
            asts.push(ast);
        }
        let having = match &s.having {
            Some(h) => Some(self.predicate(h, Some(&mut grouping))?),
            None => None,
        };
        let named: Vec<(Option<&AstExpr>, String)> = asts
            .iter()
            .zip(&columns)
            .map(|(a, c)| (*a, c.name.clone()))
            .collect();
        let mut order = Vec::new();
        for o in &order_items {
            if o.with_fill.is_some() {
                return Err(unsupported("WITH FILL"));
            }
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            if let Some(ast::OrderBySort::Using(_)) = o.options.sort {
                return Err(unsupported("ORDER BY USING"));
            }
            let nulls_first = o.options.nulls_first.unwrap_or(!desc);
            // A position or an output column's name is that column (as
            // SQLite reads ORDER BY); anything else is an expression.
            let by_name = match &o.expr {
                AstExpr::Identifier(id) => named.iter().position(|(_, n)| names(id, n)),
                _ => None,
            };
            let expr = match (self.output_position(&o.expr, exprs.len())?, by_name) {
                (Some(i), _) | (None, Some(i)) => exprs[i].clone(),
                (None, None) if grouped => self.typed(&o.expr, Some(&mut grouping))?.0,
                (None, None) => self.typed(&o.expr, None)?.0,
            };
            order.push(OrderKey {
                expr,
                desc,
                nulls_first,
            });
        }
        let (limit, offset) = match &q.limit_clause {
            None => (None, 0),
            Some(ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT BY"));
                }
                let limit = match limit {
                    Some(e) => Some(int_literal(e, "LIMIT")?),
                    None => None,
                };
                let offset = match offset {
                    Some(o) => int_literal(&o.value, "OFFSET")?,
                    None => 0,
                };
                (limit, offset)
            }
            Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => (
                Some(int_literal(limit, "LIMIT")?),
                int_literal(offset, "OFFSET")?,
            ),
        };
        let shape = if grouped {
            let lift = |e: Expr| lift(e, &grouping.keys);
            let exprs = exprs.into_iter().map(lift).collect::<Result<Vec<_>, _>>()?;
            let having = having.map(lift).transpose()?;
            for key in order.iter_mut() {
                key.expr = lift(std::mem::replace(&mut key.expr, Expr::Lit(Value::Null)))?;
            }
            // An answer column that is a group key has the key's type.
            Shape::Groups {
                keys: grouping.keys,
                aggs: grouping.aggs,
                having,
                exprs,
            }
        } else {
            Shape::Rows(exprs)
        };
        Ok(Output {
            columns,
            shape,
            order,
            distinct,
            limit,
            offset,
        })
    }

    /// `ORDER BY 2`: the second output column.
    fn output_position(&self, e: &AstExpr, n: usize) -> Result<Option<usize>, SqlError> {
        match e {
            AstExpr::Value(v) => match &v.value {
                ast::Value::Number(text, _) => match text.parse::<usize>() {
                    Ok(i) if (1..=n).contains(&i) => Ok(Some(i - 1)),
                    _ => Err(SqlError::Type(format!(
                        "position {text} is not one of the {n} output columns"
                    ))),
                },
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// An output column's expression that `e` refers to: by position, or
    /// by an output name that no column of the tables also has.
    fn output_ref<'a>(
        &self,
        e: &'a AstExpr,
        named: &[(Option<&'a AstExpr>, String)],
    ) -> Result<Option<&'a AstExpr>, SqlError> {
        if let Some(i) = self.output_position(e, named.len())? {
            return match named[i].0 {
                Some(a) => Ok(Some(a)),
                None => Err(unsupported("a position that names a wildcard's column")),
            };
        }
        if let AstExpr::Identifier(id) = e
            && self.column(std::slice::from_ref(id)).is_err()
            && let Some((Some(a), _)) = named.iter().find(|(_, n)| names(id, n))
        {
            return Ok(Some(a));
        }
        Ok(None)
    }
}

fn check_wildcard(opts: &ast::WildcardAdditionalOptions) -> Result<(), SqlError> {
    if opts.opt_ilike.is_some()
        || opts.opt_exclude.is_some()
        || opts.opt_except.is_some()
        || opts.opt_replace.is_some()
        || opts.opt_rename.is_some()
        || opts.opt_alias.is_some()
    {
        return Err(unsupported("wildcard options"));
    }
    Ok(())
}

/// A grouped query's expression over group keys and aggregates: every
/// part equal to a `GROUP BY` key becomes that key; a column left over is
/// an error.
fn lift(e: Expr, keys: &[Expr]) -> Result<Expr, SqlError> {
    if let Some(i) = keys.iter().position(|k| *k == e) {
        return Ok(Expr::Key(i));
    }
    let each = |v: Vec<Expr>| {
        v.into_iter()
            .map(|e| lift(e, keys))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match e {
        Expr::Col { .. } => {
            return Err(SqlError::Type(
                "a column of a grouped query must be in GROUP BY or inside an aggregate".into(),
            ));
        }
        Expr::Lit(_) | Expr::Key(_) | Expr::Agg(_) => e,
        Expr::Cmp(op, a, b) => Expr::Cmp(op, Box::new(lift(*a, keys)?), Box::new(lift(*b, keys)?)),
        Expr::And(v) => Expr::And(each(v)?),
        Expr::Or(v) => Expr::Or(each(v)?),
        Expr::Not(a) => Expr::Not(Box::new(lift(*a, keys)?)),
        Expr::IsNull(a, n) => Expr::IsNull(Box::new(lift(*a, keys)?), n),
        Expr::IsBool(a, b) => Expr::IsBool(Box::new(lift(*a, keys)?), b),
        Expr::In(a, list, n) => Expr::In(Box::new(lift(*a, keys)?), each(list)?, n),
        Expr::Like(a, p, n) => Expr::Like(Box::new(lift(*a, keys)?), p, n),
    })
}

/// The index key of `columns` from the equalities found.
fn key_of(columns: &[u32], eq: &[Option<Value>]) -> Value {
    let mut values: Vec<Value> = columns
        .iter()
        .map(|c| eq[*c as usize].clone().unwrap_or(Value::Null))
        .collect();
    match values.len() {
        1 => values.remove(0),
        _ => Value::Product(values.into()),
    }
}

/// `column op literal` (either way round) over source `src`'s own columns.
fn column_literal(c: &Expr, src: usize) -> Vec<(usize, CmpOp, Value)> {
    let mut out = Vec::new();
    match c {
        Expr::Cmp(op, a, b) => {
            for (x, y, op) in [(a, b, *op), (b, a, op.flipped())] {
                if let (Expr::Col { src: s, col, path }, Expr::Lit(v)) = (&**x, &**y)
                    && *s == src
                    && path.is_empty()
                {
                    out.push((*col, op, v.clone()));
                }
            }
        }
        Expr::And(v) => v.iter().for_each(|e| out.extend(column_literal(e, src))),
        _ => {}
    }
    out
}

fn tighten_lower(b: &mut Bound<Value>, new: Bound<Value>) {
    let tighter = match (&*b, &new) {
        (Bound::Unbounded, _) => true,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(n) | Bound::Excluded(n)) => {
            n > a || (n == a && matches!(new, Bound::Excluded(_)))
        }
        (_, Bound::Unbounded) => false,
    };
    if tighter {
        *b = new;
    }
}

fn tighten_upper(b: &mut Bound<Value>, new: Bound<Value>) {
    let tighter = match (&*b, &new) {
        (Bound::Unbounded, _) => true,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(n) | Bound::Excluded(n)) => {
            n < a || (n == a && matches!(new, Bound::Excluded(_)))
        }
        (_, Bound::Unbounded) => false,
    };
    if tighter {
        *b = new;
    }
}

fn literal(v: &ast::Value) -> Result<Lit, SqlError> {
    Ok(match v {
        ast::Value::Number(text, _) => {
            if let Ok(n) = text.parse::<i128>() {
                Lit::Int(n)
            } else {
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Lit::Float(f),
                    _ => {
                        return Err(SqlError::Parse(format!(
                            "the number {text} is out of range"
                        )));
                    }
                }
            }
        }
        ast::Value::SingleQuotedString(s) => Lit::Str(s.clone()),
        ast::Value::Boolean(b) => Lit::Bool(*b),
        ast::Value::Null => Lit::Null,
        ast::Value::DoubleQuotedString(s) => {
            return Err(SqlError::Parse(format!(
                "\"{s}\" is a name in SQL; write a string in single quotes"
            )));
        }
        ast::Value::Placeholder(p) => return Err(unsupported(format!("placeholders ({p})"))),
        other => return Err(unsupported(format!("the literal {other}"))),
    })
}
