//! Unit tests for the front-door settings: flags, the `[[listener]]` table, their refusals.

use super::*;
use crate::frontdoor::acl::Refused;

fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
    crate::cli::parse_from(std::iter::once("tern").chain(args.iter().copied()))
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn cert(dir: &std::path::Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("a.crt"), dir.join("a.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn from_flags(dir: &std::path::Path, extra: &[&str]) -> Result<Config, String> {
    let (c, k) = cert(dir);
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:1",
        "--backend",
        "127.0.0.1:9",
        "--cert",
        &c,
        "--key",
        &k,
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    let cli = parse(&args).map_err(|e| crate::cli::one_line_error(&e.to_string()))?;
    Config::from_args(&cli.run).map_err(|e| e.0)
}

#[test]
fn flags_give_every_listener_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = from_flags(
        dir.path(),
        &[
            "--accept-proxy",
            "--proxy-from",
            "10.0.0.0/24",
            "--allow",
            "192.0.2.0/24",
            "--deny",
            "192.0.2.128/25",
            "--proxy-timeout",
            "500ms",
            "--max-handshakes",
            "7",
        ],
    )
    .unwrap();
    let g = &cfg.generation;
    assert_eq!(g.policies.len(), 2);
    assert_eq!(g.policies[0], g.policies[1]);
    let p = &g.policies[0];
    assert!(p.accept_proxy);
    let from = p.proxy_from.as_ref().unwrap();
    assert!(from.contains(ip("10.0.0.9")) && !from.contains(ip("10.0.1.9")));
    assert_eq!(p.acl.check(ip("192.0.2.1")), Ok(()));
    assert_eq!(p.acl.check(ip("192.0.2.200")), Err(Refused::Denied));
    assert_eq!(p.acl.check(ip("198.51.100.1")), Err(Refused::NotAllowed));
    assert_eq!(cfg.front.proxy_timeout, Duration::from_millis(500));
    assert_eq!(cfg.front.max_handshakes, 7);
    assert_eq!(cfg.front.per_ip_share, None);

    // The defaults: no PROXY header, no lists, 3 s, the measured bound.
    let cfg = from_flags(dir.path(), &[]).unwrap();
    let p = &cfg.generation.policies[0];
    assert!(!p.accept_proxy && p.proxy_from.is_none() && p.acl.is_open());
    assert_eq!(cfg.front, crate::frontdoor::FrontSettings::default());
}

#[test]
fn the_per_ip_limit_is_shared_out_rounding_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = from_flags(dir.path(), &["--max-conns-per-ip", "5"]).unwrap();
    assert_eq!(cfg.front.per_ip_share, Some(5), "one worker");
    let allowed = cpus::allowed().unwrap();
    if allowed.len() >= 2 {
        let (c, k) = cert(dir.path());
        let cli = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:9",
            "--cert",
            &c,
            "--key",
            &k,
            "--workers",
            "2",
            "--max-conns-per-ip",
            "5",
        ])
        .unwrap();
        let cfg = Config::from_args(&cli.run).unwrap();
        assert_eq!(cfg.front.per_ip_share, Some(3), "ceil(5 / 2)");
    }
}

#[test]
fn bad_front_door_flags_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &[&str]| from_flags(dir.path(), extra).unwrap_err();
    let e = refused(&["--allow", "10.0.0.1/8"]);
    assert!(
        e.starts_with("--allow: '10.0.0.1/8'") && e.contains("10.0.0.0/8"),
        "{e}"
    );
    let e = refused(&["--deny", "nowhere"]);
    assert!(e.starts_with("--deny: 'nowhere'"), "{e}");
    let e = refused(&["--accept-proxy", "--proxy-from", "10.0.0.0/33"]);
    assert!(e.starts_with("--proxy-from: "), "{e}");
    let e = refused(&["--proxy-from", "10.0.0.0/8"]);
    assert!(
        e.contains("--proxy-from") && e.contains("--accept-proxy"),
        "{e}"
    );
    let e = refused(&["--proxy-timeout", "0"]);
    assert!(e.starts_with("--proxy-timeout"), "{e}");
    let e = refused(&["--max-conns-per-ip", "0"]);
    assert!(e.contains("--max-conns-per-ip"), "{e}");
    let e = refused(&["--max-handshakes", "many"]);
    assert!(e.contains("--max-handshakes"), "{e}");
    // Per-listener settings live in the file with --config.
    let e = parse(&["--config", "x.toml", "--allow", "10.0.0.0/8"]).unwrap_err();
    let e = crate::cli::one_line_error(&e.to_string());
    assert!(e.contains("--config") && e.contains("--allow"), "{e}");
}

#[test]
fn the_listener_table_sits_beside_listen() {
    let dir = tempfile::tempdir().unwrap();
    cert(dir.path());
    let text = r#"
listen = ["127.0.0.1:0"]

[[listener]]
addr = "127.0.0.1:1"
accept_proxy = true
proxy_from = ["10.0.0.0/8", "2001:db8::/32"]
allow = ["192.0.2.0/24"]
deny = ["192.0.2.7"]

[[listener]]
addr = "[::1]:2"
deny = ["::/0"]

[[cert]]
cert = "a.crt"
key = "a.key"

[[pool]]
name = "web"
backends = ["127.0.0.1:9"]
"#;
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, text).unwrap();
    let t = file::load(&path).unwrap();
    assert_eq!(
        t.listen,
        ["127.0.0.1:0", "127.0.0.1:1", "[::1]:2"].map(|a| a.parse().unwrap())
    );
    assert_eq!(
        t.policies[0],
        ListenerPolicy::default(),
        "listen = [...]: plain"
    );
    let p = &t.policies[1];
    assert!(p.accept_proxy);
    assert!(p.proxy_from.as_ref().unwrap().contains(ip("2001:db8::5")));
    assert_eq!(p.acl.check(ip("192.0.2.7")), Err(Refused::Denied));
    assert_eq!(p.acl.check(ip("192.0.2.8")), Ok(()));
    let q = &t.policies[2];
    assert!(!q.accept_proxy);
    assert_eq!(q.acl.check(ip("::1")), Err(Refused::Denied));
    assert_eq!(q.acl.check(ip("127.0.0.1")), Ok(()), "::/0 is IPv6 only");

    // A file with only [[listener]] tables is enough.
    let only = text.replace("listen = [\"127.0.0.1:0\"]\n", "");
    std::fs::write(&path, only).unwrap();
    assert_eq!(file::load(&path).unwrap().listen.len(), 2);
}

#[test]
fn listener_table_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    cert(dir.path());
    let tail = "[[cert]]\ncert = \"a.crt\"\nkey = \"a.key\"\n[[pool]]\nname = \"w\"\nbackends = [\"127.0.0.1:9\"]\n";
    let check = |head: &str, line: usize, needle: &str| {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, format!("{head}{tail}")).unwrap();
        let e = file::load(&path).unwrap_err().0;
        let want = format!("{}:{line}: ", path.display());
        assert!(
            e.starts_with(&want) && e.contains(needle),
            "{e}\nwanted {want}...{needle}"
        );
    };
    check(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nallow = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]\n",
        5,
        "allow: '10.0.0.1/8' has bits set",
    );
    check(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nproxy_from = [\"10.0.0.0/8\"]\n",
        3,
        "accept_proxy",
    );
    check("[[listener]]\naddr = \"nowhere\"\n", 2, "nowhere");
    check(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nallw = []\n",
        3,
        "unknown field",
    );
    check("[[listener]]\naccept_proxy = true\n", 1, "addr");
    check("[[cert]]\n", 1, "listen is required");
}
