//! Client certificates through tern's handshake driver, in memory against rustls' client:
//! required and optional, revoked and foreign certificates refused with the right alert, the
//! identity the session reports, per-certificate settings chosen by the server name, and
//! resumption (which keeps the identity, and never crosses a change of CA or CRL).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore};

use super::certs::{CertEntry, CertStore};
use super::client_auth::{ClientAuth, ClientAuthMode};
use super::identity::ClientCert;
use super::session::{Established, Step, TlsError};
use super::tickets::MasterSecret;
use super::{certs, provider, ServerTls, TlsSettings};

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn issuer(cn: &str) -> Issuer {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    Issuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate: its chain and key, for a rustls client.
struct Client {
    der: CertificateDer<'static>,
    key: rcgen::KeyPair,
    serial: u64,
}

fn client_cert(ca: &Issuer, cn: &str, serial: u64) -> Client {
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
    let cert = params.signed_by(&key, ca).unwrap();
    Client {
        der: cert.der().clone(),
        key,
        serial,
    }
}

fn crl(ca: &Issuer, revoked: &[u64]) -> rustls::pki_types::CertificateRevocationListDer<'static> {
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|&s| rcgen::RevokedCertParams {
                serial_number: s.into(),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(ca).unwrap().der().clone()
}

fn auth(ca: &Issuer, revoked: Option<&[u64]>, mode: ClientAuthMode) -> Arc<ClientAuth> {
    let crls = revoked.map(|r| vec![crl(ca, r)]).unwrap_or_default();
    Arc::new(
        ClientAuth::from_der(
            vec![ca.der().clone()],
            crls,
            mode,
            "test CA".into(),
            &provider(),
        )
        .unwrap(),
    )
}

/// A server certificate for `names` (self-signed), with a client-auth setting.
fn entry(
    names: &[&str],
    client_auth: Option<Arc<ClientAuth>>,
) -> (CertEntry, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let ck = certs::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        &provider(),
    )
    .unwrap();
    let e = CertEntry {
        names: certs::names(&ck),
        key: ck,
        source: names[0].into(),
        client_auth,
    };
    (e, cert.der().clone())
}

struct Server {
    tls: ServerTls,
    roots: RootCertStore,
}

