//! Client certificates (mTLS) end to end, against the real binary: required, optional,
//! revoked and foreign certificates (rustls clients, and `openssl s_client` / `curl` with
//! `-cert`/`--cert` where a third-party client matters), the identity headers a backend gets in
//! http mode (exact values; clients' copies always removed), routes that require a certificate
//! in both modes, per-certificate settings chosen by SNI, and a CRL update picked up by SIGHUP.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::http::{read_response, Response, TestBackend};
use common::pki::s_client;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A client CA on disk (`ca.pem`) with a CRL file (`clients.crl`) it signs, and the client
/// certificates it issues.
struct ClientPki {
    issuer: Issuer,
    dir: tempfile::TempDir,
    crl_number: std::cell::Cell<u64>,
}

/// A client certificate: DER (for the fingerprint), PEM files (for openssl and curl).
struct ClientCert {
    der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
    key_der: Vec<u8>,
}

impl ClientPki {
    fn new(cn: &str) -> ClientPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let issuer = Issuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        let pki = ClientPki {
            issuer,
            dir,
            crl_number: std::cell::Cell::new(0),
        };
        pki.revoke(&[]);
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn crl(&self) -> PathBuf {
        self.dir.path().join("clients.crl")
    }

    /// A certificate with subject `CN=<cn>, O=Tern Tests` and this serial number.
    fn client(&self, cn: &str, serial: u64) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Tern Tests");
        params.serial_number = Some(serial.into());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let name = format!("client-{serial}");
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        ClientCert {
            der: cert.der().clone(),
            cert: cert_path,
            key: key_path,
            key_der: key.serialize_der(),
        }
    }

    /// Writes a new CRL revoking `serials` (in one rename, as a deploy tool would).
    fn revoke(&self, serials: &[u64]) {
        let n = self.crl_number.get() + 1;
        self.crl_number.set(n);
        let list = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(n),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&s| rcgen::RevokedCertParams {
                    serial_number: s.into(),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap();
        let tmp = self.dir.path().join("clients.crl.new");
        std::fs::write(&tmp, list.pem().unwrap()).unwrap();
        std::fs::rename(&tmp, self.crl()).unwrap();
    }
}

