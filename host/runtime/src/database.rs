//! A data directory's modules, their tables, and the serial transaction
//! pipeline that runs reducers on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use interstice_store::json::{args_from_json, row_to_json};
use interstice_store::{ModuleDef, Mutation, ReducerKind, Tables};

use crate::engine::{Host, RuntimeConfig};
use crate::error::{CallError, LoadError};
use crate::fsutil;
use crate::limits;
use crate::module::{CallContext, Runner};
use crate::state::LogLine;

/// Directory (under the data directory) holding published modules.
pub const MODULES_DIR: &str = "modules";
/// Directory (under the data directory) holding wasmtime's compiled code.
pub const CACHE_DIR: &str = "cache";

/// One published module: its definition, its tables and, once needed, its
/// compiled code.
pub struct ModuleEntry {
    def: Arc<ModuleDef>,
    tables: Tables,
    runner: Option<Runner>,
}

impl ModuleEntry {
    pub fn def(&self) -> &Arc<ModuleDef> {
        &self.def
    }
}

/// A committed reducer call.
#[derive(Debug)]
pub struct CallOutcome {
    pub tx_id: u64,
    pub timestamp_micros: i64,
    pub mutations: Vec<Mutation>,
    pub log: Vec<LogLine>,
    pub fuel_consumed: u64,
}

/// What publication did.
#[derive(Debug)]
pub struct Published {
    pub def: Arc<ModuleDef>,
    /// The init reducer's transaction, if the module has one and it ran.
    pub init: Option<CallOutcome>,
    /// Whether the module replaced code of the same definition.
    pub replaced: bool,
}

/// Transaction ids and the logical clock.
struct Clock {
    next_tx_id: u64,
    last_timestamp_micros: i64,
}

impl Clock {
    /// Context of the next transaction. Nothing advances until
    /// [`Clock::committed`].
    fn next(&self, caller: &str) -> CallContext {
        let tx_id = self.next_tx_id;
        let timestamp_micros = wall_clock_micros().max(self.last_timestamp_micros + 1);
        CallContext {
            tx_id,
            timestamp_micros,
            caller: caller.to_string(),
            seed: seed_for(tx_id, timestamp_micros),
        }
    }

    fn committed(&mut self, ctx: &CallContext) {
        self.next_tx_id = ctx.tx_id + 1;
        self.last_timestamp_micros = ctx.timestamp_micros;
    }
}

/// The database: modules, tables and the transaction counter.
pub struct Database {
    host: Host,
    dir: PathBuf,
    modules: BTreeMap<String, ModuleEntry>,
    clock: Clock,
}

