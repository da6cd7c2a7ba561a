//! `tern demo` must work for a newcomer: curl gets a 200 through the real terminator.

mod common;

use std::process::Command;

use common::*;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (apt install curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_string(), code.to_string())
}

#[test]
fn demo_answers_curl_with_200() {
    let tern = Tern::start(&["demo", "--listen", "127.0.0.1:0", "--workers", "1"]);
    let addr = tern.addr();
    let (body, code) = curl(&["-k", &format!("https://{addr}/hello")]);
    assert_eq!(code, "200", "{body}\n{}", tern.log_text());
    assert!(body.contains("GET /hello HTTP/1.1"), "{body}");

    // The printed curl line verifies the generated certificate (no -k).
    let log = tern.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("--cacert"))
        .expect("curl hint");
    let ca = line
        .split_whitespace()
        .skip_while(|w| *w != "--cacert")
        .nth(1)
        .unwrap();
    let (body, code) = curl(&[
        "--cacert",
        ca,
        &format!("https://localhost:{}/", addr.port()),
    ]);
    assert_eq!(code, "200", "{body}");
}
