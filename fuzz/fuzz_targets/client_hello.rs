#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern::tls::hello::fuzz_client_hello(data));
