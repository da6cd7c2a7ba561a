//! Backend pools, per worker: balancing (round-robin, least-connections, client-IP hash),
//! passive health (a backend that refuses or times out rests for a growing cool-down) and the
//! verdicts of active checks (`health`). Each worker keeps its own counts and verdicts: nothing
//! here is shared between cores.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::addr::BackendAddr;
use super::conn::{self, BackendStream};
use crate::net::bufpool::BufPool;
use crate::proxyproto::Version as ProxyVersion;
use crate::stats::WorkerStats;
use crate::tls::client::{ClientTls, ClientTlsSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// The backend with the fewest open connections from this worker.
    LeastConn,
    /// The same client address goes to the same backend (on every worker) while it is up.
    IpHash,
}

impl std::str::FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        match s {
            "round-robin" => Ok(Balance::RoundRobin),
            "least-conn" => Ok(Balance::LeastConn),
            "ip-hash" => Ok(Balance::IpHash),
            other => Err(format!(
                "balance '{other}' is not one of round-robin, least-conn, ip-hash"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with GET; a 2xx or 3xx answer means healthy.
    pub path: String,
    pub interval: Duration,
}

/// A pool as configured.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub backends: Vec<BackendAddr>,
    pub balance: Balance,
    pub health: Option<HealthCheck>,
    /// Connect to the backends over TLS.
    pub tls: Option<BackendTls>,
    /// Send each backend connection a PROXY protocol header first.
    pub proxy_protocol: Option<ProxyVersion>,
}

/// A pool's TLS towards its backends.
#[derive(Debug, Clone)]
pub struct BackendTls {
    pub settings: ClientTlsSettings,
    /// The name each backend (by index) is asked for and checked against: `--backend-sni`,
    /// or the host as the backend was written (an IP address: its IP SAN, and no SNI).
    pub names: Vec<String>,
}

/// Cool-down after the first failure; it doubles per consecutive failure up to `MAX_REST`.
const FIRST_REST: Duration = Duration::from_secs(1);
const MAX_REST: Duration = Duration::from_secs(30);

struct Backend {
    addr: BackendAddr,
    /// Kept-alive connections (http mode), newest last.
    idle: RefCell<Vec<Idle>>,
    /// Connections open to it from this worker.
    open: Cell<u32>,
    failures: Cell<u32>,
    resting_until: Cell<Option<Instant>>,
    /// When its last failure was (for choosing the one resting longest).
    failed_at: Cell<Option<Instant>>,
    /// The last active check failed.
    check_failed: Cell<bool>,
}

/// A kept-alive connection and since when it waits.
struct Idle {
    stream: BackendStream,
    since: Instant,
    /// With the PROXY protocol: the header it was opened with, which names one client
    /// connection. It is reused only for that one (the same `Rc`), never for another client.
    tag: Option<Rc<[u8]>>,
}

fn same_tag(a: &Option<Rc<[u8]>>, b: Option<&Rc<[u8]>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Rc::ptr_eq(a, b),
        _ => false,
    }
}

/// One pool's state in one worker.
pub struct Pool {
    name: String,
    backends: Vec<Backend>,
    balance: Balance,
    next: Cell<usize>,
    connect_timeout: Duration,
    keepalive: KeepAlive,
    /// A newer generation replaced this pool: it keeps no idle connections any more.
    retired: Cell<bool>,
    /// This worker's TLS client config for the pool, and each backend's name.
    tls: Option<(ClientTls, Vec<String>)>,
    proxy_protocol: Option<ProxyVersion>,
}

/// How kept-alive backend connections are pooled (http mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle connections kept per backend per worker.
    pub max_idle: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            max_idle: 32,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Why no backend connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    /// Every backend is resting or failed its last check.
    NoneUsable,
    /// Every usable backend was tried and failed; the last cause.
    Failed(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NoneUsable => {
                f.write_str("no usable backend (all resting or failing checks)")
            }
            ConnectError::Failed(e) => write!(f, "every backend failed, last: {e}"),
        }
    }
}