/// A rustls client trusting `certs`' CA, presenting `cert` if given.
fn client_config(certs: &Certs, cert: Option<&ClientCert>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(certs.ca.clone()).unwrap();
    let b = ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match cert {
        Some(c) => b
            .with_client_auth_cert(
                vec![c.der.clone()],
                PrivateKeyDer::Pkcs8(c.key_der.clone().into()),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

fn sha256_hex(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// tcp mode: a round trip through the echo backend, or why the connection failed.
fn echo(addr: SocketAddr, cfg: &Arc<ClientConfig>, name: &str) -> Result<(), String> {
    let mut s = connect_as(addr, cfg, name).map_err(|e| e.to_string())?;
    s.write_all(b"ping").map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut got = [0u8; 4];
    s.read_exact(&mut got).map_err(|e| e.to_string())?;
    assert_eq!(&got, b"ping");
    Ok(())
}

/// http mode: one request on a new connection and its response, or why it failed.
fn request(addr: SocketAddr, cfg: &Arc<ClientConfig>, raw: &str) -> Result<Response, String> {
    let s = connect(addr, cfg).map_err(|e| e.to_string())?;
    let mut c = BufReader::new(s);
    c.get_mut()
        .write_all(raw.as_bytes())
        .map_err(|e| e.to_string())?;
    c.get_mut().flush().map_err(|e| e.to_string())?;
    read_response(&mut c, false).map_err(|e| e.to_string())
}

fn get(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str) -> Result<Response, String> {
    request(
        addr,
        cfg,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
}

/// The header lines the backend received (its `/echo` body), lower-cased names.
fn received(resp: &Response) -> Vec<(String, String)> {
    resp.text()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn start(certs: &Certs, backend: SocketAddr, extra: &[&str]) -> Tern {
    start_tern(certs, backend, extra)
}

#[test]
fn tcp_mode_required_accepts_the_ca_s_clients_only() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let other = ClientPki::new("another CA");
    let good = pki.client("alice", 1);
    let revoked = pki.client("mallory", 2);
    let stranger = other.client("eve", 3);
    pki.revoke(&[2]);
    let tern = start(
        &certs,
        echo_backend(),
        &[
            "--client-ca",
            &p(&pki.ca()),
            "--client-crl",
            &p(&pki.crl()),
            "--metrics",
            "127.0.0.1:0",
            "-v",
        ],
    );
    let addr = tern.addr();
    echo(addr, &client_config(&certs, Some(&good)), "localhost").unwrap();
    let e = read_refusal(addr, &client_config(&certs, None), "localhost");
    assert!(e.contains("CertificateRequired"), "{e}");
    let e = read_refusal(addr, &client_config(&certs, Some(&revoked)), "localhost");
    assert!(e.contains("CertificateRevoked"), "{e}");
    let e = read_refusal(addr, &client_config(&certs, Some(&stranger)), "localhost");
    assert!(e.contains("UnknownCA"), "{e}");
    // Three refusals, counted under their own reason.
    assert_eq!(client_cert_failures(&tern, 3), 3);

    // An independent client: openssl s_client, with and without a certificate, reading until
    // the server closes (-ign_eof), from a backend that greets and closes.
    let greeter = backend(|mut s| {
        let _ = s.write_all(b"hello from the backend\n");
    });
    let greeting = start(&certs, greeter, &["--client-ca", &p(&pki.ca())]);
    // The chain file holds the server's CA too.
    let ca = p(&certs.cert);
    let openssl = |extra: &[&str]| {
        let base = ["-CAfile", &ca, "-servername", "localhost", "-ign_eof"];
        s_client(greeting.addr(), &[&base[..], extra].concat())
    };
    let without = openssl(&[]);
    assert!(without.contains("alert certificate required"), "{without}");
    assert!(!without.contains("hello from the backend"), "{without}");
    let with = openssl(&["-cert", &p(&good.cert), "-key", &p(&good.key)]);
    assert!(with.contains("hello from the backend"), "{with}");
    assert!(!with.contains("alert"), "{with}");
    assert!(
        tern.wait_log("handshake failed", WAIT),
        "{}",
        tern.log_text()
    );
    // The worker carried on through every refusal.
    echo(addr, &client_config(&certs, Some(&good)), "localhost").unwrap();
}

#[test]
fn tcp_mode_optional_lets_clients_without_a_certificate_through() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let good = pki.client("alice", 1);
    let stranger = ClientPki::new("another CA").client("eve", 2);
    let tern = start(
        &certs,
        echo_backend(),
        &["--client-ca", &p(&pki.ca()), "--client-auth", "optional"],
    );
    echo(tern.addr(), &client_config(&certs, None), "localhost").unwrap();
    echo(
        tern.addr(),
        &client_config(&certs, Some(&good)),
        "localhost",
    )
    .unwrap();
    let e = read_refusal(
        tern.addr(),
        &client_config(&certs, Some(&stranger)),
        "localhost",
    );
    assert!(
        e.contains("UnknownCA"),
        "a bad certificate is still refused: {e}"
    );
}

#[test]
fn http_mode_tells_the_backend_who_the_client_is() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let b = TestBackend::start("A");
    let tern = start(
        &certs,
        b.addr,
        &[
            "--mode",
            "http",
            "--client-ca",
            &p(&pki.ca()),
            "--client-auth",
            "optional",
        ],
    );
    let seen = received(&get(tern.addr(), &client_config(&certs, Some(&alice)), "/echo").unwrap());
    assert_eq!(header(&seen, "x-client-verify"), ["SUCCESS"]);
    assert_eq!(header(&seen, "x-client-subject"), ["O=Tern Tests,CN=alice"]);
    assert_eq!(
        header(&seen, "x-client-fingerprint"),
        [sha256_hex(&alice.der).as_str()]
    );
    assert!(header(&seen, "x-forwarded-client-cert").is_empty());

    let seen = received(&get(tern.addr(), &client_config(&certs, None), "/echo").unwrap());
    assert_eq!(header(&seen, "x-client-verify"), ["NONE"]);
    assert!(header(&seen, "x-client-subject").is_empty());
    assert!(header(&seen, "x-client-fingerprint").is_empty());

    // curl, a third-party client, with --cert/--key: the same identity arrives.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&certs.cert)
        .arg("--cert")
        .arg(&alice.cert)
        .arg("--key")
        .arg(&alice.key)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", tern.addr().port()))
        .arg(format!("https://localhost:{}/echo", tern.addr().port()))
        .output()
        .expect("curl (apt install curl)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\r\nX-Client-Verify: SUCCESS\r\n"), "{body}");
    assert!(
        body.contains(&format!(
            "\r\nX-Client-Fingerprint: {}\r\n",
            sha256_hex(&alice.der)
        )),
        "{body}"
    );
}

#[test]
fn xfcc_carries_the_identity_envoy_style() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let b = TestBackend::start("A");
    let tern = start(
        &certs,
        b.addr,
        &[
            "--mode",
            "http",
            "--client-ca",
            &p(&pki.ca()),
            "--forward-client-cert",
            "xfcc",
        ],
    );
    let seen = received(&get(tern.addr(), &client_config(&certs, Some(&alice)), "/echo").unwrap());
    assert_eq!(
        header(&seen, "x-forwarded-client-cert"),
        [format!(
            "Hash={};Subject=\"O=Tern Tests,CN=alice\"",
            sha256_hex(&alice.der)
        )
        .as_str()]
    );
    assert!(header(&seen, "x-client-verify").is_empty());
}

#[test]
fn spoofed_identity_headers_never_reach_the_backend() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let b = TestBackend::start("A");
    let spoofed = "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Client-Verify: SUCCESS\r\n\
                   X-Client-Subject: CN=admin\r\nx-client-fingerprint: deadbeefcafe\r\n\
                   X-Forwarded-Client-Cert: Hash=deadbeefcafe;Subject=\"CN=admin\"\r\n\r\n";
    let ca = p(&pki.ca());
    let setups: [&[&str]; 4] = [
        &[],
        &["--trust-forwarded"],
        &["--client-ca", &ca, "--client-auth", "optional"],
        &[
            "--client-ca",
            &ca,
            "--client-auth",
            "optional",
            "--trust-forwarded",
            "--forward-client-cert",
            "x-client,xfcc",
        ],
    ];
    for extra in setups {
        let args: Vec<&str> = ["--mode", "http"].iter().chain(extra).copied().collect();
        let tern = start(&certs, b.addr, &args);
        let mtls = extra.contains(&"--client-ca");
        for cert in [None, Some(&alice)] {
            let resp = request(tern.addr(), &client_config(&certs, cert), spoofed).unwrap();
            let text = resp.text();
            assert!(
                !text.contains("CN=admin") && !text.contains("deadbeefcafe"),
                "{extra:?}: {text}"
            );
            let seen = received(&resp);
            let verify = header(&seen, "x-client-verify");
            match (mtls, cert.is_some()) {
                (false, _) => assert!(verify.is_empty(), "{extra:?}: {text}"),
                (true, false) => assert_eq!(verify, ["NONE"], "{extra:?}"),
                (true, true) => assert_eq!(verify, ["SUCCESS"], "{extra:?}"),
            }
        }
    }
}

