//! TLS towards backends (`--backend-tls`), end to end, in tcp and http mode: re-encryption with
//! the certificate checked (CA, name, IP SAN), refusals that send the backend nothing,
//! resumption to the backend, kept-alive TLS connections in the pool (and dropped after the
//! backend's close_notify), a client certificate towards the backend, `--backend-insecure`.

mod common;

use std::io::{BufReader, Read, Write};

use common::hop::{HopBackend, Opts, Serve};
use common::http::read_response;
use common::pki::{Ca, EC};
use common::*;

struct Rig {
    front: Certs,
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            front: Certs::new(),
            ca: Ca::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A TLS backend with a certificate from the rig's CA for `names`.
    fn backend(&self, serve: Serve, names: &[&str], tweak: impl FnOnce(&mut Opts)) -> HopBackend {
        let leaf = self
            .ca
            .leaf(self.dir.path(), &format!("b{}", names.len()), names, EC);
        let mut o = Opts::new(serve);
        o.tls = Some((leaf.cert, leaf.key));
        tweak(&mut o);
        HopBackend::start(o)
    }

    fn ca_path(&self) -> String {
        self.ca.pem_path().display().to_string()
    }

    /// tern towards `backend` (as written) with `extra` flags.
    fn tern(&self, backend: &str, extra: &[&str]) -> Tern {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--backend".into(),
            backend.into(),
            "--workers".into(),
            "1".into(),
            "-v".into(),
        ];
        args.extend(self.front.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

fn get(s: &mut TlsStream, path: &str) -> common::http::Response {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, false).unwrap()
}

/// A tcp-mode echo over tern, `data` out and back.
fn echo_through(tern: &Tern, front: &Certs, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = connect(tern.addr(), &front.client(rustls::DEFAULT_VERSIONS))?;
    // Small enough to sit in the socket buffers while nothing reads it back yet.
    s.write_all(data)?;
    s.flush()?;
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn tcp_mode_reencrypts_and_resumes_to_the_backend() {
    let rig = Rig::new();
    let b = rig.backend(Serve::Echo, &["localhost"], |_| {});
    let backend = format!("localhost:{}", b.addr.port());
    let ca = rig.ca_path();
    let tern = rig.tern(&backend, &["--backend-tls", "--backend-ca", &ca]);
    // Large enough to cut records across reads both ways.
    let data = pattern(200_000, 7);
    assert_eq!(echo_through(&tern, &rig.front, &data).unwrap(), data);
    assert_eq!(
        echo_through(&tern, &rig.front, b"second").unwrap(),
        b"second"
    );
    let seen = b.wait_conns(2);
    assert_eq!(seen[0].handshake, Some(Ok(())));
    assert_eq!(
        seen[0].sni.as_deref(),
        Some("localhost"),
        "the host as written"
    );
    assert_eq!(seen[0].alpn, None, "tcp mode offers no ALPN by default");
    assert_eq!(seen[0].app_bytes, data.len());
    assert!(!seen[0].resumed);
    assert!(
        seen[1].resumed,
        "the second connection resumed with the backend's ticket"
    );
}

#[test]
fn tcp_mode_over_tls12_carries_bulk_both_ways() {
    let rig = Rig::new();
    let b = rig.backend(Serve::Echo, &["localhost"], |o| o.tls12_only = true);
    let ca = rig.ca_path();
    let tern = rig.tern(
        &format!("localhost:{}", b.addr.port()),
        &["--backend-tls", "--backend-ca", &ca],
    );
    let data = pattern(200_000, 3);
    assert_eq!(echo_through(&tern, &rig.front, &data).unwrap(), data);
    assert_eq!(echo_through(&tern, &rig.front, b"again").unwrap(), b"again");
    let seen = b.wait_conns(2);
    assert_eq!(seen[0].version.as_deref(), Some("TLSv1_2"));
    assert!(seen[1].resumed, "TLS 1.2 resumes too");
}

#[test]
fn a_wrong_ca_or_name_gets_no_byte_and_the_client_is_closed() {
    let rig = Rig::new();
    let other = Ca::new();
    let b = rig.backend(Serve::Echo, &["backend.test"], |_| {});
    let other_ca = other.pem_path().display().to_string();
    let ca = rig.ca_path();
    // Wrong CA; then the right CA but a name the certificate does not have.
    for extra in [
        vec![
            "--backend-tls",
            "--backend-ca",
            other_ca.as_str(),
            "--backend-sni",
            "backend.test",
        ],
        vec![
            "--backend-tls",
            "--backend-ca",
            ca.as_str(),
            "--backend-sni",
            "wrong.test",
        ],
    ] {
        let tern = rig.tern(&b.addr.to_string(), &extra);
        let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
        let _ = s.write_all(b"secret bytes the backend must never see");
        let _ = s.flush();
        let got = read_to_end(&mut s).unwrap_or_default();
        assert!(got.is_empty(), "the client got {got:?}");
        assert!(
            tern.wait_log("backend connect failed", WAIT),
            "{}",
            tern.log_text()
        );
    }
    let seen = b.wait_conns(2);
    for s in &seen {
        assert!(matches!(s.handshake, Some(Err(_))), "{s:?}");
        assert_eq!(s.app_bytes, 0, "{s:?}");
    }
}

#[test]
fn http_mode_pools_tls_connections_and_drops_them_after_close_notify() {
    let rig = Rig::new();
    let b = rig.backend(Serve::Http, &["localhost"], |_| {});
    let ca = rig.ca_path();
    let tern = rig.tern(
        &format!("localhost:{}", b.addr.port()),
        &["--mode", "http", "--backend-tls", "--backend-ca", &ca],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let r1 = get(&mut s, "/a");
    let r2 = get(&mut s, "/rekey");
    let r3 = get(&mut s, "/close-notify");
    assert_eq!((r1.status, r2.status, r3.status), (200, 200, 200));
    assert!(r1.text().starts_with("conn=0 "), "{}", r1.text());
    assert!(
        r1.text().contains("alpn=Some(\"http/1.1\")"),
        "{}",
        r1.text()
    );
    // One backend TLS connection for all three, though the backend updated its keys.
    assert!(
        r3.text().starts_with("conn=0 ") && r3.text().ends_with("n=3"),
        "{}",
        r3.text()
    );
    // The backend said close_notify while the connection idled: the pool let it go, and
    // the next request went on a new connection (resumed with the first one's ticket).
    let r4 = get(&mut s, "/after");
    assert_eq!(r4.status, 200);
    assert!(
        r4.text().starts_with("conn=1 resumed=true"),
        "{}",
        r4.text()
    );
    assert_eq!(b.seen().len(), 2);
}

#[test]
fn http_mode_refuses_an_unverified_backend_with_502() {
    let rig = Rig::new();
    let b = rig.backend(Serve::Http, &["localhost"], |_| {});
    let stranger = Ca::new();
    let ca = stranger.pem_path().display().to_string();
    let tern = rig.tern(
        &format!("localhost:{}", b.addr.port()),
        &["--mode", "http", "--backend-tls", "--backend-ca", &ca],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/secret").status, 502);
    let seen = b.wait_conns(1);
    assert!(matches!(seen[0].handshake, Some(Err(_))));
    assert_eq!(seen[0].app_bytes, 0);
    assert!(seen[0].requests.is_empty());
}

#[test]
fn ip_backends_check_the_ip_san_and_send_no_sni() {
    let rig = Rig::new();
    let ca = rig.ca_path();
    let by_ip = rig.backend(Serve::Http, &["127.0.0.1"], |_| {});
    let tern = rig.tern(
        &by_ip.addr.to_string(),
        &["--mode", "http", "--backend-tls", "--backend-ca", &ca],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let r = get(&mut s, "/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("sni=None"), "{}", r.text());
    // A certificate for a name only: refused by IP, taken with --backend-sni.
    let named = rig.backend(Serve::Http, &["api.internal"], |_| {});
    let tern = rig.tern(
        &named.addr.to_string(),
        &["--mode", "http", "--backend-tls", "--backend-ca", &ca],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/").status, 502);
    let tern = rig.tern(
        &named.addr.to_string(),
        &[
            "--mode",
            "http",
            "--backend-tls",
            "--backend-ca",
            &ca,
            "--backend-sni",
            "api.internal",
        ],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let r = get(&mut s, "/");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("sni=Some(\"api.internal\")"),
        "{}",
        r.text()
    );
}

#[test]
fn a_client_certificate_is_shown_to_the_backend() {
    let rig = Rig::new();
    let client_ca = Ca::new();
    let mine = client_ca.leaf(rig.dir.path(), "tern-proxy", &["tern.internal"], EC);
    let b = rig.backend(Serve::Http, &["localhost"], |o| {
        o.client_ca = Some(client_ca.der.clone())
    });
    let backend = format!("localhost:{}", b.addr.port());
    let ca = rig.ca_path();
    // Without it the backend refuses the handshake: 502.
    let tern = rig.tern(
        &backend,
        &["--mode", "http", "--backend-tls", "--backend-ca", &ca],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/").status, 502);
    drop(tern);
    let (cert, key) = (
        mine.cert.display().to_string(),
        mine.key.display().to_string(),
    );
    let tern = rig.tern(
        &backend,
        &[
            "--mode",
            "http",
            "--backend-tls",
            "--backend-ca",
            &ca,
            "--backend-cert",
            &cert,
            "--backend-key",
            &key,
        ],
    );
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/").status, 200);
    let seen = b.seen();
    let last = seen.last().unwrap();
    assert_eq!(
        last.client_cert.as_ref(),
        Some(&mine.der),
        "the backend verified ours"
    );
}

#[test]
fn insecure_takes_a_self_signed_backend_and_says_so_loudly() {
    let rig = Rig::new();
    // Signed by a CA tern is never told about.
    let b = rig.backend(Serve::Echo, &["localhost"], |_| {});
    // By address: a reload under the sandbox cannot read /etc/hosts to resolve localhost.
    let tern = rig.tern(
        &b.addr.to_string(),
        &[
            "--backend-tls",
            "--backend-insecure",
            "--backend-sni",
            "wrong.name",
        ],
    );
    assert!(tern.log_text().contains("INSECURE"), "{}", tern.log_text());
    assert_eq!(echo_through(&tern, &rig.front, b"hello").unwrap(), b"hello");
    // Each reload says it again.
    tern.signal(libc::SIGHUP);
    assert!(
        tern.wait_for_count("INSECURE", 2, WAIT),
        "{}",
        tern.log_text()
    );
}

#[test]
fn the_config_file_sets_tls_per_pool() {
    let rig = Rig::new();
    let b = rig.backend(Serve::Http, &["api.internal"], |_| {});
    let conf = rig.dir.path().join("tern.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[pool]]\nname = \"api\"\nbackends = [\"{}\"]\ntls = true\nca = \"{}\"\n\
             sni = \"api.internal\"\nalpn = [\"echo\"]\n",
            rig.front.cert.display(),
            rig.front.key.display(),
            b.addr,
            rig.ca_path()
        ),
    )
    .unwrap();
    let conf_s = conf.display().to_string();
    let tern = Tern::start(&["--config", &conf_s, "--workers", "1", "--mode", "http"]);
    let mut s = connect(tern.addr(), &rig.front.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let r = get(&mut s, "/");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("sni=Some(\"api.internal\")"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("alpn=Some(\"echo\")"), "{}", r.text());
    // A TLS key without tls = true is refused, naming the line.
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[pool]]\nname = \"api\"\nbackends = [\"{}\"]\nca = \"x.pem\"\n",
            rig.front.cert.display(),
            rig.front.key.display(),
            b.addr
        ),
    )
    .unwrap();
    let (status, err) = run_tern(&["check", "--config", &conf_s]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("tern.toml:8: ca is for backend TLS"), "{err}");
}

#[test]
fn bad_backend_tls_flags_are_refused_naming_them() {
    let rig = Rig::new();
    let b = dead_addr().to_string();
    let mut base = tern_args(&rig.front, dead_addr(), &[]);
    base[3] = b;
    let run = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        run_tern(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (st, err) = run(&["--backend-ca", "/nonexistent.pem"]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--backend-tls"), "{err}");
    let (st, err) = run(&["--backend-tls", "--backend-ca", "/nonexistent.pem"]);
    assert_eq!(st.code(), Some(2));
    assert!(
        err.contains("cannot read --backend-ca /nonexistent.pem"),
        "{err}"
    );
    let (st, err) = run(&["--backend-tls", "--backend-sni", "not a name!"]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("--backend-sni"), "{err}");
}
