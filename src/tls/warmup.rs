//! Start-up warm-up: one in-memory TLS handshake per kind of certificate key, run by each worker
//! on its own thread before it accepts, so that no client's handshake pays a one-time cost.
//!
//! What the first handshake of a process costs, measured on a 2-vCPU VM (in-memory handshakes
//! through `ServerTls`, one thread pinned to one core, release build):
//! - aws-lc seeds its random generator on the first use of randomness in the process: a
//!   jitterentropy root source with its start-up health tests (~0.42 G instructions, 30-55 ms
//!   here, more on a busy machine), once per process, under a `CRYPTO_once` taken by whichever
//!   thread asks first (the main thread when `--tickets on` draws its random master secret;
//!   otherwise the first handshake). Each further thread only seeds its own DRBG from that root
//!   (3-7 us).
//! - The first handshake after that is 150-300 us slower than the next ones (code and data
//!   touched for the first time); on each new thread 20-130 us.
//! - The first signature with an RSA key builds its Montgomery contexts (~0.4 ms, once per key
//!   for the whole process); ECDSA P-256 and Ed25519 have no such set-up.
//!
//! So one handshake per key kind on each worker pays all of it but the per-key RSA set-up of
//! further RSA keys (0.4 ms each, left to their first client rather than multiplied by the
//! worker count at every start).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, SignatureAlgorithm, SignatureScheme};
use tracing::debug;

use super::session::{RxEvent, Step, TlsError};
use super::{certs, provider, ServerTls, TlsSettings};

/// What a warm-up did.
#[derive(Debug)]
pub struct Warmed {
    /// One entry per handshake completed: the kind of key it signed with ("ECDSA P-256", ...).
    pub handshakes: Vec<&'static str>,
    pub elapsed: Duration,
}

/// A warm-up handshake that failed: clients given this certificate would fail the same way.
#[derive(Debug)]
pub struct WarmUpError {
    pub key: &'static str,
    pub cause: TlsError,
}

impl std::fmt::Display for WarmUpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "warm-up handshake with the {} certificate failed: {}",
            self.key, self.cause
        )
    }
}

impl std::error::Error for WarmUpError {}

/// Draws one random byte, so that aws-lc seeds its generator now (its one-time jitterentropy
/// start-up, 30-50 ms here, is per process): call it before the listeners are bound, so no
/// connection waits in the accept queue while it runs.
pub fn seed_random() {
    use aws_lc_rs::rand::SecureRandom;
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut [0u8; 1]);
}

/// Runs one in-memory handshake (and one record each way) for the first certificate of each
/// key kind in `settings`, with the same server settings (ALPN, tickets) as real connections.
/// Call it on the thread that will serve the connections.
pub fn warm_up(settings: &TlsSettings) -> Result<Warmed, WarmUpError> {
    let start = Instant::now();
    let client = client_config();
    let mut seen: Vec<Kind> = Vec::new();
    for entry in settings.certs.entries() {
        let key = &entry.key;
        let kind = Kind::of(key);
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let fail = |cause| WarmUpError {
            key: kind.name(),
            cause,
        };
        // This key alone behind the same config builder real connections use.
        let server = ServerTls::new(
            &TlsSettings {
                alpn: settings.alpn.clone(),
                tickets: settings.tickets.clone(),
                policy: settings.policy.clone(),
                ..TlsSettings::new(certs::CertStore::single(key.clone()))
            },
            None,
        )
        .map_err(fail)?;
        handshake(&server, &client).map_err(fail)?;
    }
    let warmed = Warmed {
        handshakes: seen.iter().map(|k| k.name()).collect(),
        elapsed: start.elapsed(),
    };
    debug!(
        thread = std::thread::current().name().unwrap_or("?"),
        took_us = warmed.elapsed.as_micros() as u64,
        keys = ?warmed.handshakes,
        "TLS warm-up done"
    );
    Ok(warmed)
}

/// Keys that run different signing code: the algorithm, and for ECDSA the curve (the scheme
/// the key signs with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    alg: SignatureAlgorithm,
    scheme: Option<SignatureScheme>,
}

/// Every scheme rustls' aws-lc-rs signers may pick, so each key names the one it would use.
const SCHEMES: [SignatureScheme; 9] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
];

impl Kind {
    fn of(key: &CertifiedKey) -> Kind {
        let alg = key.key.algorithm();
        let scheme = match alg {
            SignatureAlgorithm::ECDSA => key.key.choose_scheme(&SCHEMES).map(|s| s.scheme()),
            _ => None,
        };
        Kind { alg, scheme }
    }

