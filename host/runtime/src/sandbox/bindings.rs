//! Host-side bindings of the `module` world (`wit/interstice.wit`).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "module",
    with: {
        "interstice:module/host.cursor": crate::sandbox::state::Cursor,
    },
});

pub use interstice::module::host;
pub use interstice::module::types;
