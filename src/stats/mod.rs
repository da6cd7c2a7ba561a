//! Per-worker counters: the one home of the data path's numbers. Each worker owns one
//! cache-line-aligned block and is its only writer, so an update is a plain load and store (no
//! locked read-modify-write, no line shared between cores); the control thread (log lines) and
//! the metrics thread read them with relaxed loads, and never make a worker wait.
//!
//! Per-pool counters ([`PoolStats`]) follow the same rule: one block per worker and pool, handed
//! to the worker with the generation that configures the pool (see [`Registry`]).

mod histogram;
mod registry;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use histogram::{Bounds, Histogram, HistogramSnapshot, MAX_BOUNDS};
pub use registry::{PoolEntry, Registry};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    /// Subtracts one (for gauges such as open connections). Single writer, as for `add`.
    #[inline]
    pub fn dec(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(1), Relaxed);
    }

    /// Sets a gauge. Single writer, as for `add`.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One worker's counters; aligned so two workers never write the same cache line.
#[repr(align(128))]
#[derive(Debug)]
pub struct WorkerStats {
    pub accepted: Counter,
    /// Handshakes completed and failed, all versions and causes together (the detail is in
    /// `handshakes`; [`handshake_completed`](Self::handshake_completed) and
    /// [`handshake_failed`](Self::handshake_failed) keep both).
    pub handshakes_ok: Counter,
    pub handshakes_failed: Counter,
    /// Connections closed at accept because the worker was at its `--max-conns` share.
    pub refused_at_limit: Counter,
    /// Connections closed because their address is denied (`--deny`), not allowed
    /// (`--allow`), or not a trusted proxy (`--proxy-from`).
    pub denied: Counter,
    /// Connections closed because their client already held its `--max-conns-per-ip` share.
    pub refused_per_ip: Counter,
    /// `--accept-proxy` connections closed without a valid PROXY header (missing, malformed,
    /// truncated, or not complete within `--proxy-timeout`).
    pub proxy_header_refused: Counter,
    /// Handshake admission (`--max-handshakes`).
    pub admission: AdmissionStats,
    pub backend_connect_failures: Counter,
    /// Plaintext bytes forwarded client → backend and backend → client.
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    /// Connections open now (a gauge).
    pub open: Counter,
    /// 1 once the worker serves on a ring with io_uring restrictions, 0 otherwise (a gauge).
    pub uring_restricted: Counter,
    /// Multishot receives the kernel ended because the worker's receive buffer ring was empty
    /// (every buffer held by busy connections), each followed by one read the single way.
    pub recv_ring_empty: Counter,
    /// Handshakes by TLS version, outcome and resumption, and how long the completed ones took.
    pub handshakes: Handshakes,
    /// Time to establish each successful backend connection (TCP or Unix socket).
    pub connect_time: Histogram,
    /// http mode: every request head read on this worker, and every final response, whether
    /// a backend or tern itself (400, 404, 408, 421, 431...) answered it.
    pub http: HttpStats,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            accepted: Counter::new(),
            handshakes_ok: Counter::new(),
            handshakes_failed: Counter::new(),
            refused_at_limit: Counter::new(),
            denied: Counter::new(),
            refused_per_ip: Counter::new(),
            proxy_header_refused: Counter::new(),
            admission: AdmissionStats::default(),
            backend_connect_failures: Counter::new(),
            bytes_to_backend: Counter::new(),
            bytes_to_client: Counter::new(),
            open: Counter::new(),
            uring_restricted: Counter::new(),
            recv_ring_empty: Counter::new(),
            handshakes: Handshakes::default(),
            connect_time: Histogram::new(Bounds::CONNECT),
            http: HttpStats::default(),
        }
    }
}

impl WorkerStats {
    /// A handshake completed after `took` (from accept to the last handshake byte sent).
    #[inline]
    pub fn handshake_completed(&self, version: TlsVersion, resumed: bool, took: Duration) {
        self.handshakes_ok.inc();
        self.handshakes.cell(version, Outcome::Ok, resumed).inc();
        self.handshakes.duration.observe(took);
    }

    /// A handshake failed. `version` is what had been negotiated when it failed (usually
    /// nothing: [`TlsVersion::Unknown`]).
    #[inline]
    pub fn handshake_failed(&self, version: TlsVersion, reason: FailReason) {
        self.handshakes_failed.inc();
        self.handshakes
            .cell(version, Outcome::Failed(reason), false)
            .inc();
    }

