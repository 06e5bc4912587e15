//! Builds every guest in `guest-modules/` once, componentizes it, and tells
//! the tests where each component is (`interstice_tests::guests`).

use std::path::PathBuf;

use interstice_guest_build::{BuildRequest, Toolchain, build_core, componentize};

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
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", guests.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let toolchain = Toolchain::detect().unwrap_or_else(|e| panic!("{e}"));
    let request = BuildRequest {
        dir: guests.clone(),
        workspace: true,
        target_dir: Some(guests.join("target")),
    };
    let artifacts = build_core(&toolchain, &request).unwrap_or_else(|e| panic!("{e}"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let mut consts = String::new();
    for (name, core_path) in artifacts {
        let core =
            std::fs::read(&core_path).unwrap_or_else(|e| panic!("{}: {e}", core_path.display()));
        let component = componentize(&core).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = out_dir.join(format!("{name}.component.wasm"));
        std::fs::write(&out, component).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let ident = name.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// The `{name}` guest, as a component.\npub const {ident}: &str = {:?};\n",
            out.display().to_string()
        ));
        consts.push_str(&format!(
            "/// The `{name}` guest, as the core module cargo built.\npub const {ident}_CORE: &str = {:?};\n",
            core_path.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("guests.rs"), consts).expect("write guests.rs");
}