#[test]
fn a_subject_with_control_characters_cannot_inject_a_header() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "x\r\nX-Evil: 1");
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    let evil = ClientCert {
        der: cert.der().clone(),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        key_der: key.serialize_der(),
    };
    let b = TestBackend::start("A");
    let tern = start(
        &certs,
        b.addr,
        &["--mode", "http", "--client-ca", &p(&pki.ca())],
    );
    let resp = get(tern.addr(), &client_config(&certs, Some(&evil)), "/echo").unwrap();
    let seen = received(&resp);
    assert!(header(&seen, "x-evil").is_empty(), "{}", resp.text());
    assert_eq!(header(&seen, "x-client-subject"), ["CN=x\\0D\\0AX-Evil: 1"]);
}

/// A config file: one pool to `backend`, the server certificate with `cert_extra`, a route for
/// `/admin` with `client_auth = "required"` and one for everything else.
fn config(dir: &Path, certs: &Certs, backend: SocketAddr, cert_extra: &str) -> PathBuf {
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\n\
         [[cert]]\ncert = \"{}\"\nkey = \"{}\"\n{cert_extra}\n\
         [[pool]]\nname = \"web\"\nbackends = [\"{backend}\"]\n\
         [[route]]\npool = \"web\"\n\
         [[route]]\npath = \"/admin\"\npool = \"web\"\nclient_auth = \"required\"\n",
        p(&certs.cert),
        p(&certs.key)
    );
    let path = dir.join("tern.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_route_can_require_a_certificate_the_connection_made_optional() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let b = TestBackend::start("A");
    let dir = tempfile::tempdir().unwrap();
    let cert_extra = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        p(&pki.ca())
    );
    let file = config(dir.path(), &certs, b.addr, &cert_extra);
    let tern = Tern::start(&["--config", &p(&file), "--mode", "http", "--workers", "1"]);
    let anonymous = client_config(&certs, None);
    let with_cert = client_config(&certs, Some(&alice));
    assert_eq!(
        get(tern.addr(), &anonymous, "/admin/users").unwrap().status,
        403
    );
    assert_eq!(
        get(tern.addr(), &anonymous, "/public/../admin")
            .unwrap()
            .status,
        403
    );
    assert_eq!(get(tern.addr(), &anonymous, "/name").unwrap().status, 200);
    assert_eq!(
        get(tern.addr(), &with_cert, "/admin/name").unwrap().status,
        200
    );
    assert!(
        !b.requests().iter().any(|r| r.contains("/admin/users")),
        "a refused request never reaches the backend"
    );
}

