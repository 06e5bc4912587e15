#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| interstice_log::fuzz::payload(data));
