//! Unit tests for argument validation.

use super::*;

fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
    crate::cli::parse_from(std::iter::once("tern").chain(args.iter().copied()))
}

#[test]
fn listen_forms() {
    assert_eq!(
        parse_listen("127.0.0.1:8443").unwrap().to_string(),
        "127.0.0.1:8443"
    );
    assert_eq!(parse_listen(":443").unwrap().to_string(), "0.0.0.0:443");
    assert_eq!(parse_listen("*:443").unwrap().to_string(), "0.0.0.0:443");
    assert_eq!(
        parse_listen("[::1]:8443").unwrap().to_string(),
        "[::1]:8443"
    );
    let e = parse_listen("127.0.0.1").unwrap_err().0;
    assert!(e.starts_with("--listen 127.0.0.1:"), "{e}");
    let e = parse_listen("localhost:99999").unwrap_err().0;
    assert!(e.contains("HOST:PORT"), "{e}");
}

#[test]
fn backend_must_have_a_port() {
    let e = resolve("--backend", "example").unwrap_err().0;
    assert!(e.starts_with("--backend example"), "{e}");
    assert!(resolve("--backend", "127.0.0.1:8080").is_ok());
}

#[test]
fn backend_addresses_tcp_or_unix() {
    assert_eq!(
        backend_addr("--backend", "127.0.0.1:8080"),
        Ok(BackendAddr::Tcp("127.0.0.1:8080".parse().unwrap()))
    );
    assert_eq!(
        backend_addr("--backend", "unix:/run/app.sock"),
        Ok(BackendAddr::Unix("/run/app.sock".into()))
    );
    for bad in ["unix:app.sock", "unix:", "unix:../app.sock"] {
        let e = backend_addr("--backend", bad).unwrap_err().0;
        assert!(e.starts_with(&format!("--backend {bad}: ")), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // A TCP backend is still checked as HOST:PORT.
    let e = backend_addr("backend", "unix").unwrap_err().0;
    assert!(e.contains("HOST:PORT"), "{e}");
}

#[test]
fn required_flags_are_named() {
    let cli = parse(&["--backend", "127.0.0.1:1", "--pem", "x.pem"]).unwrap();
    assert!(Config::from_args(&cli.run)
        .unwrap_err()
        .0
        .contains("--listen"));
    let cli = parse(&["--listen", "127.0.0.1:0", "--pem", "x.pem"]).unwrap();
    assert!(Config::from_args(&cli.run)
        .unwrap_err()
        .0
        .contains("--backend"));
    let cli = parse(&["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"]).unwrap();
    assert!(Config::from_args(&cli.run)
        .unwrap_err()
        .0
        .contains("--cert"));
    let cli = parse(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--pem",
        "/nonexistent/x.pem",
    ])
    .unwrap();
    let e = Config::from_args(&cli.run).unwrap_err().0;
    assert!(e.contains("--pem /nonexistent/x.pem"), "{e}");
}

#[test]
fn clap_refuses_bad_values() {
    assert!(parse(&["--cert", "c.pem"]).is_err(), "--cert needs --key");
    assert!(parse(&["--workers", "two"]).is_err());
    assert!(parse(&["--cores", "3-1"]).is_err());
    assert!(parse(&["--max-conns", "0"]).is_err());
    assert!(parse(&["--idle-timeout", "soon"]).is_err());
    assert!(parse(&["--mode", "udp"]).is_err());
    assert!(parse(&["-v", "-q"]).is_err());
}

#[test]
fn clap_errors_fold_into_one_line_naming_the_flag() {
    let one = |args: &[&str]| crate::cli::one_line_error(&parse(args).unwrap_err().to_string());
    let missing = one(&["--cert", "c.pem"]);
    assert!(!missing.contains('\n'), "{missing}");
    assert!(missing.contains("--key"), "{missing}");
    assert!(!missing.contains("Usage"), "{missing}");
    let bad = one(&["--workers", "two"]);
    assert!(bad.contains("--workers") && bad.contains("two"), "{bad}");
    assert!(!bad.starts_with("error:"), "{bad}");
}

#[test]
fn defaults() {
    let cli = parse(&[]).unwrap();
    let t = &cli.run.tuning;
    assert_eq!(t.mode, Mode::Tcp);
    assert_eq!(t.max_conns, MaxConns::Auto);
    assert_eq!(t.handshake_timeout, Duration::from_secs(10));
    assert_eq!(t.idle_timeout, Duration::from_secs(300));
    assert_eq!(t.connect_timeout, Duration::from_secs(5));
    assert_eq!(t.drain_timeout, Duration::from_secs(30));
    assert_eq!(t.drain_delay, Duration::ZERO);
    assert_eq!(t.tickets, Toggle::On);
    assert_eq!(t.verbosity(), 1);
    let cli = parse(&["--cores", "0-1,3", "--max-conns", "100", "-vv"]).unwrap();
    assert_eq!(cli.run.tuning.cores.as_ref().unwrap().0, vec![0, 1, 3]);
    assert_eq!(cli.run.tuning.max_conns, MaxConns::Limit(100));
    assert_eq!(cli.run.tuning.verbosity(), 3);
}

fn key() -> Arc<tls::CertifiedKey> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    certs::from_der(
        vec![ck.cert.der().clone()],
        tls::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        &tls::provider(),
    )
    .unwrap()
}

