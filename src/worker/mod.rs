//! A worker: one thread pinned to one CPU, its own monoio runtime (its own io_uring ring), its
//! own SO_REUSEPORT listener on every address, its own connections and counters. The control
//! thread talks to it only by message.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::frontdoor::admission::Admission;
use crate::frontdoor::per_ip::PerIp;
use crate::frontdoor::FrontSettings;
use crate::generation::Generation;
use crate::proxy::{self, ProxyCtx, Settings, WorkerParts};
use crate::stats::{PoolStats, WorkerStats};
use crate::util::latch::Latch;

/// Messages from the control thread.
#[derive(Debug)]
pub enum Control {
    /// Stop accepting; let open connections finish within the drain timeout, then exit.
    Drain,
    /// Serve new connections from this generation; open ones keep theirs. The worker answers
    /// on the sender with its id and whether it switched.
    Reload(
        Arc<Generation>,
        Vec<Arc<PoolStats>>,
        std::sync::mpsc::Sender<(usize, Result<(), String>)>,
    ),
}

/// Which I/O driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    /// monoio's epoll driver, when io_uring is unavailable.
    Legacy,
}

/// Everything a worker thread starts with; sent to it once, by value.
pub struct Spec {
    pub id: usize,
    pub cpu: usize,
    pub driver: Driver,
    /// Restrict the ring to the operations tern submits (`--uring-restrict`).
    pub uring_restrict: bool,
    pub listeners: Vec<std::net::TcpListener>,
    pub generation: Arc<Generation>,
    /// This worker's counters for each pool of the generation (by pool index).
    pub pool_stats: Vec<Arc<PoolStats>>,
    pub settings: Settings,
    /// This worker's share of `--max-conns`.
    pub max_conns: usize,
    /// PROXY header timeout, handshake admission, per-client share.
    pub front: FrontSettings,
    pub drain_timeout: Duration,
    pub stats: Arc<WorkerStats>,
    /// Where this worker writes its access log lines (http mode).
    pub access_log: Option<Arc<proxy::accesslog::Target>>,
    pub log_format: proxy::accesslog::LogFormat,
    pub control: flume::Receiver<Control>,
    /// Told once the worker is serving (Ok) or could not start (Err, with the cause).
    pub ready: std::sync::mpsc::Sender<Result<usize, String>>,
}

pub fn spawn(spec: Spec) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("tern-w{}", spec.id))
        .spawn(move || thread_main(spec))
}

fn thread_main(mut spec: Spec) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: spec.cpu }) {
        warn!(
            worker = spec.id,
            cpu = spec.cpu,
            "could not pin worker to its CPU"
        );
    }
    let ready = spec.ready.clone();
    let id = spec.id;
    let fail = |what: &str, e: io::Error| {
        let _ = ready.send(Err(format!("worker {id}: {what}: {e}")));
    };
    if spec.driver == Driver::IoUring {
        match ring::uring(spec.uring_restrict, recv_ring(&spec.settings)) {
            Ok(ring::Uring {
                mut rt,
                setup,
                restriction,
                multishot,
            }) => return rt.block_on(run(spec, setup, restriction, multishot)),
            Err(e) => {
                // The probe at start-up found io_uring usable, but this worker cannot have a
                // ring (locked-memory limit, ENOMEM): it serves on epoll rather than not at all.
                warn!(
                    worker = spec.id,
                    "cannot create an io_uring ring ({e}); this worker falls back to the epoll driver"
                );
                spec.driver = Driver::Legacy;
            }
        }
    }
    match ring::legacy() {
        Ok(mut rt) => rt.block_on(run(
            spec,
            "epoll",
            Restriction::NotApplicable,
            Multishot::NotApplicable,
        )),
        Err(e) => fail("cannot create the epoll runtime", e),
    }
}

mod door;
mod ring;

use door::{Acceptor, Door, Front};
use ring::{Multishot, Restriction};

