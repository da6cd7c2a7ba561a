//! Certificates from the command line: several, by SNI, in the order given.

use std::path::{Path, PathBuf};

use super::*;

fn parse(args: &[&str]) -> crate::cli::Cli {
    let base = [
        "tern",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
    ];
    crate::cli::parse_from(base.iter().chain(args.iter()).copied()).unwrap()
}

fn topology(args: &[&str]) -> Result<Topology, ConfigError> {
    Config::topology(&parse(args).run)
}

/// Writes `<stem>.pem` (chain + key) for `names` with this key type; returns its path.
fn pem(dir: &Path, stem: &str, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> PathBuf {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let p = dir.join(format!("{stem}.pem"));
    std::fs::write(&p, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    p
}

const EC: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;
const RSA: &rcgen::SignatureAlgorithm = &rcgen::PKCS_RSA_SHA256;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_first_certificate_given_is_the_default_whatever_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let a = pem(dir.path(), "a", &["a.test"], EC);
    let b = pem(dir.path(), "b", &["b.test"], EC);
    // b as --cert/--key (a combined file serves as both), then a as --pem: b is the default.
    let t = topology(&["--cert", s(&b), "--key", s(&b), "--pem", s(&a)]).unwrap();
    assert_eq!(t.certs.preferred(None), Some(0));
    assert!(t.certs.entries()[0].source.contains("b.pem"));
    assert_eq!(t.certs.preferred(Some("a.test")), Some(1));
    let t = topology(&["--pem", s(&a), "--cert", s(&b), "--key", s(&b)]).unwrap();
    assert!(t.certs.entries()[0].source.contains("a.pem"));
}

#[test]
fn a_directory_gives_each_of_its_pem_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    pem(dir.path(), "20-b", &["b.test"], EC);
    pem(dir.path(), "10-a", &["a.test", "*.a.test"], EC);
    std::fs::write(dir.path().join("notes.txt"), "not a certificate").unwrap();
    let t = topology(&["--pem", s(dir.path())]).unwrap();
    assert_eq!(t.certs.len(), 2);
    assert!(t.certs.entries()[0].source.contains("10-a.pem"));
    assert_eq!(t.certs.preferred(Some("x.a.test")), Some(0));
    assert_eq!(t.certs.preferred(Some("b.test")), Some(1));
    let empty = tempfile::tempdir().unwrap();
    let e = topology(&["--pem", s(empty.path())]).unwrap_err().0;
    assert!(e.starts_with("--pem ") && e.contains("no *.pem"), "{e}");
}

#[test]
fn ecdsa_and_rsa_for_the_same_name_are_both_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = pem(dir.path(), "rsa", &["site.test"], RSA);
    let ec = pem(dir.path(), "ec", &["site.test"], EC);
    let t = topology(&["--pem", s(&rsa), "--pem", s(&ec)]).unwrap();
    assert_eq!(t.certs.len(), 2);
    // ECDSA is preferred for a client that takes both.
    assert_eq!(t.certs.preferred(Some("site.test")), Some(1));
    assert_eq!(
        t.certs.preferred(None),
        Some(1),
        "the default name's ECDSA twin"
    );
}

#[test]
fn a_duplicate_name_with_the_same_key_type_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let one = pem(dir.path(), "one", &["dup.test"], EC);
    let two = pem(dir.path(), "two", &["other.test", "dup.test"], EC);
    let e = topology(&["--pem", s(&one), "--pem", s(&two)])
        .unwrap_err()
        .0;
    assert!(
        e.contains("one.pem") && e.contains("two.pem") && e.contains("dup.test"),
        "{e}"
    );
}

#[test]
fn cert_and_key_must_pair_and_ocsp_must_follow_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = pem(dir.path(), "a", &["a.test"], EC);
    let b = pem(dir.path(), "b", &["b.test"], EC);
    let e = topology(&["--cert", s(&a), "--key", s(&a), "--cert", s(&b)])
        .unwrap_err()
        .0;
    assert!(e.contains("pairs"), "{e}");
    let ocsp = dir.path().join("a.ocsp");
    // A DER OCSPResponse with status successful and no body.
    std::fs::write(&ocsp, [0x30, 0x03, 0x0a, 0x01, 0x00]).unwrap();
    let e = topology(&["--ocsp", s(&ocsp), "--pem", s(&a)])
        .unwrap_err()
        .0;
    assert!(e.starts_with("--ocsp") && e.contains("must follow"), "{e}");
    let t = topology(&["--pem", s(&a), "--ocsp", s(&ocsp), "--pem", s(&b)]).unwrap();
    assert!(t.certs.entries()[0].key.ocsp.is_some());
    assert!(t.certs.entries()[1].key.ocsp.is_none());
    let e = topology(&["--pem", s(dir.path()), "--ocsp", s(&ocsp)])
        .unwrap_err()
        .0;
    assert!(e.contains("directory"), "{e}");
    // Not an OCSP response: refused naming the file.
    std::fs::write(&ocsp, b"junk").unwrap();
    let e = topology(&["--pem", s(&a), "--ocsp", s(&ocsp)])
        .unwrap_err()
        .0;
    assert!(e.starts_with("--ocsp") && e.contains("a.ocsp"), "{e}");
}