fn topology() -> Topology {
    Topology {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        policies: vec![Default::default()],
        certs: CertStore::single(key()),
        pools: vec![],
        routes: vec![],
        files: vec![],
        also_watched: vec![],
    }
}

#[test]
fn build_checks_tuning() {
    let tuning = |args: &[&str]| parse(args).unwrap().run.tuning;
    let build = |args: &[&str]| Config::build(topology(), &tuning(args));
    let e = build(&["--max-header-bytes", "1MiB"]).unwrap_err();
    assert!(e.0.starts_with("--max-header-bytes"), "{e}");
    let e = build(&["--backend-timeout", "0"]).unwrap_err();
    assert!(e.0.starts_with("--backend-timeout"), "{e}");
    let e = build(&["--access-log", "/nonexistent/dir/log"]).unwrap_err();
    assert!(
        e.0.starts_with("cannot open --access-log /nonexistent/dir/log"),
        "{e}"
    );
    let cfg = build(&[
        "--mode",
        "http",
        "--max-body-bytes",
        "1MiB",
        "--trust-forwarded",
    ])
    .unwrap();
    assert!(cfg.settings.http.enabled);
    assert_eq!(cfg.settings.http.max_body, Some(1 << 20));
    assert!(cfg.settings.http.forward.trust_client);
    let e = build(&["--cores", "4000"]).unwrap_err();
    assert!(e.0.contains("--cores") && e.0.contains("4000"), "{e}");
    let e = build(&["--connect-timeout", "0"]).unwrap_err();
    assert!(e.0.starts_with("--connect-timeout"), "{e}");
    let cfg = build(&[
        "--workers",
        "3",
        "--idle-timeout",
        "0",
        "--alpn",
        "h2,http/1.1",
        "--tickets",
        "off",
    ])
    .unwrap();
    assert_eq!(cfg.cpus.len(), 3);
    assert_eq!(cfg.settings.idle_timeout, None);
    assert_eq!(
        cfg.generation.tls.alpn,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(cfg.generation.tls.tickets.is_none());
    let e = build(&["--ticket-key-file", "/nonexistent/k"]).unwrap_err();
    assert!(
        e.0.starts_with("cannot read --ticket-key-file /nonexistent/k"),
        "{e}"
    );
    assert_eq!(build(&[]).unwrap().metrics, None);
    let cfg = build(&["--metrics", "127.0.0.1:9100"]).unwrap();
    assert_eq!(cfg.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    let cfg = build(&["--metrics", ":9100"]).unwrap();
    assert_eq!(cfg.metrics, Some("0.0.0.0:9100".parse().unwrap()));
    let e = build(&["--metrics", "9100"]).unwrap_err();
    assert!(e.0.starts_with("--metrics 9100: expected HOST:PORT"), "{e}");
}

#[test]
fn simple_flags_make_one_pool_and_one_route() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path(), "localhost");
    let cli = parse(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--backend",
        "127.0.0.1:2",
        "--cert",
        &cert,
        "--key",
        &key,
        "--balance",
        "ip-hash",
        "--health-check",
        "/hz",
    ])
    .unwrap();
    let cfg = Config::from_args(&cli.run).unwrap();
    assert_eq!(cfg.generation.pools.len(), 1);
    assert_eq!(cfg.generation.pools[0].backends.len(), 2);
    assert_eq!(
        cfg.generation.pools[0].balance,
        crate::backend::pool::Balance::IpHash
    );
    assert_eq!(cfg.generation.pools[0].health.as_ref().unwrap().path, "/hz");
    assert_eq!(cfg.generation.routes.pick(Some("anything"), b"/x"), Some(0));
    // The sandbox keeps readable what was read, and is on unless turned off.
    assert_eq!(
        cfg.files_read,
        vec![
            std::path::PathBuf::from(&key),
            std::path::PathBuf::from(&cert)
        ]
    );
    assert!(cfg.sandbox && cfg.files_written.is_empty());
    // So are io_uring restrictions.
    assert!(cfg.uring_restrict);
    let cli = parse(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--cert",
        &cert,
        "--key",
        &key,
        "--health-check",
        "hz",
    ])
    .unwrap();
    assert!(Config::from_args(&cli.run)
        .unwrap_err()
        .0
        .starts_with("--health-check hz"));
}

