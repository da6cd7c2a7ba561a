//! A generation: everything a reload replaces — listeners asked for, the certificate store and
//! TLS settings, backend pools and routes — as one immutable value. The control thread builds
//! and validates it, then hands the same `Arc` to every worker by message; each worker derives
//! its own per-worker state from it (TLS config, pool state). A connection keeps the generation
//! it started with for its whole life, so a reload never touches an open connection.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::pool::PoolSpec;
use crate::route::Routes;
use crate::tls::TlsSettings;

#[derive(Debug)]
pub struct Generation {
    /// 1 at start, one more with each reload that was put in service (for logs and metrics).
    pub id: u64,
    /// The addresses asked for. Listeners are bound once, at start: a reload that changes
    /// them is told so in the log and keeps the old ones.
    pub listen: Vec<SocketAddr>,
    pub tls: Arc<TlsSettings>,
    pub pools: Arc<[PoolSpec]>,
    pub routes: Arc<Routes>,
}