#[test]
fn tcp_mode_routes_that_require_a_certificate_close_without_one() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let dir = tempfile::tempdir().unwrap();
    let cert_extra = format!(
        "client_ca = \"{}\"\nclient_auth = \"optional\"",
        p(&pki.ca())
    );
    // In tcp mode the host's broadest route decides; make it the requiring one.
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n{cert_extra}\n\
         [[pool]]\nname = \"echo\"\nbackends = [\"{}\"]\n\
         [[route]]\nhost = \"localhost\"\npool = \"echo\"\nclient_auth = \"required\"\n\
         [[route]]\npool = \"echo\"\n",
        p(&certs.cert),
        p(&certs.key),
        echo_backend()
    );
    let file = dir.path().join("tern.toml");
    std::fs::write(&file, text).unwrap();
    let tern = Tern::start(&["--config", &p(&file), "--workers", "1", "-v"]);
    echo(
        tern.addr(),
        &client_config(&certs, Some(&alice)),
        "localhost",
    )
    .unwrap();
    let e = read_refusal(tern.addr(), &client_config(&certs, None), "localhost");
    assert!(e.contains("CertificateRequired"), "{e}");
    assert!(
        tern.wait_log("requires a client certificate", WAIT),
        "{}",
        tern.log_text()
    );
}

