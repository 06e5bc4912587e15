//! Running the `interstice` binary from the CLI's tests.

#![allow(dead_code)]

pub mod serve;

use std::path::Path;
use std::process::{Command, Output};

/// An HTTP client that returns every status as an answer (not an error),
/// with a minute's timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// `interstice ARGS --data-dir DATA_DIR`, as a process of its own.
pub fn interstice(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interstice"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run interstice")
}

/// Its standard output, which must come with success.
pub fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = interstice(data_dir, args);
    assert!(
        out.status.success(),
        "interstice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Its standard error, which must come with failure.
pub fn refused(data_dir: &Path, args: &[&str]) -> String {
    let out = interstice(data_dir, args);
    assert!(!out.status.success(), "interstice {args:?} succeeded");
    String::from_utf8(out.stderr).expect("utf-8 output")
}

/// Copies a directory tree (a committed fixture, which tests never write).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
