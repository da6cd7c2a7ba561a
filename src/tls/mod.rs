//! TLS behind tern's own small API: certificate loading, per-worker server configs and the
//! sans-IO [`ServerSession`]. Nothing outside this module calls rustls directly, so the TLS
//! engine (buffered or unbuffered rustls, kTLS later) can change without touching the proxy.

pub mod certs;
pub mod hello;
pub mod policy;
pub mod record;
mod session;
pub mod store;
pub mod tickets;
pub mod warmup;

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
pub use session::{Accepting, Control, Established, Rx, RxEvent, SessionInfo, Step, TlsError, Tx};

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
    /// Versions, suites and groups offered.
    pub policy: policy::Policy,
    /// Refuse a server name no certificate covers (`unrecognized_name`) instead of answering
    /// with the default certificate.
    pub strict_sni: bool,
}

impl TlsSettings {
    /// The defaults around a certificate store: no ALPN, no resumption, rustls's policy.
    pub fn new(certs: certs::CertStore) -> TlsSettings {
        TlsSettings {
            certs: Arc::new(certs),
            alpn: Vec::new(),
            tickets: None,
            policy: policy::Policy::default(),
            strict_sni: false,
        }
    }
}

/// One worker's TLS server side. Each worker builds its own so that the session cache behind it
/// is that worker's alone: no lock is shared between cores on the handshake path.
#[derive(Clone)]
pub struct ServerTls(Arc<ServerConfig>);

impl ServerTls {
    /// `previous`: the config this one replaces on a reload; its TLS 1.2 session cache is kept
    /// so that sessions resume across the reload (tickets do anyway: same secret).
    pub fn new(
        settings: &TlsSettings,
        previous: Option<&ServerTls>,
    ) -> Result<ServerTls, TlsError> {
        let mut cfg = server_config(settings)?;
        if let (Some(prev), Some(_)) = (previous, &settings.tickets) {
            if prev.0.session_storage.can_cache() {
                // Invariant: server_config just made this Arc and nothing else holds it.
                Arc::get_mut(&mut cfg)
                    .expect("fresh config")
                    .session_storage = prev.0.session_storage.clone();
            }
        }
        Ok(ServerTls(cfg))
    }

    /// A handshake for one accepted connection.
    pub fn accept(&self) -> Result<Accepting, TlsError> {
        Accepting::new(&self.0)
    }
}

fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(settings.policy.provider.clone())
        .with_protocol_versions(&settings.policy.versions)
        .map_err(TlsError::Protocol)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni {
            store: settings.certs.clone(),
            strict: settings.strict_sni,
        }));
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

/// Picks the certificate by the client's server name (SNI) and signature schemes, and notes
/// the name for the session.
#[derive(Debug)]
struct BySni {
    store: Arc<certs::CertStore>,
    strict: bool,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let group = match self.store.lookup(sni.as_deref()) {
            Some(g) => g,
            None if self.strict => {
                session::record_resolved(session::Resolved {
                    sni,
                    unrecognized: true,
                });
                return None;
            }
            None => self.store.group_for(None),
        };
        let key = self.store.pick(group, hello.signature_schemes()).clone();
        session::record_resolved(session::Resolved {
            sni,
            unrecognized: false,
        });
        Some(key)
    }
}
