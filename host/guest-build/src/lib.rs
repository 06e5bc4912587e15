//! Builds guests into Interstice modules.
//!
//! A Rust guest is a `cdylib` crate compiled for `wasm32-unknown-unknown`
//! and then turned into a component with `wit-component`, or compiled for
//! `wasm32-wasip2`, whose linker makes the component itself (such a guest
//! imports WASI, which the host grants deterministically). Two toolchains can
//! do the compile, and [`Toolchain::detect`] picks whichever this machine
//! has:
//!
//! 1. **rustup**: the pinned toolchain with the target (`rust-toolchain.toml`
//!    asks rustup to install both targets; if one is still missing,
//!    `rustup target add` is tried once).
//! 2. **Debian**: the packages `rustc-web cargo-web rust-web-src
//!    rust-web-llvm lld-22`, which put a rustc and cargo with the standard
//!    library's source in `/usr/bin` and `/usr/lib/rustlib/src`; std is then
//!    built for wasm with `-Zbuild-std`. This route builds
//!    `wasm32-unknown-unknown` guests only.
//!
//! A Python guest (a directory with an `app.py`) is built by componentize-py
//! ([`python`]).
//!
//! The same code serves `interstice build` and the test suite's build script,
//! so what the tests load is what users build.

pub mod python;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The WASI 0.2 target: its linker writes a component that imports WASI.
pub const WASIP2_TARGET: &str = "wasm32-wasip2";

/// Debian packages of the fallback route.
pub const DEBIAN_PACKAGES: &str = "rustc-web cargo-web rust-web-src rust-web-llvm lld-22";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(
        "no toolchain can build for {WASM_TARGET}: `rustup target add {WASM_TARGET}` failed or rustup is missing, \
         and the Debian route is not installed (apt-get install {DEBIAN_PACKAGES})"
    )]
    NoToolchain,
    #[error(
        "no toolchain can build for {WASIP2_TARGET}: `rustup target add {WASIP2_TARGET}` failed or rustup is missing \
         (the Debian route builds {WASM_TARGET} guests only)"
    )]
    NoWasip2Toolchain,
    #[error("{0}")]
    Python(String),
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cargo build of {crate_dir} failed (exit status {status})")]
    CargoFailed { crate_dir: PathBuf, status: String },
    #[error("cargo built no .wasm artifact in {0}; is the crate a `cdylib`?")]
    NoArtifact(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an Interstice guest: {0}")]
    Componentize(String),
}

/// How guests are compiled on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// A rustup-managed toolchain with the wasm target installed.
    Rustup { cargo: OsString },
    /// Debian's rust-web packages, building std from source.
    Debian,
}

const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";

impl Toolchain {
    /// Finds a toolchain that can build guests, installing the rustup target
    /// if rustup is present and the target is not.
    pub fn detect() -> Result<Toolchain, BuildError> {
        Self::detect_for(WASM_TARGET)
    }

    /// Finds a toolchain that can build guests for `target`
    /// ([`WASM_TARGET`] or [`WASIP2_TARGET`]).
    pub fn detect_for(target: &str) -> Result<Toolchain, BuildError> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        if rustup_has_target(target) {
            return Ok(Toolchain::Rustup { cargo });
        }
        let added = Command::new("rustup")
            .args(["target", "add", target])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if added && rustup_has_target(target) {
            return Ok(Toolchain::Rustup { cargo });
        }
        if target != WASM_TARGET {
            return Err(BuildError::NoWasip2Toolchain);
        }
        if Path::new(DEBIAN_CARGO).exists()
            && Path::new(DEBIAN_RUSTC).exists()
            && Path::new(DEBIAN_STD_SRC).exists()
        {
            return Ok(Toolchain::Debian);
        }
        Err(BuildError::NoToolchain)
    }

    fn cargo_command(&self) -> Command {
        match self {
            Toolchain::Rustup { cargo } => {
                let mut cmd = Command::new(cargo);
                cmd.arg("build");
                cmd
            }
            Toolchain::Debian => {
                let mut cmd = Command::new(DEBIAN_CARGO);
                cmd.env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .arg("build")
                    .arg("-Zbuild-std=std,panic_abort");
                cmd
            }
        }
    }
}

fn rustup_has_target(target: &str) -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// A crate or workspace directory.
    pub dir: PathBuf,
    /// Build the whole workspace rather than the crate at `dir`.
    pub workspace: bool,
    /// Where cargo puts its output; cargo's default when `None`.
    pub target_dir: Option<PathBuf>,
    /// [`WASM_TARGET`] or [`WASIP2_TARGET`].
    pub target: &'static str,
    /// Build only these packages of the workspace (`-p`); all when empty.
    pub packages: Vec<String>,
    /// Leave these packages out of a workspace build.
    pub exclude: Vec<String>,
}

