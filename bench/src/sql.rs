//! SQL against SQLite in memory, on the same 100,000-row tables in one run:
//! a point query by primary key, a range of a B-tree index, a full scan
//! with a filter, a join of two 100,000-row tables, and `GROUP BY` into
//! 100 groups.
//!
//! Interstice parses, binds and plans the text of every query (it has no
//! prepared statements); SQLite runs a statement prepared once
//! (`prepare_cached`) with parameters, as an application would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use interstice_runtime::sql::{Access, Budget, Tables};
use interstice_store::codec::encode_row;
use interstice_store::{AlgebraicType, ColumnDef, IndexDef, IndexKind, Table, TableDef, Value};
use rand::{RngExt, SeedableRng};
use rusqlite::Connection;

const ROWS: u64 = 100_000;
const TEAMS: u64 = 100;

struct Db(HashMap<String, Table>);

impl Tables for Db {
    fn table(&self, name: &str) -> Option<&Table> {
        self.0.get(name)
    }
}

fn def(name: &str, columns: Vec<ColumnDef>, indexes: Vec<IndexDef>) -> TableDef {
    TableDef {
        name: name.to_string(),
        columns,
        primary_key: 0,
        auto_inc: None,
        indexes,
        ephemeral: false,
        public: true,
        scheduled: None,
    }
}

