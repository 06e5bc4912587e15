//! Scheduled reducers against a real server process with real time: an
//! interval's rate and lateness, and one-shot reminders that each run
//! exactly once across kill -9 and restarts; and `interstice tick`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use interstice_store::json::value_from_json;
use interstice_store::{AlgebraicType, Value};
use interstice_tests::{guests, rng};
use serde_json::{Value as Json, json};

mod common;

use common::agent;
use common::serve::Server;

/// The timing test and the kill test each want the machine to
/// themselves: they run one at a time.
static ALONE: Mutex<()> = Mutex::new(());

fn call(server: &Server, reducer: &str, args: Json) {
    let mut response = agent()
        .post(&format!(
            "{}/v1/modules/reminders/reducers/{reducer}",
            server.url
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .send(args.to_string().as_bytes())
        .expect("the server answers");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "{reducer}: {body}");
}

/// Every row of `table`.
fn rows(server: &Server, table: &str) -> Vec<Json> {
    let mut response = agent()
        .get(&format!(
            "{}/v1/modules/reminders/tables/{table}?limit=10000",
            server.url
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .call()
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    let body: Json = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    body.as_array().unwrap().clone()
}

fn micros(at: &Json) -> i64 {
    match value_from_json(at, &AlgebraicType::Timestamp) {
        Ok(Value::Timestamp(t)) => t,
        other => panic!("{at}: {other:?}"),
    }
}

/// A data directory with the Rust reminders guest published.
fn setup(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("data");
    common::ok(&dir, &["publish", guests::REMINDERS, "--name", "reminders"]);
    dir
}

/// One value of the metrics text, by its full name and labels.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

#[test]
fn an_interval_of_50_ms_runs_20_times_a_second_and_on_time() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = setup(tmp.path());
    let server = Server::start(&dir, &[]);
    call(&server, "remind_every", json!(["slow", 50_000]));
    call(&server, "remind_every", json!(["fast", 10_000]));
    // Until two seconds of "slow" runs are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let fired = rows(&server, "fired");
        let at = |text: &str| -> Vec<i64> {
            fired
                .iter()
                .filter(|r| r["text"] == text)
                .map(|r| micros(&r["at"]))
                .collect()
        };
        let slow = at("slow");
        if slow.len() >= 2 && slow[slow.len() - 1] - slow[0] >= 2_000_000 {
            break slow;
        }
        assert!(Instant::now() < deadline, "{} runs", slow.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    let first_second = runs.iter().filter(|&&t| t < runs[0] + 1_000_000).count();
    assert!(
        (18..=22).contains(&first_second),
        "{first_second} runs in a second: {runs:?}"
    );
    let metrics = {
        let mut r = agent()
            .get(&format!("{}/metrics", server.url))
            .call()
            .unwrap();
        r.body_mut().read_to_string().unwrap()
    };
    let count = metric(&metrics, "interstice_scheduled_lateness_seconds_count");
    let on_time = metric(
        &metrics,
        "interstice_scheduled_lateness_seconds_bucket{le=\"0.01\"}",
    );
    let within_a_second = metric(
        &metrics,
        "interstice_scheduled_lateness_seconds_bucket{le=\"1.0\"}",
    );
    assert!(count >= 200.0, "{count} runs");
    // On time as a rule (a scheduler that is late by design misses this by
    // far), and never by a second; a loaded 2-core machine was seen to put
    // 4 runs in 243 past 10 ms, so the rule is 95%, not 99%.
    assert!(
        on_time / count >= 0.95,
        "over 5% of runs more than 10 ms late: {on_time} of {count} within\n{metrics}"
    );
    assert_eq!(
        within_a_second, count,
        "a run a second or more late\n{metrics}"
    );
    assert_eq!(metric(&metrics, "interstice_scheduled_failures_total"), 0.0);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn one_shot_reminders_run_exactly_once_across_kill_9() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let seed = rng::seed();
    let mut state = seed;
    let tmp = tempfile::tempdir().unwrap();
    let dir = setup(tmp.path());
    let mut server = Server::start(&dir, &[]);
    // 1,000 reminders, due from 0.3 s on, one a millisecond.
    call(&server, "remind_many", json!(["r", 1000, 300_000, 1_000]));
    let ids: Vec<u64> = rows(&server, "reminders")
        .iter()
        .map(|r| r["scheduled_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000);
    for _ in 0..4 {
        let pause = 100 + rng::next(&mut state) % 400;
        std::thread::sleep(Duration::from_millis(pause));
        server.kill9();
        server = Server::start(&dir, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !rows(&server, "reminders").is_empty() {
        assert!(Instant::now() < deadline, "seed {seed}: reminders left");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for r in rows(&server, "fired") {
        *times.entry(r["reminder"].as_u64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "seed {seed}: ran more than once: {twice:?}"
    );
    let ran: Vec<u64> = times.keys().copied().collect();
    assert_eq!(ran, ids, "seed {seed}: every reminder ran once, none lost");
    server.stop();
}

#[test]
fn tick_runs_what_is_due_offline_and_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = setup(tmp.path());
    // Due at once, and a second after the epoch: both long past.
    common::ok(&dir, &["call", "reminders", "remind_at", "[\"a\", 0]"]);
    common::ok(
        &dir,
        &["call", "reminders", "remind_at", "[\"b\", 1000000]"],
    );
    common::ok(
        &dir,
        &["call", "reminders", "remind_every", "[\"c\", 3600000000]"],
    );
    let fired = || -> usize {
        let out = common::ok(&dir, &["query", "reminders", "fired"]);
        out.lines().filter(|l| l.contains("\"reminder\"")).count()
    };
    assert_eq!(fired(), 0, "the offline CLI runs nothing unless asked");
    let out: Json = serde_json::from_str(&common::ok(&dir, &["tick"])).unwrap();
    assert_eq!(out["ran"], 2, "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    assert!(out["next_due"].as_i64().unwrap() > 0, "the interval: {out}");
    assert_eq!(fired(), 2);
    let out: Json = serde_json::from_str(&common::ok(&dir, &["tick"])).unwrap();
    assert_eq!(out["ran"], 0, "nothing is due twice: {out}");
}
