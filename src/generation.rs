//! A generation: everything a reload replaces — listeners asked for, the certificate store and
//! TLS settings, backend pools and routes — as one immutable value. The control thread builds
//! and validates it, then hands the same `Arc` to every worker by message; each worker derives
//! its own per-worker state from it (TLS config, pool state). A connection keeps the generation
//! it started with for its whole life, so a reload never touches an open connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::pool::PoolSpec;
use crate::frontdoor::ListenerPolicy;
use crate::route::Routes;
use crate::tls::TlsSettings;

#[derive(Debug)]
pub struct Generation {
    /// 1 at start, one more with each reload that was put in service (for logs and metrics).
    pub id: u64,
    /// The addresses asked for. Listeners are bound once, at start: a reload that changes
    /// them is told so in the log and keeps the old ones.
    pub listen: Vec<SocketAddr>,
    /// Every file and directory this generation was read from — configuration file,
    /// certificates, keys, OCSP responses (with the `<cert>.ocsp` files looked for, present
    /// or not), client CA and CRL files, `--pem` directories, the ticket-key file —
    /// absolute, sorted, each once.
    /// `--watch` reloads when one of them changes.
    pub files: Vec<PathBuf>,
    /// What each listener checks before the handshake (PROXY header, allow/deny), one per
    /// `listen` address in the same order. Unlike the addresses, a reload changes these for
    /// the connections accepted after it.
    pub policies: Vec<ListenerPolicy>,
    pub tls: Arc<TlsSettings>,
    pub pools: Arc<[PoolSpec]>,
    pub routes: Arc<Routes>,
}
