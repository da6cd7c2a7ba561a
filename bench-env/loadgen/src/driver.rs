//! The load loops: `run` (closed loop or fixed rate) and `idle` (open and hold connections).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::time::{sleep, sleep_until, timeout};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde_json::json;

use crate::tls::{client_config, ClientOpts, TlsConn};
use crate::{http, procstat, IdleArgs, RunArgs, TlsArgs};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;
static PHASE: AtomicU8 = AtomicU8::new(WARMUP);

fn phase() -> u8 {
    PHASE.load(Relaxed)
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    conns: AtomicU64,
    resumed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    err_connect: AtomicU64,
    err_request: AtomicU64,
    err_timeout: AtomicU64,
    bad_status: AtomicU64,
    /// Error messages printed so far (the first few are, with their cause).
    printed: AtomicU64,
}

impl Counters {
    fn error(&self, what: &AtomicU64, ctx: &str, e: &dyn std::fmt::Display) {
        if phase() == MEASURE {
            what.fetch_add(1, Relaxed);
        }
        if self.printed.fetch_add(1, Relaxed) < 5 {
            eprintln!("tern-loadgen: {ctx}: {e}");
        }
    }
}

pub(crate) fn opts(t: &TlsArgs) -> Result<ClientOpts, String> {
    let tls12 = match t.tls.as_str() {
        "1.3" => false,
        "1.2" => true,
        v => return Err(format!("--tls {v}: expected 1.3 or 1.2")),
    };
    Ok(ClientOpts {
        tls12,
        group: t.group.clone(),
        cipher: t.cipher.clone(),
        resume: t.resume,
        verify_sig: t.verify_sig,
        alpn: t.alpn.clone(),
    })
}

pub(crate) fn parse_cpus(s: &Option<String>) -> Result<Vec<usize>, String> {
    let Some(s) = s else { return Ok(vec![]) };
    let mut v = vec![];
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("--cpus {s}: expected a list like 1 or 2-3,5");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                v.extend(a..=b);
            }
            None => v.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(v)
}

pub(crate) fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "tern-loadgen: cannot pin to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

pub(crate) type Rt = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

pub(crate) fn runtime() -> io::Result<Rt> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(4096)
        .enable_timer()
        .build()
}

pub(crate) fn server_name(t: &TlsArgs) -> Result<ServerName<'static>, String> {
    ServerName::try_from(t.sni.clone()).map_err(|e| format!("--sni {}: {e}", t.sni))
}

/// What every connection task of one thread shares.
struct Ctx {
    addr: std::net::SocketAddr,
    /// None: plain TCP (`--plain`).
    cfg: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
    req: &'static [u8],
    body_size: u64,
    reqs_per_conn: u64,
    /// Per-connection interval between intended request starts (fixed-rate mode).
    interval: Option<Duration>,
    conns: usize,
    timeout: Duration,
    c: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
}

fn new_hist() -> Histogram<u64> {
    // 1 us .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds are valid")
}

