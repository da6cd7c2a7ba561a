//! tern's handshake driver and record layer against rustls' own client, in memory: every
//! cipher suite both versions offer, key updates both ways, close_notify, renegotiation
//! refusal, tampering, and records arriving a byte at a time.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedCipherSuite};

use super::session::{Established, RxEvent, Step, TlsError};
use super::{certs, provider, ServerTls, TlsSettings};

fn server_and_roots() -> (ServerTls, RootCertStore) {
    server_and_roots_with(true)
}

fn server_and_roots_with(tickets: bool) -> (ServerTls, RootCertStore) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ck = certs::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        &provider(),
    )
    .unwrap();
    let server = ServerTls::new(
        &TlsSettings {
            alpn: vec![b"http/1.1".to_vec()],
            tickets: tickets.then(|| Arc::new(super::tickets::MasterSecret::random().unwrap())),
            ..TlsSettings::new(certs::CertStore::single(ck))
        },
        None,
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    (server, roots)
}

fn client_config(roots: &RootCertStore, suite: SupportedCipherSuite) -> Arc<ClientConfig> {
    let version = suite.version();
    let provider = CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    };
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Bytes on the wire in both directions, and the two ends.
struct Pair {
    server: Established,
    client: ClientConnection,
    to_server: Vec<u8>,
}

fn connect(server: &ServerTls, cfg: &Arc<ClientConfig>) -> Pair {
    let mut client =
        ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut accepting = server.accept().unwrap();
    let mut inbox = Vec::new();
    let mut out = vec![0u8; 64 * 1024];
    loop {
        while client.wants_write() {
            client.write_tls(&mut inbox).unwrap();
        }
        let (consumed, step) = accepting.step(&mut inbox, &mut out).unwrap();
        inbox.drain(..consumed);
        match step {
            Step::Send(n) => deliver(&mut client, &out[..n]),
            Step::NeedMore => assert!(client.wants_write() || !inbox.is_empty(), "stalled"),
            Step::Done => break,
        }
    }
    let server = accepting.finish().unwrap();
    assert_eq!(server.info.sni.as_deref(), Some("localhost"));
    assert_eq!(server.info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    Pair {
        server,
        client,
        to_server: inbox,
    }
}

fn deliver(client: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).unwrap();
        client.process_new_packets().unwrap();
    }
}

impl Pair {
    /// Client → server: everything the client has written, opened by tern.
    fn client_to_server(&mut self) -> Result<(Vec<u8>, bool), TlsError> {
        while self.client.wants_write() {
            self.client.write_tls(&mut self.to_server).unwrap();
        }
        let (mut got, mut closed, mut at) = (Vec::new(), false, 0);
        while let Some((n, ev)) = self
            .server
            .rx
            .next(&mut self.to_server[at..], &self.server.control)?
        {
            match ev {
                RxEvent::Data(r) => {
                    got.extend_from_slice(&self.to_server[at + r.start..at + r.end])
                }
                RxEvent::Skip => {}
                RxEvent::Closed => closed = true,
            }
            at += n;
        }
        self.to_server.drain(..at);
        Ok((got, closed))
    }

    /// Server → client: `data` sealed by tern, read by the client.
    fn server_to_client(&mut self, data: &[u8]) -> Vec<u8> {
        // One record at a time: rustls' client buffers at most 16 KiB of plaintext.
        let mut out = vec![0u8; 16 * 1024 + 64];
        let (mut off, mut got) = (0, Vec::new());
        while off < data.len() {
            let (taken, n) = self
                .server
                .tx
                .seal_data(&data[off..], &mut out, &self.server.control)
                .unwrap();
            deliver(&mut self.client, &out[..n]);
            off += taken;
            let mut chunk = [0u8; 4096];
            while let Ok(k) = self.client.reader().read(&mut chunk) {
                got.extend_from_slice(&chunk[..k]);
            }
        }
        got
    }
}

fn all_suites() -> Vec<SupportedCipherSuite> {
    vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

#[test]
fn every_suite_carries_data_both_ways() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let mut p = connect(&server, &client_config(&roots, suite));
        for len in [1, 100, 16383, 16384, 16385, 100_000] {
            let d = data(len);
            let mut got = Vec::new();
            for chunk in d.chunks(30_000) {
                p.client.writer().write_all(chunk).unwrap();
                let (part, closed) = p.client_to_server().unwrap();
                assert!(!closed);
                got.extend(part);
            }
            assert!(got == d, "{suite:?} client->server {len}");
            assert!(
                p.server_to_client(&d) == d,
                "{suite:?} server->client {len}"
            );
        }
    }
}

