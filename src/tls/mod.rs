//! TLS behind tern's own small API: certificate loading, per-worker server configs and the
//! sans-IO [`ServerSession`]. Nothing outside this module calls rustls directly, so the TLS
//! engine (buffered or unbuffered rustls, kTLS later) can change without touching the proxy.

pub mod certs;
mod posthandshake;
pub mod record;
mod session;
pub mod tickets;

#[cfg(test)]
mod interop_tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::ServerConfig;

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
pub use rustls::sign::CertifiedKey;
pub use session::{
    Accepting, Control, Established, Refusal, Rx, RxEvent, SessionInfo, Step, TlsError, Tx,
};

/// The one crypto provider tern uses (aws-lc-rs), with its default, safe choice of suites and
/// groups (X25519MLKEM768 first, then X25519, P-256, P-384).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Everything a worker needs to build its server config; immutable and shared by `Arc`.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certs: Arc<certs::CertStore>,
    /// ALPN protocols offered, most preferred first; empty offers none.
    pub alpn: Vec<Vec<u8>>,
    /// Session resumption: stateless tickets keyed from this secret (TLS 1.3 and 1.2) plus a
    /// per-worker TLS 1.2 session-ID cache. `None` turns resumption off.
    pub tickets: Option<Arc<tickets::MasterSecret>>,
}

/// One worker's TLS server side. Each worker builds its own so that the session cache behind it
/// is that worker's alone: no lock is shared between cores on the handshake path.
#[derive(Clone)]
pub struct ServerTls(Arc<ServerConfig>);

impl ServerTls {
    pub fn new(settings: &TlsSettings) -> Result<ServerTls, TlsError> {
        server_config(settings).map(ServerTls)
    }

    /// A handshake for one accepted connection.
    pub fn accept(&self) -> Result<Accepting, TlsError> {
        Accepting::new(&self.0)
    }
}

fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Protocol)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(settings.certs.clone())));
    cfg.alpn_protocols = settings.alpn.clone();
    // After the handshake tern protects records itself (see `record`).
    cfg.enable_secret_extraction = true;
    if let Some(master) = &settings.tickets {
        cfg.session_storage = ServerSessionMemoryCache::new(4096);
        cfg.ticketer = Arc::new(tickets::Ticketer::new(master.clone()));
        // One TLS 1.3 ticket per connection (rustls sends two by default): each costs a seal
        // and a record, and a client resuming opens one connection per ticket it holds.
        cfg.send_tls13_tickets = 1;
    } else {
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(Arc::new(cfg))
}

/// Picks the certificate by the client's server name (SNI), and notes the name for the session.
#[derive(Debug)]
struct BySni(Arc<certs::CertStore>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let key = self.0.key(self.0.select(sni.as_deref())).clone();
        session::record_hello_sni(sni);
        Some(key)
    }
}