/// Compiles the guest crate(s) and returns the core modules built, as
/// (crate name, path).
pub fn build_core(
    toolchain: &Toolchain,
    request: &BuildRequest,
) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let mut cmd = toolchain.cargo_command();
    scrub_cargo_env(&mut cmd);
    cmd.current_dir(&request.dir)
        .args([
            "--release",
            "--target",
            request.target,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if request.workspace {
        cmd.arg("--workspace");
    }
    for package in &request.packages {
        cmd.args(["-p", package]);
    }
    for package in &request.exclude {
        cmd.args(["--exclude", package]);
    }
    if let Some(dir) = &request.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    let program = format!("{:?}", cmd.get_program());
    let output = cmd
        .output()
        .map_err(|source| BuildError::Spawn { program, source })?;
    if !output.status.success() {
        return Err(BuildError::CargoFailed {
            crate_dir: request.dir.clone(),
            status: output.status.to_string(),
        });
    }
    let artifacts = wasm_artifacts(&String::from_utf8_lossy(&output.stdout));
    if artifacts.is_empty() {
        return Err(BuildError::NoArtifact(request.dir.clone()));
    }
    Ok(artifacts)
}

/// `.wasm` files named in cargo's JSON messages.
fn wasm_artifacts(messages: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in messages.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for file in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(path) = file.as_str().filter(|p| p.ends_with(".wasm")) {
                out.push((name.clone(), PathBuf::from(path)));
            }
        }
    }
    out
}

/// An outer cargo (a build script, `cargo run`) leaves variables that would
/// redirect or reconfigure the inner build.
fn scrub_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if outer {
            cmd.env_remove(key);
        }
    }
}

/// Turns a core module carrying wit-bindgen's component-type metadata into a
/// component. Components pass through unchanged.
pub fn componentize(wasm: &[u8]) -> Result<Vec<u8>, BuildError> {
    if is_component(wasm) {
        return Ok(wasm.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(wasm)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| BuildError::Componentize(format!("{e:#}")))
}

/// Whether `wasm` starts with the component-model preamble.
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Builds the guest at `crate_dir` and writes its component to `out`.
/// Returns the path.
///
/// A directory holding an `app.py` is a Python guest ([`python::build`];
/// `out` defaults to `<dir>/<dir name>.component.wasm`). Otherwise it is a
/// Rust crate, built for `target` (default [`WASM_TARGET`]); `out` defaults
/// to the core module's path with the extension `component.wasm`.
pub fn build_component(
    crate_dir: &Path,
    out: Option<&Path>,
    target: Option<&'static str>,
) -> Result<PathBuf, BuildError> {
    if python::is_python_guest(crate_dir) {
        if target.is_some() {
            return Err(BuildError::Python(
                "a Python guest has no Rust target; leave out --target".into(),
            ));
        }
        let out = match out {
            Some(p) => p.to_path_buf(),
            None => python::default_output(crate_dir),
        };
        python::build(crate_dir, &out, &python::tools_dir_default()?)?;
        return Ok(out);
    }
    let target = target.unwrap_or(WASM_TARGET);
    let toolchain = Toolchain::detect_for(target)?;
    let request = BuildRequest {
        dir: crate_dir.to_path_buf(),
        workspace: false,
        target_dir: None,
        target,
        packages: Vec::new(),
        exclude: Vec::new(),
    };
    let artifacts = build_core(&toolchain, &request)?;
    let (_, core_path) = artifacts
        .last()
        .ok_or_else(|| BuildError::NoArtifact(crate_dir.to_path_buf()))?;
    let core = std::fs::read(core_path).map_err(|source| BuildError::Io {
        path: core_path.clone(),
        source,
    })?;
    let component = componentize(&core)?;
    let out = match out {
        Some(p) => p.to_path_buf(),
        None => core_path.with_extension("component.wasm"),
    };
    std::fs::write(&out, component).map_err(|source| BuildError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(!is_component(b"\0asm"));
    }

    #[test]
    fn bytes_that_are_no_module_are_refused() {
        let err = componentize(b"\0asm\x01\0\0\0garbage").unwrap_err();
        assert!(matches!(err, BuildError::Componentize(_)), "{err}");
    }

    #[test]
    fn components_pass_through() {
        let empty = b"\0asm\x0d\0\x01\0";
        assert_eq!(componentize(empty).unwrap(), empty);
    }

    #[test]
    fn artifacts_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"bank"},"filenames":["/t/bank.wasm","/t/libbank.rlib"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            wasm_artifacts(messages),
            vec![("bank".to_string(), PathBuf::from("/t/bank.wasm"))]
        );
    }
}
