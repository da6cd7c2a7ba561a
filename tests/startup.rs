//! Refusals at start-up: one line on stderr naming the flag or file, exit code 2.

mod common;

use common::*;

fn cat<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    [a, b].concat()
}

fn refused(args: &[&str], needle: &str) {
    let (status, err) = run_tern(args);
    assert_eq!(status.code(), Some(2), "tern {args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "'{needle}' missing from: {err}");
}

#[test]
fn missing_or_invalid_certificate_and_key_files() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem file\n").unwrap();
    let other = Certs::new();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let (junk, other_key) = (junk.display().to_string(), other.key.display().to_string());
    let missing = dir.path().join("nope.pem").display().to_string();
    let base = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:9"];

    refused(
        &cat(&base, &["--cert", &missing, "--key", &key]),
        &format!("--cert {missing}"),
    );
    refused(
        &cat(&base, &["--cert", &cert, "--key", &missing]),
        &format!("--key {missing}"),
    );
    refused(&cat(&base, &["--cert", &junk, "--key", &key]), &junk);
    refused(&cat(&base, &["--cert", &cert, "--key", &junk]), &junk);
    refused(
        &cat(&base, &["--cert", &cert, "--key", &other_key]),
        "does not belong",
    );
    refused(
        &cat(&base, &["--pem", &missing]),
        &format!("--pem {missing}"),
    );
    refused(&cat(&base, &["--pem", &cert]), "no private key");
}

#[test]
fn bad_arguments_name_the_flag() {
    let certs = Certs::new();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let ok = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--cert",
        &cert,
        "--key",
        &key,
    ];
    refused(&cat(&ok, &["--workers", "many"]), "--workers");
    refused(&cat(&ok, &["--workers", "0"]), "--workers");
    refused(&cat(&ok, &["--cores", "9999"]), "--cores");
    refused(&cat(&ok, &["--cores", "2-1"]), "--cores");
    refused(&cat(&ok, &["--idle-timeout", "soon"]), "--idle-timeout");
    refused(&cat(&ok, &["--max-conns", "0"]), "--max-conns");
    refused(
        &cat(&ok, &["--workers", "2", "--max-conns", "1"]),
        "--max-conns 1",
    );
    refused(&cat(&ok, &["--backend", "nowhere"]), "--backend nowhere");
    // clap names a missing companion flag on its second line; tern folds it into the one.
    refused(&ok[..6], "--key");
    refused(&cat(&ok, &["--frobnicate"]), "--frobnicate");
    refused(
        &["--listen", "127.0.0.1:0", "--cert", &cert, "--key", &key],
        "--backend",
    );
    refused(
        &["--backend", "127.0.0.1:9", "--cert", &cert, "--key", &key],
        "--listen",
    );
    refused(
        &["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:9"],
        "--cert",
    );
}

#[test]
fn an_address_in_use_is_named() {
    let certs = Certs::new();
    // A listener without SO_REUSEPORT blocks tern's bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    refused(
        &[
            "--listen",
            &addr,
            "--backend",
            "127.0.0.1:9",
            "--cert",
            &cert,
            "--key",
            &key,
        ],
        &format!("--listen {addr}"),
    );
}

#[test]
fn help_shows_each_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[default: tcp]",
        "[default: auto]",
        "[default: 10s]",
        "[default: 300s]",
        "[default: 5s]",
        "[default: 30s]",
        "[default: on]",
        "[default: one per CPU",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}
