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
    /// Starts the server, waits for it to answer, then gives it a second
    /// of `script`'s load: the module is compiled at its first call, and
    /// the first figure must not pay for it.
    fn start(
        dir: &Path,
        extra_config: Option<&Path>,
        pin: Option<&str>,
        script: &Path,
    ) -> Result<Served> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let mut cmd = pinned(server_binary()?, pin);
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
        wrk(&served.url, 8, Some(script), None, Duration::from_secs(1))?;
        Ok(served)
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> Result<u64> {
        rss_of(self.child.id())
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

/// `program`, run on CPU `pin` when one is given (`taskset -c`).
fn pinned(program: impl AsRef<std::ffi::OsStr>, pin: Option<&str>) -> Command {
    match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn wrk(
    url: &str,
    connections: usize,
    script: Option<&Path>,
    pin: Option<&str>,
    run: Duration,
) -> Result<Wrk> {
    let threads = connections.min(2);
    let mut cmd = pinned("wrk", pin);
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", run.as_secs()))
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

/// Resident memory of process `pid`, in bytes.
fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// Pins every thread of this process to `cpus` (as `taskset -c` reads it).
fn pin_self(cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed");
    }
    Ok(())
}

/// One row of the table: a wrk run and what it is held against.
fn row(
    label: &str,
    served: &Served,
    connections: usize,
    script: &Path,
    pin: Option<&str>,
    peer: (&str, f64),
) -> Result<f64> {
    let (records0, syncs0) = served.log_counters()?;
    let run = wrk(&served.url, connections, Some(script), pin, RUN)?;
    let (records1, syncs1) = served.log_counters()?;
    let per_fsync = (records1 - records0) as f64 / (syncs1 - syncs0).max(1) as f64;
    let (peer_figure, ratio) = match peer.0 {
        "" => (String::new(), String::new()),
        _ => (
            format!("{:.0}", peer.1),
            format!("{:.2}×", run.requests_per_second / peer.1),
        ),
    };
    println!(
        "| {label} | {:.0} | {per_fsync:.1} | {} | {} | {} | {} | {peer_figure} | {ratio} |",
        run.requests_per_second, run.p50, run.p99, run.non_2xx, peer.0,
    );
    Ok(run.requests_per_second)
}

fn local_row(label: &str, d: &crate::durable::Durable, peer: Option<(&str, f64)>) {
    let (name, rate, ratio) = match peer {
        Some((name, rate)) => (
            name.to_string(),
            format!("{rate:.0}"),
            format!("{:.2}×", d.per_second() / rate),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    println!(
        "| {label} | {:.0} | {:.1} | {:.0} µs | {:.0} µs | | {name} | {rate} | {ratio} |",
        d.per_second(),
        d.tx_per_fsync(),
        d.p50.as_secs_f64() * 1e6,
        d.p99.as_secs_f64() * 1e6,
    );
}

/// Opens `n` connections to `url` that each send `prefix` and then
/// nothing.
fn hold_connections(url: &str, n: usize, prefix: &[u8]) -> Result<Vec<std::net::TcpStream>> {
    use std::io::Write;
    let addr = url.trim_start_matches("http://");
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.write_all(prefix)?;
            Ok(s)
        })
        .collect()
}

/// How many of `streams` the server has closed (a read returns at once
/// with end of file or an error).
fn closed_by_server(streams: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    streams
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 512];
            let closed = match (&**s).read(&mut buf) {
                Ok(_) => true,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            let _ = s.set_nonblocking(false);
            closed
        })
        .count()
}

