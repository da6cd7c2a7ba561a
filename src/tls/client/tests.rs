//! The client handshake and record layer against an in-memory rustls server: verification,
//! ALPN, resumption through session tickets that arrive after the hand-over, client
//! certificates, and data both ways.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::*;
use crate::tls::{RxEvent, Step};

struct Pki {
    ca: CertificateDer<'static>,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        Pki {
            ca: issuer.der().clone(),
            issuer,
        }
    }

    fn leaf(&self, names: &[&str], cn: &str) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        crate::tls::certs::from_der(vec![cert.der().clone()], der, &crate::tls::provider()).unwrap()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut r = RootCertStore::empty();
        r.add(self.ca.clone()).unwrap();
        Arc::new(r)
    }
}

fn server_config(
    key: Arc<CertifiedKey>,
    client_ca: Option<Arc<RootCertStore>>,
) -> Arc<ServerConfig> {
    let b = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap();
    let b = match client_ca {
        Some(roots) => b.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, crate::tls::provider())
                .build()
                .unwrap(),
        ),
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn settings(verify: Verify) -> ClientTlsSettings {
    ClientTlsSettings {
        verify,
        roots_from: "test".into(),
        client_cert: None,
        alpn: None,
    }
}

/// Runs a handshake between `c` and `s` in memory. `Err` is the client's failure.
fn handshake(
    mut c: Connecting,
    s: &mut ServerConnection,
) -> Result<(Established, Vec<u8>), TlsError> {
    let mut incoming: Vec<u8> = Vec::new();
    let mut out = vec![0u8; 64 * 1024];
    for _ in 0..20 {
        let (used, step) = match c.step(&mut incoming, &mut out) {
            Ok(x) => x,
            Err(e) => {
                let n = c.alert(&mut out);
                assert!(n > 0, "an alert tells the server why");
                return Err(e);
            }
        };
        incoming.drain(..used);
        match step {
            Step::Send(n) => {
                s.read_tls(&mut &out[..n]).unwrap();
                if let Err(e) = s.process_new_packets() {
                    return Err(TlsError::Protocol(e));
                }
            }
            Step::NeedMore => {}
            Step::Done => return Ok((c.finish()?, incoming)),
        }
        while s.wants_write() {
            s.write_tls(&mut incoming).unwrap();
        }
    }
    panic!("handshake did not finish");
}

/// Opens every record in `wire` on the client side; the application data.
fn open_all(est: &mut Established, mut wire: Vec<u8>) -> Vec<u8> {
    let mut data = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let (n, ev) = est.rx.next(&mut wire[at..], &est.control).unwrap().unwrap();
        if let RxEvent::Data(r) = ev {
            data.extend_from_slice(&wire[at + r.start..at + r.end]);
        }
        at += n;
    }
    data
}

