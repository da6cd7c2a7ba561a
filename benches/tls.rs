//! Criterion benches of tern's tls layer, server side only: a full TLS 1.3 handshake through
//! `tern::tls` against an in-memory rustls client, and 16 KiB application-data records each way
//! through tern's own record layer. Only the server's calls are timed (`iter_custom`), so the
//! figures are the terminator's cost.
//!
//! The `bench_env` group measures the same in the thread's CPU time instead of the wall clock,
//! for exactly what bench-env's load generator negotiates (TLS 1.3, X25519,
//! TLS_AES_128_GCM_SHA256; the groups above take rustls' default client offer, AES-256-GCM):
//! `bench-env/run.sh` reads it as the bare-crypto row beside the terminators' per-CPU-second
//! figures, and CPU time keeps it comparable on a busy machine, where the wall clock also
//! counts the time other processes held the core.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::SupportedCipherSuite;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tern::tls::{self, certs, Control, Established, RxEvent, ServerTls, Step, TlsSettings};

struct Setup {
    server: ServerTls,
    client: Arc<ClientConfig>,
}

/// A clock for the server-side calls: the wall clock, or this thread's CPU time.
type Clock = fn() -> Duration;

fn wall() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID unavailable");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement in this thread's CPU time.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Durations, formatted as the wall clock's are.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// `suite`: the one cipher suite the client offers; `None` offers rustls' defaults.
fn setup(
    alg: &'static rcgen::SignatureAlgorithm,
    group: &'static dyn SupportedKxGroup,
    suite: Option<SupportedCipherSuite>,
) -> Setup {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ck = certs::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        &tls::provider(),
    )
    .unwrap();
    let server = ServerTls::new(
        &TlsSettings {
            alpn: vec![],
            tickets: None,
            ..TlsSettings::new(certs::CertStore::single(ck))
        },
        None,
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    let defaults = aws_lc_rs::default_provider();
    let provider = CryptoProvider {
        kx_groups: vec![group],
        cipher_suites: suite.map_or(defaults.cipher_suites.clone(), |s| vec![s]),
        ..defaults
    };
    let client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Setup {
        server,
        client: Arc::new(client),
    }
}

/// Runs one handshake; returns the time spent in server-side calls, by `clock`.
fn handshake(s: &Setup, clock: Clock) -> (Duration, Established, ClientConnection) {
    let mut client =
        ClientConnection::new(s.client.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut server_time = Duration::ZERO;
    let t = clock();
    let mut server = s.server.accept().unwrap();
    server_time += clock() - t;
    let (mut inbox, mut out) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        while client.wants_write() {
            client.write_tls(&mut inbox).unwrap();
        }
        let t = clock();
        let (consumed, step) = server.step(&mut inbox, &mut out).unwrap();
        server_time += clock() - t;
        inbox.drain(..consumed);
        match step {
            Step::Send(n) => {
                let mut rd = &out[..n];
                while !rd.is_empty() {
                    client.read_tls(&mut rd).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
            Step::NeedMore => assert!(client.wants_write(), "handshake stalled"),
            Step::Done => break,
        }
    }
    let t = clock();
    let established = server.finish().unwrap();
    server_time += clock() - t;
    (server_time, established, client)
}

fn bench_handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_handshake_tls13");
    g.throughput(Throughput::Elements(1));
    type Case = (
        &'static str,
        &'static rcgen::SignatureAlgorithm,
        &'static dyn SupportedKxGroup,
    );
    let cases: [Case; 4] = [
        (
            "ecdsa_p256/x25519",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            aws_lc_rs::kx_group::X25519,
        ),
        (
            "ecdsa_p256/x25519mlkem768",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            aws_lc_rs::kx_group::X25519MLKEM768,
        ),
        (
            "rsa2048/x25519",
            &rcgen::PKCS_RSA_SHA256,
            aws_lc_rs::kx_group::X25519,
        ),
        (
            "ed25519/x25519",
            &rcgen::PKCS_ED25519,
            aws_lc_rs::kx_group::X25519,
        ),
    ];
    for (name, alg, group) in cases {
        let s = setup(alg, group, None);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|n| (0..n).map(|_| handshake(&s, wall).0).sum())
        });
    }
    g.finish();
}

