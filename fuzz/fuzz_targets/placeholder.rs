#![no_main]
// Removed once the crypt and admin targets exist.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
