//! The one wasmtime engine and linker a database shares across modules.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Engine};

use super::bindings::{Module, v1, v2, v3};
use super::render;
use super::state::InstanceState;
use crate::config::RuntimeConfig;
use crate::counters::{Counters, ReplayGuard};
use crate::error::OpenError;

/// Engine, linker and counters shared by every module of a database.
pub struct Host {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<InstanceState>,
    pub(crate) config: RuntimeConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) guard: Arc<ReplayGuard>,
}

impl Host {
    pub fn new(config: RuntimeConfig) -> Result<Host, OpenError> {
        let mut wasm = wasmtime::Config::new();
        // Determinism: the same calls on the same state give the same writes.
        // Threads and shared memory are compiled out: wasmtime is built
        // without its `threads` feature.
        wasm.cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            // Bounded work per call.
            .consume_fuel(true)
            // Speed: no async machinery in the store.
            .concurrency_support(false)
            .wasm_component_model(true);
        if let Some(dir) = &config.cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            let cache = Cache::new(cache).map_err(|e| OpenError::Engine(render(&e)))?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(|e| OpenError::Engine(render(&e)))?;
        let mut linker = Linker::new(&engine);
        Module::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| OpenError::Engine(render(&e)))?;
        // Components built against older contracts import their packages.
        v3::Module::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| OpenError::Engine(render(&e)))?;
        v2::Module::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| OpenError::Engine(render(&e)))?;
        v1::Module::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| OpenError::Engine(render(&e)))?;
        // For guests that import WASI: deterministic, and closed to the
        // world (crate::wasi).
        super::wasi::add_to_linker(&mut linker).map_err(|e| OpenError::Engine(render(&e)))?;
        Ok(Host {
            engine,
            linker,
            config,
            counters: Arc::new(Counters::default()),
            guard: Arc::new(ReplayGuard::default()),
        })
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The replay guard shared by every module of this host.
    pub fn replay_guard(&self) -> &ReplayGuard {
        &self.guard
    }
}
