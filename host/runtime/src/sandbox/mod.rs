//! The only code that touches wasmtime: the engine and linker, compiling and
//! instantiating modules, running reducers on them, the host imports and
//! deterministic WASI. Nothing outside this room names a wasmtime type, and
//! the replay code cannot reach it (`crate::replay`).

pub(crate) mod bindings;
pub(crate) mod contract;
pub(crate) mod engine;
pub(crate) mod module;
pub(crate) mod state;
pub mod wasi;

pub use engine::Host;
pub use module::{CallContext, Committed, REPLAY_REFUSAL, Runner, prepare_wasm};
pub use state::LogLine;

/// Renders a wasmtime error with its whole chain of causes.
pub(crate) fn render(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