async fn conn_task(ctx: Rc<Ctx>, idx: usize) {
    let c = &*ctx.c;
    let close_mode = ctx.reqs_per_conn == 1;
    // Fixed rate: connections are staggered evenly over one interval.
    let mut next = Instant::now()
        + ctx
            .interval
            .map(|iv| iv.mul_f64(idx as f64 / ctx.conns as f64))
            .unwrap_or_default();
    while phase() != STOP {
        let t_conn = Instant::now();
        let mut conn = match timeout(
            ctx.timeout,
            TlsConn::connect(ctx.addr, ctx.cfg.as_ref(), &ctx.name),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                c.error(&c.err_connect, "connect/handshake", &e);
                sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) => {
                c.error(&c.err_timeout, "connect/handshake", &"timed out");
                continue;
            }
        };
        if phase() == MEASURE {
            c.conns.fetch_add(1, Relaxed);
            if conn.resumed() {
                c.resumed.fetch_add(1, Relaxed);
            }
        }
        let mut last_done = Instant::now();
        let mut n = 0u64;
        let mut server_closes = false;
        let mut ok = true;
        loop {
            let lat_start = match ctx.interval {
                Some(iv) => {
                    let intended = next;
                    next += iv;
                    if Instant::now() < intended {
                        sleep_until(monoio::time::Instant::from_std(intended)).await;
                    }
                    // Latency counts from the intended start when the previous response (or the
                    // connect) came back after it: the server made this request late
                    // (coordinated omission). Otherwise any delay is our 1 ms timer's, and the
                    // clock starts when the request is actually sent.
                    if last_done > intended {
                        intended
                    } else {
                        Instant::now()
                    }
                }
                None if close_mode => t_conn,
                None => Instant::now(),
            };
            let r = timeout(ctx.timeout, async {
                conn.send(ctx.req).await?;
                http::read_response(&mut conn).await
            })
            .await;
            match r {
                Ok(Ok(resp)) => {
                    let done = Instant::now();
                    last_done = done;
                    if phase() == MEASURE {
                        c.requests.fetch_add(1, Relaxed);
                        c.bytes_in.fetch_add(resp.body_bytes, Relaxed);
                        c.bytes_out.fetch_add(ctx.body_size, Relaxed);
                        let us = done.duration_since(lat_start).as_micros() as u64;
                        if let Ok(mut h) = ctx.hist.lock() {
                            h.saturating_record(us.max(1));
                        }
                        if !(200..400).contains(&resp.status) {
                            c.bad_status.fetch_add(1, Relaxed);
                        }
                    }
                    n += 1;
                    if resp.close {
                        server_closes = true;
                        break;
                    }
                    if (ctx.reqs_per_conn > 0 && n >= ctx.reqs_per_conn) || phase() == STOP {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    c.error(&c.err_request, "request", &e);
                    ok = false;
                    break;
                }
                Err(_) => {
                    c.error(&c.err_timeout, "request", &"timed out");
                    ok = false;
                    break;
                }
            }
        }
        if ok && (close_mode || server_closes) {
            // The server closes first after `Connection: close`: wait (bounded) for its
            // close_notify/FIN so the TIME_WAIT lands on the server side, as with real clients.
            let wait = ctx.timeout.min(Duration::from_secs(2));
            let _ = timeout(wait, async {
                while !conn.peer_closed() && conn.fill().await? != 0 {
                    conn.plain.clear();
                }
                Ok::<(), io::Error>(())
            })
            .await;
            // Answer the server's close_notify (some servers hold their FIN until it comes).
            conn.close_notify().await;
        } else if ok && phase() != STOP {
            conn.close_notify().await;
        }
    }
}

fn report_common(t: &TlsArgs, mode: &str) -> serde_json::Value {
    json!({
        "mode": mode, "label": t.label, "target": t.target.to_string(), "tls": t.tls,
        "plain": t.plain, "group": t.group, "cipher": t.cipher, "resume": t.resume, "verify_sig": t.verify_sig,
        "path": t.path,
    })
}

fn merge(dst: &mut serde_json::Value, src: serde_json::Value) {
    if let (Some(d), serde_json::Value::Object(s)) = (dst.as_object_mut(), src) {
        d.extend(s);
    }
}

pub(crate) fn watch(pid: Option<u32>) -> Result<Option<procstat::TreeStat>, String> {
    pid.map(|p| procstat::tree(p).map_err(|e| format!("--watch-pid: {e}")))
        .transpose()
}