fn server(
    entries: Vec<(CertEntry, CertificateDer<'static>)>,
    master: &Arc<MasterSecret>,
) -> Server {
    let mut roots = RootCertStore::empty();
    let mut list = Vec::new();
    for (e, der) in entries {
        roots.add(der).unwrap();
        list.push(e);
    }
    let settings = TlsSettings {
        tickets: Some(master.clone()),
        ..TlsSettings::new(CertStore::new(list).unwrap())
    };
    Server {
        tls: ServerTls::new(&settings, None).unwrap(),
        roots,
    }
}

fn client_config(
    roots: &RootCertStore,
    version: &'static rustls::SupportedProtocolVersion,
    cert: Option<&Client>,
) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone());
    Arc::new(match cert {
        Some(c) => b
            .with_client_auth_cert(
                vec![c.der.clone()],
                PrivateKeyDer::Pkcs8(c.key.serialize_der().into()),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// How a handshake ended: tern's session or its error, and what the client saw.
struct Outcome {
    server: Result<Established, TlsError>,
    client: Result<(), rustls::Error>,
}

fn handshake(server: &ServerTls, cfg: &Arc<ClientConfig>, name: &str) -> Outcome {
    handshake_in(server, cfg, name, usize::MAX)
}

/// [`handshake`], the client's bytes reaching tern at most `chunk` at a time.
fn handshake_in(server: &ServerTls, cfg: &Arc<ClientConfig>, name: &str, chunk: usize) -> Outcome {
    let mut client =
        ClientConnection::new(cfg.clone(), ServerName::try_from(name.to_string()).unwrap())
            .unwrap();
    let mut accepting = server.accept().unwrap();
    let mut inbox = Vec::new();
    let mut wire = Vec::new();
    let mut out = vec![0u8; 64 * 1024];
    let deliver = |client: &mut ClientConnection, mut bytes: &[u8]| -> Result<(), rustls::Error> {
        while !bytes.is_empty() {
            client.read_tls(&mut bytes).unwrap();
            client.process_new_packets()?;
        }
        Ok(())
    };
    loop {
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let n = wire.len().min(chunk);
        inbox.extend(wire.drain(..n));
        match accepting.step(&mut inbox, &mut out) {
            Ok((consumed, step)) => {
                inbox.drain(..consumed);
                match step {
                    Step::Send(n) => {
                        if let Err(e) = deliver(&mut client, &out[..n]) {
                            return Outcome {
                                server: Err(TlsError::Protocol(rustls::Error::General(
                                    "client failed".into(),
                                ))),
                                client: Err(e),
                            };
                        }
                    }
                    Step::NeedMore => assert!(!wire.is_empty() || client.wants_write(), "stalled"),
                    Step::Done => break,
                }
            }
            Err(refusal) => {
                let client = deliver(&mut client, &out[..refusal.send]);
                return Outcome {
                    server: Err(refusal.error),
                    client,
                };
            }
        }
    }
    Outcome {
        server: accepting.finish(),
        client: Ok(()),
    }
}

fn alert(o: &Outcome) -> Option<AlertDescription> {
    match &o.client {
        Err(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

fn established(o: Outcome) -> Established {
    match o.server {
        Ok(s) => s,
        Err(e) => panic!("refused: {e} (client: {:?})", o.client),
    }
}

const V13: &rustls::SupportedProtocolVersion = &rustls::version::TLS13;
const V12: &rustls::SupportedProtocolVersion = &rustls::version::TLS12;

#[test]
fn required_accepts_a_good_certificate_and_reports_its_identity() {
    let ca = issuer("client CA");
    let alice = client_cert(&ca, "alice", 10);
    let master = Arc::new(MasterSecret::random().unwrap());
    let s = server(
        vec![entry(
            &["localhost"],
            Some(auth(&ca, None, ClientAuthMode::Required)),
        )],
        &master,
    );
    for v in [V13, V12] {
        let cfg = client_config(&s.roots, v, Some(&alice));
        let session = established(handshake(&s.tls, &cfg, "localhost"));
        let id = session.info.client_cert.verified().expect("verified");
        assert_eq!(id.subject, "O=Tern Tests,CN=alice");
        assert_eq!(id.cn.as_deref(), Some("alice"));
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &alice.der);
        assert_eq!(&id.fingerprint_sha256[..], want.as_ref());
    }
}

#[test]
fn required_refuses_no_certificate_a_foreign_one_and_a_revoked_one() {
    let ca = issuer("client CA");
    let other = issuer("another CA");
    let good = client_cert(&ca, "good", 1);
    let revoked = client_cert(&ca, "revoked", 2);
    let stranger = client_cert(&other, "stranger", 3);
    let master = Arc::new(MasterSecret::random().unwrap());
    let setting = auth(&ca, Some(&[revoked.serial]), ClientAuthMode::Required);
    let s = server(vec![entry(&["localhost"], Some(setting))], &master);
    let try_with =
        |v, c: Option<&Client>| handshake(&s.tls, &client_config(&s.roots, v, c), "localhost");

    let o = try_with(V13, None);
    assert!(o.server.is_err());
    assert_eq!(alert(&o), Some(AlertDescription::CertificateRequired));
    let o = try_with(V12, None);
    assert!(o.server.is_err());
    assert!(alert(&o).is_some(), "{:?}", o.client);
    for v in [V13, V12] {
        let o = try_with(v, Some(&revoked));
        assert!(o.server.is_err());
        assert_eq!(alert(&o), Some(AlertDescription::CertificateRevoked));
        let o = try_with(v, Some(&stranger));
        assert!(o.server.is_err());
        assert_eq!(alert(&o), Some(AlertDescription::UnknownCA));
        assert!(established(try_with(v, Some(&good)))
            .info
            .client_cert
            .verified()
            .is_some());
    }
}

#[test]
fn optional_lets_a_client_without_a_certificate_through_marked_absent() {
    let ca = issuer("client CA");
    let alice = client_cert(&ca, "alice", 1);
    let stranger = client_cert(&issuer("another CA"), "stranger", 2);
    let master = Arc::new(MasterSecret::random().unwrap());
    let s = server(
        vec![entry(
            &["localhost"],
            Some(auth(&ca, None, ClientAuthMode::Optional)),
        )],
        &master,
    );
    for v in [V13, V12] {
        let none = established(handshake(
            &s.tls,
            &client_config(&s.roots, v, None),
            "localhost",
        ));
        assert_eq!(none.info.client_cert, ClientCert::Absent);
        let cfg = client_config(&s.roots, v, Some(&alice));
        let with = established(handshake(&s.tls, &cfg, "localhost"));
        assert!(with.info.client_cert.verified().is_some());
        // A certificate that does not verify is refused, optional or not.
        let o = handshake(
            &s.tls,
            &client_config(&s.roots, v, Some(&stranger)),
            "localhost",
        );
        assert_eq!(alert(&o), Some(AlertDescription::UnknownCA));
    }
    // Without client authentication configured, nothing is asked.
    let plain = server(vec![entry(&["localhost"], None)], &master);
    let cfg = client_config(&plain.roots, V13, Some(&alice));
    let s = established(handshake(&plain.tls, &cfg, "localhost"));
    assert_eq!(s.info.client_cert, ClientCert::NotRequested);
}

#[test]
fn each_certificate_brings_its_own_setting_chosen_by_server_name() {
    let ca = issuer("client CA");
    let alice = client_cert(&ca, "alice", 1);
    let master = Arc::new(MasterSecret::random().unwrap());
    let s = server(
        vec![
            entry(&["public.test"], None),
            entry(
                &["api.test"],
                Some(auth(&ca, None, ClientAuthMode::Required)),
            ),
        ],
        &master,
    );
    for v in [V13, V12] {
        let anonymous = client_config(&s.roots, v, None);
        let with_cert = client_config(&s.roots, v, Some(&alice));
        let public = established(handshake(&s.tls, &anonymous, "public.test"));
        assert_eq!(public.info.client_cert, ClientCert::NotRequested);
        let o = handshake(&s.tls, &anonymous, "api.test");
        assert!(o.server.is_err(), "api.test requires a certificate");
        let api = established(handshake(&s.tls, &with_cert, "api.test"));
        assert!(api.info.client_cert.verified().is_some());
        assert_eq!(api.info.sni.as_deref(), Some("api.test"));
        // The ClientHello arriving a few bytes at a time: the choice waits for all of it.
        let o = handshake_in(&s.tls, &anonymous, "api.test", 7);
        assert!(
            o.server.is_err(),
            "api.test requires a certificate, trickled too"
        );
        let api = established(handshake_in(&s.tls, &with_cert, "api.test", 7));
        assert!(api.info.client_cert.verified().is_some());
        let public = established(handshake_in(&s.tls, &anonymous, "public.test", 3));
        assert_eq!(public.info.client_cert, ClientCert::NotRequested);
    }
}

#[test]
fn twins_with_different_settings_are_refused() {
    // An ECDSA and an RSA certificate for one name: which one a client gets depends on its
    // signature schemes, which must not decide whether it has to show a certificate.
    let ca = issuer("client CA");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let rsa = certs::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        &provider(),
    )
    .unwrap();
    let (ec, _) = entry(&["x.test"], None);
    let twin = CertEntry {
        names: certs::names(&rsa),
        key: rsa,
        source: "rsa.pem".into(),
        client_auth: Some(auth(&ca, None, ClientAuthMode::Required)),
    };
    let e = CertStore::new(vec![ec, twin]).unwrap_err();
    assert!(e.contains("x.test") && e.contains("rsa.pem"), "{e}");
    assert!(e.contains("client certificate"), "{e}");
}

#[test]
fn resumption_keeps_the_identity_but_not_across_a_new_crl() {
    let ca = issuer("client CA");
    let alice = client_cert(&ca, "alice", 7);
    let master = Arc::new(MasterSecret::random().unwrap());
    for v in [V13, V12] {
        let before = server(
            vec![entry(
                &["localhost"],
                Some(auth(&ca, Some(&[]), ClientAuthMode::Required)),
            )],
            &master,
        );
        let cfg = client_config(&before.roots, v, Some(&alice));
        let first = established(handshake(&before.tls, &cfg, "localhost"));
        assert!(!first.info.resumed);
        let again = established(handshake(&before.tls, &cfg, "localhost"));
        assert!(again.info.resumed, "{v:?}: resumes");
        assert_eq!(
            again.info.client_cert, first.info.client_cert,
            "the identity comes back with the session"
        );
        // The CRL now revokes alice: the same server certificate and ticket secret (a reload),
        // another client-auth setting. The old ticket must not resume around the new list.
        let mut store_entries = Vec::new();
        let (e, _) = entry(
            &["localhost"],
            Some(auth(&ca, Some(&[7]), ClientAuthMode::Required)),
        );
        store_entries.push(CertEntry {
            key: before.tls.0.store.entries()[0].key.clone(),
            ..e
        });
        let settings = TlsSettings {
            tickets: Some(master.clone()),
            ..TlsSettings::new(CertStore::new(store_entries).unwrap())
        };
        let after = ServerTls::new(&settings, Some(&before.tls)).unwrap();
        let o = handshake(&after, &cfg, "localhost");
        assert_eq!(
            alert(&o),
            Some(AlertDescription::CertificateRevoked),
            "{v:?}"
        );
    }
}
