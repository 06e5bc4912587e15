//! The one wasmtime engine and linker a database shares across modules.

use std::path::PathBuf;
use std::sync::Arc;

use interstice_fs::{RealFs, Storage};
use interstice_log::LogConfig;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Engine};

use crate::bindings::Module;
use crate::counters::{Counters, ReplayGuard};
use crate::error::{LoadError, render};
use crate::limits;
use crate::snapshots::SnapshotConfig;
use crate::state::InstanceState;

/// Runtime settings.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Fuel one reducer call may burn.
    pub fuel_per_call: u64,
    /// Linear memory one instance may grow to.
    pub memory_bytes_max: usize,
    /// Where compiled code is cached between runs; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Sync policy, segment size and recovery mode of the durable log.
    pub log: LogConfig,
    /// The file system the data directory's durable files live on (log
    /// segments, snapshots, module code): the real one, or a
    /// fault-injecting one in tests. The lock file and the compiled-code
    /// cache are always on the real file system.
    pub storage: Arc<dyn Storage>,
    /// When snapshots are taken, how many are kept, where old segments go.
    pub snapshots: SnapshotConfig,
    /// Where transactions take their time from, in microseconds since the
    /// Unix epoch; the system clock when `None`. Whatever it says, each
    /// transaction's timestamp is at least one more than the last one's,
    /// and its seed is a function of its id and timestamp. Tests set it to
    /// make two runs write the same log byte for byte.
    pub clock: Option<ClockSource>,
}

/// A source of wall time for [`RuntimeConfig::clock`].
pub type ClockSource = Arc<dyn Fn() -> i64 + Send + Sync>;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            fuel_per_call: limits::FUEL_PER_CALL_DEFAULT,
            memory_bytes_max: limits::MEMORY_BYTES_MAX_DEFAULT,
            cache_dir: None,
            log: LogConfig::default(),
            storage: Arc::new(RealFs),
            snapshots: SnapshotConfig::default(),
            clock: None,
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("fuel_per_call", &self.fuel_per_call)
            .field("memory_bytes_max", &self.memory_bytes_max)
            .field("cache_dir", &self.cache_dir)
            .field("log", &self.log)
            .field("snapshots", &self.snapshots)
            .field("clock", &self.clock.as_ref().map(|_| "supplied"))
            .finish_non_exhaustive()
    }
}

/// Engine, linker and counters shared by every module of a database.
pub struct Host {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<InstanceState>,
    pub(crate) config: RuntimeConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) guard: Arc<ReplayGuard>,
}

impl Host {
    pub fn new(config: RuntimeConfig) -> Result<Host, LoadError> {
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
            let cache = Cache::new(cache).map_err(|e| LoadError::Engine(render(&e)))?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(|e| LoadError::Engine(render(&e)))?;
        let mut linker = Linker::new(&engine);
        Module::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(render(&e)))?;
        // For guests that import WASI: deterministic, and closed to the
        // world (crate::wasi).
        crate::wasi::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(render(&e)))?;
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
