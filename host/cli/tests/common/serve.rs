//! `interstice serve` as a process of its own, on loopback.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A server process serving a data directory; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub dir: PathBuf,
    /// The admin token.
    pub token: String,
    stderr: PathBuf,
}

/// The admin token of every server started, by `host:port`.
static ADMIN_TOKENS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The admin token of the server at `authority` (`host:port`), if a test
/// started it.
pub fn admin_token_of(authority: &str) -> Option<String> {
    ADMIN_TOKENS.lock().unwrap().get(authority).cloned()
}

impl Server {
    /// Serves `dir` with the flags `extra`; returns once it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(dir, "127.0.0.1:0", extra)
    }

    /// Serves `dir` on `listen` (an address and port) with the flags
    /// `extra`; returns once it listens.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let stderr = dir.with_extension(format!("stderr-{}", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_interstice"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env_remove("INTERSTICE_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start interstice serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: {line:?}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_string();
        let token = std::fs::read_to_string(dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        if let Some(authority) = url.strip_prefix("http://") {
            ADMIN_TOKENS
                .lock()
                .unwrap()
                .insert(authority.to_string(), token.clone());
        }
        Server {
            child: Some(child),
            url,
            dir: dir.to_path_buf(),
            token,
            stderr,
        }
    }

    /// A server of `tmp/data` with the settings file `toml`.
    pub fn start_configured(tmp: &Path, toml: &str) -> Server {
        let config = tmp.join("interstice.toml");
        std::fs::write(&config, toml).unwrap();
        Server::start(&tmp.join("data"), &["--config", config.to_str().unwrap()])
    }

    /// SIGTERM, then wait for the process to finish: its status and what
    /// it wrote to standard error.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: kill(2) touches no memory of this process; the pid is
        // this test's own child, not yet waited for, so it names no other
        // process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.stderr())
    }

    /// SIGKILL: the process ends at once, mid-whatever.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// What the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr);
    }
}
