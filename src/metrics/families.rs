//! The metric set: every family tern exposes, read from the per-worker counters and the
//! process facts. Names follow the Prometheus conventions: a `tern_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` on counters (added by the renderer), `worker="N"` on
//! everything a worker counts.

use crate::frontdoor::admission::Kind as AdmissionKind;
use crate::stats::{
    FailReason, HistogramSnapshot, Outcome, Registry, StatusCounts, TlsVersion, WorkerStats,
    STATUS_CLASSES,
};
use crate::tls::tickets::WINDOW_SECS;

use super::exposition::{Family, Kind, Value};
use super::ProcessView;

type Labels = Vec<(&'static str, String)>;

fn histogram(s: HistogramSnapshot) -> Value {
    Value::Histogram {
        bounds: s.bounds.seconds(),
        counts: s.counts,
        sum: s.sum_ns as f64 / 1e9,
    }
}

fn bool_label(b: bool) -> String {
    if b { "true" } else { "false" }.into()
}

/// Reads everything once. `now` (Unix seconds) places the ticket-key window.
pub fn collect(registry: &Registry, process: &ProcessView, now: u64) -> Vec<Family> {
    let mut out = process_families(process, now);
    let workers: Vec<(Labels, &WorkerStats)> = registry
        .workers()
        .iter()
        .enumerate()
        .map(|(i, w)| (vec![("worker", i.to_string())], &**w))
        .collect();
    out.extend(connection_families(&workers));
    out.extend(tls_families(&workers));
    out.extend(admission_families(&workers));
    out.extend(backend_families(&workers));
    if process.http {
        out.extend(http_families(&workers, registry));
    }
    out
}

fn per_worker(
    workers: &[(Labels, &WorkerStats)],
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: impl Fn(&WorkerStats) -> Value,
) -> Family {
    let mut f = Family::new(name, kind, help);
    for (labels, w) in workers {
        f.push(labels.clone(), value(w));
    }
    f
}

fn with(labels: &Labels, more: &[(&'static str, &str)]) -> Labels {
    let mut l = labels.clone();
    l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    l
}

fn process_families(p: &ProcessView, now: u64) -> Vec<Family> {
    let mut build = Family::new("tern_build", Kind::Info, "The tern version running.");
    build.push(vec![("version", p.version.into())], Value::Count(1));
    let mut workers = Family::new("tern_workers", Kind::Gauge, "Worker threads.");
    workers.push(vec![], Value::Count(p.workers as u64));

    let mut certs = Family::new(
        "tern_certificate_not_after_timestamp_seconds",
        Kind::Gauge,
        "When each loaded certificate expires (its notAfter), in Unix seconds; cert is its \
         position in the configuration (0 is the default), names its DNS and IP names.",
    );
    let mut expired = Family::new(
        "tern_certificates_expired",
        Kind::Gauge,
        "Loaded certificates whose notAfter has passed (clients refuse them): renew and reload.",
    );
    for (i, c) in p.certs.iter().enumerate() {
        certs.push(
            vec![
                ("cert", i.to_string()),
                ("names", c.names.join(",")),
                ("key_type", c.key_type.into()),
            ],
            Value::Int(c.not_after),
        );
    }
    let gone = p.certs.iter().filter(|c| c.not_after < now as i64).count();
    expired.push(vec![], Value::Count(gone as u64));

    let mut reloads = Family::new(
        "tern_config_reloads",
        Kind::Counter,
        "Configuration reloads, by result.",
    );
    reloads.push(vec![("result", "ok".into())], Value::Count(p.reloads_ok));
    reloads.push(
        vec![("result", "failed".into())],
        Value::Count(p.reloads_failed),
    );
    let mut last_ok = Family::new(
        "tern_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last reload took effect (or none was tried), 0 if it was refused.",
    );
    last_ok.push(vec![], Value::Count(u64::from(p.last_reload_ok)));
    let mut last_success = Family::new(
        "tern_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "When the configuration now serving took effect (start or reload), in Unix seconds.",
    );
    last_success.push(vec![], Value::Count(p.last_success));

    let mut tickets = Family::new(
        "tern_tls_tickets_enabled",
        Kind::Gauge,
        "1 if TLS session resumption (tickets, TLS 1.2 session cache) is on.",
    );
    tickets.push(vec![], Value::Count(u64::from(p.tickets)));
    let mut window = Family::new(
        "tern_tls_ticket_key_window_seconds",
        Kind::Gauge,
        "Length of one ticket-key window; tickets from the current and the previous window \
         are accepted.",
    );
    let mut window_start = Family::new(
        "tern_tls_ticket_key_window_start_timestamp_seconds",
        Kind::Gauge,
        "When the current ticket-key window began (keys rotate one window later), in Unix \
         seconds.",
    );
    if p.tickets {
        window.push(vec![], Value::Count(WINDOW_SECS));
        window_start.push(vec![], Value::Count(now / WINDOW_SECS * WINDOW_SECS));
    }
    vec![
        build,
        workers,
        certs,
        expired,
        reloads,
        last_ok,
        last_success,
        tickets,
        window,
        window_start,
    ]
}

fn connection_families(workers: &[(Labels, &WorkerStats)]) -> Vec<Family> {
    vec![
        per_worker(
            workers,
            "tern_connections_accepted",
            Kind::Counter,
            "TCP connections accepted (those refused at the limit included).",
            |w| Value::Count(w.accepted.get()),
        ),
        per_worker(
            workers,
            "tern_connections_refused",
            Kind::Counter,
            "Connections closed at accept because the worker was at its --max-conns share.",
            |w| Value::Count(w.refused_at_limit.get()),
        ),
        per_worker(
            workers,
            "tern_connections_open",
            Kind::Gauge,
            "Client connections open now.",
            |w| Value::Count(w.open.get()),
        ),
        per_worker(
            workers,
            "tern_worker_uring_restricted",
            Kind::Gauge,
            "1 if the worker's io_uring ring runs with restrictions (only the operations tern \
             submits), 0 if unrestricted (--uring-restrict off, an old kernel) or on epoll.",
            |w| Value::Count(w.uring_restricted.get()),
        ),
        per_worker(
            workers,
            "tern_uring_recv_ring_empty",
            Kind::Counter,
            "Multishot receives (--uring-recv multishot) of tcp mode's pump that found the \
             worker's receive buffer ring empty, every buffer held by busy connections: the \
             connection read once the single way, then armed its receive again (http mode's \
             request loop falls back the same way, not counted here).",
            |w| Value::Count(w.recv_ring_empty.get()),
        ),
        per_worker(
            workers,
            "tern_connections_denied",
            Kind::Counter,
            "Connections closed at accept because their address is denied (--deny), not \
             allowed (--allow), or not a trusted proxy (--proxy-from).",
            |w| Value::Count(w.denied.get()),
        ),
        per_worker(
            workers,
            "tern_connections_refused_per_ip",
            Kind::Counter,
            "Connections closed at accept because their client (IPv4 address, IPv6 /64) \
             already held its --max-conns-per-ip share on this worker.",
            |w| Value::Count(w.refused_per_ip.get()),
        ),
        per_worker(
            workers,
            "tern_proxy_header_refused",
            Kind::Counter,
            "--accept-proxy connections closed without a valid PROXY header (missing, \
             malformed, truncated, or late).",
            |w| Value::Count(w.proxy_header_refused.get()),
        ),
    ]
}

fn admission_families(workers: &[(Labels, &WorkerStats)]) -> Vec<Family> {
    let mut queued = Family::new(
        "tern_tls_handshakes_queued",
        Kind::Counter,
        "TLS handshakes that waited for a slot (--max-handshakes), by kind (full, resumption).",
    );
    let mut admitted = Family::new(
        "tern_tls_handshakes_admitted",
        Kind::Counter,
        "TLS handshakes given a slot, by kind (full, resumption).",
    );
    let mut limit = Family::new(
        "tern_tls_handshakes_in_flight_limit",
        Kind::Gauge,
        "Most TLS handshakes in flight at once: kind=full for full handshakes, kind=any for \
         both kinds together (0: unbounded).",
    );
    for (labels, w) in workers {
        let a = &w.admission;
        for k in AdmissionKind::ALL {
            queued.push(
                with(labels, &[("kind", k.label())]),
                Value::Count(a.queued[k as usize].get()),
            );
            admitted.push(
                with(labels, &[("kind", k.label())]),
                Value::Count(a.admitted[k as usize].get()),
            );
        }
        limit.push(
            with(labels, &[("kind", "full")]),
            Value::Count(a.limit_full.get()),
        );
        limit.push(
            with(labels, &[("kind", "any")]),
            Value::Count(a.limit_total.get()),
        );
    }
    vec![
        per_worker(
            workers,
            "tern_tls_handshakes_in_flight",
            Kind::Gauge,
            "TLS handshakes holding a slot now (from the ClientHello to the end).",
            |w| Value::Count(w.admission.in_flight.get()),
        ),
        per_worker(
            workers,
            "tern_tls_handshakes_in_flight_max",
            Kind::Gauge,
            "The most TLS handshakes that held a slot at once since start.",
            |w| Value::Count(w.admission.in_flight_max.get()),
        ),
        per_worker(
            workers,
            "tern_tls_handshakes_waiting",
            Kind::Gauge,
            "TLS handshakes waiting for a slot now.",
            |w| Value::Count(w.admission.waiting.get()),
        ),
        queued,
        admitted,
        limit,
    ]
}

fn tls_families(workers: &[(Labels, &WorkerStats)]) -> Vec<Family> {
    let mut totals = Family::new(
        "tern_tls_handshakes",
        Kind::Counter,
        "TLS handshakes by result (ok or failed).",
    );
    let mut completed = Family::new(
        "tern_tls_handshakes_completed",
        Kind::Counter,
        "Completed TLS handshakes by protocol version and whether the session was resumed.",
    );
    let mut failures = Family::new(
        "tern_tls_handshake_failures",
        Kind::Counter,
        "Failed TLS handshakes by reason and the version negotiated before the failure \
         (unknown when none was; series for a known version appear once one counts).",
    );
    for (labels, w) in workers {
        totals.push(
            with(labels, &[("result", "ok")]),
            Value::Count(w.handshakes_ok.get()),
        );
        totals.push(
            with(labels, &[("result", "failed")]),
            Value::Count(w.handshakes_failed.get()),
        );
        for v in [TlsVersion::Tls13, TlsVersion::Tls12] {
            for resumed in [false, true] {
                completed.push(
                    with(
                        labels,
                        &[("version", v.label()), ("resumed", &bool_label(resumed))],
                    ),
                    Value::Count(w.handshakes.get(v, Outcome::Ok, resumed)),
                );
            }
        }
        for v in TlsVersion::ALL {
            for r in FailReason::ALL {
                let n = [false, true]
                    .iter()
                    .map(|&res| w.handshakes.get(v, Outcome::Failed(r), res))
                    .sum::<u64>();
                if v == TlsVersion::Unknown || n > 0 {
                    failures.push(
                        with(labels, &[("version", v.label()), ("reason", r.label())]),
                        Value::Count(n),
                    );
                }
            }
        }
    }
    vec![
        totals,
        completed,
        failures,
        per_worker(
            workers,
            "tern_tls_handshake_duration_seconds",
            Kind::Histogram,
            "Time from accept to the end of each completed TLS handshake.",
            |w| histogram(w.handshakes.duration.snapshot()),
        ),
    ]
}

fn backend_families(workers: &[(Labels, &WorkerStats)]) -> Vec<Family> {
    let mut bytes = Family::new(
        "tern_forwarded_bytes",
        Kind::Counter,
        "Plaintext bytes forwarded, by direction (to_backend, to_client).",
    );
    for (labels, w) in workers {
        bytes.push(
            with(labels, &[("direction", "to_backend")]),
            Value::Count(w.bytes_to_backend.get()),
        );
        bytes.push(
            with(labels, &[("direction", "to_client")]),
            Value::Count(w.bytes_to_client.get()),
        );
    }
    vec![
        bytes,
        per_worker(
            workers,
            "tern_backend_connect_failures",
            Kind::Counter,
            "Backend connects (TCP or Unix socket) that failed or timed out (each backend tried counts).",
            |w| Value::Count(w.backend_connect_failures.get()),
        ),
        per_worker(
            workers,
            "tern_backend_connect_duration_seconds",
            Kind::Histogram,
            "Time to establish each successful backend connection (TCP or Unix socket).",
            |w| histogram(w.connect_time.snapshot()),
        ),
    ]
}

fn push_classes(f: &mut Family, labels: &Labels, counts: &StatusCounts) {
    for (class, n) in STATUS_CLASSES.iter().zip(counts.get()) {
        f.push(with(labels, &[("class", class)]), Value::Count(n));
    }
}

fn http_families(workers: &[(Labels, &WorkerStats)], registry: &Registry) -> Vec<Family> {
    let mut responses = Family::new(
        "tern_http_responses",
        Kind::Counter,
        "Final HTTP responses sent to clients by status class, tern's own (400, 404, 408, \
         421, 431, 502, 503, 504...) included.",
    );
    for (labels, w) in workers {
        push_classes(&mut responses, labels, &w.http.responses);
    }
    let mut pool_requests = Family::new(
        "tern_http_pool_requests",
        Kind::Counter,
        "HTTP requests routed to each backend pool.",
    );
    let mut pool_responses = Family::new(
        "tern_http_pool_responses",
        Kind::Counter,
        "Final HTTP responses to requests routed to each pool, by status class.",
    );
    let mut pool_time = Family::new(
        "tern_http_pool_response_duration_seconds",
        Kind::Histogram,
        "Time from routing a request to its pool to the backend's final response head.",
    );
    for pool in registry.pools() {
        for (i, p) in pool.workers.iter().enumerate() {
            let labels = vec![("worker", i.to_string()), ("pool", pool.name.clone())];
            pool_requests.push(labels.clone(), Value::Count(p.requests.get()));
            push_classes(&mut pool_responses, &labels, &p.responses);
            pool_time.push(labels, histogram(p.response_time.snapshot()));
        }
    }
    vec![
        per_worker(
            workers,
            "tern_http_requests",
            Kind::Counter,
            "HTTP request heads read from clients (refused ones included).",
            |w| Value::Count(w.http.requests.get()),
        ),
        responses,
        pool_requests,
        pool_responses,
        pool_time,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::{render, Format};
    use crate::tls::certs::CertSummary;
    use std::time::Duration;

    fn view(http: bool, tickets: bool) -> ProcessView {
        ProcessView {
            version: "9.9.9",
            workers: 2,
            http,
            certs: vec![CertSummary {
                names: vec!["a.example".into(), "*.b.example".into()],
                not_after: 1_935_619_200,
                key_type: "ecdsa",
            }],
            tickets,
            reloads_ok: 1,
            reloads_failed: 2,
            last_reload_ok: false,
            last_success: 1_700_000_000,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{text}"))
    }

    #[test]
    fn every_counter_reaches_its_series() {
        let r = Registry::new(2);
        let w1 = &r.workers()[1];
        w1.accepted.add(7);
        w1.refused_at_limit.add(2);
        w1.open.add(3);
        w1.uring_restricted.set(1);
        w1.recv_ring_empty.add(19);
        w1.bytes_to_backend.add(100);
        w1.bytes_to_client.add(200);
        w1.backend_connect_failures.inc();
        w1.handshake_completed(TlsVersion::Tls13, true, Duration::from_millis(3));
        w1.handshake_failed(TlsVersion::Tls12, FailReason::Alert);
        w1.backend_connected(Duration::from_micros(150));
        w1.http.requests.add(4);
        w1.http.responses.record(503);
        w1.denied.add(8);
        w1.refused_per_ip.add(9);
        w1.proxy_header_refused.add(10);
        let a = &w1.admission;
        a.in_flight.set(11);
        a.in_flight_max.set(12);
        a.waiting.set(13);
        a.queued[0].add(14);
        a.queued[1].add(15);
        a.admitted[0].add(16);
        a.admitted[1].add(17);
        a.limit_full.set(18);
        a.limit_total.set(36);
        let pools = r.generation(&["web"]);
        pools[1][0].requests.add(5);
        pools[1][0].responses.record(204);
        pools[1][0].response_time.observe(Duration::from_millis(20));

        let text = render(&collect(&r, &view(true, true), 0), Format::Prometheus);
        for expected in [
            "tern_build_info{version=\"9.9.9\"} 1",
            "tern_workers 2",
            "tern_certificate_not_after_timestamp_seconds{cert=\"0\",names=\"a.example,*.b.example\",key_type=\"ecdsa\"} 1935619200",
            "tern_config_reloads_total{result=\"ok\"} 1",
            "tern_config_reloads_total{result=\"failed\"} 2",
            "tern_config_last_reload_successful 0",
            "tern_config_last_reload_success_timestamp_seconds 1700000000",
            "tern_tls_tickets_enabled 1",
            "tern_tls_ticket_key_window_seconds 21600",
            "tern_connections_accepted_total{worker=\"0\"} 0",
            "tern_connections_accepted_total{worker=\"1\"} 7",
            "tern_connections_refused_total{worker=\"1\"} 2",
            "tern_connections_open{worker=\"1\"} 3",
            "tern_worker_uring_restricted{worker=\"0\"} 0",
            "tern_worker_uring_restricted{worker=\"1\"} 1",
            "tern_uring_recv_ring_empty_total{worker=\"1\"} 19",
            "tern_connections_denied_total{worker=\"1\"} 8",
            "tern_connections_refused_per_ip_total{worker=\"1\"} 9",
            "tern_proxy_header_refused_total{worker=\"1\"} 10",
            "tern_tls_handshakes_in_flight{worker=\"1\"} 11",
            "tern_tls_handshakes_in_flight_max{worker=\"1\"} 12",
            "tern_tls_handshakes_waiting{worker=\"1\"} 13",
            "tern_tls_handshakes_queued_total{worker=\"1\",kind=\"full\"} 14",
            "tern_tls_handshakes_queued_total{worker=\"1\",kind=\"resumption\"} 15",
            "tern_tls_handshakes_admitted_total{worker=\"1\",kind=\"full\"} 16",
            "tern_tls_handshakes_admitted_total{worker=\"1\",kind=\"resumption\"} 17",
            "tern_tls_handshakes_in_flight_limit{worker=\"1\",kind=\"full\"} 18",
            "tern_tls_handshakes_in_flight_limit{worker=\"1\",kind=\"any\"} 36",
            "tern_tls_handshakes_total{worker=\"1\",result=\"ok\"} 1",
            "tern_tls_handshakes_total{worker=\"1\",result=\"failed\"} 1",
            "tern_tls_handshakes_completed_total{worker=\"1\",version=\"1.3\",resumed=\"true\"} 1",
            "tern_tls_handshakes_completed_total{worker=\"1\",version=\"1.2\",resumed=\"false\"} 0",
            "tern_tls_handshake_failures_total{worker=\"1\",version=\"1.2\",reason=\"alert\"} 1",
            "tern_tls_handshake_failures_total{worker=\"0\",version=\"unknown\",reason=\"timeout\"} 0",
            "tern_tls_handshake_duration_seconds_bucket{worker=\"1\",le=\"0.0025\"} 0",
            "tern_tls_handshake_duration_seconds_bucket{worker=\"1\",le=\"0.005\"} 1",
            "tern_tls_handshake_duration_seconds_count{worker=\"1\"} 1",
            "tern_forwarded_bytes_total{worker=\"1\",direction=\"to_backend\"} 100",
            "tern_forwarded_bytes_total{worker=\"1\",direction=\"to_client\"} 200",
            "tern_backend_connect_failures_total{worker=\"1\"} 1",
            "tern_backend_connect_duration_seconds_bucket{worker=\"1\",le=\"0.00025\"} 1",
            "tern_backend_connect_duration_seconds_sum{worker=\"1\"} 0.00015",
            "tern_http_requests_total{worker=\"1\"} 4",
            "tern_http_responses_total{worker=\"1\",class=\"5xx\"} 1",
            "tern_http_pool_requests_total{worker=\"1\",pool=\"web\"} 5",
            "tern_http_pool_requests_total{worker=\"0\",pool=\"web\"} 0",
            "tern_http_pool_responses_total{worker=\"1\",pool=\"web\",class=\"2xx\"} 1",
            "tern_http_pool_response_duration_seconds_bucket{worker=\"1\",pool=\"web\",le=\"0.025\"} 1",
        ] {
            assert!(text.lines().any(|l| l == expected), "missing {expected}\n{text}");
        }
        // A failure for a known version shows only once one happened.
        assert!(!text.contains("version=\"1.3\",reason=\"alert\""));
        assert_eq!(
            line(&text, "tern_tls_ticket_key_window_start_timestamp_seconds "),
            "tern_tls_ticket_key_window_start_timestamp_seconds 0"
        );
    }

    #[test]
    fn tcp_mode_has_no_http_families_and_no_tickets_no_window() {
        let r = Registry::new(1);
        let text = render(
            &collect(&r, &view(false, false), 50_000),
            Format::Prometheus,
        );
        assert!(!text.contains("tern_http_"), "{text}");
        assert!(text.contains("tern_tls_tickets_enabled 0\n"));
        assert!(!text.contains("\ntern_tls_ticket_key_window_seconds "));
        let with_tickets = render(&collect(&r, &view(false, true), 50_000), Format::Prometheus);
        assert!(with_tickets.contains("tern_tls_ticket_key_window_start_timestamp_seconds 43200\n"));
    }

    #[test]
    fn family_names_are_unique_and_conventional() {
        let r = Registry::new(1);
        r.generation(&["p"]);
        let families = collect(&r, &view(true, true), 0);
        let mut names: Vec<&str> = families.iter().map(|f| f.name).collect();
        for f in &families {
            assert!(f.name.starts_with("tern_"), "{}", f.name);
            assert!(
                !f.name.ends_with("_total"),
                "{}: the renderer adds _total",
                f.name
            );
            if f.kind == Kind::Histogram {
                assert!(f.name.ends_with("_seconds"), "{}", f.name);
            }
        }
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate family names");
    }
}
