//! Builds every guest in `guest-modules/` once, componentizes it, and tells
//! the tests where each component is (`interstice_tests::guests`):
//!
//! - every Rust guest for `wasm32-unknown-unknown` (`BANK`, `CHAT`, ...),
//!   but `wasi-probe`;
//! - `bank` and `wasi-probe` for `wasm32-wasip2` (`BANK_WASIP2`,
//!   `WASI_PROBE_WASIP2`);
//! - the Python bank, its second version, chat, types, lobby and reminders
//!   with componentize-py (`BANK_PY`, `BANK_V2_PY`, `CHAT_PY`, `TYPES_PY`,
//!   `LOBBY_PY`, `REMINDERS_PY`),
//!   each rebuilt only when its sources, the SDK or the contract change.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use interstice_guest_build::{
    BuildRequest, Toolchain, WASIP2_TARGET, WASM_TARGET, build_core, componentize, python,
};

/// Guests that import WASI, built for `wasm32-wasip2` only.
const WASIP2_ONLY: &[&str] = &["wasi-probe"];
/// Guests built for `wasm32-wasip2` as well.
const WASIP2_ALSO: &[&str] = &["bank"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let guests = root.join("guest-modules");
    for watched in [
        "sdk",
        "sdk-macros",
        "examples",
        "test-modules",
        "python",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", guests.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let mut consts = String::new();
    for target in [WASM_TARGET, WASIP2_TARGET] {
        let toolchain = Toolchain::detect_for(target).unwrap_or_else(|e| panic!("{e}"));
        let (packages, exclude, suffix) = if target == WASM_TARGET {
            (Vec::new(), names(WASIP2_ONLY), "")
        } else {
            (
                names(WASIP2_ONLY.iter().chain(WASIP2_ALSO)),
                Vec::new(),
                "_WASIP2",
            )
        };
        let request = BuildRequest {
            dir: guests.clone(),
            workspace: packages.is_empty(),
            target_dir: Some(guests.join("target")),
            target,
            packages,
            exclude,
        };
        let artifacts = build_core(&toolchain, &request).unwrap_or_else(|e| panic!("{e}"));
        for (name, core_path) in artifacts {
            let core = std::fs::read(&core_path)
                .unwrap_or_else(|e| panic!("{}: {e}", core_path.display()));
            let component = componentize(&core).unwrap_or_else(|e| panic!("{name}: {e}"));
            let out = out_dir.join(format!("{name}{}.component.wasm", suffix.to_lowercase()));
            std::fs::write(&out, component).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
            let ident = format!("{}{suffix}", name.to_uppercase().replace('-', "_"));
            consts.push_str(&format!(
                "/// The `{name}` guest ({target}), as a component.\npub const {ident}: &str = {:?};\n",
                out.display().to_string()
            ));
            consts.push_str(&format!(
                "/// The `{name}` guest ({target}), as the module cargo built.\npub const {ident}_CORE: &str = {:?};\n",
                core_path.display().to_string()
            ));
        }
    }
    for app in ["bank", "bank_v2", "chat", "types", "lobby", "reminders"] {
        let component = build_python(&guests, &root.join("wit"), app);
        consts.push_str(&format!(
            "/// The Python `{app}` guest (componentize-py), as a component.\npub const {}_PY: &str = {:?};\n",
            app.to_uppercase(),
            component.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("guests.rs"), consts).expect("write guests.rs");
}

fn names<'a>(list: impl IntoIterator<Item = &'a &'a str>) -> Vec<String> {
    list.into_iter().map(|s| s.to_string()).collect()
}

/// Builds `guest-modules/python/<app>` unless a component of the same
/// sources is already there (a Python build takes about ten seconds).
fn build_python(guests: &Path, wit: &Path, app: &str) -> PathBuf {
    let app_dir = guests.join("python").join(app);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    python::COMPONENTIZE_PY_VERSION.hash(&mut hasher);
    for file in [
        app_dir.join("app.py"),
        guests.join("python/interstice.py"),
        wit.join("interstice.wit"),
    ] {
        std::fs::read(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .hash(&mut hasher);
    }
    let dir = guests.join("target/python");
    let out = dir.join(format!("{app}-{:016x}.component.wasm", hasher.finish()));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    python::build(&app_dir, &partial, &guests.join("target/tools"))
        .unwrap_or_else(|e| panic!("{}: {e}", app_dir.display()));
    std::fs::rename(&partial, &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out
}
