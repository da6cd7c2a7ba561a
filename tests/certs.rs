//! Certificates at the edge, checked with an independent client (`openssl s_client`): several
//! certificates by SNI from the command line (exact, wildcard, none, unknown, strict), ECDSA or
//! RSA by the client's signature algorithms, duplicates refused at start, OCSP stapling and the
//! TLS policy flags — in tcp and http mode.

mod common;

use common::pki::{s_client, subject_cn, Ca, EC, RSA};
use common::*;

fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// tern with these certificate arguments in `mode`, one worker, an echo backend.
fn start(mode: &str, cert_args: &[String], extra: &[&str]) -> Tern {
    let backend = echo_backend().to_string();
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--mode".to_string(), mode.to_string()]);
    args.extend(cert_args.iter().cloned());
    args.extend(extra.iter().map(|s| s.to_string()));
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn cn_for(tern: &Tern, args: &[&str]) -> Option<String> {
    subject_cn(&s_client(tern.addr(), args))
}

#[test]
fn each_server_name_gets_its_certificate_in_both_modes() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.leaf(dir.path(), "a", &["a.test"], EC);
    let w = ca.leaf(dir.path(), "wild", &["*.w.test"], EC);
    let b = ca.leaf(dir.path(), "b", &["b.test"], EC);
    let certs = vec![
        "--pem".into(),
        p(&a.pem),
        "--cert".into(),
        p(&w.cert),
        "--key".into(),
        p(&w.key),
        "--pem".into(),
        p(&b.pem),
    ];
    for mode in ["tcp", "http"] {
        let tern = start(mode, &certs, &[]);
        let cn = |args: &[&str]| cn_for(&tern, args);
        assert_eq!(
            cn(&["-servername", "a.test"]).as_deref(),
            Some("a"),
            "{mode}: exact"
        );
        assert_eq!(
            cn(&["-servername", "b.test"]).as_deref(),
            Some("b"),
            "{mode}: exact"
        );
        assert_eq!(
            cn(&["-servername", "x.w.test"]).as_deref(),
            Some("wild"),
            "{mode}: wildcard"
        );
        assert_eq!(
            cn(&["-servername", "x.y.w.test"]).as_deref(),
            Some("a"),
            "{mode}: one label"
        );
        assert_eq!(
            cn(&["-noservername"]).as_deref(),
            Some("a"),
            "{mode}: no SNI, default"
        );
        assert_eq!(
            cn(&["-servername", "nope.test"]).as_deref(),
            Some("a"),
            "{mode}: unknown"
        );
    }
}

#[test]
fn strict_sni_refuses_unknown_names_with_unrecognized_name() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.leaf(dir.path(), "a", &["a.test"], EC);
    for mode in ["tcp", "http"] {
        let tern = start(mode, &["--pem".into(), p(&a.pem)], &["--strict-sni"]);
        let out = s_client(tern.addr(), &["-servername", "nope.test"]);
        assert!(out.contains("unrecognized name"), "{mode}: {out}");
        assert_eq!(subject_cn(&out), None, "{mode}: no certificate shown");
        assert_eq!(
            cn_for(&tern, &["-servername", "a.test"]).as_deref(),
            Some("a")
        );
        // No name at all is not an unknown name: the default answers.
        assert_eq!(cn_for(&tern, &["-noservername"]).as_deref(), Some("a"));
    }
}

#[test]
fn ecdsa_or_rsa_by_the_clients_signature_algorithms() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let rsa = ca.leaf(dir.path(), "site-rsa", &["site.test"], RSA);
    let ec = ca.leaf(dir.path(), "site-ec", &["site.test"], EC);
    let certs = vec!["--pem".into(), p(&rsa.pem), "--pem".into(), p(&ec.pem)];
    for mode in ["tcp", "http"] {
        let tern = start(mode, &certs, &[]);
        let cn = |args: &[&str]| cn_for(&tern, args);
        let name = ["-servername", "site.test"];
        assert_eq!(
            cn(&name).as_deref(),
            Some("site-ec"),
            "{mode}: ECDSA when the client takes both"
        );
        for version in ["-tls1_3", "-tls1_2"] {
            let rsa_only = [
                &name[..],
                &[version, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"],
            ]
            .concat();
            assert_eq!(
                cn(&rsa_only).as_deref(),
                Some("site-rsa"),
                "{mode} {version}: RSA-only client"
            );
            let ec_only = [&name[..], &[version, "-sigalgs", "ECDSA+SHA256"]].concat();
            assert_eq!(
                cn(&ec_only).as_deref(),
                Some("site-ec"),
                "{mode} {version}: ECDSA-only"
            );
        }
        // No name: the default certificate's ECDSA twin, or RSA for an RSA-only client.
        assert_eq!(cn(&["-noservername"]).as_deref(), Some("site-ec"));
        assert_eq!(
            cn(&["-noservername", "-sigalgs", "RSA-PSS+SHA256"]).as_deref(),
            Some("site-rsa")
        );
    }
}

