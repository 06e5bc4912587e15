//! Compiling a module, instantiating it, and running reducers on it.

use std::sync::Arc;

use interstice_store::{Identity, ModuleDef, Mutation, Tables, TxLog};
use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::types;
use super::contract::{self, Bindings, Pre};
use super::engine::Host;
use super::render;
use super::state::{InstanceState, LogLine};
use crate::caller::Caller;
use crate::counters::{Counters, ReplayGuard};
use crate::error::{CallError, ModuleError};
use crate::limits;

/// What a reducer receives about its call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    pub tx_id: u64,
    pub timestamp_micros: i64,
    pub caller: Caller,
    /// The session a lifecycle reducer runs for.
    pub connection_id: Option<u64>,
    /// The module's owner.
    pub owner: Identity,
    /// The module's own identity ([`Identity::of_module`]).
    pub module: Identity,
    pub seed: u64,
}

/// A compiled module, ready to instantiate. Holds at most one live instance;
/// a trap discards it and the next call starts a fresh one.
pub struct Runner {
    engine: wasmtime::Engine,
    pre: Pre,
    live: Option<Live>,
    fuel_per_call: u64,
    memory_bytes_max: usize,
    counters: Arc<Counters>,
    guard: Arc<ReplayGuard>,
    /// The log lines of the last call that did not commit.
    failed_log: Vec<LogLine>,
    /// Whether the component imports WASI, and so needs the call's time and
    /// seed set before each call.
    uses_wasi: bool,
    /// How many tables the guest declared, from `describe`: the ids its
    /// calls may use. 0, refusing every table, until `describe` ran.
    guest_tables: u32,
}

/// What the replay guard answers to an attempt to run a guest.
pub const REPLAY_REFUSAL: &str = "replay is in progress: no guest may be instantiated or called";

struct Live {
    store: Store<InstanceState>,
    bindings: Bindings,
}

/// The result of one guest call that committed.
#[derive(Debug, Default)]
pub struct Committed {
    pub mutations: Vec<Mutation>,
    pub log: Vec<LogLine>,
    pub fuel_consumed: u64,
}

/// Checks the preamble and componentizes a core module.
pub fn prepare_wasm(wasm: &[u8]) -> Result<Vec<u8>, ModuleError> {
    if wasm.len() > limits::MODULE_BYTES_MAX {
        return Err(ModuleError::TooLarge {
            len: wasm.len(),
            max: limits::MODULE_BYTES_MAX,
        });
    }
    if !wasm.starts_with(b"\0asm") {
        return Err(ModuleError::NotWasm);
    }
    interstice_guest_build::componentize(wasm).map_err(|e| {
        ModuleError::NotOurs(format!(
            "a core module that could not be made into a component (built without the Interstice SDK?): {e}"
        ))
    })
}