/// `tern_tls_handshake_failures_total{reason="client_cert"}` over every series, scraped until
/// it reaches `want` (connection tasks count as they end) or the wait runs out.
fn client_cert_failures(tern: &Tern, want: u64) -> u64 {
    let log = tern.log_text();
    let rest = log
        .split("metrics on ")
        .nth(1)
        .expect("a 'metrics on' line");
    let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut s = std::net::TcpStream::connect_timeout(&addr, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let n: u64 = text
            .lines()
            .filter(|l| l.starts_with("tern_tls_handshake_failures_total{"))
            .filter(|l| l.contains("reason=\"client_cert\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Connects and reads without writing (so the server's close is a FIN, never a reset that
/// could overtake its alert): the error the alert gives. In TLS 1.3 the client's handshake
/// is over before the server judges its certificate, so the alert comes to the first read.
fn read_refusal(addr: SocketAddr, cfg: &Arc<ClientConfig>, name: &str) -> String {
    let mut s = match connect_as(addr, cfg, name) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(n) => format!("read {n} bytes"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn per_certificate_settings_are_chosen_by_server_name() {
    let ca = common::pki::Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let public = ca.leaf(dir.path(), "public", &["public.test"], common::pki::EC);
    let api = ca.leaf(dir.path(), "api", &["api.test"], common::pki::EC);
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 1);
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\n\
         [[cert]]\npem = \"{}\"\n\
         [[cert]]\npem = \"{}\"\nclient_ca = \"{}\"\n\
         [[pool]]\nname = \"echo\"\nbackends = [\"{}\"]\n",
        p(&public.pem),
        p(&api.pem),
        p(&pki.ca()),
        echo_backend()
    );
    let file = dir.path().join("tern.toml");
    std::fs::write(&file, text).unwrap();
    let tern = Tern::start(&["--config", &p(&file), "--workers", "1"]);
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let cfg = |cert: Option<&ClientCert>| {
        let b = ClientConfig::builder().with_root_certificates(roots.clone());
        Arc::new(match cert {
            Some(c) => b
                .with_client_auth_cert(
                    vec![c.der.clone()],
                    PrivateKeyDer::Pkcs8(c.key_der.clone().into()),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        })
    };
    echo(tern.addr(), &cfg(None), "public.test").unwrap();
    let e = read_refusal(tern.addr(), &cfg(None), "api.test");
    assert!(e.contains("CertificateRequired"), "{e}");
    echo(tern.addr(), &cfg(Some(&alice)), "api.test").unwrap();
    // openssl sees a certificate request only for api.test.
    let ask = |name: &str| {
        s_client(tern.addr(), &["-servername", name])
            .contains("Acceptable client certificate CA names")
    };
    assert!(ask("api.test"));
    assert!(!ask("public.test"));
}

#[test]
fn a_crl_update_is_picked_up_by_sighup() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let alice = pki.client("alice", 5);
    let tern = start(
        &certs,
        echo_backend(),
        &["--client-ca", &p(&pki.ca()), "--client-crl", &p(&pki.crl())],
    );
    // One client config throughout: it keeps its session tickets, so after the reload it
    // tries to resume — which must not get around the new list.
    let cfg = client_config(&certs, Some(&alice));
    echo(tern.addr(), &cfg, "localhost").unwrap();
    echo(tern.addr(), &cfg, "localhost").unwrap();
    pki.revoke(&[5]);
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
    let e = read_refusal(tern.addr(), &cfg, "localhost");
    assert!(e.contains("CertificateRevoked"), "{e}");
    // A list that no longer parses keeps the one in service.
    std::fs::write(
        pki.crl(),
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reload failed", WAIT), "{}", tern.log_text());
    assert!(
        tern.log_text().contains("--client-crl"),
        "{}",
        tern.log_text()
    );
    let e = read_refusal(
        tern.addr(),
        &client_config(&certs, Some(&alice)),
        "localhost",
    );
    assert!(e.contains("CertificateRevoked"), "{e}");
}

#[test]
fn bad_client_auth_flags_exit_2_with_one_line() {
    let certs = Certs::new();
    let backend = dead_addr();
    let base = tern_args(&certs, backend, &[]);
    let run = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        run_tern(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (status, err) = run(&["--client-auth", "optional"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--client-auth") && err.contains("--client-ca"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (status, err) = run(&["--client-ca", "/nonexistent/ca.pem"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--client-ca /nonexistent/ca.pem"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn tern_check_takes_the_client_certificate_flags_the_run_uses() {
    let certs = Certs::new();
    let pki = ClientPki::new("client CA");
    let dir = tempfile::tempdir().unwrap();
    // A route requiring a certificate, which only --client-ca provides.
    let file = config(dir.path(), &certs, dead_addr(), "");
    let (status, err) = run_tern(&["check", "--config", &p(&file)]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("no certificate asks clients"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["check", "--config", &p(&file), "--client-ca", &p(&pki.ca())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 asking for client certificates"), "{text}");
    let (status, err) = run_tern(&[
        "check",
        "--config",
        &p(&file),
        "--client-ca",
        &p(&pki.ca()),
        "--client-crl",
        &p(&file),
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--client-crl") && err.contains("tern.toml"),
        "{err}"
    );
}
