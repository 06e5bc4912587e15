//! SQL over one module's in-memory tables.
//!
//! Text is parsed by `sqlparser` (generic dialect) and bound here against
//! the module's table definitions ([`bind`]): names resolved, literals
//! given the types of the columns they meet, and for each table the index
//! that narrows it chosen ([`plan`]). The plan is then evaluated over the
//! tables as they stand ([`exec`]), with every row it reads or produces
//! counted against a [`Budget`], so that no query can hold the database for
//! longer than the settings allow.
//!
//! What the dialect covers, and how values compare (NULL, numbers of
//! different widths, enum values by name), is in `docs/sql.md`.

use std::time::Duration;

use interstice_store::{AlgebraicType, Table, TableDef, Value};

mod bind;
mod exec;
mod live;
mod plan;
mod values;
mod write;

pub use live::{Change, Delta, Live};
pub use plan::Plan;
pub use write::{Changes, Write};

/// Longest query text accepted, in bytes.
pub const TEXT_MAX: usize = 64 * 1024;
/// How deeply expressions may nest; deeper text is refused by the parser
/// before it can exhaust the stack.
pub const NESTING_MAX: usize = 64;
/// Most binary operators (`AND`, `OR`, comparisons, arithmetic) in one
/// query. A chain of them parses into a tree as deep as it is long, which
/// every walk over it (binding, printing, dropping) would follow: bounding
/// the count bounds the depth.
pub const OPERATORS_MAX: usize = 512;
/// Longest `LIKE` pattern, in characters: matching costs up to the
/// pattern's length times the string's.
pub const LIKE_PATTERN_MAX: usize = 256;

/// What one query may cost before it is stopped with [`SqlError::Budget`].
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Rows read from tables, rows produced by joins and rows answered,
    /// together.
    pub rows: u64,
    /// Time from the start of evaluation.
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            rows: 10_000_000,
            time: Duration::from_millis(500),
        }
    }
}

/// Which tables a query may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every table: the module's owner, the operator, the local CLI.
    All,
    /// Public tables only: everyone else.
    PublicOnly,
}

/// The module's tables, by name.
pub trait Tables {
    fn table(&self, name: &str) -> Option<&Table>;
}

/// One column of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: AlgebraicType,
}

/// What a query answered: columns and rows (each row one value per
/// column). An `EXPLAIN` answers one `plan` column, a line per row.
#[derive(Clone, Debug)]
pub struct Answer {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Why a query was refused or stopped.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SqlError {
    #[error("the query is {0} bytes; at most {TEXT_MAX} are accepted")]
    TooLong(usize),
    #[error("SQL does not parse: {0}")]
    Parse(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("no table named `{0}`")]
    UnknownTable(String),
    #[error(
        "table `{0}` is private: only the module's owner, its reducers and the operator read it"
    )]
    Private(String),
    #[error("no column named `{0}`")]
    UnknownColumn(String),
    #[error("column name `{0}` is ambiguous: qualify it with its table")]
    Ambiguous(String),
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Eval(String),
    #[error(
        "the query went past its budget of {limit} ({what}); narrow it with WHERE or LIMIT, \
         or use an index"
    )]
    Budget { what: &'static str, limit: String },
    #[error("stored row does not decode: {0}")]
    Corrupt(String),
    #[error("{0} changes tables: only the module's owner and the operator may run it")]
    ReadOnly(&'static str),
    #[error("{0}")]
    Refused(String),
}

/// One statement, bound.
#[derive(Debug)]
pub enum Statement {
    /// A `SELECT`, or with `explain` an `EXPLAIN SELECT`.
    Query { plan: Plan, explain: bool },
    /// An `INSERT`, `UPDATE` or `DELETE`.
    Write(Write),
}

/// Parses and binds one statement of any kind this crate knows.
pub fn prepare_statement(
    tables: &dyn Tables,
    access: Access,
    text: &str,
) -> Result<Statement, SqlError> {
    let statement = bind::parse(text)?;
    if let Some(write) = write::bind_write(tables, access, &statement)? {
        return Ok(Statement::Write(write));
    }
    let (plan, explain) = bind::bind(tables, access, &statement)?;
    Ok(Statement::Query { plan, explain })
}

/// The answer of a bound query: its rows, or for `explain` its plan.
pub fn answer(
    tables: &dyn Tables,
    plan: &Plan,
    explain: bool,
    budget: &Budget,
) -> Result<Answer, SqlError> {
    if explain {
        return Ok(Answer {
            columns: vec![Column {
                name: "plan".to_string(),
                ty: AlgebraicType::String,
            }],
            rows: plan
                .explain()
                .into_iter()
                .map(|line| vec![Value::String(line.into())])
                .collect(),
        });
    }
    exec::run(tables, plan, budget)
}

/// What a bound write changes on the tables as they stand: the rows it
/// inserts, and the rows its condition matches (read within `budget`)
/// with their new values. Nothing is changed here.
pub fn changes(tables: &dyn Tables, write: &Write, budget: &Budget) -> Result<Changes, SqlError> {
    write::changes(tables, write, budget)
}

/// Parses and binds one query: a `SELECT` or an `EXPLAIN SELECT`.
pub fn prepare(tables: &dyn Tables, access: Access, text: &str) -> Result<(Plan, bool), SqlError> {
    let statement = bind::parse(text)?;
    bind::bind(tables, access, &statement)
}

/// Runs one query: a `SELECT`, or an `EXPLAIN SELECT` (which reads no row
/// and answers its plan).
pub fn query(
    tables: &dyn Tables,
    access: Access,
    text: &str,
    budget: &Budget,
) -> Result<Answer, SqlError> {
    let (plan, explain) = prepare(tables, access, text)?;
    answer(tables, &plan, explain, budget)
}

/// Whether `access` may read `def`.
fn readable(access: Access, def: &TableDef) -> bool {
    access == Access::All || def.public
}
