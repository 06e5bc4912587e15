//! Python guests, built with componentize-py.
//!
//! A Python guest is a directory with an `app.py` that declares its module
//! with the Interstice Python SDK (`guest-modules/python/interstice.py`,
//! embedded here) and ends with `WitWorld = module.world()`.
//! componentize-py, installed from PyPI at a pinned version into a tools
//! directory on first use, compiles it against `wit/interstice.wit`
//! (contract version 2, also embedded) into a component that carries CPython
//! and imports WASI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::BuildError;

/// The componentize-py release guests are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Python guests are built against contract version 1 until the Python SDK
/// speaks version 2; the host loads both.
const WIT: &str = include_str!("../../../wit/interstice.wit");

/// The Python SDK.
const SDK: &str = include_str!("../../../guest-modules/python/interstice.py");

/// Whether `dir` holds a Python guest.
pub fn is_python_guest(dir: &Path) -> bool {
    dir.join("app.py").is_file()
}

/// `<dir>/<dir name>.component.wasm`.
pub fn default_output(dir: &Path) -> PathBuf {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "module".into());
    dir.join(format!("{name}.component.wasm"))
}

/// Where componentize-py is installed: `INTERSTICE_TOOLS_DIR`, else
/// `$XDG_CACHE_HOME/interstice`, else `$HOME/.cache/interstice`.
pub fn tools_dir_default() -> Result<PathBuf, BuildError> {
    if let Some(dir) = std::env::var_os("INTERSTICE_TOOLS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("interstice"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache/interstice")),
        None => Err(BuildError::Python(
            "no place for componentize-py: set INTERSTICE_TOOLS_DIR".into(),
        )),
    }
}

fn python() -> String {
    std::env::var("INTERSTICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// componentize-py's package directory under `tools_dir`, installed with
/// `pip install --target` if it is not there yet. The install goes to a
/// fresh directory that is renamed into place, so concurrent builds and an
/// interrupted install never leave a half-installed tool behind.
pub fn ensure_componentize_py(tools_dir: &Path) -> Result<PathBuf, BuildError> {
    let dir = tools_dir.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    if dir.join("componentize_py").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(tools_dir).map_err(io(tools_dir))?;
    let staging = tools_dir.join(format!(
        ".componentize-py-{COMPONENTIZE_PY_VERSION}.{}",
        std::process::id()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let python = python();
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--root-user-action=ignore",
            "--target",
        ])
        .arg(&staging)
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .stdout(Stdio::null())
        .status()
        .map_err(|source| BuildError::Spawn {
            program: python.clone(),
            source,
        })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(BuildError::Python(format!(
            "`{python} -m pip install componentize-py=={COMPONENTIZE_PY_VERSION}` failed ({status}); \
             Python guests need Python 3 with pip and access to PyPI"
        )));
    }
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        // Another build installed it meanwhile.
        Err(_) if dir.join("componentize_py").is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => Err(io(&dir)(e)),
    }
}

/// The contract and the SDK, written into a scratch directory under the
/// tools directory (removed on drop), where componentize-py reads them.
struct Inputs {
    _scratch: tempfile::TempDir,
    wit: PathBuf,
    sdk: PathBuf,
}

fn inputs(tools_dir: &Path) -> Result<Inputs, BuildError> {
    std::fs::create_dir_all(tools_dir).map_err(io(tools_dir))?;
    let scratch = tempfile::Builder::new()
        .prefix(".inputs-")
        .tempdir_in(tools_dir)
        .map_err(io(tools_dir))?;
    let wit = scratch.path().join("wit");
    let sdk = scratch.path().join("sdk");
    for (dir, file, text) in [(&wit, "interstice.wit", WIT), (&sdk, "interstice.py", SDK)] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(Inputs {
        _scratch: scratch,
        wit,
        sdk,
    })
}

/// Runs componentize-py with `args` after `--wit-path <contract> --world
/// module`.
fn componentize_py(
    tools_dir: &Path,
    wit_dir: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<(), BuildError> {
    let tool = ensure_componentize_py(tools_dir)?;
    let python = python();
    let output = Command::new(&python)
        .env("PYTHONPATH", &tool)
        .args(["-c", "import componentize_py; componentize_py.script()"])
        .arg("--wit-path")
        .arg(wit_dir)
        .args(["--world", "module"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| BuildError::Spawn {
            program: python.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(BuildError::Python(format!(
            "componentize-py failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    Ok(())
}

/// Writes the Python bindings of the contract (the `wit_world` package a
/// module imports through the SDK) into `out_dir`, for editors, type
/// checkers and tests of the SDK in a plain CPython.
pub fn bindings(out_dir: &Path, tools_dir: &Path) -> Result<(), BuildError> {
    let inputs = inputs(tools_dir)?;
    componentize_py(
        tools_dir,
        &inputs.wit,
        &["bindings".as_ref(), out_dir.as_os_str()],
    )
}

/// Builds the Python guest in `app_dir` into the component `out`.
pub fn build(app_dir: &Path, out: &Path, tools_dir: &Path) -> Result<(), BuildError> {
    if !is_python_guest(app_dir) {
        return Err(BuildError::Python(format!(
            "{} has no app.py",
            app_dir.display()
        )));
    }
    let inputs = inputs(tools_dir)?;
    componentize_py(
        tools_dir,
        &inputs.wit,
        &[
            "componentize".as_ref(),
            "app".as_ref(),
            "--python-path".as_ref(),
            app_dir.as_os_str(),
            "--python-path".as_ref(),
            inputs.sdk.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ],
    )
}
