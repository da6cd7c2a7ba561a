#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern::proxyproto::fuzzing::proxy_header(data));
