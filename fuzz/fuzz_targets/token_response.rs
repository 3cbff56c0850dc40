#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_sso::__fuzz::token_response(data));
