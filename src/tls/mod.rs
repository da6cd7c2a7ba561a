//! TLS behind tern's own small API: certificate loading, per-worker server configs and the
//! sans-IO [`ServerSession`]. Nothing outside this module calls rustls directly, so the TLS
//! engine (buffered or unbuffered rustls, kTLS later) can change without touching the proxy.

mod capture;
pub mod certs;
pub mod client;
pub mod client_auth;
mod established;
pub mod hello;
pub mod hkdf;
pub mod identity;
pub mod policy;
mod posthandshake;
pub mod record;
mod session;
pub mod store;
pub mod tickets;
mod traffic;
pub mod warmup;

#[cfg(test)]
mod client_auth_tests;
#[cfg(test)]
mod interop_tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::ServerConfig;

pub use client_auth::{ClientAuth, ClientAuthMode};
pub use identity::{ClientCert, ClientIdentity};
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
pub use rustls::sign::CertifiedKey;
pub use session::{
    Accepting, Control, Established, Refusal, Rx, RxEvent, SessionInfo, Step, TlsError, Tx,
};

/// The one crypto provider tern uses (aws-lc-rs), with its default, safe choice of suites and
/// groups (X25519MLKEM768 first, then X25519, P-256, P-384), and its TLS 1.3 key schedule
/// through [`hkdf::KeyedHkdf`].
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(hkdf::provider())
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
///
/// One rustls server config per client-auth setting in use (index 0: none; see
/// [`CertStore::client_auth_index`](certs::CertStore::client_auth_index)). When every
/// certificate has the same setting, that one config serves every handshake; otherwise a
/// handshake's config is chosen by the server name in its ClientHello, before rustls reads it.
#[derive(Clone)]
pub struct ServerTls(Arc<Configs>);

pub(crate) struct Configs {
    /// By client-auth index; `None` for the setting without client authentication when no
    /// certificate uses it (each config carries a session cache, so none is built in vain).
    by_auth: Vec<Option<Arc<ServerConfig>>>,
    /// The index every handshake uses, when the certificates agree.
    uniform: Option<usize>,
    store: Arc<certs::CertStore>,
}

impl Configs {
    /// The config for a ClientHello naming `sni` (lower-case): that of the certificates the
    /// name gets (the default's for no name or an unknown one); and whether it asks for a
    /// client certificate.
    pub(crate) fn for_name(&self, sni: Option<&str>) -> (&Arc<ServerConfig>, bool) {
        self.by_index(self.store.client_auth_index(self.store.group_for(sni)))
    }

    /// `i` must be the index of a group (`CertStore::client_auth_index`).
    fn by_index(&self, i: usize) -> (&Arc<ServerConfig>, bool) {
        // Invariant: a config is built for every index some group has.
        let config = self.by_auth[i]
            .as_ref()
            .expect("config for a group's setting");
        (config, i > 0)
    }
}

impl ServerTls {
    /// `previous`: the config this one replaces on a reload; its TLS 1.2 session caches are
    /// kept (for the client-auth settings that did not change) so that sessions resume across
    /// the reload (tickets do anyway: same secret).
    pub fn new(
        settings: &TlsSettings,
        previous: Option<&ServerTls>,
    ) -> Result<ServerTls, TlsError> {
        let store = &settings.certs;
        let auths: Vec<Option<&Arc<ClientAuth>>> = std::iter::once(None)
            .chain(store.client_auths().iter().map(Some))
            .collect();
        let mut by_auth = Vec::with_capacity(auths.len());
        for (index, auth) in auths.iter().enumerate() {
            if index == 0 && !store.client_auth_in_use(0) {
                by_auth.push(None);
                continue;
            }
            let mut cfg = server_config(settings, *auth, index)?;
            let kept = previous.and_then(|p| p.config_like(*auth));
            if let (Some(prev), Some(_)) = (kept, &settings.tickets) {
                if prev.session_storage.can_cache() {
                    // Invariant: server_config just made this Arc and nothing else holds it.
                    Arc::get_mut(&mut cfg)
                        .expect("fresh config")
                        .session_storage = prev.session_storage.clone();
                }
            }
            by_auth.push(Some(cfg));
        }
        Ok(ServerTls(Arc::new(Configs {
            by_auth,
            uniform: store.uniform_client_auth(),
            store: store.clone(),
        })))
    }

    /// The config of this generation for the same client-auth setting (by content).
    fn config_like(&self, auth: Option<&Arc<ClientAuth>>) -> Option<&Arc<ServerConfig>> {
        match auth {
            None => self.0.by_auth.first()?.as_ref(),
            Some(a) => {
                let i = self
                    .0
                    .store
                    .client_auths()
                    .iter()
                    .position(|b| **b == **a)?;
                self.0.by_auth.get(i + 1)?.as_ref()
            }
        }
    }

    /// A handshake for one accepted connection.
    pub fn accept(&self) -> Result<Accepting, TlsError> {
        match self.0.uniform {
            Some(i) => Accepting::new(self.0.by_index(i), None),
            None => Accepting::new(self.0.for_name(None), Some(self.0.clone())),
        }
    }
}

fn server_config(
    settings: &TlsSettings,
    auth: Option<&Arc<ClientAuth>>,
    auth_index: usize,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(settings.policy.provider.clone())
        .with_protocol_versions(&settings.policy.versions)
        .map_err(TlsError::Protocol)?;
    let builder = match auth {
        Some(a) => builder.with_client_cert_verifier(a.verifier()),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(BySni {
        store: settings.certs.clone(),
        strict: settings.strict_sni,
        auth_index,
    }));
    cfg.alpn_protocols = settings.alpn.clone();
    // After the handshake tern protects records itself (see `record`), and updates TLS 1.3
    // keys from the traffic secrets its key-log hook takes (see `capture`).
    cfg.enable_secret_extraction = true;
    cfg.key_log = Arc::new(capture::Capture);
    if let Some(master) = &settings.tickets {
        cfg.session_storage = ServerSessionMemoryCache::new(4096);
        // Tickets under a client-auth setting are bound to it (see `ClientAuth::context`).
        let context: &[u8] = auth.map_or(&[], |a| &a.context()[..]);
        cfg.ticketer = Arc::new(tickets::Ticketer::with_context(master.clone(), context));
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
    /// The client-auth setting of the config this resolver belongs to: a certificate of
    /// another setting is never presented under it (see `resolve`).
    auth_index: usize,
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
        if self.store.client_auth_index(group) != self.auth_index {
            // The config was chosen from tern's reading of the ClientHello and rustls reads
            // another name: refuse rather than serve these certificates without the client
            // authentication they require (or with one they do not).
            tracing::debug!(?sni, "tls: server name read differently; handshake refused");
            session::record_resolved(session::Resolved {
                sni,
                unrecognized: false,
            });
            return None;
        }
        let key = self.store.pick(group, hello.signature_schemes()).clone();
        session::record_resolved(session::Resolved {
            sni,
            unrecognized: false,
        });
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    /// The access log's cipher field kept its spelling when it stopped being formatted with
    /// `Debug` per handshake.
    #[test]
    fn suite_names_are_rustls_debug_names() {
        for s in super::provider().cipher_suites.iter() {
            assert_eq!(
                super::session::suite_name(Some(*s)),
                format!("{:?}", s.suite())
            );
        }
        assert_eq!(super::session::suite_name(None), "");
    }
}