#[test]
fn close_notify_is_seen_and_sent() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let mut p = connect(&server, &client_config(&roots, suite));
        p.client.writer().write_all(b"last words").unwrap();
        p.client.send_close_notify();
        let (got, closed) = p.client_to_server().unwrap();
        assert_eq!(
            (got.as_slice(), closed),
            (&b"last words"[..], true),
            "{suite:?}"
        );
        let mut out = [0u8; 64];
        let n = p.server.tx.seal_close_notify(&mut out).unwrap();
        deliver(&mut p.client, &out[..n]);
        let mut rest = Vec::new();
        assert_eq!(p.client.reader().read_to_end(&mut rest).unwrap(), 0);
    }
}

#[test]
fn key_updates_in_both_directions() {
    let (server, roots) = server_and_roots();
    for suite in all_suites().into_iter().filter(|s| s.tls13().is_some()) {
        let mut p = connect(&server, &client_config(&roots, suite));
        // tern updates keys from its own copy of the traffic secrets (`tls::traffic`):
        // rustls' key schedule was dropped at the hand-over.
        assert!(
            !p.server.control.borrow().keeps_rustls_schedule(),
            "{suite:?}"
        );
        for round in 0..3 {
            // The client updates its keys and asks tern to update its own.
            p.client.refresh_traffic_keys().unwrap();
            p.client.writer().write_all(b"after update").unwrap();
            let (got, _) = p.client_to_server().unwrap();
            assert_eq!(got, b"after update", "{suite:?} round {round}");
            // tern answers with its own KeyUpdate before its next data.
            assert_eq!(
                p.server_to_client(b"reply"),
                b"reply",
                "{suite:?} round {round}"
            );
        }
    }
}

/// No server connection keeps rustls' key schedule: a TLS 1.3 one has its traffic secrets, a
/// TLS 1.2 one never updates keys; resumed or not.
#[test]
fn no_server_connection_keeps_rustls_key_schedule() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let cfg = client_config(&roots, suite);
        for round in ["full", "resumed"] {
            let p = connect(&server, &cfg);
            assert_eq!(
                p.server.info.resumed,
                round == "resumed",
                "{suite:?} {round}"
            );
            assert!(
                !p.server.control.borrow().keeps_rustls_schedule(),
                "{suite:?} {round}"
            );
        }
    }
}

#[test]
fn tls12_renegotiation_is_declined_politely() {
    use super::record::{Opener, Sealer, Version, ALERT, APPLICATION_DATA, HANDSHAKE};
    let (server, roots) = server_and_roots();
    let suite = cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    let mut cfg = (*client_config(&roots, suite)).clone();
    cfg.enable_secret_extraction = true;
    let mut p = connect(&server, &Arc::new(cfg));
    // rustls' client never renegotiates; take its keys and send what one would: a
    // ClientHello as a protected handshake record.
    #[allow(deprecated)]
    let secrets = p.client.dangerous_extract_secrets().unwrap();
    let mut client_tx = Sealer::new(Version::Tls12, secrets.tx.0, &secrets.tx.1, u64::MAX).unwrap();
    let mut client_rx = Opener::new(Version::Tls12, secrets.rx.0, &secrets.rx.1, u64::MAX).unwrap();
    let mut wire = vec![0u8; 256];
    let n = client_tx
        .seal(HANDSHAKE, &[1, 0, 0, 2, 3, 3], &mut wire)
        .unwrap();
    wire.truncate(n);
    let (used, ev) = p
        .server
        .rx
        .next(&mut wire, &p.server.control)
        .unwrap()
        .unwrap();
    assert_eq!((used, ev), (n, RxEvent::Skip));
    assert!(p.server.control.borrow().reply_due());
    let mut out = vec![0u8; 256];
    let n = p
        .server
        .tx
        .seal_replies(&mut out, &p.server.control)
        .unwrap();
    let opened = client_rx.open(&mut out[..n]).unwrap().unwrap();
    assert_eq!(opened.typ, ALERT);
    assert_eq!(&out[opened.plain], &[1, 100], "warning: no_renegotiation");
    assert!(!p.server.control.borrow().reply_due());
    // And the connection carries on.
    let mut wire = vec![0u8; 256];
    let n = client_tx
        .seal(APPLICATION_DATA, b"more", &mut wire)
        .unwrap();
    let (_, ev) = p
        .server
        .rx
        .next(&mut wire[..n], &p.server.control)
        .unwrap()
        .unwrap();
    let RxEvent::Data(r) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(&wire[r], b"more");
}