/// The receive buffer ring `--uring-recv multishot` asks for: a pooled buffer less the
/// pump's record slack (a ring buffer holds what one pooled backend read would, so its records
/// fit one pooled write), and as many as the pool keeps free (2 MiB), so multishot pins no
/// more idle memory than the pool does; at least 16.
fn recv_ring(settings: &proxy::Settings) -> Option<ring::RecvRing> {
    if settings.uring_recv != crate::net::ringrecv::UringRecv::Multishot {
        return None;
    }
    let entries = ((2usize << 20) / settings.buf_size).clamp(16, 32768);
    Some(ring::RecvRing {
        // A power of two, as the kernel wants.
        entries: (1u16 << entries.ilog2()).max(16),
        buf_len: settings.buf_size - proxy::RECORD_SLACK,
    })
}

/// Open connections of this worker against its limit.
struct Gate {
    open: Cell<usize>,
    limit: usize,
    stats: Arc<WorkerStats>,
}

/// Held by a connection task; gives its slot back when the task ends, however it ends.
struct Slot(Rc<Gate>);

impl Gate {
    fn enter(self: &Rc<Self>) -> Option<Slot> {
        if self.open.get() >= self.limit {
            return None;
        }
        self.open.set(self.open.get() + 1);
        self.stats.open.inc();
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.stats.open.dec();
    }
}

async fn run(spec: Spec, setup: &'static str, restriction: Restriction, multishot: Multishot) {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = spec
            .ready
            .send(Err(format!("worker {}: {what}: {e}", spec.id)));
    };
    let mut listeners = Vec::new();
    for l in spec.listeners {
        match TcpListener::from_std(l) {
            Ok(l) => listeners.push(l),
            Err(e) => return fail("listener", &e),
        }
    }
    let access_log = match &spec.access_log {
        None => None,
        Some(target) => {
            match proxy::accesslog::AccessLog::start(target, spec.log_format, spec.id) {
                Ok(log) => Some(log),
                Err(e) => return fail("access log", &e),
            }
        }
    };
    let parts = WorkerParts {
        // Keep up to 2 MiB of free buffers for bursts, not memory for long-gone peaks.
        bufs: Rc::new(proxy::BufPool::new(
            spec.settings.buf_size,
            (2 << 20) / spec.settings.buf_size,
        )),
        settings: spec.settings,
        stats: spec.stats.clone(),
        access_log,
        id: spec.id,
        admission: Admission::new(spec.front.max_handshakes, spec.stats.clone()),
    };
    let first = match ProxyCtx::new(&spec.generation, spec.pool_stats, &parts, None) {
        Ok(ctx) => ctx,
        Err(e) => return fail("tls config", &e),
    };
    // The generation new connections get; a reload swaps it. Only this worker's tasks see it.
    let current = Rc::new(RefCell::new(first));
    let gate = Rc::new(Gate {
        open: Cell::new(0),
        limit: spec.max_conns,
        stats: spec.stats.clone(),
    });
    let stop = Rc::new(Latch::default());
    let front = Rc::new(Front {
        settings: spec.front,
        admission: parts.admission.clone(),
        per_ip: spec.front.per_ip_share.map(PerIp::new),
    });
    monoio::spawn(housekeeping(current.clone()));
    // Per-thread first-handshake costs (and, if nothing drew randomness before, aws-lc
    // seeding its generator) are paid here, not by the first client.
    if let Err(e) = crate::tls::warmup::warm_up(&spec.generation.tls) {
        warn!(worker = spec.id, "{e}");
    }
    for (index, listener) in listeners.into_iter().enumerate() {
        let listening = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return fail("listener address", &e),
        };
        let acceptor = Acceptor {
            id: spec.id,
            door: Rc::new(Door::new(index, &spec.generation)),
            listening,
            current: current.clone(),
            gate: gate.clone(),
            front: front.clone(),
        };
        monoio::spawn(accept_loop(acceptor, listener, stop.clone()));
    }
    // The worker is this gauge's one writer.
    spec.stats
        .uring_restricted
        .set(u64::from(restriction.is_restricted()));
    info!(
        worker = spec.id,
        cpu = spec.cpu,
        driver = ?spec.driver,
        setup,
        ring = %restriction,
        recv = %multishot,
        max_conns = spec.max_conns,
        max_handshakes = spec.front.max_handshakes,
        "worker started"
    );
    let _ = spec.ready.send(Ok(spec.id));

    // Wait for the control thread; a dropped channel means it is gone, which is a drain too.
    while let Ok(Control::Reload(generation, pool_stats, ack)) = spec.control.recv_async().await {
        let previous = current.borrow().clone();
        let result = match ProxyCtx::new(&generation, pool_stats, &parts, Some(&previous)) {
            Ok(ctx) => {
                *current.borrow_mut() = ctx;
                previous.retire();
                info!(
                    worker = spec.id,
                    cpu = spec.cpu,
                    driver = ?spec.driver,
                    setup,
                    ring = %restriction,
                    recv = %multishot,
                    generation = generation.id,
                    "worker serving a new generation"
                );
                Ok(())
            }
            Err(e) => Err(format!("worker {}: tls config: {e}", spec.id)),
        };
        let _ = ack.send((spec.id, result));
    }
    stop.set();
    current.borrow().retire();
    let deadline = Instant::now() + spec.drain_timeout;
    if gate.open.get() > 0 {
        info!(worker = spec.id, open = gate.open.get(), "draining");
    }
    while gate.open.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    if gate.open.get() > 0 {
        warn!(
            worker = spec.id,
            open = gate.open.get(),
            "drain timeout: closing the connections still open"
        );
    }
    // The last lines of the access log are written before the process exits.
    if let Some(log) = &parts.access_log {
        log.finish();
    }
}

