//! The serving path as a user meets it: `wrk` (Debian's package) against a
//! release `interstice serve` in its own process, durable `bank.transfer`
//! between random accounts, against peers measured in the same run: the
//! same transfers from as many threads in process, the raw fdatasync rate
//! of the disk, and `wrk` on the bare `/healthz` route.
//!
//! Needs `wrk` on the PATH and the release CLI built:
//! `cargo build --release -p interstice-cli`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use interstice_runtime::Database;
use interstice_runtime::log::SyncPolicy;

use crate::durable::{ACCOUNTS, config, durable_transfers, raw_fdatasync, seeded_bank};

const TOKEN: &str = "bench-admin-token";
const RUN: Duration = Duration::from_secs(5);

/// The release `interstice` beside this benchmark's own executable.
fn server_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me
        .parent()
        .context("the benchmark's directory")?
        .join("interstice");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p interstice-cli`",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `interstice serve`; stopped with SIGTERM when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(dir: &Path, extra_config: Option<&Path>) -> Result<Served> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let mut cmd = Command::new(server_binary()?);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--snapshot-every-tx", "0", "--snapshot-every-bytes", "0"])
            .env(interstice_server::auth::TOKEN_ENV, TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(path) = extra_config {
            cmd.arg("--config").arg(path);
        }
        let child = cmd.spawn().context("starting interstice serve")?;
        let served = Served {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while ureq::get(format!("{}/healthz", served.url)).call().is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not answer /healthz within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(served)
    }

    /// The log's records and syncs, from `/metrics`.
    fn log_counters(&self) -> Result<(u64, u64)> {
        let text = ureq::get(format!("{}/metrics", self.url))
            .call()?
            .body_mut()
            .read_to_string()?;
        let find = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| {
                    let rest = l.strip_prefix(name)?;
                    let value = rest.strip_prefix("_total ").or(rest.strip_prefix(' '))?;
                    value.trim().parse::<f64>().ok()
                })
                .map(|v| v as u64)
                .with_context(|| format!("{name} is not in /metrics"))
        };
        Ok((
            find("interstice_log_records")?,
            find("interstice_log_syncs")?,
        ))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// What one `wrk` run measured.
struct Wrk {
    requests_per_second: f64,
    non_2xx: u64,
    p50: String,
    p99: String,
}

fn wrk(url: &str, connections: usize, script: Option<&Path>, pin: Option<&str>) -> Result<Wrk> {
    let threads = connections.min(2);
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", RUN.as_secs()))
        .arg("--latency");
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .context("running wrk (apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut found = Wrk {
        requests_per_second: 0.0,
        non_2xx: 0,
        p50: String::new(),
        p99: String::new(),
    };
    for line in BufReader::new(text.as_bytes()).lines() {
        let line = line?;
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            found.requests_per_second = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            found.non_2xx = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("50%") {
            found.p50 = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("99%") {
            found.p99 = v.trim().to_string();
        }
    }
    if found.requests_per_second == 0.0 {
        bail!("wrk printed no rate:\n{text}");
    }
    Ok(found)
}

/// The Lua script for durable transfers between random accounts.
fn transfer_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("transfer.lua");
    std::fs::write(
        &path,
        format!(
            r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {TOKEN}"
local n = {ACCOUNTS}
request = function()
  local from = math.random(0, n - 1)
  local to = math.random(0, n - 1)
  return wrk.format(nil, "/v1/modules/bank/reducers/transfer", nil,
    "[" .. from .. "," .. to .. ",1]")
end
"#
        ),
    )?;
    Ok(path)
}

pub fn figures() -> Result<()> {
    let fsync = raw_fdatasync(2_000)?;
    let fsync_rate = 1.0 / fsync.as_secs_f64();
    let bank = seeded_bank()?;
    // In process first, with the directory the server opens afterwards.
    let (local64, local1) = {
        let db = Database::open(bank.path(), config(SyncPolicy::Always))?;
        let many = durable_transfers(&db, 64, RUN)?;
        let one = durable_transfers(&db, 1, RUN)?;
        (many, one)
    };
    let scripts = tempfile::tempdir()?;
    let script = transfer_script(scripts.path())?;
    let served = Served::start(bank.path(), None)?;
    let transfer_url = served.url.clone();

    println!("## Over HTTP with wrk (`cargo run --release -p interstice-bench -- http`)\n");
    println!(
        "Durable `bank.transfer` between random accounts of {ACCOUNTS} (sync `always`), \
         release `interstice serve` in its own process, `wrk --latency` {} s per figure \
         on the same 2-core machine. Raw fdatasync here: {:.0} µs ({fsync_rate:.0}/s).\n",
        RUN.as_secs(),
        fsync.as_secs_f64() * 1e6
    );
    println!(
        "| load | tx/s | tx per fsync | p50 | p99 | non-2xx | peer | peer's figure | ÷ peer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    for (label, connections, pin) in [
        ("wrk, 64 connections", 64, None),
        ("wrk pinned to cpu 1, 64 connections", 64, Some("1")),
        ("wrk, 1 connection", 1, None),
    ] {
        let (records0, syncs0) = served.log_counters()?;
        let run = wrk(&transfer_url, connections, Some(&script), pin)?;
        let (records1, syncs1) = served.log_counters()?;
        let per_fsync = (records1 - records0) as f64 / (syncs1 - syncs0).max(1) as f64;
        let (peer, peer_rate) = match connections {
            1 => ("raw fdatasync", fsync_rate),
            _ => ("in process, 64 callers", local64.per_second()),
        };
        println!(
            "| {label} | {:.0} | {per_fsync:.1} | {} | {} | {} | {peer} | {peer_rate:.0} | {:.2}× |",
            run.requests_per_second,
            run.p50,
            run.p99,
            run.non_2xx,
            run.requests_per_second / peer_rate
        );
    }
    let health = wrk(&format!("{}/healthz", served.url), 64, None, None)?;
    println!(
        "| wrk on `/healthz`, 64 connections | {:.0} | | {} | {} | {} | | | |",
        health.requests_per_second, health.p50, health.p99, health.non_2xx
    );
    println!(
        "| in process, 64 callers | {:.0} | {:.1} | {:.0} µs | {:.0} µs | | | | |",
        local64.per_second(),
        local64.tx_per_fsync(),
        local64.p50.as_secs_f64() * 1e6,
        local64.p99.as_secs_f64() * 1e6
    );
    println!(
        "| in process, 1 caller | {:.0} | {:.1} | {:.0} µs | {:.0} µs | | raw fdatasync | {fsync_rate:.0} | {:.2}× |",
        local1.per_second(),
        local1.tx_per_fsync(),
        local1.p50.as_secs_f64() * 1e6,
        local1.p99.as_secs_f64() * 1e6,
        local1.per_second() / fsync_rate
    );
    println!();
    drop(served);
    Ok(())
}