/// `players(id, name, score [B-tree], team, bonus)` and `scores(id,
/// player, points)`, in both engines.
fn load() -> Result<(Db, Connection)> {
    use AlgebraicType as T;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let players_def = def(
        "players",
        vec![
            ColumnDef::new("id", T::U64),
            ColumnDef::new("name", T::String),
            ColumnDef::new("score", T::I64),
            ColumnDef::new("team", T::U64),
            ColumnDef::new("bonus", T::I64),
        ],
        vec![IndexDef {
            name: "score".into(),
            columns: vec![2],
            unique: false,
            kind: IndexKind::Btree,
        }],
    );
    let scores_def = def(
        "scores",
        vec![
            ColumnDef::new("id", T::U64),
            ColumnDef::new("player", T::U64),
            ColumnDef::new("points", T::I64),
        ],
        Vec::new(),
    );
    let sqlite = Connection::open_in_memory()?;
    sqlite.execute_batch(
        "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL, \
         team INTEGER NOT NULL, bonus INTEGER NOT NULL);
         CREATE INDEX players_score ON players(score);
         CREATE TABLE scores (id INTEGER PRIMARY KEY, player INTEGER NOT NULL, points INTEGER NOT NULL);",
    )?;
    let (pt, st) = (players_def.column_types(), scores_def.column_types());
    let mut players = Table::new(players_def);
    let mut scores = Table::new(scores_def);
    let tx = sqlite.unchecked_transaction()?;
    {
        let mut ip = tx.prepare("INSERT INTO players VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut is = tx.prepare("INSERT INTO scores VALUES (?1, ?2, ?3)")?;
        for id in 0..ROWS {
            let name = format!("player{id}");
            let score: i64 = rng.random_range(0..1_000_000);
            let team = id % TEAMS;
            let bonus: i64 = rng.random_range(0..100);
            players
                .insert(&encode_row(
                    &[
                        Value::U64(id),
                        Value::String(name.as_str().into()),
                        Value::I64(score),
                        Value::U64(team),
                        Value::I64(bonus),
                    ],
                    &pt,
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ip.execute(rusqlite::params![
                id as i64,
                name,
                score,
                team as i64,
                bonus
            ])?;
            let player = rng.random_range(0..ROWS);
            let points: i64 = rng.random_range(0..1000);
            scores
                .insert(&encode_row(
                    &[Value::U64(id), Value::U64(player), Value::I64(points)],
                    &st,
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            is.execute(rusqlite::params![id as i64, player as i64, points])?;
        }
    }
    tx.commit()?;
    let mut tables = HashMap::new();
    tables.insert("players".to_string(), players);
    tables.insert("scores".to_string(), scores);
    Ok((Db(tables), sqlite))
}

/// One query shape: its text for Interstice (with `{a}`, `{b}` filled in)
/// and SQLite's, with `?1`, `?2`.
struct Case {
    what: &'static str,
    ours: &'static str,
    theirs: &'static str,
    /// The parameters of one run.
    args: fn(&mut rand::rngs::StdRng) -> (i64, i64),
    runs: u32,
}

const CASES: [Case; 5] = [
    Case {
        what: "point query by primary key",
        ours: "SELECT * FROM players WHERE id = {a}",
        theirs: "SELECT * FROM players WHERE id = ?1",
        args: |r| (r.random_range(0..ROWS as i64), 0),
        runs: 50_000,
    },
    Case {
        what: "range of a B-tree index (~10 rows)",
        ours: "SELECT id, name, score FROM players WHERE score BETWEEN {a} AND {b}",
        theirs: "SELECT id, name, score FROM players WHERE score BETWEEN ?1 AND ?2",
        args: |r| {
            let a = r.random_range(0..999_900);
            (a, a + 100)
        },
        runs: 20_000,
    },
    Case {
        what: "full scan with a filter (COUNT)",
        ours: "SELECT COUNT(*) FROM players WHERE team = {a} OR bonus > 98",
        theirs: "SELECT COUNT(*) FROM players WHERE team = ?1 OR bonus > 98",
        args: |r| (r.random_range(0..TEAMS as i64), 0),
        runs: 20,
    },
    Case {
        what: "join of two 100,000-row tables (COUNT)",
        ours: "SELECT COUNT(*) FROM scores AS s JOIN players AS p ON s.player = p.id WHERE p.bonus >= {a}",
        theirs: "SELECT COUNT(*) FROM scores AS s JOIN players AS p ON s.player = p.id WHERE p.bonus >= ?1",
        args: |r| (r.random_range(0..50), 0),
        runs: 10,
    },
    Case {
        what: "GROUP BY into 100 groups",
        ours: "SELECT team, COUNT(*), SUM(bonus), MAX(score) FROM players GROUP BY team",
        theirs: "SELECT team, COUNT(*), SUM(bonus), MAX(score) FROM players GROUP BY team",
        args: |_| (0, 0),
        runs: 10,
    },
];

fn per_second(runs: u32, took: Duration) -> f64 {
    runs as f64 / took.as_secs_f64()
}

pub fn figures() -> Result<()> {
    let (db, sqlite) = load()?;
    let budget = Budget {
        rows: u64::MAX,
        time: Duration::from_secs(600),
    };
    println!("## SQL against SQLite in memory ({ROWS} rows a table)\n");
    println!("| query | Interstice queries/s | SQLite queries/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    // `SQL_BENCH_CASE=point` (a word of the case's name) runs that one, for
    // profiling.
    let only = std::env::var("SQL_BENCH_CASE").ok();
    for case in CASES
        .iter()
        .filter(|c| only.as_deref().is_none_or(|w| c.what.contains(w)))
    {
        // The same parameters on both sides, and the same answers.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let args: Vec<(i64, i64)> = (0..case.runs).map(|_| (case.args)(&mut rng)).collect();
        let texts: Vec<String> = args
            .iter()
            .map(|(a, b)| {
                case.ours
                    .replace("{a}", &a.to_string())
                    .replace("{b}", &b.to_string())
            })
            .collect();
        let mut ours_rows = 0usize;
        let start = Instant::now();
        for text in &texts {
            ours_rows += interstice_runtime::sql::query(&db, Access::All, text, &budget)?
                .rows
                .len();
        }
        let ours = start.elapsed();
        let mut theirs_rows = 0usize;
        let start = Instant::now();
        let mut stmt = sqlite.prepare_cached(case.theirs)?;
        let n = stmt.parameter_count();
        for (a, b) in &args {
            let mut rows = match n {
                0 => stmt.query([])?,
                1 => stmt.query([a])?,
                _ => stmt.query([a, b])?,
            };
            while let Some(row) = rows.next()? {
                let _ = row.get_ref(0)?;
                theirs_rows += 1;
            }
        }
        let theirs = start.elapsed();
        ensure!(
            ours_rows == theirs_rows,
            "{}: {ours_rows} rows against SQLite's {theirs_rows}",
            case.what
        );
        let (o, t) = (per_second(case.runs, ours), per_second(case.runs, theirs));
        println!("| {} | {o:.0} | {t:.0} | {:.2} |", case.what, o / t);
    }
    println!();
    Ok(())
}
