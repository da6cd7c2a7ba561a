//! A single-writer histogram of durations with fixed bucket bounds.
//!
//! The owning worker records with [`Histogram::observe`]: one bucket's count and the sum, each a
//! plain load and store (no locked read-modify-write). Another thread reads with relaxed loads.
//! There is no separate count: the count is the sum of the bucket counts as read, so the
//! `+Inf` bucket and `_count` always agree in one exposition.
//!
//! Tearing: a reader loads the buckets one after another and then the sum while the writer may
//! be recording, so within one read the sum can include an observation the buckets do not yet
//! show (or the reverse). Only one observation can be in flight per histogram (one writer), the
//! next read sees it whole, and every bucket and the sum only ever grow, so a rate over any two
//! scrapes is off by at most that one observation.

use std::time::Duration;

use super::Counter;

/// The most finite bounds a histogram may have (plus the `+Inf` bucket).
pub const MAX_BOUNDS: usize = 15;

/// Upper bounds of the buckets, in nanoseconds, ascending (each bucket counts values `<=` its
/// bound; one more bucket counts the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds(&'static [u64]);

const MS: u64 = 1_000_000;

impl Bounds {
    /// TLS handshakes: 0.5 ms to 5 s.
    pub const HANDSHAKE: Bounds = Bounds(&[
        MS / 2,
        MS,
        5 * MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        1000 * MS,
        2500 * MS,
        5000 * MS,
    ]);
    /// Backend connects (TCP or Unix socket): 0.1 ms to 5 s (a backend on the same host answers in microseconds).
    pub const CONNECT: Bounds = Bounds(&[
        MS / 10,
        MS / 4,
        MS / 2,
        MS,
        5 * MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        1000 * MS,
        2500 * MS,
        5000 * MS,
    ]);
    /// HTTP responses: 1 ms to 60 s (the default --backend-timeout).
    pub const RESPONSE: Bounds = Bounds(&[
        MS,
        5 * MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        1000 * MS,
        2500 * MS,
        5000 * MS,
        10_000 * MS,
        30_000 * MS,
        60_000 * MS,
    ]);

    pub fn nanos(self) -> &'static [u64] {
        self.0
    }

    /// The bounds in seconds, for exposition.
    pub fn seconds(self) -> Vec<f64> {
        self.0.iter().map(|&ns| ns as f64 / 1e9).collect()
    }
}

/// One worker's histogram. Only its worker calls [`observe`](Histogram::observe).
#[derive(Debug)]
pub struct Histogram {
    bounds: Bounds,
    /// `buckets[i]` counts observations in `(bounds[i-1], bounds[i]]`; `buckets[bounds.len()]`
    /// those above the last bound. Not cumulative: the reader adds them up.
    buckets: [Counter; MAX_BOUNDS + 1],
    sum_ns: Counter,
}

/// What a reader saw of a histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: Bounds,
    /// Per-bucket (not cumulative) counts, one more than there are bounds.
    pub counts: Vec<u64>,
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    pub const fn new(bounds: Bounds) -> Histogram {
        assert!(bounds.0.len() <= MAX_BOUNDS);
        Histogram {
            bounds,
            buckets: [const { Counter::new() }; MAX_BOUNDS + 1],
            sum_ns: Counter::new(),
        }
    }

    /// Records one duration. Single writer: only the owning worker may call this.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.bounds.0.partition_point(|&b| b < ns);
        self.buckets[i].inc();
        self.sum_ns.add(ns);
    }

    /// Reads the histogram (relaxed loads; see the module comment on tearing).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let n = self.bounds.0.len() + 1;
        let counts = self.buckets[..n].iter().map(Counter::get).collect();
        HistogramSnapshot {
            bounds: self.bounds,
            counts,
            sum_ns: self.sum_ns.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let h = Histogram::new(Bounds::HANDSHAKE);
        h.observe(Duration::from_micros(100)); // <= 0.5 ms
        h.observe(Duration::from_micros(500)); // exactly 0.5 ms: still the first bucket
        h.observe(Duration::from_nanos(500_001)); // just above: the 1 ms bucket
        h.observe(Duration::from_secs(5)); // the last finite bucket
        h.observe(Duration::from_secs(7)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.counts.len(), Bounds::HANDSHAKE.nanos().len() + 1);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[s.counts.len() - 2], 1);
        assert_eq!(s.counts[s.counts.len() - 1], 1);
        assert_eq!(s.count(), 5);
        assert_eq!(
            s.sum_ns,
            100_000 + 500_000 + 500_001 + 5_000_000_000 + 7_000_000_000
        );
    }

    #[test]
    fn bounds_ascend_and_fit() {
        for b in [Bounds::HANDSHAKE, Bounds::CONNECT, Bounds::RESPONSE] {
            assert!(b.nanos().len() <= MAX_BOUNDS);
            assert!(b.nanos().windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
        assert_eq!(Bounds::HANDSHAKE.seconds()[0], 0.0005);
        assert_eq!(Bounds::CONNECT.seconds()[0], 0.0001);
        assert_eq!(*Bounds::RESPONSE.seconds().last().unwrap(), 60.0);
    }

    #[test]
    fn a_huge_duration_saturates_into_the_last_bucket() {
        let h = Histogram::new(Bounds::CONNECT);
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(*s.counts.last().unwrap(), 1);
        assert_eq!(s.sum_ns, u64::MAX);
    }
}