pub fn run(a: RunArgs) -> Result<bool, String> {
    let t = &a.tls;
    if a.conns == 0 || t.threads == 0 || a.conns < t.threads {
        return Err("--conns and --threads must be >= 1, and --conns >= --threads".into());
    }
    let (cfg, store) = client_config(&opts(t)?)?;
    let cfg = (!t.plain).then_some(cfg);
    let name = server_name(t)?;
    let close = a.reqs_per_conn == 1;
    let req: &'static [u8] = Box::leak(
        http::build_request(&a.method, &t.path, &t.sni, a.body_size, close).into_boxed_slice(),
    );
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.conns as f64 / a.rate));
    let cpus = parse_cpus(&t.cpus)?;
    let counters = Arc::new(Counters::default());
    let done = Arc::new(AtomicUsize::new(0));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let mut hists = vec![];
    watch(t.watch_pid)?;
    for ti in 0..t.threads {
        let n = a.conns / t.threads + usize::from(ti < a.conns % t.threads);
        let hist = Arc::new(Mutex::new(new_hist()));
        hists.push(hist.clone());
        let (cfg, name, c, done, failure) = (
            cfg.clone(),
            name.clone(),
            counters.clone(),
            done.clone(),
            failure.clone(),
        );
        let cpu = (!cpus.is_empty()).then(|| cpus[ti % cpus.len()]);
        let (addr, timeout_s, body, rpc, conns, nthreads) = (
            t.target,
            t.timeout,
            a.body_size as u64,
            a.reqs_per_conn,
            a.conns,
            t.threads,
        );
        thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin(cpu);
            }
            match runtime() {
                Ok(mut rt) => rt.block_on(async move {
                    let ctx = Rc::new(Ctx {
                        addr,
                        cfg,
                        name,
                        req,
                        body_size: body,
                        reqs_per_conn: rpc,
                        interval,
                        conns,
                        timeout: Duration::from_secs_f64(timeout_s),
                        c,
                        hist,
                    });
                    let tasks: Vec<_> = (0..n)
                        .map(|i| monoio::spawn(conn_task(ctx.clone(), ti + i * nthreads)))
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                }),
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("cannot start an io_uring runtime: {e}"));
                }
            }
            done.fetch_add(1, Relaxed);
        });
    }
    thread::sleep(Duration::from_secs_f64(a.warmup));
    if let Some(f) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(f);
    }
    let s0 = watch(t.watch_pid)?;
    let b0 = watch(t.watch_backend).ok().flatten();
    let m0 = procstat::machine_ticks();
    let c0 = procstat::self_cpu_ticks();
    let tickets0 = store.tickets.load(Relaxed);
    let t0 = Instant::now();
    PHASE.store(MEASURE, Relaxed);
    thread::sleep(Duration::from_secs_f64(a.duration));
    PHASE.store(STOP, Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let s1 = watch(t.watch_pid)?;
    let b1 = watch(t.watch_backend).ok().flatten();
    let m1 = procstat::machine_ticks();
    let c1 = procstat::self_cpu_ticks();
    let tickets = store.tickets.load(Relaxed) - tickets0;
    // Bounded wait for the tasks to finish their current request.
    let deadline = Instant::now() + Duration::from_secs_f64(t.timeout + 2.0);
    while done.load(Relaxed) < t.threads && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let mut hist = new_hist();
    for h in &hists {
        if let Ok(h) = h.lock() {
            let _ = hist.add(&*h);
        }
    }
    let c = &*counters;
    let tck = procstat::clk_tck();
    let requests = c.requests.load(Relaxed);
    let conns = c.conns.load(Relaxed);
    let bytes_in = c.bytes_in.load(Relaxed);
    let bytes_out = c.bytes_out.load(Relaxed);
    let errors =
        c.err_connect.load(Relaxed) + c.err_request.load(Relaxed) + c.err_timeout.load(Relaxed);
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some((b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / tck),
        _ => None,
    };
    // The kernel's share of the terminator's CPU: on loopback most of it is TCP, which every
    // terminator pays alike; the rest (utime) is the terminator's own code.
    let server_sys_share = match (s0, s1) {
        (Some(a), Some(b)) if b.cpu_ticks > a.cpu_ticks => Some(
            b.sys_ticks.saturating_sub(a.sys_ticks) as f64 / (b.cpu_ticks - a.cpu_ticks) as f64,
        ),
        _ => None,
    };
    let client_cpu = (c1.saturating_sub(c0)) as f64 / tck;
    let backend_cpu = match (b0, b1) {
        (Some(a), Some(b)) => Some((b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / tck),
        _ => None,
    };
    let d = |i: fn(&(u64, u64, u64)) -> u64| i(&m1).saturating_sub(i(&m0)) as f64 / tck;
    let (task_cpu, irq_cpu, steal) = (d(|m| m.0), d(|m| m.1), d(|m| m.2));
    // CPU time not charged to the run's processes: someone else's load (noise). Per-process
    // times include interrupt/softirq ticks that /proc/stat files under irq, so irq is added in.
    let other_cpu =
        task_cpu + irq_cpu - server_cpu.unwrap_or(0.0) - client_cpu - backend_cpu.unwrap_or(0.0);
    let per = |x: f64| server_cpu.filter(|s| *s > 0.0).map(|s| x / s);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let q = |p: f64| {
        if hist.is_empty() {
            0
        } else {
            hist.value_at_quantile(p)
        }
    };
    let mut out = report_common(t, "run");
    merge(
        &mut out,
        json!({
            "conns_inflight": a.conns, "reqs_per_conn": a.reqs_per_conn, "rate_target": a.rate,
            "method": a.method, "body_size": a.body_size, "threads": t.threads,
            "secs": secs, "requests": requests, "handshakes": conns,
            "resumed": c.resumed.load(Relaxed), "tickets": tickets,
            "errors": errors, "err_connect": c.err_connect.load(Relaxed),
            "err_request": c.err_request.load(Relaxed), "err_timeout": c.err_timeout.load(Relaxed),
            "bad_status": c.bad_status.load(Relaxed),
            "rps": requests as f64 / secs, "hps": conns as f64 / secs,
            "mib_in_s": mib(bytes_in) / secs, "mib_out_s": mib(bytes_out) / secs,
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "lat_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": hist.max(), "mean": hist.mean(), "n": hist.len()},
            "server_cpu_s": server_cpu, "server_busy": server_cpu.map(|s| s / secs),
            "server_procs": s1.map(|s| s.procs), "server_sys_share": server_sys_share,
            "rps_per_cpu_s": per(requests as f64), "hps_per_cpu_s": per(conns as f64),
            "mib_per_cpu_s": per(mib(bytes_in + bytes_out)),
            "client_cpu_s": client_cpu, "client_busy": client_cpu / secs,
            "backend_cpu_s": backend_cpu, "irq_cpu_s": irq_cpu, "steal_s": steal,
            "other_cpu_s": other_cpu, "other_busy": other_cpu / secs,
        }),
    );
    println!("{out}");
    eprintln!(
        "tern-loadgen: {requests} requests, {conns} handshakes in {secs:.2}s ({:.0} req/s), {errors} errors, server cpu {}",
        requests as f64 / secs,
        server_cpu.map(|s| format!("{s:.2}s")).unwrap_or_else(|| "-".into()),
    );
    Ok(requests > 0)
}

