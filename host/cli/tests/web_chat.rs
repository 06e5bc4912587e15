//! The web app (`clients/web-chat`): its generated client is what
//! `interstice generate` writes for the chatroom module, it type-checks,
//! it builds (esbuild, from the committed lockfile), and in a real browser
//! (Debian's `chromium`, installed here when missing, driven by
//! `playwright-core`) two people chat live through `interstice serve
//! --static`, a reload keeps history and identity, and a kill -9 loses no
//! message the pages showed.

use std::path::{Path, PathBuf};
use std::process::Command;

use interstice_tests::guests;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_interstice");
const CHROMIUM: &str = "/usr/bin/chromium";

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients")
}

fn run_in(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) {
    let output = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run ({e})"));
    assert!(
        output.status.success(),
        "{program} {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `npm ci` unless what is installed is as new as the lockfile.
fn npm_ci(dir: &Path) {
    let installed = std::fs::metadata(dir.join("node_modules/.package-lock.json"));
    let lock = std::fs::metadata(dir.join("package-lock.json"));
    let fresh = match (installed, lock) {
        (Ok(i), Ok(l)) => i.modified().unwrap() >= l.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        run_in(dir, "npm", &["ci", "--no-audit", "--no-fund"], &[]);
    }
}

/// Debian's chromium, installed when missing (the test setup may be
/// root; otherwise it says what to install).
fn chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    // SAFETY: geteuid(2) reads a number and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "{CHROMIUM} is missing: install Debian's `chromium` package"
    );
    let install = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&["install", "-y", "-q", "chromium"]) {
        assert!(install(&["update", "-q"]), "apt-get update failed");
        assert!(
            install(&["install", "-y", "-q", "chromium"]),
            "apt-get install chromium failed"
        );
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium installed, but {CHROMIUM} is not there"
    );
}

#[test]
fn two_browsers_chat_live_through_restarts_and_reloads() {
    let sdk = clients().join("typescript");
    let app = clients().join("web-chat");
    // The committed client is what generate writes for the module now.
    common::assert_generated(
        "typescript",
        "chatroom",
        guests::CHATROOM,
        "clients/web-chat/src/generated/chatroom.ts",
    );
    npm_ci(&sdk);
    run_in(
        &sdk,
        "node",
        &["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        &[],
    );
    npm_ci(&app);
    run_in(
        &app,
        "node",
        &["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        &[],
    );
    run_in(&app, "node", &["build.mjs"], &[]);
    chromium();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-chat.png");
    run_in(
        &app,
        "node",
        &["--test", "test/browser.test.mjs"],
        &[
            ("INTERSTICE_BIN", BIN),
            ("INTERSTICE_CHATROOM", guests::CHATROOM),
            ("CHROMIUM", CHROMIUM),
            ("SCREENSHOT", shot.to_str().unwrap()),
        ],
    );
    assert!(shot.is_file(), "the page's screenshot was taken");
}
