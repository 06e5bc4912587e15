//! Shared pieces of the end-to-end tests and benchmarks: the guests, built
//! once by this crate's build script.

/// Paths of the guest components (and of the core modules they came from).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The bytes of a guest component.
pub fn guest_bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