fn bench_records(c: &mut Criterion) {
    const LEN: usize = 16 * 1024;
    let s = setup(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        aws_lc_rs::kx_group::X25519,
        None,
    );
    let (_, server, mut client) = handshake(&s, wall);
    let Established {
        mut rx,
        mut tx,
        control,
        ..
    } = server;
    let control: RefCell<Control> = control;
    let data = vec![0x5au8; LEN];
    let mut g = c.benchmark_group("record_16k");
    g.throughput(Throughput::Bytes(LEN as u64));

    let mut out = vec![0u8; LEN + 1024];
    g.bench_function("seal", |b| {
        b.iter(|| tx.seal_data(&data, &mut out, &control).unwrap())
    });

    // The client seals `n` records (untimed), then the server opens them in place (timed);
    // the pair persists across iterations so sequence numbers simply continue.
    let mut wire = Vec::new();
    g.bench_function("open", |b| {
        b.iter_custom(|n| {
            wire.clear();
            for _ in 0..n {
                client.writer().write_all(&data).unwrap();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
            }
            let t = Instant::now();
            let (mut at, mut got) = (0, 0);
            while got < LEN * n as usize {
                let (used, event) = rx.next(&mut wire[at..], &control).unwrap().unwrap();
                if let RxEvent::Data(r) = event {
                    got += r.len();
                }
                at += used;
            }
            t.elapsed()
        })
    });
    g.finish();
}

/// bench-env's bare-crypto row, in CPU time: a full handshake with each certificate, and one
/// 16 KiB record sealed (bulk download) and opened (bulk upload), all TLS_AES_128_GCM_SHA256.
fn bench_env(c: &mut Criterion<ThreadCpu>) {
    const LEN: usize = 16 * 1024;
    let aes128 = Some(aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256);
    let mut g = c.benchmark_group("bench_env");
    g.throughput(Throughput::Elements(1));
    for (name, alg) in [
        ("handshake/ecdsa_p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("handshake/rsa2048", &rcgen::PKCS_RSA_SHA256),
    ] {
        let s = setup(alg, aws_lc_rs::kx_group::X25519, aes128);
        g.bench_function(name, |b| {
            b.iter_custom(|n| (0..n).map(|_| handshake(&s, thread_cpu).0).sum())
        });
    }

    let s = setup(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        aws_lc_rs::kx_group::X25519,
        aes128,
    );
    let (_, server, mut client) = handshake(&s, wall);
    assert!(
        server.info.suite.contains("AES_128_GCM"),
        "negotiated {}",
        server.info.suite
    );
    let Established {
        mut rx,
        mut tx,
        control,
        ..
    } = server;
    let control: RefCell<Control> = control;
    let data = vec![0x5au8; LEN];
    g.throughput(Throughput::Bytes(LEN as u64));
    let mut out = vec![0u8; LEN + 1024];
    g.bench_function("seal_16k", |b| {
        b.iter(|| tx.seal_data(&data, &mut out, &control).unwrap())
    });
    let mut wire = Vec::new();
    g.bench_function("open_16k", |b| {
        b.iter_custom(|n| {
            wire.clear();
            for _ in 0..n {
                client.writer().write_all(&data).unwrap();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
            }
            let t = thread_cpu();
            let (mut at, mut got) = (0, 0);
            while got < LEN * n as usize {
                let (used, event) = rx.next(&mut wire[at..], &control).unwrap().unwrap();
                if let RxEvent::Data(r) = event {
                    got += r.len();
                }
                at += used;
            }
            thread_cpu() - t
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshakes, bench_records);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_env
}
criterion_main!(benches, cpu);
