//! Per-connection I/O loops. Everything here runs inside one worker's runtime, on that worker's
//! thread, with that worker's state: no locks, nothing shared with other cores.

pub mod accesslog;
mod handshake;
pub mod l4;
mod l7;
mod linger;
mod pump;
pub use pump::RECORD_SLACK;
mod tlsio;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{health, pool};
use crate::frontdoor::admission::Admission;
use crate::generation::Generation;
use crate::http::{CertHeaders, IdentityFields, PeerCert};
use crate::route::Routes;
use crate::stats::{PoolStats, WorkerStats};
use crate::tls::client::ClientTls;
use crate::tls::{ClientCert, ServerTls, TlsError};
use crate::util::latch::Latch;

// The buffer pool and socket halves live in `net` (the backend hop uses them too); the
// loops here keep naming them as before.
use crate::net::{bufpool, split};
pub use bufpool::BufPool;

/// Per-connection knobs, fixed for the life of a worker.
#[derive(Debug, Clone)]
pub struct Settings {
    pub handshake_timeout: Duration,
    /// Close both sides after this long without a byte either way; `None` never.
    pub idle_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// Kept-alive backend connections (http mode).
    pub keepalive: pool::KeepAlive,
    pub http: HttpSettings,
    /// Size of each pooled I/O buffer. 32 KiB moved bulk data at ~1.5x the bytes per
    /// CPU-second of 16 KiB here (fewer, larger reads and writes), and bigger gained little.
    pub buf_size: usize,
    /// `--uring-recv`: what the worker asks for. Whether its ring got the receive buffers is
    /// `monoio::buf_ring::available(net::ringrecv::GROUP)`, which the pump asks.
    pub uring_recv: crate::net::ringrecv::UringRecv,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            connect_timeout: Duration::from_secs(5),
            keepalive: pool::KeepAlive::default(),
            http: HttpSettings::default(),
            buf_size: 32 * 1024,
            uring_recv: crate::net::ringrecv::UringRecv::Multishot,
        }
    }
}

/// http mode's knobs.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// http mode (else tcp mode).
    pub enabled: bool,
    pub limits: crate::http::Limits,
    /// Largest request body accepted (413 past it); `None` for no limit.
    pub max_body: Option<u64>,
    /// Time a client has to send a whole request head once it started (408 after).
    pub header_timeout: Duration,
    /// Longest wait for more of a request body (408 after).
    pub body_timeout: Duration,
    /// Time a backend has to start its response (504 after).
    pub backend_timeout: Duration,
    pub forward: crate::http::ForwardPolicy,
    /// Which client-certificate identity headers the backend gets (mTLS).
    pub cert_headers: crate::http::CertHeaders,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: false,
            limits: crate::http::Limits::default(),
            max_body: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            backend_timeout: Duration::from_secs(60),
            forward: crate::http::ForwardPolicy::default(),
            cert_headers: crate::http::CertHeaders::default(),
        }
    }
}

/// What lives as long as the worker, whatever the generation: buffers, knobs, counters, log.
#[derive(Clone)]
pub struct WorkerParts {
    pub bufs: Rc<BufPool>,
    pub settings: Settings,
    pub stats: Arc<WorkerStats>,
    pub access_log: Option<Rc<accesslog::AccessLog>>,
    /// Which worker this is (for the round-robin stagger of pools).
    pub id: usize,
    /// This worker's handshake slots.
    pub admission: Rc<Admission>,
}

/// What every connection task of one worker shares (by `Rc`: same thread only) for one
/// generation. A connection holds the context it was accepted with for its whole life; a
/// reload makes a new one for new connections and retires this one.
pub struct ProxyCtx {
    pub generation: Arc<Generation>,
    pub tls: ServerTls,
    /// Certificates by name, for the 421 check (a Host on another certificate than the SNI).
    pub certs: Arc<crate::tls::certs::CertStore>,
    pub access_log: Option<Rc<accesslog::AccessLog>>,
    pub bufs: Rc<BufPool>,
    pub routes: Arc<Routes>,
    /// This worker's state of each configured pool, by index.
    pub pools: Vec<Rc<pool::Pool>>,
    pub settings: Settings,
    pub stats: Arc<WorkerStats>,
    /// This worker's counters of each configured pool, by index (http mode).
    pub pool_stats: Vec<Arc<PoolStats>>,
    /// This worker's handshake slots (the same across generations).
    pub admission: Rc<Admission>,
    /// Set when a newer generation took over: its health checks stop, its pools keep no more
    /// idle backend connections.
    retired: Rc<Latch>,
}

pub type Ctx = Rc<ProxyCtx>;

impl ProxyCtx {
    /// This worker's context for `generation`. `previous` is the context it replaces, whose
    /// TLS session cache carries over (so TLS 1.2 session IDs resume across a reload).
    pub fn new(
        generation: &Arc<Generation>,
        pool_stats: Vec<Arc<PoolStats>>,
        parts: &WorkerParts,
        previous: Option<&ProxyCtx>,
    ) -> Result<Ctx, TlsError> {
        // One block of counters per pool, whatever the control thread handed over.
        let mut pool_stats = pool_stats;
        pool_stats.resize_with(generation.pools.len(), Default::default);
        let tls = ServerTls::new(&generation.tls, previous.map(|p| &p.tls))?;
        let s = &parts.settings;
        // Each worker builds its own backend TLS configs: their session caches are its own.
        let mut pools = Vec::with_capacity(generation.pools.len());
        for p in generation.pools.iter() {
            let pool = pool::Pool::new(p, s.connect_timeout, s.keepalive, parts.id);
            pools.push(Rc::new(match &p.tls {
                None => pool,
                Some(t) => pool.with_tls(
                    ClientTls::new(&t.settings, s.http.enabled)?,
                    t.names.clone(),
                ),
            }));
        }
        let ctx = Rc::new(ProxyCtx {
            generation: generation.clone(),
            tls,
            certs: generation.tls.certs.clone(),
            access_log: parts.access_log.clone(),
            bufs: parts.bufs.clone(),
            routes: generation.routes.clone(),
            pools,
            settings: parts.settings.clone(),
            stats: parts.stats.clone(),
            pool_stats,
            admission: parts.admission.clone(),
            retired: Rc::new(Latch::default()),
        });
        for (spec, pool) in generation.pools.iter().zip(&ctx.pools) {
            if let Some(h) = &spec.health {
                monoio::spawn(health::run(
                    pool.clone(),
                    h.path.clone(),
                    h.interval,
                    ctx.retired.clone(),
                    ctx.bufs.clone(),
                ));
            }
        }
        Ok(ctx)
    }

    /// A newer generation serves new connections: stop this one's background work. The
    /// connections still open on it carry on.
    pub fn retire(&self) {
        self.retired.set();
        for p in &self.pools {
            p.retire();
        }
    }
}

/// The identity headers (http mode) every request of a connection carries, from its client
/// certificate; the conversion lives here because neither `tls` nor `http` knows the other.
fn identity_fields(cert: &ClientCert, which: CertHeaders) -> IdentityFields {
    let peer = match cert {
        ClientCert::NotRequested => PeerCert::NotRequested,
        ClientCert::Absent => PeerCert::Absent,
        ClientCert::Verified(id) => PeerCert::Verified {
            subject: &id.subject,
            fingerprint_sha256: &id.fingerprint_sha256,
            uris: &id.uris,
            dns: &id.dns,
        },
    };
    IdentityFields::new(peer, which)
}