pub fn figures() -> Result<()> {
    let fsync = raw_fdatasync(2_000)?;
    let fsync_rate = 1.0 / fsync.as_secs_f64();
    let bank = seeded_bank()?;
    let scripts = tempfile::tempdir()?;
    let script = transfer_script(scripts.path())?;

    println!("## Over HTTP with wrk (`cargo run --release -p interstice-bench -- http`)\n");
    println!(
        "Durable `bank.transfer` between random accounts of {ACCOUNTS} (sync `always`), \
         release `interstice serve` in its own process, `wrk --latency` {} s per figure \
         on the same 2-core machine. Raw fdatasync here: {:.0} µs ({fsync_rate:.0}/s). \
         Pinned: the server (or the in-process peer) on CPU 0, wrk on CPU 1.\n",
        RUN.as_secs(),
        fsync.as_secs_f64() * 1e6
    );
    println!(
        "| load | tx/s | tx per fsync | p50 | p99 | non-2xx | peer | peer's figure | ÷ peer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    // In process first, with the directory the server opens afterwards.
    let (local64, local1, pinned64) = {
        let db = Database::open(bank.path(), config(SyncPolicy::Always))?;
        let many = durable_transfers(&db, 64, RUN)?;
        let one = durable_transfers(&db, 1, RUN)?;
        pin_self("0")?;
        let pinned = durable_transfers(&db, 64, RUN);
        pin_self("0-1")?;
        (many, one, pinned?)
    };
    local_row("in process, 64 callers", &local64, None);
    local_row(
        "in process, 1 caller",
        &local1,
        Some(("raw fdatasync", fsync_rate)),
    );
    local_row("in process, 64 callers, pinned to CPU 0", &pinned64, None);
    {
        let served = Served::start(bank.path(), None, None, &script)?;
        row(
            "wrk, 64 connections",
            &served,
            64,
            &script,
            None,
            ("in process, 64 callers", local64.per_second()),
        )?;
        row(
            "wrk, 1 connection",
            &served,
            1,
            &script,
            None,
            ("raw fdatasync", fsync_rate),
        )?;
        let health = wrk(&format!("{}/healthz", served.url), 64, None, None, RUN)?;
        println!(
            "| wrk on `/healthz`, 64 connections | {:.0} | | {} | {} | {} | | | |",
            health.requests_per_second, health.p50, health.p99, health.non_2xx
        );
    }
    {
        let served = Served::start(bank.path(), None, Some("0"), &script)?;
        row(
            "pinned: wrk, 64 connections",
            &served,
            64,
            &script,
            Some("1"),
            ("in process, 64 callers, pinned", pinned64.per_second()),
        )?;
        row(
            "pinned: wrk, 1 connection",
            &served,
            1,
            &script,
            Some("1"),
            ("raw fdatasync", fsync_rate),
        )?;
    }
    println!();

    // Idle connections beside busy ones; and the slow-body flood the issue
    // describes. Settings: header and body timeouts long enough for the
    // idle ones to stay for the whole run, and a connection limit above
    // what is opened.
    let settings = scripts.path().join("interstice.toml");
    std::fs::write(
        &settings,
        "max_connections = 20000\nheader_timeout_secs = 60\nbody_timeout_secs = 5\n",
    )?;
    let served = Served::start(bank.path(), Some(&settings), None, &script)?;
    let url = served.url.clone();
    let rss0 = served.rss()?;
    println!(
        "Idle connections beside 64 busy ones (wrk, 64 connections), same server; settings `max_connections = 20000`, `header_timeout_secs = 60`:\n"
    );
    println!(
        "| idle connections | tx/s | tx per fsync | p50 | p99 | non-2xx | peer | peer's figure | ÷ peer |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    let busy = row("0", &served, 64, &script, None, ("", 0.0))?;
    let rss_busy = served.rss()?;
    let idle = hold_connections(&url, 10_000, b"")?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = served.rss()?;
    row("10,000", &served, 64, &script, None, ("no idle ones", busy))?;
    let rss_after = served.rss()?;
    println!(
        "\nServer RSS: {:.1} MB at start, {:.1} MB after the busy run, {:.1} MB with 10,000 idle \
         connections ({:.0} bytes each), {:.1} MB after the busy run beside them.\n",
        rss0 as f64 / 1e6,
        rss_busy as f64 / 1e6,
        rss_idle as f64 / 1e6,
        rss_idle.saturating_sub(rss_busy) as f64 / 10_000.0,
        rss_after as f64 / 1e6,
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));

    // 8,000 connections that send a request head and 2 of 100 promised
    // body bytes.
    let head = format!(
        "POST /v1/modules/bank/reducers/transfer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n[1"
    );
    let before = served.rss()?;
    let started = Instant::now();
    let slow = hold_connections(&url, 8_000, head.as_bytes())?;
    std::thread::sleep(Duration::from_secs(1));
    let held = served.rss()?;
    let health_started = Instant::now();
    let health_ok = ureq::get(format!("{url}/healthz")).call().is_ok();
    let health_took = health_started.elapsed();
    let mut cut_after = None;
    while started.elapsed() < Duration::from_secs(30) {
        if closed_by_server(&slow) == slow.len() {
            cut_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "8,000 connections that send a request head and 2 of 100 promised body bytes (`body_timeout_secs = 5`): \
         server RSS {:.1} MB before, {:.1} MB while they are held; `/healthz` meanwhile: {} in {:.1} ms; \
         all closed by the server after {}.\n",
        before as f64 / 1e6,
        held as f64 / 1e6,
        if health_ok { "200" } else { "failed" },
        health_took.as_secs_f64() * 1e3,
        match cut_after {
            Some(t) => format!("{:.1} s", t.as_secs_f64()),
            None => format!(
                "more than 30 s ({} of 8,000 closed)",
                closed_by_server(&slow)
            ),
        }
    );
    drop(slow);
    drop(served);
    Ok(())
}
