#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstice_store::fuzz::row(data));