    /// A backend connect (TCP or Unix socket) succeeded after `took`.
    #[inline]
    pub fn backend_connected(&self, took: Duration) {
        self.connect_time.observe(took);
    }
}

/// One worker's handshake admission: gauges and counters, by kind (0 full, 1 resumption).
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Handshakes holding a slot now.
    pub in_flight: Counter,
    /// The most that ever held a slot at once (high-water mark since start).
    pub in_flight_max: Counter,
    /// Handshakes waiting for a slot now.
    pub waiting: Counter,
    /// Handshakes that had to wait for a slot.
    pub queued: [Counter; 2],
    /// Handshakes given a slot.
    pub admitted: [Counter; 2],
    /// The bounds: full handshakes, and all handshakes (0: unbounded).
    pub limit_full: Counter,
    pub limit_total: Counter,
}

/// The TLS version of a handshake, as far as it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls13 = 0,
    Tls12 = 1,
    /// Not negotiated yet (most failures happen before the ServerHello).
    Unknown = 2,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 3] = [TlsVersion::Tls13, TlsVersion::Tls12, TlsVersion::Unknown];

    /// The `version` label value.
    pub fn label(self) -> &'static str {
        match self {
            TlsVersion::Tls13 => "1.3",
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Unknown => "unknown",
        }
    }

    /// From the name `tls::SessionInfo::version` carries ("TLSv1.3", "TLSv1.2").
    pub fn from_name(name: &str) -> TlsVersion {
        match name {
            "TLSv1.3" => TlsVersion::Tls13,
            "TLSv1.2" => TlsVersion::Tls12,
            _ => TlsVersion::Unknown,
        }
    }
}

/// Why a handshake failed, in classes an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The client broke the protocol or offered nothing tern accepts (rustls refused it).
    Protocol = 0,
    /// The client sent a fatal alert (e.g. it does not trust the certificate).
    Alert = 1,
    /// A socket error (reset, ...).
    Io = 2,
    /// The client closed before the handshake finished (scanners, health probes).
    Eof = 3,
    /// The client spoke plaintext HTTP to the TLS port (answered with a 400).
    PlainHttp = 4,
    /// Not finished within `--handshake-timeout`.
    Timeout = 5,
    /// A client certificate was asked for and refused: none sent where one is required,
    /// revoked, from another CA, expired (mTLS).
    ClientCert = 6,
}

impl FailReason {
    pub const ALL: [FailReason; 7] = [
        FailReason::Protocol,
        FailReason::Alert,
        FailReason::Io,
        FailReason::Eof,
        FailReason::PlainHttp,
        FailReason::Timeout,
        FailReason::ClientCert,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            FailReason::Protocol => "protocol",
            FailReason::Alert => "alert",
            FailReason::Io => "io",
            FailReason::Eof => "eof",
            FailReason::PlainHttp => "plain_http",
            FailReason::Timeout => "timeout",
            FailReason::ClientCert => "client_cert",
        }
    }
}

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(FailReason),
}

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed(r) => 1 + r as usize,
        }
    }
}

const OUTCOMES: usize = 1 + FailReason::ALL.len();

/// Handshake counters indexed by [version][outcome][resumed], and the duration of the
/// completed ones.
#[derive(Debug)]
pub struct Handshakes {
    cells: [[[Counter; 2]; OUTCOMES]; TlsVersion::ALL.len()],
    pub duration: Histogram,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes {
            cells: Default::default(),
            duration: Histogram::new(Bounds::HANDSHAKE),
        }
    }
}

impl Handshakes {
    #[inline]
    fn cell(&self, version: TlsVersion, outcome: Outcome, resumed: bool) -> &Counter {
        &self.cells[version as usize][outcome.index()][usize::from(resumed)]
    }

    pub fn get(&self, version: TlsVersion, outcome: Outcome, resumed: bool) -> u64 {
        self.cell(version, outcome, resumed).get()
    }
}

/// HTTP status classes 1xx to 5xx.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Final responses by status class. A status outside 100..=599 (tern's internal 0 for an
/// exchange cut before any response) is not a response and is not counted.
#[derive(Debug, Default)]
pub struct StatusCounts([Counter; 5]);