/// A connection's claim on a backend; counts it as open until dropped.
pub struct Lease<'a> {
    pool: &'a Pool,
    index: usize,
}

impl<'a> Lease<'a> {
    /// Borrowed from the pool, which outlives the lease: naming the backend in a log line or
    /// an error costs no copy of a socket path.
    pub fn addr(&self) -> &'a BackendAddr {
        &self.pool.backends[self.index].addr
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let open = &self.pool.backends[self.index].open;
        open.set(open.get().saturating_sub(1));
    }
}

/// FNV-1a: stable across workers and restarts, so ip-hash sends a client to the same backend
/// whichever worker accepted it.
fn ip_hash(ip: IpAddr) -> u64 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

impl Pool {
    /// `stagger` offsets the round-robin start per worker, so N fresh workers do not all send
    /// their first connection to the same backend.
    pub fn new(
        spec: &PoolSpec,
        connect_timeout: Duration,
        keepalive: KeepAlive,
        stagger: usize,
    ) -> Pool {
        let n = spec.backends.len().max(1);
        Pool {
            name: spec.name.clone(),
            backends: spec
                .backends
                .iter()
                .map(|addr| Backend {
                    addr: addr.clone(),
                    idle: RefCell::new(Vec::new()),
                    open: Cell::new(0),
                    failures: Cell::new(0),
                    resting_until: Cell::new(None),
                    failed_at: Cell::new(None),
                    check_failed: Cell::new(false),
                })
                .collect(),
            balance: spec.balance,
            next: Cell::new(stagger % n),
            connect_timeout,
            keepalive,
            retired: Cell::new(false),
            tls: None,
            proxy_protocol: spec.proxy_protocol,
        }
    }

    /// Connects to the backends over TLS with this worker's client config.
    pub fn with_tls(mut self, tls: ClientTls, names: Vec<String>) -> Pool {
        self.tls = Some((tls, names));
        self
    }

    /// The PROXY protocol version each connection starts with, if any.
    pub fn proxy_protocol(&self) -> Option<ProxyVersion> {
        self.proxy_protocol
    }

