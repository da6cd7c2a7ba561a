//! Per-connection I/O loops. Everything here runs inside one worker's runtime, on that worker's
//! thread, with that worker's state: no locks, nothing shared with other cores.

mod bufpool;
mod handshake;
mod health;
pub mod l4;
pub mod pool;
mod pump;
mod split;

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
            buf_size: 32 * 1024,
        }
    }
}

/// What every connection task of one worker shares (by `Rc`: same thread only).
pub struct ProxyCtx {
    pub tls: ServerTls,
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
