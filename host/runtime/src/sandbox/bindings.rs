//! Host-side bindings of the `module` world: contract version 2
//! (`wit/interstice.wit`), the one this host speaks, and version 1
//! (`wit/v1/interstice.wit`), which components built before it still use.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "module",
    with: {
        "interstice:module/host.cursor": crate::sandbox::state::Cursor,
    },
});

pub use interstice::module::host;
pub use interstice::module::types;

/// Contract version 1: scalar types only. Its host interface is the same as
/// version 2's; [`super::contract`] converts between them.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/v1",
        world: "module",
        with: {
            "interstice:module/host.cursor": crate::sandbox::state::Cursor,
        },
    });

    pub use interstice::module::host;
    pub use interstice::module::types;
}