impl StatusCounts {
    #[inline]
    pub fn record(&self, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.0.get(i as usize))
        {
            c.inc();
        }
    }

    /// By class, in [`STATUS_CLASSES`] order.
    pub fn get(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].get())
    }
}

/// One worker's http-mode counters, over all pools.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Request heads read (refused ones included).
    pub requests: Counter,
    pub responses: StatusCounts,
}

/// One worker's counters for one backend pool (http mode): the requests routed to it, the
/// responses they got, and the time from routing to the backend's final response head.
/// Aligned like [`WorkerStats`]: each block has one writer, its worker.
#[repr(align(128))]
#[derive(Debug)]
pub struct PoolStats {
    pub requests: Counter,
    pub responses: StatusCounts,
    pub response_time: Histogram,
}

impl Default for PoolStats {
    fn default() -> Self {
        PoolStats {
            requests: Counter::new(),
            responses: StatusCounts::default(),
            response_time: Histogram::new(Bounds::RESPONSE),
        }
    }
}

/// A sum over workers, for the control thread's log lines.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub refused_at_limit: u64,
    pub denied: u64,
    pub refused_per_ip: u64,
    pub proxy_header_refused: u64,
    pub backend_connect_failures: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub open: u64,
}

impl Totals {
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerStats>) -> Totals {
        let mut t = Totals::default();
        for w in workers {
            t.accepted += w.accepted.get();
            t.handshakes_ok += w.handshakes_ok.get();
            t.handshakes_failed += w.handshakes_failed.get();
            t.refused_at_limit += w.refused_at_limit.get();
            t.denied += w.denied.get();
            t.refused_per_ip += w.refused_per_ip.get();
            t.proxy_header_refused += w.proxy_header_refused.get();
            t.backend_connect_failures += w.backend_connect_failures.get();
            t.bytes_to_backend += w.bytes_to_backend.get();
            t.bytes_to_client += w.bytes_to_client.get();
            t.open += w.open.get();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_across_workers() {
        let a = WorkerStats::default();
        let b = WorkerStats::default();
        a.accepted.add(3);
        b.accepted.inc();
        a.open.inc();
        a.open.inc();
        a.open.dec();
        let t = Totals::sum([&a, &b]);
        assert_eq!(t.accepted, 4);
        assert_eq!(t.open, 1);
        assert_eq!(std::mem::align_of::<WorkerStats>(), 128);
        assert_eq!(std::mem::align_of::<PoolStats>(), 128);
    }

    #[test]
    fn handshakes_keep_the_totals_and_the_detail() {
        let w = WorkerStats::default();
        w.handshake_completed(TlsVersion::Tls13, true, Duration::from_millis(2));
        w.handshake_completed(TlsVersion::Tls12, false, Duration::from_millis(20));
        w.handshake_failed(TlsVersion::Unknown, FailReason::Eof);
        w.handshake_failed(TlsVersion::Unknown, FailReason::Timeout);
        assert_eq!((w.handshakes_ok.get(), w.handshakes_failed.get()), (2, 2));
        let h = &w.handshakes;
        assert_eq!(h.get(TlsVersion::Tls13, Outcome::Ok, true), 1);
        assert_eq!(h.get(TlsVersion::Tls13, Outcome::Ok, false), 0);
        assert_eq!(h.get(TlsVersion::Tls12, Outcome::Ok, false), 1);
        let eof = Outcome::Failed(FailReason::Eof);
        assert_eq!(h.get(TlsVersion::Unknown, eof, false), 1);
        assert_eq!(h.get(TlsVersion::Tls13, eof, false), 0);
        // Only completed handshakes are timed.
        assert_eq!(h.duration.snapshot().count(), 2);
        assert_eq!(TlsVersion::from_name("TLSv1.3"), TlsVersion::Tls13);
        assert_eq!(TlsVersion::from_name("SSLv3"), TlsVersion::Unknown);
    }

    #[test]
    fn statuses_count_by_class() {
        let s = StatusCounts::default();
        for status in [101, 200, 204, 304, 404, 421, 502, 599, 0, 99, 600, 999] {
            s.record(status);
        }
        assert_eq!(s.get(), [1, 2, 1, 2, 2]);
    }
}
