//! Host-side bindings of the `module` world: contract version 4
//! (`wit/interstice.wit`), the one this host speaks, and versions 3
//! (`wit/v3/interstice.wit`), 2 (`wit/v2/interstice.wit`) and 1
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

/// Contract version 3: no schedule tables, no module identity in the
/// reducer context. Its host interface is the same as version 4's;
/// [`super::contract`] converts between them.
pub mod v3 {
    wasmtime::component::bindgen!({
        path: "../../wit/v3",
        world: "module",
        with: {
            "interstice:module/host.cursor": crate::sandbox::state::Cursor,
        },
    });

    pub use interstice::module::host;
    pub use interstice::module::types;
}

/// Contract version 2: the caller as a string, no public tables, no
/// lifecycle reducers. Its host interface is the same as version 3's;
/// [`super::contract`] converts between them.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../../wit/v2",
        world: "module",
        with: {
            "interstice:module/host.cursor": crate::sandbox::state::Cursor,
        },
    });

    pub use interstice::module::host;
    pub use interstice::module::types;
}

/// Contract version 1: scalar types only. Its host interface is the same as
/// version 4's; [`super::contract`] converts between them.
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