/// Once a second: closes kept-alive backend connections past their idle time, and has the
/// allocator return this thread's freed pages to the kernel (after a burst of handshakes or
/// busy connections the memory would otherwise stay resident until the next burst).
async fn housekeeping(current: Rc<RefCell<proxy::Ctx>>) {
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        let now = Instant::now();
        // Retired generations keep no idle connections, so the current one is all to sweep.
        let ctx = current.borrow().clone();
        for pool in &ctx.pools {
            pool.sweep(now);
        }
        // SAFETY: mi_collect only tidies the calling thread's mimalloc heap; without mimalloc
        // as the global allocator (unit tests) that heap is simply empty.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

async fn accept_loop(acceptor: Acceptor, listener: TcpListener, stop: Rc<Latch>) {
    let id = acceptor.id;
    let mut last_warning: Option<Instant> = None;
    let mut canceller = monoio::io::Canceller::new();
    loop {
        // At the handshake bound, leave connections in the kernel's queue until one ends.
        if !acceptor.front.admission.has_room() {
            monoio::select! {
                _ = stop.wait() => break,
                _ = acceptor.front.admission.room() => {},
            }
        }
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let stopped = std::pin::pin!(stop.wait());
        let (accepted, stopping) =
            match futures_util::future::select(accept.as_mut(), stopped).await {
                futures_util::future::Either::Left((r, _)) => (r, false),
                // Dropping an io_uring accept does not undo it: a connection the kernel hands it
                // after the drop would be lost (its descriptor never closed, the client left
                // hanging). Cancel it and wait: a connection it got anyway is served. This matters
                // for a binary upgrade, where the successor keeps accepting on the same sockets.
                futures_util::future::Either::Right(((), _)) => {
                    canceller = canceller.cancel();
                    (accept.await, true)
                }
            };
        match accepted {
            Ok((stream, peer)) => acceptor.take(stream, peer),
            Err(_) if stopping => {}
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on accept; the
                // pending connection stays queued until a slot frees up.
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    warn!(
                        worker = id,
                        "accept failed: {e}{}",
                        if resource { " (backing off)" } else { "" }
                    );
                    last_warning = Some(Instant::now());
                }
                let pause = if resource { 100 } else { 10 };
                monoio::select! {
                    _ = stop.wait() => break,
                    _ = monoio::time::sleep(Duration::from_millis(pause)) => {},
                }
            }
        }
        if stopping {
            break;
        }
    }
    debug!(worker = id, "stopped accepting");
}