    /// This worker's TLS towards backend `i` (its config and the name asked for).
    pub fn tls_for(&self, i: usize) -> Option<(&ClientTls, &str)> {
        self.tls
            .as_ref()
            .map(|(t, names)| (t, names.get(i).map_or("", String::as_str)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn addrs(&self) -> impl Iterator<Item = &BackendAddr> + '_ {
        self.backends.iter().map(|b| &b.addr)
    }

    fn usable(&self, i: usize, now: Instant) -> bool {
        let b = &self.backends[i];
        !b.check_failed.get() && b.resting_until.get().is_none_or(|t| now >= t)
    }

    /// The backends one connection tries, best first: the balancing choice, then the rest
    /// round-robin; resting and failing ones are left out. When every backend that passes its
    /// checks is resting, the one resting longest is tried anyway (nginx never marks a sole
    /// server down): a backend restarted after an outage is used again by the very next
    /// connection, not after the rest the outage ran up. Empty only when every backend fails
    /// its active check.
    pub fn order(&self, client: IpAddr, now: Instant) -> Vec<usize> {
        let n = self.backends.len();
        let start = match self.balance {
            Balance::RoundRobin => {
                let s = self.next.get();
                self.next.set(if n == 0 { 0 } else { (s + 1) % n });
                s
            }
            Balance::IpHash => {
                if n == 0 {
                    0
                } else {
                    (ip_hash(client) % n as u64) as usize
                }
            }
            Balance::LeastConn => {
                let s = self.next.get();
                self.next.set(if n == 0 { 0 } else { (s + 1) % n });
                (0..n)
                    .map(|k| (s + k) % n)
                    .filter(|&i| self.usable(i, now))
                    .min_by_key(|&i| self.backends[i].open.get())
                    .unwrap_or(s)
            }
        };
        let ring = (0..n).map(move |k| (start + k) % n);
        let usable: Vec<usize> = ring.clone().filter(|&i| self.usable(i, now)).collect();
        if !usable.is_empty() {
            return usable;
        }
        ring.filter(|&i| !self.backends[i].check_failed.get())
            .min_by_key(|&i| self.backends[i].failed_at.get())
            .into_iter()
            .collect()
    }

    /// Connects to the backend the balancing picks, falling through to the others on failure.
    /// `header`: the PROXY protocol header to send first (when the pool sends one).
    pub async fn connect(
        &self,
        client: IpAddr,
        header: Option<&Rc<[u8]>>,
        stats: &WorkerStats,
        bufs: &BufPool,
    ) -> Result<(BackendStream, Lease<'_>), ConnectError> {
        self.connect_or_reuse(client, header, stats, false, bufs)
            .await
            .map(|(s, lease, _)| (s, lease))
    }

    /// Like [`connect`](Self::connect), but first takes a kept-alive connection to the chosen
    /// backend if one is idle and still sound (and, with the PROXY protocol, was opened with
    /// this same `header`). The flag says whether it was reused. A connect covers the TCP
    /// connect, the PROXY header and the TLS handshake, all within the connect timeout; a
    /// handshake that fails (a certificate that does not verify) counts as a failed connect.
    pub async fn connect_or_reuse(
        &self,
        client: IpAddr,
        header: Option<&Rc<[u8]>>,
        stats: &WorkerStats,
        reuse: bool,
        bufs: &BufPool,
    ) -> Result<(BackendStream, Lease<'_>, bool), ConnectError> {
        let mut last = None;
        let now = Instant::now();
        let candidates = self.order(client, now);
        if reuse {
            if let Some(&i) = candidates.first() {
                if let Some(stream) = self.take_idle(i, now, header) {
                    return Ok((stream, self.lease(i), true));
                }
            }
        }
        let hello = header.map_or(&[][..], |h| &h[..]);
        for i in candidates {
            let addr = &self.backends[i].addr;
            let started = Instant::now();
            // Boxed: the handshake's state is not carried in every request's future.
            let open = Box::pin(conn::open(addr, hello, self.tls_for(i), bufs));
            let attempt = monoio::time::timeout(self.connect_timeout, open).await;
            let err = match attempt {
                Ok(Ok(stream)) => {
                    stats.backend_connected(started.elapsed());
                    self.mark_ok(i);
                    return Ok((stream, self.lease(i), false));
                }
                Ok(Err(e)) => io::Error::new(e.kind(), format!("{addr}: {e}")),
                Err(_) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr}: connect timed out"),
                ),
            };
            tracing::debug!(pool = %self.name, backend = %addr, "backend connect failed: {err}");
            stats.backend_connect_failures.inc();
            self.mark_failed(i, Instant::now());
            last = Some(err);
        }
        Err(last.map_or(ConnectError::NoneUsable, ConnectError::Failed))
    }