pub fn idle(a: IdleArgs) -> Result<bool, String> {
    let t = &a.tls;
    if a.conns == 0 || a.parallel == 0 {
        return Err("--conns and --parallel must be >= 1".into());
    }
    let (cfg, _store) = client_config(&opts(t)?)?;
    let cfg = (!t.plain).then_some(cfg);
    let name = server_name(t)?;
    let req: &'static [u8] =
        Box::leak(http::build_request("GET", &t.path, &t.sni, 0, false).into_boxed_slice());
    let cpus = parse_cpus(&t.cpus)?;
    let before = watch(t.watch_pid)?;
    let established = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    {
        let (established, errors, failure) = (established.clone(), errors.clone(), failure.clone());
        let (addr, total, parallel, to) = (
            t.target,
            a.conns,
            a.parallel,
            Duration::from_secs_f64(t.timeout),
        );
        let cpu = cpus.first().copied();
        thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin(cpu);
            }
            let mut rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return;
                }
            };
            rt.block_on(async move {
                let held: Rc<RefCell<Vec<TlsConn>>> = Rc::default();
                let next = Rc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..parallel)
                    .map(|_| {
                        let (held, next, cfg, name) =
                            (held.clone(), next.clone(), cfg.clone(), name.clone());
                        let (established, errors) = (established.clone(), errors.clone());
                        monoio::spawn(async move {
                            while next.fetch_add(1, Relaxed) < total {
                                let r = timeout(to, async {
                                    let mut c = TlsConn::connect(addr, cfg.as_ref(), &name).await?;
                                    c.send(req).await?;
                                    http::read_response(&mut c).await?;
                                    Ok::<TlsConn, io::Error>(c)
                                })
                                .await;
                                match r {
                                    Ok(Ok(c)) => {
                                        held.borrow_mut().push(c);
                                        established.fetch_add(1, Relaxed);
                                    }
                                    Ok(Err(e)) => {
                                        if errors.fetch_add(1, Relaxed) < 5 {
                                            eprintln!("tern-loadgen: idle connection: {e}");
                                        }
                                    }
                                    Err(_) => {
                                        errors.fetch_add(1, Relaxed);
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
                // Hold the connections until the process exits.
                loop {
                    sleep(Duration::from_secs(3600)).await;
                    let _ = held.borrow().len();
                }
            });
        });
    }
    let deadline = started + Duration::from_secs_f64(a.max_setup);
    loop {
        if let Some(f) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(format!("cannot start an io_uring runtime: {f}"));
        }
        let (e, n) = (errors.load(Relaxed), established.load(Relaxed));
        if e + n >= a.conns || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let setup_secs = started.elapsed().as_secs_f64();
    thread::sleep(Duration::from_secs_f64(a.settle));
    let mut after = watch(t.watch_pid)?;
    // Wait (bounded) until the RSS has held still (within 1 % of the growth) for --still s.
    let still_needed = (a.still / 0.5).ceil() as u32;
    let settle_until = Instant::now() + Duration::from_secs_f64((a.settle_max - a.settle).max(0.0));
    let mut still = 0;
    while let (Some(b), Some(prev)) = (before, after) {
        if still >= still_needed || Instant::now() >= settle_until {
            break;
        }
        thread::sleep(Duration::from_millis(500));
        let now = watch(t.watch_pid)?;
        let Some(cur) = now else { break };
        let growth = prev.rss_kb.saturating_sub(b.rss_kb).max(1024) as f64;
        if (cur.rss_kb as f64 - prev.rss_kb as f64).abs() <= 0.01 * growth {
            still += 1;
        } else {
            still = 0;
        }
        after = now;
    }
    let settle_secs = started.elapsed().as_secs_f64() - setup_secs;
    let n = established.load(Relaxed);
    let e = errors.load(Relaxed);
    let delta_kb = match (before, after) {
        (Some(b), Some(a)) => Some(a.rss_kb as i64 - b.rss_kb as i64),
        _ => None,
    };
    let per_conn = delta_kb
        .filter(|_| n > 0)
        .map(|d| d as f64 * 1024.0 / n as f64);
    let mut out = report_common(t, "idle");
    merge(
        &mut out,
        json!({
            "conns_target": a.conns, "conns": n, "errors": e, "setup_secs": setup_secs,
            "settle_secs": settle_secs,
            "rss_before_kb": before.map(|s| s.rss_kb), "rss_after_kb": after.map(|s| s.rss_kb),
            "server_procs": after.map(|s| s.procs),
            "rss_delta_kb": delta_kb, "bytes_per_conn": per_conn,
        }),
    );
    println!("{out}");
    eprintln!(
        "tern-loadgen: holding {n} connections ({e} errors) after {setup_secs:.1}s; {} bytes/conn",
        per_conn
            .map(|b| format!("{b:.0}"))
            .unwrap_or_else(|| "-".into())
    );
    if a.hold > 0.0 {
        thread::sleep(Duration::from_secs_f64(a.hold));
    }
    Ok(n == a.conns)
}
