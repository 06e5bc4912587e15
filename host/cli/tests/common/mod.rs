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

/// `interstice generate --lang LANG --module NAME --out OUT FROM...`
/// (`FROM`: a module's file, or `--server URL`), which must succeed.
pub fn generate(lang: &str, name: &str, out: &Path, from: &[&str]) {
    let done = Command::new(env!("CARGO_BIN_EXE_interstice"))
        .args(["generate", "--lang", lang, "--module", name, "--out"])
        .arg(out)
        .args(from)
        .output()
        .expect("run interstice");
    assert!(
        done.status.success(),
        "interstice generate --lang {lang} --module {name} {from:?}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
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

/// Checks that `committed` (a path from the repository's root) holds what
/// `interstice generate --lang LANG` writes now for module `name` of
/// `wasm`, and says how to write it again when not.
pub fn assert_generated(lang: &str, name: &str, wasm: &str, committed: &str) {
    let out = tempfile::tempdir().unwrap();
    generate(lang, name, out.path(), &[wasm]);
    let file = Path::new(committed).file_name().unwrap();
    let written = std::fs::read_to_string(out.path().join(file)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kept = std::fs::read_to_string(root.join(committed)).unwrap();
    let dir = Path::new(committed).parent().unwrap().display();
    assert!(
        written == kept,
        "{committed} differs from what generate writes now: run\n  interstice generate --lang {lang} --module {name} --out {dir} <{name}.wasm>"
    );
}