#[test]
fn a_name_claimed_twice_is_refused_at_start_naming_both_files() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let one = ca.leaf(dir.path(), "one", &["dup.test"], EC);
    let two = ca.leaf(dir.path(), "two", &["dup.test"], EC);
    let (status, err) = run_tern(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--pem",
        &p(&one.pem),
        "--pem",
        &p(&two.pem),
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("one.pem") && err.contains("two.pem") && err.contains("dup.test"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_directory_of_pem_files_serves_them_all() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.leaf(dir.path(), "10-first", &["first.test"], EC);
    ca.leaf(dir.path(), "20-second", &["second.test"], RSA);
    for f in [
        "10-first.crt",
        "10-first.key",
        "20-second.crt",
        "20-second.key",
    ] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let tern = start("tcp", &["--pem".into(), p(dir.path())], &[]);
    assert_eq!(
        cn_for(&tern, &["-servername", "second.test"]).as_deref(),
        Some("20-second")
    );
    assert_eq!(
        cn_for(&tern, &["-noservername"]).as_deref(),
        Some("10-first")
    );
}

#[test]
fn an_ocsp_response_is_stapled() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.leaf(dir.path(), "a", &["a.test"], EC);
    let b = ca.leaf(dir.path(), "b", &["b.test"], EC);
    let resp = dir.path().join("a.der");
    ca.ocsp_response(&a, &resp);
    // b's response beside its file, HAProxy's convention.
    let mut beside = b.pem.clone().into_os_string();
    beside.push(".ocsp");
    ca.ocsp_response(&b, std::path::Path::new(&beside));
    let c = ca.leaf(dir.path(), "c", &["c.test"], EC);
    let certs = vec![
        "--pem".into(),
        p(&a.pem),
        "--ocsp".into(),
        p(&resp),
        "--pem".into(),
        p(&b.pem),
        "--pem".into(),
        p(&c.pem),
    ];
    for mode in ["tcp", "http"] {
        let tern = start(mode, &certs, &[]);
        for name in ["a.test", "b.test"] {
            let out = s_client(tern.addr(), &["-servername", name, "-status"]);
            assert!(
                out.contains("OCSP Response Status: successful"),
                "{mode} {name}: {out}"
            );
        }
        let out = s_client(tern.addr(), &["-servername", "c.test", "-status"]);
        assert!(
            out.contains("OCSP response: no response sent"),
            "{mode}: {out}"
        );
    }
}

#[test]
fn the_policy_flags_narrow_what_is_offered() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.leaf(dir.path(), "a", &["a.test"], EC);
    let certs = vec!["--pem".into(), p(&a.pem)];
    let tern = start("tcp", &certs, &["--tls-min", "1.3"]);
    let out = s_client(tern.addr(), &["-tls1_2"]);
    assert!(out.contains("Cipher is (NONE)"), "TLS 1.2 refused: {out}");
    assert!(s_client(tern.addr(), &["-tls1_3"]).contains("TLSv1.3"));
    drop(tern);

    let tern = start(
        "tcp",
        &certs,
        &[
            "--ciphers",
            "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "--groups",
            "P-256",
        ],
    );
    let out = s_client(
        tern.addr(),
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
    );
    assert!(out.contains("Cipher is (NONE)"), "suite not offered: {out}");
    let out = s_client(tern.addr(), &["-tls1_3"]);
    assert!(out.contains("Cipher is TLS_AES_128_GCM_SHA256"), "{out}");
    let out = s_client(tern.addr(), &["-tls1_3", "-groups", "X25519"]);
    assert!(out.contains("Cipher is (NONE)"), "group not offered: {out}");
    let out = s_client(
        tern.addr(),
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
    );
    assert!(
        out.contains("Cipher is (NONE)"),
        "TLS 1.2 suite not offered: {out}"
    );

    let (status, err) = run_tern(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--pem",
        &p(&a.pem),
        "--ciphers",
        "RC4-MD5",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--ciphers: 'RC4-MD5'"), "{err}");
}
