//! TLS towards backends: what a pool's backend TLS is ([`ClientTlsSettings`], immutable, part of
//! the generation), each worker's own client config built from it ([`ClientTls`], with that
//! worker's session cache: no lock crosses cores), and the sans-IO client handshake
//! ([`Connecting`]), which ends in the same [`Established`] parts as the server side: tern's own
//! record layer protects the records, and TLS 1.3 session tickets the backend sends afterwards
//! go back to rustls (`Rx` hands them over), so the next connection resumes.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ResolvesClientCert, Resumption, UnbufferedClientConnection,
    WebPkiServerVerifier,
};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::record::{self, Version};
use super::session::{suite_name, Established, SessionInfo, Step, TlsError};

/// How a backend's certificate is checked.
#[derive(Clone)]
pub enum Verify {
    /// Against these roots (the system's, or `--backend-ca`), for the name the connection asks.
    Roots(Arc<RootCertStore>),
    /// Not at all (`--backend-insecure`): the handshake's signature is still checked against
    /// the certificate shown, but anyone can show one.
    Insecure,
}

/// A pool's TLS towards its backends, as configured.
#[derive(Clone)]
pub struct ClientTlsSettings {
    pub verify: Verify,
    /// Where the roots came from, for logs (`system roots`, `--backend-ca FILE`).
    pub roots_from: String,
    /// The certificate tern shows when a backend asks for one.
    pub client_cert: Option<Arc<CertifiedKey>>,
    /// ALPN protocols offered to the backend (empty offers none); `None`: the mode's default,
    /// `http/1.1` in http mode and none in tcp mode.
    pub alpn: Option<Vec<Vec<u8>>>,
}

impl fmt::Debug for ClientTlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verify = match &self.verify {
            Verify::Roots(r) => format!("{} roots from {}", r.len(), self.roots_from),
            Verify::Insecure => "insecure".into(),
        };
        f.debug_struct("ClientTlsSettings")
            .field("verify", &verify)
            .field("client_cert", &self.client_cert.is_some())
            .field("alpn", &self.alpn)
            .finish()
    }
}

/// Checks a name a backend is asked for (`--backend-sni`, or the host of a backend as
/// written): a DNS name or an IP address.
pub fn check_name(name: &str) -> Result<(), String> {
    ServerName::try_from(name)
        .map(drop)
        .map_err(|_| format!("'{name}' is neither a DNS name nor an IP address"))
}

/// The system's trust store (as OpenSSL finds it, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no usable system root certificates ({why}); give --backend-ca FILE (or ca = ...), \
             or install ca-certificates"
        ));
    }
    if bad > 0 {
        tracing::debug!("{bad} system root certificates could not be used");
    }
    Ok(roots)
}

/// The files the system store is read from, for the sandbox (a reload reads them again):
/// the bundle, and every file of the certificate directories, whose symlinks lead into
/// further directories (`/usr/share/ca-certificates`, `/usr/local/share/ca-certificates`).
/// Naming the files, not the directory, keeps the sandbox from opening the directory's
/// parent (`/etc/ssl`, where `private/` is).
pub fn system_root_files() -> Vec<std::path::PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let (file, dirs): (Option<std::path::PathBuf>, Vec<std::path::PathBuf>) =
        match (env("SSL_CERT_FILE"), env("SSL_CERT_DIR")) {
            (None, None) => {
                let probe = openssl_probe::probe();
                (probe.cert_file, probe.cert_dir.into_iter().collect())
            }
            (file, dirs) => (
                file.map(Into::into),
                dirs.map(|d| std::env::split_paths(&d).collect())
                    .unwrap_or_default(),
            ),
        };
    let mut files: Vec<std::path::PathBuf> = file.into_iter().collect();
    for dir in dirs {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files
}

/// Roots from a PEM bundle (`--backend-ca`).
pub fn roots_from_pem(label: &str, path: &Path) -> Result<RootCertStore, String> {
    let shown = format!("{label} {}", path.display());
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|_| format!("{shown}: not a PEM certificate bundle"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown}: holds no certificate"));
    }
    Ok(roots)
}

/// One worker's client side towards one pool's backends. Its session cache is this worker's
/// alone.
#[derive(Clone)]
pub struct ClientTls(Arc<ClientConfig>);

impl ClientTls {
    /// Builds this worker's config: its own verifier, certificate resolver and session cache
    /// (rustls resumes a session only under the same verifier and resolver, by pointer, so
    /// these stay with the config for the worker's life in this generation).
    /// `http`: tern runs in http mode (for the default ALPN).
    pub fn new(settings: &ClientTlsSettings, http: bool) -> Result<ClientTls, TlsError> {
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(TlsError::Protocol)?;
        let builder = match &settings.verify {
            Verify::Roots(roots) => {
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new((**roots).clone()),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Protocol(rustls::Error::General(e.to_string())))?;
                builder.with_webpki_verifier(verifier)
            }
            Verify::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider))),
        };
        let mut cfg = match &settings.client_cert {
            Some(key) => {
                builder.with_client_cert_resolver(Arc::new(OneCert(Arc::new((**key).clone()))))
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = match &settings.alpn {
            Some(list) => list.clone(),
            None if http => vec![b"http/1.1".to_vec()],
            None => Vec::new(),
        };
        cfg.enable_secret_extraction = true;
        cfg.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(256)));
        Ok(ClientTls(Arc::new(cfg)))
    }

    /// A handshake towards `name` (a DNS name is sent as SNI and checked against the
    /// certificate; an IP address is checked against its IP SANs and no SNI is sent).
    pub fn connect(&self, name: &str) -> Result<Connecting, TlsError> {
        let server = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::Protocol(rustls::Error::General(format!("bad name {name}"))))?;
        let sni = matches!(server, ServerName::DnsName(_)).then(|| name.to_owned());
        Ok(Connecting {
            conn: UnbufferedClientConnection::new(self.0.clone(), server)
                .map_err(TlsError::Protocol)?,
            sni,
        })
    }
}

