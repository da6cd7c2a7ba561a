//! Per-worker counters. Each worker owns one cache-line-aligned block and is its only writer, so
//! an update is a plain load and store (no locked read-modify-write, no line shared between
//! cores); the control thread reads them with relaxed loads for logs and, later, metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
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

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One worker's counters; aligned so two workers never write the same cache line.
#[repr(align(128))]
#[derive(Default, Debug)]
pub struct WorkerStats {
    pub accepted: Counter,
    pub handshakes_ok: Counter,
    pub handshakes_failed: Counter,
    /// Connections closed at accept because the worker was at its `--max-conns` share.
    pub refused_at_limit: Counter,
    pub backend_connect_failures: Counter,
    /// Plaintext bytes forwarded client → backend and backend → client.
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    /// Connections open now (a gauge).
    pub open: Counter,
}

/// A sum over workers, for the control thread's log lines.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub refused_at_limit: u64,
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
    }
}