#[test]
fn tampered_records_are_refused() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let mut p = connect(&server, &client_config(&roots, suite));
        p.client.writer().write_all(b"do not touch").unwrap();
        while p.client.wants_write() {
            p.client.write_tls(&mut p.to_server).unwrap();
        }
        let last = p.to_server.len() - 3;
        p.to_server[last] ^= 0x40;
        let err = p.client_to_server().unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Record(super::record::RecordError::BadRecordMac)
            ),
            "{suite:?}: {err}"
        );
    }
}

#[test]
fn records_arriving_a_byte_at_a_time() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let mut p = connect(&server, &client_config(&roots, suite));
        let d = data(20_000);
        p.client.writer().write_all(&d).unwrap();
        let mut wire = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        for byte in wire {
            buf.push(byte);
            while let Some((n, ev)) = p.server.rx.next(&mut buf, &p.server.control).unwrap() {
                if let RxEvent::Data(r) = ev {
                    got.extend_from_slice(&buf[r]);
                }
                buf.drain(..n);
            }
        }
        assert!(got == d && buf.is_empty(), "{suite:?}");
    }
}

#[test]
fn plaintext_and_unknown_records_after_the_handshake_are_refused() {
    let (server, roots) = server_and_roots();
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ] {
        let mut p = connect(&server, &client_config(&roots, suite));
        let mut ccs = vec![20, 3, 3, 0, 1, 1];
        assert!(
            p.server.rx.next(&mut ccs, &p.server.control).is_err(),
            "{suite:?} change_cipher_spec"
        );
        let mut junk = vec![99, 3, 3, 0, 20];
        junk.extend([0u8; 20]);
        assert!(
            p.server.rx.next(&mut junk, &p.server.control).is_err(),
            "{suite:?} unknown type"
        );
        let mut huge = vec![23, 3, 3, 0xff, 0xff];
        assert!(
            p.server.rx.next(&mut huge, &p.server.control).is_err(),
            "{suite:?} oversized"
        );
    }
}