/// The largest chunk rustls may hand over at once (one record).
const MAX_CHUNK: usize = record::MAX_FRAGMENT + 2048 + record::HEADER_LEN;

/// A client handshake in progress.
pub struct Connecting {
    conn: UnbufferedClientConnection,
    sni: Option<String>,
}

impl Connecting {
    /// Advances the handshake over the received, not yet consumed bytes in `incoming`
    /// (decrypted in place), writing records to send into `out` (at least 32 KiB). Returns how
    /// many bytes of `incoming` were consumed, and what to do next. The first call, with
    /// nothing received, produces the ClientHello.
    pub fn step(&mut self, incoming: &mut [u8], out: &mut [u8]) -> Result<(usize, Step), TlsError> {
        let mut consumed = 0;
        let mut produced = 0;
        loop {
            if !self.conn.is_handshaking() && !self.conn.wants_write() {
                // Stop here: records after the handshake (session tickets, the response)
                // are ours to open.
                let step = if produced > 0 {
                    Step::Send(produced)
                } else {
                    Step::Done
                };
                return Ok((consumed, step));
            }
            if produced > 0 && out.len() - produced < MAX_CHUNK {
                return Ok((consumed, Step::Send(produced)));
            }
            let status = self.conn.process_tls_records(&mut incoming[consumed..]);
            let discard = status.discard;
            match status.state.map_err(TlsError::Protocol)? {
                ConnectionState::EncodeTlsData(mut e) => match e.encode(&mut out[produced..]) {
                    Ok(n) => produced += n,
                    Err(EncodeError::InsufficientSize(_)) | Err(EncodeError::AlreadyEncoded) => {
                        return Err(TlsError::Protocol(rustls::Error::General(
                            "handshake record larger than the output buffer".into(),
                        )))
                    }
                },
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    consumed += discard;
                    return Ok((consumed, Step::Send(produced)));
                }
                ConnectionState::BlockedHandshake => {
                    consumed += discard;
                    let step = if produced > 0 {
                        Step::Send(produced)
                    } else {
                        Step::NeedMore
                    };
                    return Ok((consumed, step));
                }
                ConnectionState::WriteTraffic(_) => {
                    consumed += discard;
                    if self.conn.is_handshaking() {
                        return Ok((consumed, Step::NeedMore));
                    }
                    continue;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(TlsError::Protocol(rustls::Error::General(
                        "backend closed during the handshake".into(),
                    )))
                }
                // Data from the backend before tern's Finished is not asked for by HTTP or
                // any protocol tern relays; early data is not enabled.
                _ => {
                    return Err(TlsError::Protocol(rustls::Error::General(
                        "unexpected handshake state".into(),
                    )))
                }
            }
            consumed += discard;
        }
    }

    /// After a failed `step`: the alert rustls queued (a bad certificate says so), encoded
    /// into `out`, best effort.
    pub fn alert(&mut self, out: &mut [u8]) -> usize {
        let mut produced = 0;
        // Only while rustls has records queued: asked otherwise it would parse again.
        while self.conn.wants_write() {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => match e.encode(&mut out[produced..]) {
                    Ok(n) => produced += n,
                    Err(_) => break,
                },
                _ => break,
            }
        }
        produced
    }

    /// The established session; the handshake must have returned [`Step::Done`].
    pub fn finish(self) -> Result<Established, TlsError> {
        let conn = self.conn;
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Version::Tls13,
            Some(rustls::ProtocolVersion::TLSv1_2) => Version::Tls12,
            _ => return Err(TlsError::Protocol(rustls::Error::HandshakeNotComplete)),
        };
        let suite = conn.negotiated_cipher_suite();
        let limit = match suite {
            Some(rustls::SupportedCipherSuite::Tls13(s)) => s.common.confidentiality_limit,
            Some(rustls::SupportedCipherSuite::Tls12(s)) => s.common.confidentiality_limit,
            _ => u64::MAX,
        };
        // The defaults stand for what only a server side knows (the client's certificate).
        #[allow(clippy::needless_update)]
        let info = SessionInfo {
            version: match version {
                Version::Tls13 => "TLSv1.3",
                Version::Tls12 => "TLSv1.2",
            },
            suite: suite_name(suite),
            sni: self.sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            ..SessionInfo::default()
        };
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(TlsError::Protocol)?;
        Established::from_client(version, limit, secrets, kernel, info)
    }
}

/// Always the one configured client certificate.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `--backend-insecure`: any certificate for any name. The handshake signature is still
/// checked with the provider, so the peer at least holds the key of what it showed. (The TLS
/// warm-up's client uses it too: it checks that each certificate's key signs.)
#[derive(Debug)]
pub(crate) struct SignatureOnly(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