fn check_module_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MODULE_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidName(name.to_string()))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A 64-bit mix of the transaction's id and time (splitmix64): reducers get
/// randomness that replays identically.
fn seed_for(tx_id: u64, timestamp_micros: i64) -> u64 {
    let mut z = tx_id ^ (timestamp_micros as u64).rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn wall_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Database {
    /// Opens (creating if needed) the data directory and loads every module
    /// in it.
    pub fn open(dir: &Path, mut config: RuntimeConfig) -> Result<Database, LoadError> {
        let modules_dir = dir.join(MODULES_DIR);
        std::fs::create_dir_all(&modules_dir).map_err(io_err(&modules_dir))?;
        let dir = &std::fs::canonicalize(dir).map_err(io_err(dir))?;
        let modules_dir = dir.join(MODULES_DIR);
        if config.cache_dir.is_none() {
            config.cache_dir = Some(dir.join(CACHE_DIR));
        }
        let host = Host::new(config)?;
        let mut db = Database {
            host,
            dir: dir.to_path_buf(),
            modules: BTreeMap::new(),
            clock: Clock {
                next_tx_id: 1,
                last_timestamp_micros: 0,
            },
        };
        let mut files: Vec<_> = std::fs::read_dir(&modules_dir)
            .map_err(io_err(&modules_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let wasm = std::fs::read(&path).map_err(io_err(&path))?;
            let in_module = |source| LoadError::InModule {
                module: name.clone(),
                source: Box::new(source),
            };
            let mut runner = Runner::compile(&db.host, &wasm).map_err(in_module)?;
            let def = Arc::new(runner.describe().map_err(in_module)?);
            let entry = ModuleEntry {
                tables: Tables::new(&def),
                def,
                runner: Some(runner),
            };
            db.modules.insert(name, entry);
        }
        Ok(db)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn module(&self, name: &str) -> Option<&ModuleEntry> {
        self.modules.get(name)
    }

    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// The id the next committed transaction will get.
    pub fn next_tx_id(&self) -> u64 {
        self.clock.next_tx_id
    }

    /// Validates, stores and loads a module, then runs its init reducer if it
    /// is new. A module of the same name is replaced only when its definition
    /// is unchanged.
    pub fn publish(&mut self, name: &str, wasm: &[u8]) -> Result<Published, LoadError> {
        check_module_name(name)?;
        let mut runner = Runner::compile(&self.host, wasm)?;
        let def = Arc::new(runner.describe()?);
        if let Some(existing) = self.modules.get(name)
            && *existing.def != *def
        {
            return Err(LoadError::SchemaChanged {
                module: name.to_string(),
            });
        }
        let replaced = self.modules.contains_key(name);
        let mut tables = match self.modules.remove(name) {
            Some(existing) => existing.tables,
            None => Tables::new(&def),
        };
        let init = match (replaced, def.init_reducer()) {
            (false, Some(init)) => {
                let outcome = run(
                    &mut self.clock,
                    &mut runner,
                    &mut tables,
                    init,
                    &[],
                    "publish",
                );
                match outcome {
                    Ok(outcome) => Some(outcome),
                    Err(source) => {
                        return Err(LoadError::InitFailed {
                            module: name.to_string(),
                            source,
                        });
                    }
                }
            }
            _ => None,
        };
        let path = self.dir.join(MODULES_DIR).join(format!("{name}.wasm"));
        fsutil::write_atomic(&path, wasm).map_err(io_err(&path))?;
        self.modules.insert(
            name.to_string(),
            ModuleEntry {
                def: def.clone(),
                tables,
                runner: Some(runner),
            },
        );
        Ok(Published {
            def,
            init,
            replaced,
        })
    }

    /// Calls a reducer with arguments given as JSON (an array in declaration
    /// order, or an object keyed by parameter name).
    pub fn call_json(
        &mut self,
        module: &str,
        reducer: &str,
        args: &serde_json::Value,
        caller: &str,
    ) -> Result<CallOutcome, CallError> {
        let reducer_id = self.resolve_reducer(module, reducer)?;
        let params = &self.modules[module].def.reducers[reducer_id as usize].params;
        let encoded = args_from_json(args, params)?;
        self.call_encoded(module, reducer_id, &encoded, caller)
    }

    /// Looks up a reducer's id for [`Database::call_encoded`]. The init
    /// reducer is not callable.
    pub fn resolve_reducer(&self, module: &str, reducer: &str) -> Result<u32, CallError> {
        let def = &self
            .modules
            .get(module)
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?
            .def;
        let id = def
            .reducer_id(reducer)
            .ok_or_else(|| CallError::UnknownReducer {
                module: module.to_string(),
                reducer: reducer.to_string(),
            })?;
        if def.reducers[id as usize].kind == ReducerKind::Init {
            return Err(CallError::InitNotCallable(reducer.to_string()));
        }
        Ok(id)
    }

    /// Calls reducer number `reducer_id` with arguments already in the row
    /// encoding. The guest validates them against the parameter types.
    pub fn call_encoded(
        &mut self,
        module: &str,
        reducer_id: u32,
        args: &[u8],
        caller: &str,
    ) -> Result<CallOutcome, CallError> {
        if args.len() > limits::ARGS_BYTES_MAX {
            return Err(CallError::ArgumentsTooLarge {
                len: args.len(),
                max: limits::ARGS_BYTES_MAX,
            });
        }
        let entry = self
            .modules
            .get_mut(module)
            .ok_or_else(|| CallError::UnknownModule(module.to_string()))?;
        match entry.runner.as_mut() {
            Some(runner) => run(
                &mut self.clock,
                runner,
                &mut entry.tables,
                reducer_id,
                args,
                caller,
            ),
            None => Err(CallError::NotLoaded(module.to_string())),
        }
    }

    /// A table's rows as JSON objects, in primary-key order.
    pub fn rows_json(
        &self,
        module: &str,
        table: &str,
    ) -> Result<Vec<serde_json::Value>, QueryError> {
        let entry = self
            .modules
            .get(module)
            .ok_or_else(|| QueryError::UnknownModule(module.to_string()))?;
        let table_id = entry
            .def
            .table_id(table)
            .ok_or_else(|| QueryError::UnknownTable {
                module: module.to_string(),
                table: table.to_string(),
            })?;
        let t = entry
            .tables
            .table(table_id)
            .map_err(|e| QueryError::Corrupt(e.to_string()))?;
        t.iter()
            .map(|row| row_to_json(row, t.def()).map_err(|e| QueryError::Corrupt(e.to_string())))
            .collect()
    }
}

/// Runs one reducer call as the next transaction.
fn run(
    clock: &mut Clock,
    runner: &mut Runner,
    tables: &mut Tables,
    reducer_id: u32,
    args: &[u8],
    caller: &str,
) -> Result<CallOutcome, CallError> {
    let ctx = clock.next(caller);
    let committed = runner.call(tables, &ctx, reducer_id, args)?;
    clock.committed(&ctx);
    Ok(CallOutcome {
        tx_id: ctx.tx_id,
        timestamp_micros: ctx.timestamp_micros,
        mutations: committed.mutations,
        log: committed.log,
        fuel_consumed: committed.fuel_consumed,
    })
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}` has no table named `{table}`")]
    UnknownTable { module: String, table: String },
    #[error("stored row does not decode: {0}")]
    Corrupt(String),
}
