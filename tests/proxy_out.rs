//! `--proxy-protocol v1|v2` towards backends, end to end: the header comes before any other
//! byte (before TLS too), names the client and the address it reached, carries ALPN, the
//! server name and the SSL TLV in v2; in http mode it is sent once per backend connection and
//! a kept-alive connection serves only the client it was opened for; health checks say LOCAL.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use common::hop::{HopBackend, Opts, Serve};
use common::http::read_response;
use common::pki::{Ca, EC};
use common::*;
use tern::proxyproto::{Command, Version};

fn client_with_alpn(certs: &Certs) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*certs.client(rustls::DEFAULT_VERSIONS)).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn get(s: &mut TlsStream, path: &str) -> common::http::Response {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    s.flush().unwrap();
    read_response(&mut BufReader::new(s), false).unwrap()
}

#[test]
fn tcp_mode_v1_names_the_client_and_the_address_it_reached() {
    let certs = Certs::new();
    let mut o = Opts::new(Serve::Echo);
    o.proxy = true;
    let b = HopBackend::start(o);
    let tern = start_tern(&certs, b.addr, &["--proxy-protocol", "v1"]);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    let me: SocketAddr = s.sock.local_addr().unwrap();
    s.write_all(b"hello").unwrap();
    s.flush().unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello", "the header is not part of the stream");
    let seen = b.wait_conns(1);
    let h = seen[0].proxy.clone().expect("a PROXY header first");
    assert_eq!(h.version, Version::V1);
    let a = h.addrs.unwrap();
    assert_eq!((a.src, a.dst), (me, tern.addr()));
}

#[test]
fn tcp_mode_v2_before_tls_with_alpn_authority_and_ssl_tlvs() {
    let certs = Certs::new();
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(dir.path(), "backend", &["localhost"], EC);
    let mut o = Opts::new(Serve::Echo);
    o.proxy = true;
    o.tls = Some((leaf.cert, leaf.key));
    let b = HopBackend::start(o);
    let ca_path = ca.pem_path().display().to_string();
    let backend = format!("localhost:{}", b.addr.port());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--workers",
        "1",
        "--alpn",
        "http/1.1",
        "--proxy-protocol",
        "v2",
        "--backend-tls",
        "--backend-ca",
        &ca_path,
    ];
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(certs.args());
    let tern = Tern::start(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let mut s = connect(tern.addr(), &client_with_alpn(&certs)).unwrap();
    let me = s.sock.local_addr().unwrap();
    let suite = format!("{:?}", s.conn.negotiated_cipher_suite().unwrap().suite());
    s.write_all(b"x").unwrap();
    s.flush().unwrap();
    let mut got = [0u8; 1];
    s.read_exact(&mut got).unwrap();
    let seen = b.wait_conns(1);
    assert_eq!(seen[0].handshake, Some(Ok(())), "TLS after the header");
    let h = seen[0].proxy.clone().unwrap();
    assert_eq!((h.version, h.command), (Version::V2, Command::Proxy));
    assert_eq!(h.addrs.unwrap().src, me);
    assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h.tlvs.authority.as_deref(), Some("localhost"));
    let ssl = h.tlvs.ssl.unwrap();
    assert!(ssl.is_tls() && !ssl.client_verified());
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(
        ssl.cipher.as_deref(),
        Some(suite.replace("TLS13_", "TLS_").as_str())
    );
}

#[test]
fn http_mode_sends_one_header_per_backend_connection_never_shared_between_clients() {
    let certs = Certs::new();
    let mut o = Opts::new(Serve::Http);
    o.proxy = true;
    let b = HopBackend::start(o);
    let tern = start_tern(
        &certs,
        b.addr,
        &["--mode", "http", "--proxy-protocol", "v2"],
    );
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut one = connect(tern.addr(), &cfg).unwrap();
    let mut two = connect(tern.addr(), &cfg).unwrap();
    let (a, z) = (
        one.sock.local_addr().unwrap(),
        two.sock.local_addr().unwrap(),
    );
    // Interleaved: a pool shared between clients would hand one's connection to the other.
    let r1 = get(&mut one, "/1");
    let r2 = get(&mut two, "/2");
    let r3 = get(&mut one, "/3");
    let r4 = get(&mut two, "/4");
    for (r, me, n) in [(&r1, a, 1), (&r2, z, 1), (&r3, a, 2), (&r4, z, 2)] {
        assert_eq!(r.status, 200);
        let t = r.text();
        assert!(t.contains(&format!("src=Some(\"{me}\")")), "{t}");
        assert!(
            t.ends_with(&format!("n={n}")),
            "kept alive for its own client: {t}"
        );
    }
    let seen = b.seen();
    assert_eq!(
        seen.len(),
        2,
        "one backend connection per client connection"
    );
    // A client that comes after them gets a connection of its own.
    drop(one);
    let mut three = connect(tern.addr(), &cfg).unwrap();
    let me = three.sock.local_addr().unwrap();
    let t = get(&mut three, "/5").text();
    assert!(
        t.contains(&format!("src=Some(\"{me}\")")) && t.ends_with("n=1"),
        "{t}"
    );
    assert_eq!(b.seen().len(), 3);
}