#[test]
fn an_ocsp_file_beside_the_certificate_is_stapled() {
    let dir = tempfile::tempdir().unwrap();
    let a = pem(dir.path(), "a", &["a.test"], EC);
    std::fs::write(
        dir.path().join("a.pem.ocsp"),
        [0x30, 0x03, 0x0a, 0x01, 0x00],
    )
    .unwrap();
    let t = topology(&["--pem", s(&a)]).unwrap();
    assert_eq!(
        t.certs.entries()[0].key.ocsp.as_deref(),
        Some(&[0x30, 3, 0x0a, 1, 0][..])
    );
    // An unsuccessful response (status 1, malformedRequest) is refused.
    std::fs::write(
        dir.path().join("a.pem.ocsp"),
        [0x30, 0x03, 0x0a, 0x01, 0x01],
    )
    .unwrap();
    let e = topology(&["--pem", s(&a)]).unwrap_err().0;
    assert!(e.contains("a.pem.ocsp") && e.contains("status is 1"), "{e}");
}

#[test]
fn tls_policy_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let a = pem(dir.path(), "a", &["a.test"], EC);
    let build = |extra: &[&str]| {
        let mut args = vec!["--pem", s(&a)];
        args.extend_from_slice(extra);
        Config::from_args(&parse(&args).run)
    };
    let e = build(&["--tls-min", "1.0"]).unwrap_err().0;
    assert!(e.starts_with("--tls-min 1.0"), "{e}");
    let e = build(&["--ciphers", "DES-CBC3-SHA"]).unwrap_err().0;
    assert!(e.starts_with("--ciphers"), "{e}");
    let cfg = build(&["--tls-min", "1.3", "--groups", "X25519", "--strict-sni"]).unwrap();
    let tls = &cfg.generation.tls;
    assert_eq!(tls.policy.versions.len(), 1);
    assert!(tls.strict_sni);
}

#[test]
fn the_generation_lists_every_file_it_was_read_from() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = pem(d, "a", &["a.test"], EC);
    let b = pem(d, "b", &["b.test"], EC);
    let sub = d.join("more");
    std::fs::create_dir(&sub).unwrap();
    let c = pem(&sub, "c", &["c.test"], EC);
    let ocsp = d.join("b.der");
    std::fs::write(&ocsp, [0x30, 0x03, 0x0a, 0x01, 0x00]).unwrap();
    let ticket = d.join("ticket.key");
    std::fs::write(&ticket, [7u8; 32]).unwrap();
    let args = parse(&[
        "--pem",
        s(&a),
        "--cert",
        s(&b),
        "--key",
        s(&b),
        "--ocsp",
        s(&ocsp),
        "--pem",
        s(&sub),
        "--ticket-key-file",
        s(&ticket),
    ])
    .run;
    let cfg = Config::from_args(&args).unwrap();
    let mut want = vec![
        a.clone(),
        d.join("a.pem.ocsp"), // looked for beside a.pem, absent: watched for its appearance
        b.clone(),            // --cert and --key: once
        ocsp,
        sub.clone(),
        c.clone(),
        sub.join("c.pem.ocsp"),
        ticket,
    ];
    want.sort();
    assert_eq!(cfg.generation.files, want);
    // The same arguments give the same list.
    let again = Config::reload(&args, &cfg.generation).unwrap();
    assert_eq!(again.files, want);
}

#[test]
fn relative_paths_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let a = pem(dir.path(), "a", &["a.test"], EC);
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(&a, &cwd);
    let cfg = Config::from_args(&parse(&["--pem", s(&rel)]).run).unwrap();
    assert!(cfg.generation.files.iter().all(|f| f.is_absolute()));
    assert!(cfg
        .generation
        .files
        .contains(&std::path::absolute(&rel).unwrap()));
}

/// `path` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(path: &Path, base: &Path) -> PathBuf {
    let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}