    fn lease(&self, i: usize) -> Lease<'_> {
        let open = &self.backends[i].open;
        open.set(open.get() + 1);
        Lease {
            pool: self,
            index: i,
        }
    }

    /// The newest idle connection to backend `i` with this tag that is young enough and
    /// still sound.
    fn take_idle(&self, i: usize, now: Instant, tag: Option<&Rc<[u8]>>) -> Option<BackendStream> {
        let mut idle = self.backends[i].idle.borrow_mut();
        while let Some(at) = idle.iter().rposition(|e| same_tag(&e.tag, tag)) {
            let mut e = idle.remove(at);
            if now.duration_since(e.since) < self.keepalive.idle_timeout && e.stream.idle_ok() {
                return Some(e.stream);
            }
        }
        None
    }

    /// Keeps a connection to backend `i` for the next request (dropped if the pool is full).
    /// `tag`: the PROXY header it was opened with, if any.
    pub fn put_idle(&self, i: usize, stream: BackendStream, tag: Option<Rc<[u8]>>) {
        let mut idle = self.backends[i].idle.borrow_mut();
        if idle.len() < self.keepalive.max_idle && !self.retired.get() {
            idle.push(Idle {
                stream,
                since: Instant::now(),
                tag,
            });
        }
    }

    /// The client connection a PROXY header named has ended: its kept-alive connections can
    /// serve nobody else.
    pub fn drop_tagged(&self, tag: &Rc<[u8]>) {
        for b in &self.backends {
            b.idle.borrow_mut().retain(|e| !same_tag(&e.tag, Some(tag)));
        }
    }

    /// A reload replaced this pool: close its idle connections now, and keep none from here on
    /// (connections of the old generation still finishing requests close when they are done).
    pub fn retire(&self) {
        self.retired.set(true);
        for b in &self.backends {
            b.idle.borrow_mut().clear();
        }
    }

    /// Closes idle connections past their time.
    pub fn sweep(&self, now: Instant) {
        for b in &self.backends {
            b.idle
                .borrow_mut()
                .retain(|e| now.duration_since(e.since) < self.keepalive.idle_timeout);
        }
    }

    /// A connect failed: rest the backend, longer each consecutive time.
    pub fn mark_failed(&self, i: usize, now: Instant) {
        let b = &self.backends[i];
        let failures = b.failures.get().saturating_add(1);
        b.failures.set(failures);
        let rest = FIRST_REST
            .saturating_mul(1 << (failures - 1).min(5))
            .min(MAX_REST);
        b.resting_until.set(Some(now + rest));
        b.failed_at.set(Some(now));
    }

    pub fn mark_ok(&self, i: usize) {
        let b = &self.backends[i];
        b.failures.set(0);
        b.resting_until.set(None);
        b.failed_at.set(None);
    }

    /// An active check's verdict.
    pub fn set_check(&self, i: usize, healthy: bool) {
        let b = &self.backends[i];
        if healthy && b.check_failed.get() {
            tracing::info!(pool = %self.name, backend = %b.addr, "backend passes its health check again");
        } else if !healthy && !b.check_failed.get() {
            tracing::warn!(pool = %self.name, backend = %b.addr, "backend failed its health check");
        }
        b.check_failed.set(!healthy);
        if healthy {
            self.mark_ok(i);
        }
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, n: u16) -> Pool {
        let spec = PoolSpec {
            name: "p".into(),
            backends: (1..=n)
                .map(|p| BackendAddr::Tcp(([127, 0, 0, 1], p).into()))
                .collect(),
            balance,
            health: None,
            tls: None,
            proxy_protocol: None,
        };
        Pool::new(&spec, Duration::from_secs(1), KeepAlive::default(), 0)
    }

    fn first(p: &Pool, ip: [u8; 4], now: Instant) -> Option<usize> {
        p.order(IpAddr::from(ip), now).first().copied()
    }

    #[test]
    fn round_robin_rotates_and_falls_through_in_order() {
        let p = pool(Balance::RoundRobin, 3);
        let now = Instant::now();
        let orders: Vec<Vec<usize>> = (0..3)
            .map(|_| p.order(IpAddr::from([1, 1, 1, 1]), now))
            .collect();
        assert_eq!(orders, vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]]);
    }

    #[test]
    fn a_failed_backend_rests_then_returns() {
        let p = pool(Balance::RoundRobin, 2);
        let now = Instant::now();
        p.mark_failed(0, now);
        let order = p.order(IpAddr::from([1, 1, 1, 1]), now);
        assert_eq!(order, vec![1], "resting backends are skipped");
        let later = now + Duration::from_millis(1100);
        assert_eq!(p.order(IpAddr::from([1, 1, 1, 1]), later).len(), 2);
        // Consecutive failures rest it longer, up to the cap.
        for _ in 0..10 {
            p.mark_failed(0, now);
        }
        assert_eq!(
            p.order(IpAddr::from([1, 1, 1, 1]), now + Duration::from_secs(29))
                .len(),
            1
        );
        assert_eq!(p.order(IpAddr::from([1, 1, 1, 1]), now + MAX_REST).len(), 2);
        p.mark_ok(0);
        assert_eq!(p.order(IpAddr::from([1, 1, 1, 1]), now).len(), 2);
    }

    #[test]
    fn when_every_backend_rests_the_one_resting_longest_is_tried() {
        let p = pool(Balance::RoundRobin, 3);
        let t0 = Instant::now();
        p.mark_failed(1, t0);
        p.mark_failed(0, t0 + Duration::from_millis(10));
        p.mark_failed(2, t0 + Duration::from_millis(20));
        let now = t0 + Duration::from_millis(30);
        assert_eq!(p.order(IpAddr::from([1, 1, 1, 1]), now), vec![1]);
        // A success ends its rest at once.
        p.mark_ok(1);
        assert_eq!(p.order(IpAddr::from([1, 1, 1, 1]), now), vec![1]);
        // A sole backend is never out of reach, however often it failed.
        let sole = pool(Balance::RoundRobin, 1);
        for _ in 0..20 {
            sole.mark_failed(0, now);
        }
        assert_eq!(sole.order(IpAddr::from([1, 1, 1, 1]), now), vec![0]);
        // Failing its active check does take it out.
        sole.set_check(0, false);
        assert!(sole.order(IpAddr::from([1, 1, 1, 1]), now).is_empty());
    }

    #[test]
    fn failing_checks_take_a_backend_out_until_it_passes() {
        let p = pool(Balance::RoundRobin, 2);
        let now = Instant::now();
        p.set_check(1, false);
        assert!(p
            .order(IpAddr::from([1, 1, 1, 1]), now)
            .iter()
            .all(|&i| i == 0));
        p.set_check(0, false);
        assert_eq!(first(&p, [1, 1, 1, 1], now), None, "nothing usable");
        p.set_check(1, true);
        assert_eq!(first(&p, [1, 1, 1, 1], now), Some(1));
    }

    #[test]
    fn least_conn_prefers_the_emptiest() {
        let p = pool(Balance::LeastConn, 3);
        let now = Instant::now();
        p.backends[0].open.set(5);
        p.backends[1].open.set(1);
        p.backends[2].open.set(3);
        assert_eq!(first(&p, [1, 1, 1, 1], now), Some(1));
        p.backends[1].open.set(9);
        assert_eq!(first(&p, [1, 1, 1, 1], now), Some(2));
    }

    #[test]
    fn ip_hash_is_sticky_and_spreads() {
        let p = pool(Balance::IpHash, 4);
        let now = Instant::now();
        let a = first(&p, [10, 0, 0, 1], now);
        for _ in 0..5 {
            assert_eq!(first(&p, [10, 0, 0, 1], now), a);
        }
        let spread: std::collections::HashSet<_> =
            (0..64).map(|i| first(&p, [10, 0, 1, i], now)).collect();
        assert!(spread.len() >= 3, "{spread:?}");
        // Another worker's pool (other stagger) agrees.
        let other = Pool::new(
            &PoolSpec {
                name: "p".into(),
                backends: p.addrs().cloned().collect(),
                balance: Balance::IpHash,
                health: None,
                tls: None,
                proxy_protocol: None,
            },
            Duration::from_secs(1),
            KeepAlive::default(),
            3,
        );
        assert_eq!(first(&other, [10, 0, 0, 1], now), a);
        // Its backend down: the next one takes over.
        p.mark_failed(a.unwrap(), now);
        assert_ne!(first(&p, [10, 0, 0, 1], now), a);
    }
}