#[test]
fn without_proxy_protocol_clients_share_kept_alive_connections() {
    // The contrast to the test above: the sharing it rules out is what happens otherwise.
    let certs = Certs::new();
    let b = HopBackend::start(Opts::new(Serve::Http));
    let tern = start_tern(&certs, b.addr, &["--mode", "http"]);
    let cfg = certs.client(rustls::DEFAULT_VERSIONS);
    let mut one = connect(tern.addr(), &cfg).unwrap();
    assert_eq!(get(&mut one, "/1").status, 200);
    let mut two = connect(tern.addr(), &cfg).unwrap();
    assert!(get(&mut two, "/2").text().ends_with("n=2"));
    assert_eq!(b.seen().len(), 1);
}

#[test]
fn health_checks_send_local() {
    let certs = Certs::new();
    for (version, flag) in [(Version::V2, "v2"), (Version::V1, "v1")] {
        let mut o = Opts::new(Serve::Http);
        o.proxy = true;
        let b = HopBackend::start(o);
        let _tern = start_tern(
            &certs,
            b.addr,
            &[
                "--mode",
                "http",
                "--proxy-protocol",
                flag,
                "--health-check",
                "/healthz",
                "--health-interval",
                "100ms",
            ],
        );
        let seen = b.wait_conns(1);
        let h = seen[0].proxy.clone().expect("a header on the check too");
        assert_eq!(h.version, version);
        assert_eq!(h.addrs, None, "no client: LOCAL (v2) / UNKNOWN (v1)");
        if version == Version::V2 {
            assert_eq!(h.command, Command::Local);
        }
        let deadline = std::time::Instant::now() + WAIT;
        while b.seen()[0].requests.is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(b.seen()[0].requests[0].starts_with("GET /healthz "));
    }
}

#[test]
fn the_config_file_sets_it_per_pool() {
    let certs = Certs::new();
    let mut o = Opts::new(Serve::Http);
    o.proxy = true;
    let b = HopBackend::start(o);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("tern.toml");
    let write = |pp: &str| {
        std::fs::write(
            &conf,
            format!(
                "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n\
                 [[pool]]\nname = \"web\"\nbackends = [\"{}\"]\nproxy_protocol = \"{pp}\"\n",
                certs.cert.display(),
                certs.key.display(),
                b.addr
            ),
        )
        .unwrap()
    };
    write("v1");
    let c = conf.display().to_string();
    let tern = Tern::start(&["--config", &c, "--workers", "1", "--mode", "http"]);
    let mut s = connect(tern.addr(), &certs.client(rustls::DEFAULT_VERSIONS)).unwrap();
    assert_eq!(get(&mut s, "/").status, 200);
    assert_eq!(
        b.wait_conns(1)[0].proxy.as_ref().unwrap().version,
        Version::V1
    );
    write("v3");
    let (st, err) = run_tern(&["check", "--config", &c]);
    assert_eq!(st.code(), Some(2));
    assert!(
        err.contains("tern.toml:8: proxy_protocol: 'v3' is not v1 or v2"),
        "{err}"
    );
}

#[test]
fn v2_carries_a_verified_client_certificate() {
    use rustls::pki_types::pem::PemObject;
    let certs = Certs::new();
    let clients = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let alice = clients.leaf(dir.path(), "alice", &["alice.example"], EC);
    let mut o = Opts::new(Serve::Echo);
    o.proxy = true;
    let b = HopBackend::start(o);
    let ca = clients.pem_path().display().to_string();
    let tern = start_tern(
        &certs,
        b.addr,
        &[
            "--proxy-protocol",
            "v2",
            "--client-ca",
            &ca,
            "--client-auth",
            "optional",
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca.clone()).unwrap();
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&alice.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&alice.key).unwrap();
    let with_cert = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    );
    for cfg in [with_cert, certs.client(rustls::DEFAULT_VERSIONS)] {
        let mut s = connect(tern.addr(), &cfg).unwrap();
        s.write_all(b"x").unwrap();
        s.flush().unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).unwrap();
    }
    let seen = b.wait_conns(2);
    let ssl = seen[0].proxy.clone().unwrap().tlvs.ssl.unwrap();
    assert!(ssl.client_verified(), "{ssl:?}");
    assert_eq!(ssl.cn.as_deref(), Some("alice"));
    let ssl = seen[1].proxy.clone().unwrap().tlvs.ssl.unwrap();
    assert!(!ssl.client_verified() && ssl.cn.is_none(), "{ssl:?}");
}
