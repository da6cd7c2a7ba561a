//! Runs the fuzz targets' bodies over every stored corpus file (`fuzz/corpus/*`), so CI
//! exercises what fuzzing found on stable Rust. New inputs from `cargo fuzz run` land in the
//! same folders.

use std::path::Path;

fn each_input(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            let run = std::panic::catch_unwind(|| f(&data));
            assert!(run.is_ok(), "{} panicked on {}", target, path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn request_head_corpus() {
    assert!(each_input("request_head", tern::http::fuzzing::request_head) >= 20);
}

#[test]
fn chunked_corpus() {
    assert!(each_input("chunked", tern::http::fuzzing::chunked) >= 9);
}

#[test]
fn proxy_header_corpus() {
    assert!(each_input("proxy_header", tern::proxyproto::fuzzing::proxy_header) >= 400);
}

#[test]
fn upgrade_message_corpus() {
    assert!(each_input("upgrade_message", tern::upgrade::wire::fuzz) >= 150);
}

#[test]
fn client_hello_corpus() {
    assert!(each_input("client_hello", tern::tls::hello::fuzz_client_hello) >= 7);
}
