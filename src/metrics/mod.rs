//! Observation from outside the workers: `--metrics ADDR` serves Prometheus metrics, `/healthz`
//! and `/readyz` on a small thread of its own. It reads the workers' single-writer counters
//! with relaxed loads and never makes a worker wait; the control thread tells it the process
//! state ([`Health`]) and what a reload changed ([`Process`]).
//!
//! - [`exposition`]: the text formats (pure).
//! - [`families`]: the metric set, read from the counters.
//! - [`server`]: the HTTP/1.1 listener.

pub mod exposition;
pub mod families;
pub mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::stats::Registry;
use crate::tls::certs::{self, CertSummary};
use crate::tls::TlsSettings;

pub use server::Server;

/// Everything the metrics thread reads.
#[derive(Debug)]
pub struct State {
    pub registry: Arc<Registry>,
    pub process: Process,
    pub health: Health,
}

/// Where tern is in its life, for `/healthz` and `/readyz`. Set by the control thread.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicU8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Workers are being started.
    Starting,
    /// Every worker is accepting.
    Ready,
    /// A TERM/INT arrived (or a worker died): no longer accepting, open connections finishing.
    Draining,
}

impl Health {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Every worker accepts. Draining is final: a late call does not undo it.
    pub fn set_ready(&self) {
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn set_draining(&self) {
        self.0.store(2, Ordering::Release);
    }
}

/// Process-wide facts: build, workers, certificates, tickets and reloads. Written by the
/// control thread only (at start and at each reload), read by the metrics thread.
#[derive(Debug)]
pub struct Process {
    pub version: &'static str,
    pub workers: usize,
    /// http mode (the http families are left out in tcp mode).
    pub http: bool,
    tls: Mutex<TlsFacts>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_ok: AtomicBool,
    /// Unix seconds of the last configuration that took effect (the start, then each reload).
    last_success: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct TlsFacts {
    certs: Vec<CertSummary>,
    tickets: bool,
}

/// What the reader sees of [`Process`].
#[derive(Debug, Clone)]
pub struct ProcessView {
    pub version: &'static str,
    pub workers: usize,
    pub http: bool,
    pub certs: Vec<CertSummary>,
    pub tickets: bool,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    pub last_success: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Process {
    pub fn new(workers: usize, http: bool, tls: &TlsSettings) -> Process {
        Process {
            version: env!("CARGO_PKG_VERSION"),
            workers,
            http,
            tls: Mutex::new(tls_facts(tls)),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_ok: AtomicBool::new(true),
            last_success: AtomicU64::new(unix_now()),
        }
    }

    /// A reload took effect with these TLS settings (control thread).
    pub fn reload_succeeded(&self, tls: &TlsSettings) {
        *self.tls.lock().unwrap_or_else(|p| p.into_inner()) = tls_facts(tls);
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(true, Ordering::Relaxed);
        self.last_success.store(unix_now(), Ordering::Relaxed);
    }

    /// A reload was refused; the previous configuration still serves (control thread).
    pub fn reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(false, Ordering::Relaxed);
    }

    pub fn view(&self) -> ProcessView {
        let tls = self.tls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ProcessView {
            version: self.version,
            workers: self.workers,
            http: self.http,
            certs: tls.certs,
            tickets: tls.tickets,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload_ok: self.last_reload_ok.load(Ordering::Relaxed),
            last_success: self.last_success.load(Ordering::Relaxed),
        }
    }
}

/// Certificate facts are read once per configuration, not per scrape.
fn tls_facts(tls: &TlsSettings) -> TlsFacts {
    let certs = tls
        .certs
        .entries()
        .iter()
        .filter_map(|e| match certs::summary(&e.key) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("metrics: a loaded certificate cannot be described: {e}");
                None
            }
        })
        .collect();
    TlsFacts {
        certs,
        tickets: tls.tickets.is_some(),
    }
}

impl State {
    /// The metric set as it is now, rendered in `format`.
    pub fn render(&self, format: exposition::Format) -> String {
        let families = families::collect(&self.registry, &self.process.view(), unix_now());
        exposition::render(&families, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_moves_forward_only() {
        let h = Health::default();
        assert_eq!(h.phase(), Phase::Starting);
        h.set_ready();
        assert_eq!(h.phase(), Phase::Ready);
        h.set_draining();
        h.set_ready();
        assert_eq!(h.phase(), Phase::Draining);
        let early = Health::default();
        early.set_draining();
        early.set_ready();
        assert_eq!(early.phase(), Phase::Draining);
    }
}