    fn name(&self) -> &'static str {
        match (self.alg, self.scheme) {
            (SignatureAlgorithm::ECDSA, Some(SignatureScheme::ECDSA_NISTP256_SHA256)) => {
                "ECDSA P-256"
            }
            (SignatureAlgorithm::ECDSA, Some(SignatureScheme::ECDSA_NISTP384_SHA384)) => {
                "ECDSA P-384"
            }
            (SignatureAlgorithm::ECDSA, Some(SignatureScheme::ECDSA_NISTP521_SHA512)) => {
                "ECDSA P-521"
            }
            (SignatureAlgorithm::ECDSA, _) => "ECDSA",
            (SignatureAlgorithm::RSA, _) => "RSA",
            (SignatureAlgorithm::ED25519, _) => "Ed25519",
            (SignatureAlgorithm::ED448, _) => "Ed448",
            _ => "other",
        }
    }
}

/// The in-memory client: the default provider (so the server negotiates what it prefers with
/// a current client: TLS 1.3, X25519MLKEM768), no resumption, no chain check (tern's certificates need not
/// chain to anything this process trusts), but the handshake signature is checked against the
/// certificate, so a key that signs wrongly fails here rather than in every client.
fn client_config() -> Arc<ClientConfig> {
    let p = provider();
    let verifier = Arc::new(super::client::SignatureOnly(p.clone()));
    let mut cfg = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every handshake a full one: with tickets on, a ticket from the first key's handshake
    // would otherwise resume the next one, which then signs nothing.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// More flights than any TLS 1.2 or 1.3 handshake has: a stuck handshake is an error, not a
/// hang at start-up.
const MAX_ROUNDS: usize = 16;
const PING: &[u8] = b"tern warm-up";

fn general(msg: &str) -> TlsError {
    TlsError::Protocol(rustls::Error::General(msg.into()))
}

/// Hands the server's bytes to the client; a record the client refuses is the failure.
fn to_client(client: &mut ClientConnection, mut bytes: &[u8]) -> Result<(), TlsError> {
    while !bytes.is_empty() {
        client
            .read_tls(&mut bytes)
            .map_err(|e| general(&format!("client read: {e}")))?;
        client.process_new_packets().map_err(TlsError::Protocol)?;
    }
    Ok(())
}

/// A full handshake between `server` and an in-memory client, then one record each way
/// through tern's record layer.
fn handshake(server: &ServerTls, client_cfg: &Arc<ClientConfig>) -> Result<(), TlsError> {
    let name = ServerName::try_from("warm-up.invalid").map_err(|_| general("server name"))?;
    let mut client = ClientConnection::new(client_cfg.clone(), name).map_err(TlsError::Protocol)?;
    let mut accepting = server.accept()?;
    let (mut to_server, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
    let mut done = false;
    for _ in 0..MAX_ROUNDS {
        while client.wants_write() {
            client
                .write_tls(&mut to_server)
                .map_err(|e| general(&format!("client write: {e}")))?;
        }
        let (used, step) = accepting
            .step(&mut to_server, &mut out)
            .map_err(|r| r.error)?;
        to_server.drain(..used);
        match step {
            Step::Send(n) => to_client(&mut client, &out[..n])?,
            Step::NeedMore if client.wants_write() => {}
            Step::NeedMore => return Err(general("warm-up handshake stalled")),
            Step::Done => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return Err(general("warm-up handshake did not finish"));
    }
    let established = accepting.finish()?;
    let (mut rx, mut tx, control) = (established.rx, established.tx, established.control);

    // Server to client.
    let (taken, n) = tx.seal_data(PING, &mut out, &control)?;
    if taken != PING.len() {
        return Err(general("warm-up record not sealed whole"));
    }
    to_client(&mut client, &out[..n])?;
    let mut got = vec![0u8; PING.len()];
    std::io::Read::read_exact(&mut client.reader(), &mut got)
        .map_err(|e| general(&format!("client read: {e}")))?;
    if got != PING {
        return Err(general("warm-up record garbled"));
    }

    // Client to server (after the client's Finished, which TLS 1.3 sends with its first data).
    std::io::Write::write_all(&mut client.writer(), PING)
        .map_err(|e| general(&format!("client write: {e}")))?;
    let mut wire = Vec::new();
    while client.wants_write() {
        client
            .write_tls(&mut wire)
            .map_err(|e| general(&format!("client write: {e}")))?;
    }
    wire.splice(..0, to_server);
    let mut at = 0;
    while let Some((used, event)) = rx.next(&mut wire[at..], &control)? {
        if let RxEvent::Data(r) = event {
            if wire[at..][r] != *PING {
                return Err(general("warm-up record garbled"));
            }
            return Ok(());
        }
        at += used;
    }
    Err(general("warm-up record from the client not received"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls::pki_types::PrivateKeyDer;
    use rustls::sign::{Signer, SigningKey};

    use super::*;
    use crate::tls::tickets::MasterSecret;

    /// A real key that counts its signatures (so a test sees a handshake really signed with
    /// it), or refuses to sign.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<dyn SigningKey>,
        signs: Arc<AtomicUsize>,
        refuse: bool,
    }

    #[derive(Debug)]
    struct CountingSigner {
        inner: Box<dyn Signer>,
        signs: Arc<AtomicUsize>,
        refuse: bool,
    }

    impl SigningKey for Counting {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            let inner = self.inner.choose_scheme(offered)?;
            Some(Box::new(CountingSigner {
                inner,
                signs: self.signs.clone(),
                refuse: self.refuse,
            }))
        }
        fn algorithm(&self) -> SignatureAlgorithm {
            self.inner.algorithm()
        }
    }

    impl Signer for CountingSigner {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            self.signs.fetch_add(1, Ordering::Relaxed);
            if self.refuse {
                return Err(rustls::Error::General("this key refuses to sign".into()));
            }
            self.inner.sign(message)
        }
        fn scheme(&self) -> SignatureScheme {
            self.inner.scheme()
        }
    }

    struct TestKey {
        key: Arc<CertifiedKey>,
        signs: Arc<AtomicUsize>,
    }

    fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(alg).unwrap()
    }

    /// A self-signed certificate for `cert_key`, served with `sign_key`'s signatures (the same
    /// key unless a test wants a mismatch).
    fn test_key(cert_key: &rcgen::KeyPair, sign_key: &rcgen::KeyPair, refuse: bool) -> TestKey {
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(cert_key)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(sign_key.serialize_der().into());
        let inner = provider().key_provider.load_private_key(der).unwrap();
        let signs = Arc::new(AtomicUsize::new(0));
        let key = Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            Arc::new(Counting {
                inner,
                signs: signs.clone(),
                refuse,
            }),
        ));
        TestKey { key, signs }
    }

    fn good(alg: &'static rcgen::SignatureAlgorithm) -> TestKey {
        let k = keypair(alg);
        test_key(&k, &k, false)
    }

    fn settings(keys: &[&TestKey], tickets: bool) -> TlsSettings {
        let entries = keys
            .iter()
            .enumerate()
            .map(|(i, k)| certs::CertEntry {
                key: k.key.clone(),
                names: Vec::new(),
                source: format!("key {i}"),
                client_auth: None,
            })
            .collect();
        TlsSettings {
            alpn: vec![b"http/1.1".to_vec()],
            tickets: tickets.then(|| Arc::new(MasterSecret::random().unwrap())),
            ..TlsSettings::new(certs::CertStore::new(entries).unwrap())
        }
    }

    #[test]
    fn one_signed_handshake_per_key_kind_in_the_store() {
        for tickets in [false, true] {
            let ecdsa = good(&rcgen::PKCS_ECDSA_P256_SHA256);
            let rsa = good(&rcgen::PKCS_RSA_SHA256);
            let ecdsa_again = good(&rcgen::PKCS_ECDSA_P256_SHA256);
            let ed25519 = good(&rcgen::PKCS_ED25519);
            let p384 = good(&rcgen::PKCS_ECDSA_P384_SHA384);
            let all = [&ecdsa, &rsa, &ecdsa_again, &ed25519, &p384];
            let warmed = warm_up(&settings(&all, tickets)).unwrap();
            assert_eq!(
                warmed.handshakes,
                ["ECDSA P-256", "RSA", "Ed25519", "ECDSA P-384"],
                "tickets {tickets}"
            );
            let signs: Vec<usize> = all
                .iter()
                .map(|k| k.signs.load(Ordering::Relaxed))
                .collect();
            // The second P-256 key runs the same code as the first: no handshake of its own.
            assert_eq!(signs, [1, 1, 0, 1, 1], "tickets {tickets}");
        }
    }

    #[test]
    fn a_key_that_cannot_sign_fails_the_warm_up_naming_its_kind() {
        let ecdsa = good(&rcgen::PKCS_ECDSA_P256_SHA256);
        let k = keypair(&rcgen::PKCS_RSA_SHA256);
        let broken = test_key(&k, &k, true);
        let e = warm_up(&settings(&[&ecdsa, &broken], false)).unwrap_err();
        assert_eq!(e.key, "RSA");
        assert!(e.to_string().contains("RSA certificate"), "{e}");
        assert_eq!(broken.signs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_signature_that_does_not_match_the_certificate_fails_the_warm_up() {
        let (a, b) = (
            keypair(&rcgen::PKCS_ECDSA_P256_SHA256),
            keypair(&rcgen::PKCS_ECDSA_P256_SHA256),
        );
        let mismatched = test_key(&a, &b, false);
        let e = warm_up(&settings(&[&mismatched], false)).unwrap_err();
        assert_eq!(e.key, "ECDSA P-256");
        assert!(matches!(e.cause, TlsError::Protocol(_)), "{e}");
    }
}
