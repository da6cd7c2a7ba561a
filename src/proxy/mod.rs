//! Per-connection I/O loops. Everything here runs inside one worker's runtime, on that worker's
//! thread, with that worker's state: no locks, nothing shared with other cores.

pub mod accesslog;
mod bufpool;
mod handshake;
mod health;
pub mod l4;
mod l7;
pub mod pool;
mod pump;
mod split;
mod tlsio;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::route::Routes;
use crate::stats::WorkerStats;
use crate::tls::ServerTls;

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
    /// Time a backend has to start its response (504 after).
    pub backend_timeout: Duration,
    pub forward: crate::http::ForwardPolicy,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: false,
            limits: crate::http::Limits::default(),
            max_body: None,
            header_timeout: Duration::from_secs(10),
            backend_timeout: Duration::from_secs(60),
            forward: crate::http::ForwardPolicy::default(),
        }
    }
}

/// What every connection task of one worker shares (by `Rc`: same thread only).
pub struct ProxyCtx {
    pub tls: ServerTls,
    /// Certificates by name, for the 421 check (a Host on another certificate than the SNI).
    pub certs: Arc<crate::tls::certs::CertStore>,
    pub access_log: Option<Rc<accesslog::AccessLog>>,
    pub bufs: bufpool::BufPool,
    pub routes: Arc<Routes>,
    /// This worker's state of each configured pool, by index.
    pub pools: Vec<pool::Pool>,
    pub settings: Settings,
    pub stats: Arc<WorkerStats>,
}

pub type Ctx = Rc<ProxyCtx>;

/// Starts this worker's active health checks, one task per pool that has them.
pub fn start_health_checks(ctx: &Ctx, specs: &[pool::PoolSpec]) {
    for (i, spec) in specs.iter().enumerate() {
        if let Some(h) = &spec.health {
            monoio::spawn(health::run(ctx.clone(), i, h.path.clone(), h.interval));
        }
    }
}
