//! `interstice build`.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Build a guest into a module component: a Rust crate, or a directory
/// with a Python `app.py` (built with componentize-py, installed from
/// PyPI on first use).
#[derive(clap::Args)]
pub struct Build {
    /// The guest's directory.
    crate_dir: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Rust target: wasm32-unknown-unknown (default) or wasm32-wasip2.
    #[arg(long, value_parser = ["wasm32-unknown-unknown", "wasm32-wasip2"])]
    target: Option<String>,
}

impl Build {
    pub fn run(self) -> Result<()> {
        let target = match self.target.as_deref() {
            Some(interstice_guest_build::WASIP2_TARGET) => {
                Some(interstice_guest_build::WASIP2_TARGET)
            }
            Some(_) => Some(interstice_guest_build::WASM_TARGET),
            None => None,
        };
        let path =
            interstice_guest_build::build_component(&self.crate_dir, self.out.as_deref(), target)
                .with_context(|| format!("building {}", self.crate_dir.display()))?;
        println!("{}", path.display());
        Ok(())
    }
}
