//! What the scheduler costs while nothing is due, by the size of the
//! schedule table: one round (`run_due`) and the look-ahead (`next_due`)
//! on 10 rows and on 1,000,000, all due a day from now.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interstice_runtime::log::SyncPolicy;
use interstice_runtime::{Caller, Database};
use interstice_tests::{guest_bytes, guests};

use crate::durable;

const ROUNDS: u32 = 20_000;
const BATCH: u32 = 5_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// Time per idle round (`run_due` then `next_due`) with `rows` scheduled
/// rows none of which is due.
fn idle_round(rows: u32) -> Result<Duration> {
    let dir = durable::bench_dir()?;
    let db = Database::open(dir.path(), durable::config(SyncPolicy::Never))?;
    db.publish("reminders", &guest_bytes(guests::REMINDERS))?;
    let op = Caller::operator();
    let mut left = rows;
    while left > 0 {
        let n = left.min(BATCH);
        db.call_json(
            "reminders",
            "remind_many",
            &serde_json::json!(["r", n, DAY_MICROS, 0]),
            &op,
        )
        .context("reminders.remind_many")?;
        left -= n;
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let round = db.run_due(64)?;
        anyhow::ensure!(round.ran == 0, "a row ran");
        anyhow::ensure!(db.next_due()?.is_some(), "no row is scheduled");
    }
    Ok(start.elapsed() / ROUNDS)
}

pub fn figures() -> Result<()> {
    let small = idle_round(10)?;
    let large = idle_round(1_000_000)?;
    println!("## Schedules: an idle round by table size\n");
    println!("| scheduled rows (none due) | per idle round | ratio to 10 rows |");
    println!("| ---: | ---: | ---: |");
    println!("| 10 | {} ns | 1.00 |", small.as_nanos());
    println!(
        "| 1,000,000 | {} ns | {:.2} |\n",
        large.as_nanos(),
        large.as_secs_f64() / small.as_secs_f64()
    );
    Ok(())
}