fn exchange(est: &mut Established, s: &mut ServerConnection, leftover: Vec<u8>) {
    // The server's tickets (TLS 1.3: sent once tern's Finished arrived) and an answer.
    s.writer().write_all(b"pong").unwrap();
    let mut wire = leftover;
    while s.wants_write() {
        s.write_tls(&mut wire).unwrap();
    }
    assert_eq!(open_all(est, wire), b"pong");
    let mut out = vec![0u8; 1024];
    let (taken, n) = est.tx.seal_data(b"ping", &mut out, &est.control).unwrap();
    assert_eq!(taken, 4);
    s.read_tls(&mut &out[..n]).unwrap();
    s.process_new_packets().unwrap();
    let mut got = [0u8; 4];
    s.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

#[test]
fn verifies_resumes_through_tickets_and_carries_data() {
    let pki = Pki::new();
    let scfg = server_config(pki.leaf(&["backend.test"], "backend"), None);
    let tls = ClientTls::new(&settings(Verify::Roots(pki.roots())), true).unwrap();
    for round in 0..2 {
        let mut s = ServerConnection::new(scfg.clone()).unwrap();
        let (mut est, rest) = handshake(tls.connect("backend.test").unwrap(), &mut s).unwrap();
        assert_eq!(est.info.version, "TLSv1.3");
        assert_eq!(est.info.sni.as_deref(), Some("backend.test"));
        assert_eq!(est.info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(s.server_name(), Some("backend.test"));
        // The second connection resumes with a ticket from the first, which only rustls'
        // kernel connection could have stored.
        assert_eq!(est.info.resumed, round == 1, "round {round}");
        exchange(&mut est, &mut s, rest);
    }
}

#[test]
fn another_worker_config_does_not_resume() {
    let pki = Pki::new();
    let scfg = server_config(pki.leaf(&["backend.test"], "backend"), None);
    let st = settings(Verify::Roots(pki.roots()));
    let first = ClientTls::new(&st, true).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let (mut est, rest) = handshake(first.connect("backend.test").unwrap(), &mut s).unwrap();
    exchange(&mut est, &mut s, rest);
    let other = ClientTls::new(&st, true).unwrap();
    let mut s = ServerConnection::new(scfg).unwrap();
    let (est, _) = handshake(other.connect("backend.test").unwrap(), &mut s).unwrap();
    assert!(!est.info.resumed, "each worker's cache is its own");
}

#[test]
fn wrong_name_or_wrong_ca_fails_in_the_handshake() {
    let pki = Pki::new();
    let scfg = server_config(pki.leaf(&["backend.test"], "backend"), None);
    let tls = ClientTls::new(&settings(Verify::Roots(pki.roots())), true).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let e = handshake(tls.connect("other.test").unwrap(), &mut s)
        .err()
        .unwrap();
    assert!(e.to_string().contains("certificate"), "{e}");
    let stranger = Pki::new();
    let tls = ClientTls::new(&settings(Verify::Roots(stranger.roots())), true).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let e = handshake(tls.connect("backend.test").unwrap(), &mut s)
        .err()
        .unwrap();
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    // Insecure takes either.
    let tls = ClientTls::new(&settings(Verify::Insecure), true).unwrap();
    let mut s = ServerConnection::new(scfg).unwrap();
    assert!(handshake(tls.connect("other.test").unwrap(), &mut s).is_ok());
}

#[test]
fn ip_names_send_no_sni_and_check_the_ip_san() {
    let pki = Pki::new();
    let scfg = server_config(pki.leaf(&["127.0.0.1"], "backend"), None);
    let tls = ClientTls::new(&settings(Verify::Roots(pki.roots())), true).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let (est, _) = handshake(tls.connect("127.0.0.1").unwrap(), &mut s).unwrap();
    assert_eq!(s.server_name(), None);
    assert_eq!(est.info.sni, None);
    let mut s = ServerConnection::new(scfg).unwrap();
    assert!(handshake(tls.connect("127.0.0.2").unwrap(), &mut s).is_err());
}

#[test]
fn presents_the_client_certificate() {
    let pki = Pki::new();
    let client_pki = Pki::new();
    let scfg = server_config(
        pki.leaf(&["backend.test"], "backend"),
        Some(client_pki.roots()),
    );
    let mut st = settings(Verify::Roots(pki.roots()));
    let tls = ClientTls::new(&st, true).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    // Without one, the server refuses.
    assert!(handshake(tls.connect("backend.test").unwrap(), &mut s).is_err());
    st.client_cert = Some(client_pki.leaf(&["tern.test"], "tern-proxy"));
    let tls = ClientTls::new(&st, true).unwrap();
    let mut s = ServerConnection::new(scfg).unwrap();
    let (mut est, rest) = handshake(tls.connect("backend.test").unwrap(), &mut s).unwrap();
    let shown = s.peer_certificates().unwrap();
    assert_eq!(shown.len(), 1);
    exchange(&mut est, &mut s, rest);
}