#[test]
fn application_data_sent_with_the_finished_message_is_kept() {
    let (server, roots) = server_and_roots();
    for suite in all_suites() {
        let cfg = client_config(&roots, suite);
        let mut client =
            ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut accepting = server.accept().unwrap();
        let (mut inbox, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
        // The client queues its request before the handshake ends; rustls sends it right
        // after its Finished, in the same flight.
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let established = loop {
            while client.wants_write() {
                client.write_tls(&mut inbox).unwrap();
            }
            let (consumed, step) = accepting.step(&mut inbox, &mut out).unwrap();
            inbox.drain(..consumed);
            match step {
                Step::Send(n) => deliver(&mut client, &out[..n]),
                Step::NeedMore => {}
                Step::Done => break accepting.finish().unwrap(),
            }
        };
        let Established {
            mut rx,
            control,
            early,
            ..
        } = established;
        let mut got = early;
        let mut at = 0;
        while let Some((n, ev)) = rx.next(&mut inbox[at..], &control).unwrap() {
            if let RxEvent::Data(r) = ev {
                got.extend_from_slice(&inbox[at + r.start..at + r.end]);
            }
            at += n;
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n", "{suite:?}");
    }
}

/// The client's sending half of a TLS 1.3 connection taken over by hand, to send what
/// rustls' client never would.
fn take_client_tx(p: Pair) -> (Established, super::record::Sealer) {
    use super::record::{Sealer, Version};
    let Pair { server, client, .. } = p;
    #[allow(deprecated)]
    let secrets = client.dangerous_extract_secrets().unwrap();
    let sealer = Sealer::new(Version::Tls13, secrets.tx.0, &secrets.tx.1, u64::MAX).unwrap();
    (server, sealer)
}

fn tls13_pair(server: &ServerTls, roots: &RootCertStore) -> Pair {
    let mut cfg = (*client_config(roots, cipher_suite::TLS13_AES_128_GCM_SHA256)).clone();
    cfg.enable_secret_extraction = true;
    connect(server, &Arc::new(cfg))
}

/// What tern says to one sealed record: its event, or the alert it fails with.
fn feed(server: &mut Established, wire: &mut [u8]) -> Result<RxEvent, u8> {
    match server.rx.next(wire, &server.control) {
        Ok(Some((n, ev))) => {
            assert_eq!(n, wire.len());
            Ok(ev)
        }
        Ok(None) => panic!("record incomplete"),
        Err(TlsError::Record(r)) => Err(r.alert()),
        Err(e) => panic!("{e}"),
    }
}

fn seal(sealer: &mut super::record::Sealer, typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut wire = vec![0u8; payload.len() + 64];
    let n = sealer.seal(typ, payload, &mut wire).unwrap();
    wire.truncate(n);
    wire
}

#[test]
fn bad_key_updates_are_answered_with_the_alert_rfc_8446_names() {
    use super::record::{APPLICATION_DATA, HANDSHAKE};
    let (server, roots) = server_and_roots();
    // (message, alert): request_update out of range → illegal_parameter (§4.6.3); wrong
    // length → decode_error; a second message in the KeyUpdate's record → unexpected_message.
    for (msg, want) in [
        (&[24, 0, 0, 1, 2][..], 47),
        (&[24, 0, 0, 1, 255], 47),
        (&[24, 0, 0, 0], 50),
        (&[24, 0, 0, 2, 1, 0], 50),
        (&[24, 0, 0, 1, 0, 24, 0, 0, 1, 1], 10),
    ] {
        let (mut server, mut tx) = take_client_tx(tls13_pair(&server, &roots));
        let got = feed(&mut server, &mut seal(&mut tx, HANDSHAKE, msg));
        assert_eq!(got, Err(want), "{msg:?}");
    }
    // Application data between the fragments of a KeyUpdate → unexpected_message (§5.1).
    let (mut server, mut tx) = take_client_tx(tls13_pair(&server, &roots));
    assert_eq!(
        feed(&mut server, &mut seal(&mut tx, HANDSHAKE, &[24])),
        Ok(RxEvent::Skip)
    );
    let got = feed(&mut server, &mut seal(&mut tx, APPLICATION_DATA, b"GET"));
    assert_eq!(got, Err(10));
}

#[test]
fn a_key_update_split_over_records_is_honoured_and_answered_at_once() {
    use super::record::{APPLICATION_DATA, HANDSHAKE};
    let (server, roots) = server_and_roots();
    let (mut server, mut tx) = take_client_tx(tls13_pair(&server, &roots));
    for part in [&[24u8, 0][..], &[0, 1], &[1]] {
        let wire = &mut seal(&mut tx, HANDSHAKE, part);
        assert_eq!(feed(&mut server, wire), Ok(RxEvent::Skip), "{part:?}");
    }
    // tern now expects the client's next key: the old one fails (that the next key is the
    // right one, rustls' own client shows in key_updates_in_both_directions).
    let got = feed(
        &mut server,
        &mut seal(&mut tx, APPLICATION_DATA, b"old key"),
    );
    assert_eq!(got, Err(20), "bad_record_mac");
    // update_requested made tern's own KeyUpdate due at once, without waiting for data.
    assert!(server.control.borrow().reply_due());
    let mut out = [0u8; 128];
    let n = server.tx.seal_replies(&mut out, &server.control).unwrap();
    assert_eq!(n, 5 + 5 + 1 + 16, "one KeyUpdate record");
    assert!(!server.control.borrow().reply_due());
}

/// A rustls client's first flight: one plaintext record holding its ClientHello.
fn client_hello(cfg: &Arc<ClientConfig>) -> Vec<u8> {
    let mut client =
        ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 22);
    hello
}

/// A plaintext handshake record around `payload`.
fn handshake_record(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u16;
    [&[22, 3, 1, (len >> 8) as u8, len as u8][..], payload].concat()
}

const FATAL_ALERT: [u8; 6] = [21, 3, 3, 0, 2, 2];

#[test]
fn a_record_inside_a_fragmented_client_hello_is_refused_with_an_alert() {
    let (server, roots) = server_and_roots();
    let hello = client_hello(&client_config(
        &roots,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    ));
    let body = &hello[5..];
    // The ClientHello in two records with an empty application-data record between them
    // (tlsfuzzer's test-tls13-zero-length-data): rustls refuses it without queueing an alert,
    // and asking it for one with an empty buffer made it index out of range.
    let mut wire = handshake_record(&body[..2]);
    wire.extend([23, 3, 3, 0, 0]);
    wire.extend(handshake_record(&body[2..]));
    let mut accepting = server.accept().unwrap();
    let mut out = vec![0u8; 64 * 1024];
    let refusal = accepting.step(&mut wire, &mut out).unwrap_err();
    assert_eq!(
        &out[..refusal.send],
        &[&FATAL_ALERT[..], &[10]].concat()[..],
        "{}",
        refusal.error
    );
}

#[test]
fn rustls_alerts_go_out_with_the_refusal() {
    let (server, roots) = server_and_roots();
    // Only an RSA suite, and the server holds an ECDSA key: rustls says handshake_failure.
    let cfg = client_config(&roots, cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
    let mut wire = client_hello(&cfg);
    let mut accepting = server.accept().unwrap();
    let mut out = vec![0u8; 64 * 1024];
    let refusal = accepting.step(&mut wire, &mut out).unwrap_err();
    assert_eq!(
        &out[..refusal.send],
        &[&FATAL_ALERT[..], &[40]].concat()[..],
        "{}",
        refusal.error
    );
}

#[test]
fn tern_refuses_in_plaintext_only_before_rustls_has_spoken() {
    let (server, roots) = server_and_roots();
    let mut out = vec![0u8; 64 * 1024];
    let mut accepting = server.accept().unwrap();
    assert_eq!(accepting.refuse(50, &mut out), 7);
    assert_eq!(&out[..7], &[&FATAL_ALERT[..], &[50]].concat()[..]);
    // Once the ServerHello flight exists, alerts are rustls' to protect: tern writes none.
    let mut accepting = server.accept().unwrap();
    let mut wire = client_hello(&client_config(
        &roots,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    ));
    let (_, step) = accepting.step(&mut wire, &mut out).unwrap();
    assert!(matches!(step, Step::Send(n) if n > 0), "{step:?}");
    assert_eq!(accepting.refuse(50, &mut out), 0);
}

#[test]
fn records_after_the_clients_finished_are_left_to_terns_record_layer() {
    // Without tickets rustls has nothing to send after the client's Finished, so nothing
    // stops it reading on (with them, it stops to hand over the NewSessionTicket).
    let (server, roots) = server_and_roots_with(false);
    for suite in all_suites() {
        let cfg = client_config(&roots, suite);
        let mut client =
            ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut accepting = server.accept().unwrap();
        let (mut inbox, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
        let mut junk_sent = false;
        let established = loop {
            while client.wants_write() {
                client.write_tls(&mut inbox).unwrap();
            }
            if !client.is_handshaking() && !junk_sent {
                // In the same segment as the client's Finished: a record no key opens
                // (tlsfuzzer sends a zero content type there). rustls would open it itself
                // and fail without an alert; it must reach tern's Rx instead.
                inbox.extend([23, 3, 3, 0, 20]);
                inbox.extend([0u8; 20]);
                junk_sent = true;
            }
            let (consumed, step) = accepting.step(&mut inbox, &mut out).unwrap();
            inbox.drain(..consumed);
            match step {
                Step::Send(n) => deliver(&mut client, &out[..n]),
                Step::NeedMore => {}
                Step::Done => break accepting.finish().unwrap(),
            }
        };
        assert!(junk_sent && established.early.is_empty(), "{suite:?}");
        let Established {
            mut rx, control, ..
        } = established;
        let err = rx.next(&mut inbox, &control).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Record(super::record::RecordError::BadRecordMac)
            ),
            "{suite:?}: {err}"
        );
    }
}

#[test]
fn a_client_hello_arriving_in_pieces_and_records_is_joined() {
    let (server, roots) = server_and_roots();
    let hello = client_hello(&client_config(
        &roots,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    ));
    // The ClientHello in three records, arriving 7 bytes at a time: pieces end inside record
    // headers and bodies, and rustls must see each record whole exactly once.
    let body = &hello[5..];
    let third = body.len() / 3;
    let wire = [
        handshake_record(&body[..third]),
        handshake_record(&body[third..2 * third]),
        handshake_record(&body[2 * third..]),
    ]
    .concat();
    let mut accepting = server.accept().unwrap();
    let (mut inbox, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
    for piece in wire.chunks(7) {
        inbox.extend_from_slice(piece);
        let (consumed, step) = accepting.step(&mut inbox, &mut out).unwrap();
        inbox.drain(..consumed);
        if let Step::Send(n) = step {
            assert_eq!(out[0], 22, "a ServerHello record");
            assert!(n > 100 && inbox.is_empty(), "after the last piece only");
            return;
        }
    }
    panic!("no ServerHello");
}