fn write_cert(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string(), format!("*.{name}")])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn config_file_topology() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a.test");
    write_cert(dir.path(), "b.test");
    let text = r#"
listen = ["127.0.0.1:0"]

[[cert]]
cert = "a.test.crt"
key = "a.test.key"

[[cert]]
cert = "b.test.crt"
key = "b.test.key"
names = ["b.test", "*.b.test"]

[[pool]]
name = "web"
backends = ["127.0.0.1:8080"]

[[pool]]
name = "api"
backends = ["127.0.0.1:9090", "127.0.0.1:9091"]
balance = "least-conn"
health_check = "/healthz"
health_interval = "2s"

[[route]]
pool = "web"

[[route]]
host = "b.test"
path = "/api/"
pool = "api"
"#;
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, text).unwrap();
    let t = file::load(&path).unwrap();
    assert_eq!(t.listen.len(), 1);
    assert_eq!(t.certs.len(), 2);
    assert_eq!(t.certs.preferred(Some("x.a.test")), Some(0));
    assert_eq!(t.certs.preferred(Some("x.b.test")), Some(1));
    assert_eq!(t.pools[1].balance, crate::backend::pool::Balance::LeastConn);
    assert_eq!(
        t.pools[1].health.as_ref().unwrap().interval,
        Duration::from_secs(2)
    );
    // Every file the topology came from, for the sandbox: key and certificate per entry,
    // and (added by from_args, below) the config file itself.
    let names: Vec<_> = t
        .files
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.test.key", "a.test.crt", "b.test.key", "b.test.crt"].map(std::path::Path::new)
    );
    let routes = Routes::new(t.routes);
    assert_eq!(routes.pick(Some("b.test"), b"/api/v1"), Some(1));
    assert_eq!(routes.pick(Some("b.test"), b"/"), Some(0));
    assert_eq!(routes.pick(Some("a.test"), b"/api/v1"), Some(0));
    // And for --watch, the OCSP responses looked for beside the certificates.
    let also: Vec<_> = t
        .also_watched
        .iter()
        .map(|f| f.file_name().unwrap())
        .collect();
    assert_eq!(also, ["a.test.crt.ocsp", "b.test.crt.ocsp"]);

    let secret = dir.path().join("ticket.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let log = dir.path().join("access.log");
    let cli = parse(&[
        "--config",
        path.to_str().unwrap(),
        "--sandbox",
        "off",
        "--uring-restrict",
        "off",
        "--ticket-key-file",
        secret.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ])
    .unwrap();
    let cfg = Config::from_args(&cli.run).unwrap();
    assert_eq!(cfg.files_read.first(), Some(&path));
    assert_eq!(cfg.files_read.last(), Some(&secret));
    assert_eq!(cfg.files_read.len(), 6);
    assert_eq!(cfg.files_written, vec![log]);
    assert!(!cfg.sandbox);
    assert!(!cfg.uring_restrict);
}

#[test]
fn config_file_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a.test");
    let head =
        "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"a.test.crt\"\nkey = \"a.test.key\"\n";
    let check = |body: &str, line: usize, needle: &str| {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, format!("{head}{body}")).unwrap();
        let e = file::load(&path).unwrap_err().0;
        let want = format!("{}:{line}: ", path.display());
        assert!(
            e.starts_with(&want) && e.contains(needle),
            "{e}\nwanted {want}...{needle}"
        );
    };
    check(
        "[[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\n[[route]]\npool = \"api\"\n",
        9,
        "route pool 'api' is not defined",
    );
    check(
        "[[pool]]\nname = \"web\"\nbakends = [\"127.0.0.1:1\"]\n",
        7,
        "unknown field",
    );
    check(
        "[[pool]]\nname = \"web\"\nbackends = [\"nowhere\"]\n",
        7,
        "backend nowhere",
    );
    check(
        "[[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\nbalance = \"random\"\n",
        8,
        "round-robin",
    );
    check("[[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\n[[route]]\nhost = \"a b\"\npool = \"web\"\n", 9, "host name");
    check("[[pool]]\nname = \"x\"\nbackends = [\"127.0.0.1:1\"]\n[[pool]]\nname = \"x\"\nbackends = [\"127.0.0.1:2\"]\n", 9, "defined twice");
    check("listen = 5\n", 5, "unknown field");
    // A missing certificate file is named with its line.
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "listen = [\"127.0.0.1:0\"]\n[[cert]]\npem = \"missing.pem\"\n[[pool]]\nname = \"w\"\nbackends = [\"127.0.0.1:1\"]\n").unwrap();
    let e = file::load(&path).unwrap_err().0;
    assert!(
        e.contains(&format!("{}:3:", path.display())) && e.contains("missing.pem"),
        "{e}"
    );
}
