//! `flood`: full handshakes at the price of a connect. Each connection sends one canned
//! ClientHello (made once by rustls with the chosen group, no ticket offered), waits for the
//! first bytes of the server's reply, and resets the connection. A TLS 1.3 server computes its
//! whole first flight (key exchange, signature, Finished) before sending any of it, so every
//! reply received is one full handshake's crypto done by the server, while the client did none:
//! one client core can offer many times what one server core can take, as a handshake-flood
//! attack does. The server sees each as a handshake the client abandoned.
//!
//! `--hello-every-ms P` holds each ClientHello, once connected, until the next multiple of P
//! since the start, so that the hellos of every connection made in between reach the server
//! together: an attacker who opens connections first and then sends their hellos at once.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::timeout;
use rustls::ClientConnection;
use serde_json::json;

use crate::tls::client_config;
use crate::{driver, procstat, FloodArgs};

#[derive(Default)]
struct Counts {
    /// Server first flights received while measuring.
    flights: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

/// Closes with a reset: no FIN exchange, no TIME_WAIT on either side, as an attacker would.
fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on the stream's open descriptor with a live linger struct and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn one(
    addr: std::net::SocketAddr,
    hello: &'static [u8],
    wait: Duration,
    every: Option<(Instant, Duration)>,
) -> io::Result<()> {
    let mut s = TcpStream::connect_addr(addr).await?;
    reset_on_close(&s);
    if let Some((start, period)) = every {
        let ticks = start.elapsed().as_nanos() / period.as_nanos() + 1;
        let at = start + period * u32::try_from(ticks).unwrap_or(u32::MAX);
        monoio::time::sleep_until(monoio::time::Instant::from_std(at)).await;
    }
    let (r, _) = s.write_all(hello).await;
    r?;
    let buf = vec![0u8; 4096];
    match timeout(wait, s.read(buf)).await {
        Ok((Ok(n), _)) if n > 0 => Ok(()),
        Ok((Ok(_), _)) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok((Err(e), _)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

pub fn run(a: FloodArgs) -> Result<bool, String> {
    let t = &a.tls;
    if a.conns == 0 || t.threads == 0 || a.conns < t.threads {
        return Err("--conns and --threads must be >= 1, and --conns >= --threads".into());
    }
    let mut o = driver::opts(t)?;
    o.resume = false;
    let (cfg, _) = client_config(&o)?;
    let name = driver::server_name(t)?;
    let mut c = ClientConnection::new(cfg, name).map_err(|e| format!("client hello: {e}"))?;
    let mut hello = Vec::new();
    c.write_tls(&mut hello)
        .map_err(|e| format!("client hello: {e}"))?;
    let hello: &'static [u8] = Box::leak(hello.into_boxed_slice());
    let cpus = driver::parse_cpus(&t.cpus)?;
    let counts = Arc::new(Counts::default());
    let wait = Duration::from_secs_f64(t.timeout);
    let every =
        (a.hello_every_ms > 0).then(|| (Instant::now(), Duration::from_millis(a.hello_every_ms)));
    let mut threads = Vec::new();
    for ti in 0..t.threads {
        let n = a.conns / t.threads + usize::from(ti < a.conns % t.threads);
        let (counts, addr, cpu) = (
            counts.clone(),
            t.target,
            (!cpus.is_empty()).then(|| cpus[ti % cpus.len()]),
        );
        threads.push(thread::spawn(move || {
            if let Some(cpu) = cpu {
                driver::pin(cpu);
            }
            let mut rt = match driver::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tern-loadgen: cannot start an io_uring runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let counts = Rc::new(counts);
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let counts = counts.clone();
                        monoio::spawn(async move {
                            while !counts.stop.load(Relaxed) {
                                let ok = one(addr, hello, wait, every).await;
                                if !counts.measuring.load(Relaxed) {
                                    continue;
                                }
                                match ok {
                                    Ok(()) => counts.flights.fetch_add(1, Relaxed),
                                    Err(_) => counts.errors.fetch_add(1, Relaxed),
                                };
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            });
        }));
    }
    thread::sleep(Duration::from_secs_f64(a.warmup));
    let s0 = driver::watch(t.watch_pid)?;
    let c0 = procstat::self_cpu_ticks();
    let t0 = Instant::now();
    counts.measuring.store(true, Relaxed);
    thread::sleep(Duration::from_secs_f64(a.duration));
    counts.measuring.store(false, Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let s1 = driver::watch(t.watch_pid)?;
    let c1 = procstat::self_cpu_ticks();
    counts.stop.store(true, Relaxed);
    for th in threads {
        let _ = th.join();
    }
    let tck = procstat::clk_tck();
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / tck),
        _ => None,
    };
    let flights = counts.flights.load(Relaxed);
    println!(
        "{}",
        json!({
            "mode": "flood", "label": t.label, "target": t.target.to_string(), "group": t.group,
            "conns_inflight": a.conns, "hello_every_ms": a.hello_every_ms, "threads": t.threads, "secs": secs,
            "flights": flights, "flights_s": flights as f64 / secs,
            "errors": counts.errors.load(Relaxed),
            "server_cpu_s": server_cpu, "server_busy": server_cpu.map(|s| s / secs),
            "client_cpu_s": c1.saturating_sub(c0) as f64 / tck,
        })
    );
    eprintln!(
        "tern-loadgen: flood: {flights} server flights in {secs:.2}s ({:.0}/s)",
        flights as f64 / secs
    );
    Ok(flights > 0)
}
