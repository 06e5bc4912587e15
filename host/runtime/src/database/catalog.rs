//! The modules in force: their definitions, tables and compiled code, the
//! clock, and where each module's code lives on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use interstice_fs::{Storage, atomic};
use interstice_store::{ModuleDef, Tables};

use super::clock::Clock;
use crate::error::CallError;
use crate::layout::module_path;
use crate::sandbox::{Host, Runner};

/// One published module: its definition, its tables and, once a call needs
/// it, its compiled code.
pub(crate) struct ModuleEntry {
    pub def: Arc<ModuleDef>,
    /// 1 at first publication, one more at each schema change.
    pub version: u32,
    pub tables: Tables,
    pub runner: Option<Runner>,
}

/// What the database holds while one thread has it: every module and the
/// clock. Reached only through the combining queue (`combine.rs`).
pub(crate) struct Catalog {
    pub modules: BTreeMap<String, ModuleEntry>,
    pub clock: Clock,
    /// Woken by every transaction of a module with schedule tables.
    pub scheduler: Arc<super::schedule::Scheduler>,
    /// Live queries (subscriptions to SQL), brought up to date by each
    /// transaction.
    pub live: super::live::LiveQueries,
}

/// The engine and where module code is stored: what it takes to turn a
/// module's stored code into a runner.
pub(crate) struct Code {
    pub host: Host,
    pub storage: Arc<dyn Storage>,
    /// The data directory.
    pub dir: PathBuf,
}

impl Code {
    /// The path of a module version's code.
    pub fn path(&self, module: &str, version: u32) -> PathBuf {
        module_path(&self.dir, module, version)
    }

    /// Stores a module version's code durably (before any record needs it).
    pub fn write(
        &self,
        module: &str,
        version: u32,
        wasm: &[u8],
    ) -> Result<(), (PathBuf, std::io::Error)> {
        let path = self.path(module, version);
        atomic::write_atomic(&*self.storage, &path, wasm).map_err(|e| (path, e))
    }

    /// Removes the code of every version of a deleted module. A file left
    /// behind is harmless: publishing the name again replaces it.
    pub fn remove_all(&self, module: &str, last_version: u32) {
        for version in 1..=last_version {
            let path = self.path(module, version);
            if let Err(e) = self.storage.remove(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    }

    /// A module's runner, compiled from its stored code on first use.
    pub fn runner<'r>(
        &self,
        module: &str,
        runner: &'r mut Option<Runner>,
        version: u32,
        def: &ModuleDef,
    ) -> Result<&'r mut Runner, CallError> {
        if runner.is_none() {
            *runner = Some(self.load(module, version, def)?);
        }
        Ok(runner.as_mut().expect("loaded above"))
    }

    /// Compiles a module's stored code on its first call after open, and
    /// checks that it still describes the definition in force.
    fn load(&self, module: &str, version: u32, def: &ModuleDef) -> Result<Runner, CallError> {
        let not_loaded = |reason: String| CallError::NotLoaded {
            module: module.to_string(),
            reason,
        };
        let path = self.path(module, version);
        let shown = path.display();
        let wasm = self.storage.read(&path).map_err(|e| {
            not_loaded(format!(
                "its code {shown} cannot be read ({e}); publish the module again"
            ))
        })?;
        let mut runner = Runner::compile(&self.host, &wasm)
            .map_err(|e| not_loaded(format!("its code {shown} does not load: {e}")))?;
        let described = runner
            .describe()
            .map_err(|e| not_loaded(format!("its code {shown} does not load: {e}")))?;
        if !described.same_as(def) {
            return Err(not_loaded(format!(
                "its code {shown} describes a different schema from the one published"
            )));
        }
        Ok(runner)
    }

    /// Warns about every module whose code is missing.
    pub fn report_missing(&self, modules: &BTreeMap<String, ModuleEntry>) {
        for (name, entry) in modules {
            if !self.storage.exists(&self.path(name, entry.version)) {
                tracing::warn!(
                    "module `{name}` has no code in {}; its tables are served but calls fail until it is published again",
                    self.dir.join(crate::layout::MODULES_DIR).display()
                );
            }
        }
    }
}