impl Runner {
    /// Compiles a component (or componentizes and compiles a core module)
    /// and checks its imports and exports against the contract.
    pub fn compile(host: &Host, wasm: &[u8]) -> Result<Runner, ModuleError> {
        let component_bytes = prepare_wasm(wasm)?;
        let component = Component::new(&host.engine, &component_bytes)
            .map_err(|e| ModuleError::Compile(render(&e)))?;
        let imports = super::wasi::check_imports(&host.engine, &component)?;
        let instance_pre = host
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::NotOurs(render(&e)))?;
        let version = contract::version_of(&host.engine, &component);
        let pre = Pre::new(version, instance_pre).map_err(|e| ModuleError::NotOurs(render(&e)))?;
        Ok(Runner {
            engine: host.engine.clone(),
            pre,
            live: None,
            fuel_per_call: host.config.fuel_per_call,
            memory_bytes_max: host.config.memory_bytes_max,
            counters: host.counters.clone(),
            guard: host.guard.clone(),
            failed_log: Vec::new(),
            uses_wasi: imports.uses_wasi,
            guest_tables: 0,
        })
    }

    fn live(&mut self) -> Result<&mut Live, String> {
        if self.guard.replaying() {
            return Err(REPLAY_REFUSAL.to_string());
        }
        if self.live.is_none() {
            let mut store = Store::new(&self.engine, InstanceState::new(self.memory_bytes_max));
            store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
            store.set_fuel(self.fuel_per_call).map_err(|e| render(&e))?;
            self.counters.instantiated();
            let bindings = self.pre.instantiate(&mut store).map_err(|e| render(&e))?;
            self.live = Some(Live { store, bindings });
        }
        Ok(self.live.as_mut().expect("instantiated above"))
    }

    /// Drops the live instance, if any, and instantiates the module afresh
    /// (what the first call after open, or after a trap, does).
    pub fn instantiate(&mut self) -> Result<(), ModuleError> {
        self.live = None;
        self.live().map(drop).map_err(ModuleError::Instantiate)
    }

    /// Asks the module for its definition and validates it.
    pub fn describe(&mut self) -> Result<ModuleDef, ModuleError> {
        let fuel = self.fuel_per_call;
        let counters = self.counters.clone();
        let uses_wasi = self.uses_wasi;
        let live = self.live().map_err(ModuleError::Instantiate)?;
        live.store
            .set_fuel(fuel)
            .map_err(|e| ModuleError::Describe(render(&e)))?;
        if uses_wasi {
            live.store.data_mut().begin_wasi(None);
        }
        counters.called();
        let result = live.bindings.describe(&mut live.store);
        let left = live.store.get_fuel().unwrap_or(0);
        counters.fuel(fuel.saturating_sub(left));
        let def = match result {
            Ok(def) => def,
            Err(e) => {
                self.live = None;
                return Err(ModuleError::Describe(render(&e)));
            }
        };
        let def = def.into_def()?.with_system_tables()?;
        def.validate()?;
        self.guest_tables = def.guest_table_count() as u32;
        Ok(def)
    }

    /// The log lines the last call that did not commit wrote.
    pub fn take_failed_log(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.failed_log)
    }

    /// Runs one reducer as one transaction on `tables`: committed and its
    /// mutations returned, or rolled back completely.
    pub fn call(
        &mut self,
        tables: &mut Tables,
        ctx: &CallContext,
        reducer: u32,
        args: &[u8],
    ) -> Result<Committed, CallError> {
        self.call_then(tables, ctx, reducer, args, &mut |_, _| Ok(()))
    }

    /// [`Runner::call`], and then, once the reducer returned `Ok`, the
    /// host's own changes `then` in the same transaction: an error from
    /// `then` rolls back the reducer's changes too.
    pub fn call_then(
        &mut self,
        tables: &mut Tables,
        ctx: &CallContext,
        reducer: u32,
        args: &[u8],
        then: &mut dyn FnMut(&mut Tables, &mut TxLog) -> Result<(), CallError>,
    ) -> Result<Committed, CallError> {
        let fuel = self.fuel_per_call;
        let counters = self.counters.clone();
        let uses_wasi = self.uses_wasi;
        let guest_tables = self.guest_tables;
        let live = self.live().map_err(CallError::Instantiate)?;
        let state = live.store.data_mut();
        state.begin_call(std::mem::replace(tables, Tables::empty()), guest_tables);
        if uses_wasi {
            state.begin_wasi(Some(ctx));
        }
        if let Err(e) = live.store.set_fuel(fuel) {
            *tables = std::mem::replace(&mut live.store.data_mut().tables, Tables::empty());
            return Err(CallError::Trap(render(&e)));
        }
        counters.called();
        let result = live
            .bindings
            .call_reducer(&mut live.store, ctx, reducer, args);
        let fuel_consumed = fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        counters.fuel(fuel_consumed);
        let state = live.store.data_mut();
        *tables = std::mem::replace(&mut state.tables, Tables::empty());
        let log = state.take_log();
        let tx = &mut state.tx;
        let memory_limit_hit = state.memory_limit_hit;
        match result {
            Ok(Ok(())) => match then(tables, tx) {
                Ok(()) => Ok(Committed {
                    mutations: tables.commit(tx),
                    log,
                    fuel_consumed,
                }),
                Err(e) => {
                    tables.rollback(tx);
                    self.failed_log = log;
                    Err(e)
                }
            },
            Ok(Err(message)) => {
                tables.rollback(tx);
                self.failed_log = log;
                Err(CallError::Reducer(message))
            }
            Err(trap) => {
                tables.rollback(tx);
                // The instance may be in any state: never run it again.
                self.live = None;
                let error = classify_trap(&trap, memory_limit_hit, &log, fuel);
                self.failed_log = log;
                Err(error)
            }
        }
    }
}

fn classify_trap(
    trap: &wasmtime::Error,
    memory_limit_hit: bool,
    log: &[LogLine],
    fuel: u64,
) -> CallError {
    if trap.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
        return CallError::OutOfFuel { fuel };
    }
    if memory_limit_hit {
        return CallError::MemoryLimit(render(trap));
    }
    let panic = log
        .iter()
        .rev()
        .find(|l| l.level == types::LogLevel::Error && l.message.starts_with("panic: "));
    match panic {
        Some(line) => CallError::Trap(line.message.clone()),
        None => CallError::Trap(render(trap)),
    }
}
