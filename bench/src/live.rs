//! What query subscriptions cost a transaction: a `send` on the chat module
//! (one new message row) with 100,000 messages and 1,000 users, and 0, 1,
//! 100 or 10,000 subscribers, to one filtered query (shared) or to as many
//! distinct ones; a semi-join; and, as the peer, running the subscribed
//! query again after each transaction (what a client without incremental
//! subscriptions does).
//!
//! The log does not sync (`never`): the figures are the evaluation on the
//! commit path, not the disk.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_runtime::log::SyncPolicy;
use interstice_runtime::sql::Budget;
use interstice_runtime::{Caller, Database, Reader};
use interstice_tests::{guest_bytes, guests};

use crate::durable;

const MESSAGES: u32 = 100_000;
const USERS: u32 = 1_000;
const CHANNELS: u32 = 100;
const TXS: u32 = 2_000;

fn loaded() -> Result<(tempfile::TempDir, Database)> {
    let dir = durable::bench_dir()?;
    let db = Database::open(dir.path(), durable::config(SyncPolicy::Never))?;
    db.publish("chat", &guest_bytes(guests::CHAT))?;
    let budget = Budget {
        rows: u64::MAX,
        time: Duration::from_secs(600),
    };
    for batch in 0..USERS / 500 {
        let values: Vec<String> = (0..500)
            .map(|i| format!("('u{}', 0)", batch * 500 + i))
            .collect();
        let text = format!(
            "INSERT INTO users (name, joined_micros) VALUES {}",
            values.join(", ")
        );
        db.sql("chat", &text, Reader::Operator, &budget)?;
    }
    for batch in 0..MESSAGES / 1_000 {
        let values: Vec<String> = (0..1_000)
            .map(|i| {
                let n = batch * 1_000 + i;
                format!("('c{}', {}, 'm{n}', 0)", n % CHANNELS, 2 + n % USERS)
            })
            .collect();
        let text = format!(
            "INSERT INTO messages (channel, sender, text, sent_micros) VALUES {}",
            values.join(", ")
        );
        db.sql("chat", &text, Reader::Operator, &budget)?;
    }
    Ok((dir, db))
}

/// Time per `send` with subscribers to `queries` (`(text, subscribers)`).
fn per_tx(db: &Database, queries: &[(String, u32)]) -> Result<Duration> {
    let budget = Budget::default();
    let mut subs = Vec::new();
    for (text, n) in queries {
        for _ in 0..*n {
            let start = db.subscribe_sql("chat", text, Reader::Operator, &budget, usize::MAX)?;
            subs.push(start.query_id);
        }
    }
    let op = Caller::operator();
    let start = Instant::now();
    for i in 0..TXS {
        let args =
            serde_json::json!([format!("u{}", i % USERS), format!("c{}", i % CHANNELS), "x"]);
        db.call_json("chat", "send", &args, &op)
            .context("chat.send")?;
    }
    let took = start.elapsed() / TXS;
    for id in subs {
        db.unsubscribe_sql("chat", id)?;
    }
    anyhow::ensure!(db.live_queries()? == (0, 0), "live queries left");
    Ok(took)
}

/// Time per fresh run of `text`.
fn requery(db: &Database, text: &str) -> Result<Duration> {
    let budget = Budget {
        rows: u64::MAX,
        time: Duration::from_secs(600),
    };
    let runs = 200;
    let start = Instant::now();
    for _ in 0..runs {
        db.sql("chat", text, Reader::Operator, &budget)?;
    }
    Ok(start.elapsed() / runs)
}

pub fn figures() -> Result<()> {
    let (_dir, db) = loaded()?;
    let filter = "SELECT * FROM messages WHERE channel = 'c7' AND sender > 10".to_string();
    let semi = "SELECT m.* FROM messages AS m JOIN users AS u ON m.sender = u.id \
                WHERE u.name = 'u7'"
        .to_string();
    let distinct = |n: u32| -> Vec<(String, u32)> {
        (0..n)
            .map(|i| {
                (
                    format!("SELECT * FROM messages WHERE channel = 'c7' AND sender > {i}"),
                    1,
                )
            })
            .collect()
    };
    let base = per_tx(&db, &[])?;
    let rows: Vec<(String, Duration)> = vec![
        ("none".into(), base),
        (
            "1 to the filter".into(),
            per_tx(&db, &[(filter.clone(), 1)])?,
        ),
        (
            "100 to the filter".into(),
            per_tx(&db, &[(filter.clone(), 100)])?,
        ),
        (
            "10,000 to the filter".into(),
            per_tx(&db, &[(filter.clone(), 10_000)])?,
        ),
        (
            "100 to 100 distinct filters".into(),
            per_tx(&db, &distinct(100))?,
        ),
        (
            "10,000 to 10,000 distinct filters".into(),
            per_tx(&db, &distinct(10_000))?,
        ),
        (
            "1 to the semi-join".into(),
            per_tx(&db, &[(semi.clone(), 1)])?,
        ),
    ];
    println!("## Query subscriptions: one transaction ({MESSAGES} messages, {USERS} users)\n");
    println!("| subscribers | µs per transaction | added by subscriptions |");
    println!("| --- | ---: | ---: |");
    for (what, took) in &rows {
        let added = took.as_secs_f64() - base.as_secs_f64();
        println!(
            "| {what} | {:.1} | {:.1} µs |",
            took.as_secs_f64() * 1e6,
            added.max(0.0) * 1e6
        );
    }
    let fresh_filter = requery(&db, &filter)?;
    let fresh_semi = requery(&db, &semi)?;
    let one = rows[1].1.as_secs_f64() - base.as_secs_f64();
    let one_semi = rows[6].1.as_secs_f64() - base.as_secs_f64();
    println!();
    println!("| query | running it again | following it live | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| the filter | {:.1} µs | {:.1} µs | {:.0}× |",
        fresh_filter.as_secs_f64() * 1e6,
        one.max(0.0) * 1e6,
        fresh_filter.as_secs_f64() / one.max(1e-9)
    );
    println!(
        "| the semi-join | {:.1} µs | {:.1} µs | {:.0}× |\n",
        fresh_semi.as_secs_f64() * 1e6,
        one_semi.max(0.0) * 1e6,
        fresh_semi.as_secs_f64() / one_semi.max(1e-9)
    );
    Ok(())
}
