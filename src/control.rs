//! The control thread: raises limits, binds the listeners, starts one pinned worker per CPU,
//! then waits for signals. TERM/INT drain (a second one exits at once); it talks to workers by
//! message only and reads their counters for its log lines.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::cli::MaxConns;
use crate::config::Config;
use crate::generation::Generation;
use crate::listeners::{self, Listeners};
use crate::metrics::{self, Health};
use crate::stats::{Registry, Totals, WorkerStats};
use crate::upgrade;
use crate::worker::{self, Control, Driver};

/// Why tern could not run: a bad configuration (exit 2) or a runtime failure (exit 1).
#[derive(Debug)]
pub enum RunError {
    Config(String),
    Runtime(String),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => 2,
            RunError::Runtime(_) => 1,
        }
    }
}

impl From<upgrade::Error> for RunError {
    fn from(e: upgrade::Error) -> Self {
        match e {
            upgrade::Error::Config(m) => RunError::Config(m),
            upgrade::Error::Runtime(m) => RunError::Runtime(m),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(m) | RunError::Runtime(m) => f.write_str(m),
        }
    }
}

/// Blocks the signals the control thread waits for. Call first in `main`, before any thread
/// starts, so every thread inherits the mask and only `sigtimedwait` here sees them.
pub fn block_signals() {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let set = signal_set();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and ts are valid; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return rl.rlim_max;
            }
        }
        rl.rlim_cur
    }
}

/// Each proxied connection holds two descriptors (client and backend); keep some spare.
fn max_conns(setting: MaxConns, nofile: u64) -> usize {
    let auto = (nofile.saturating_sub(64) / 2).max(1) as usize;
    match setting {
        MaxConns::Auto => auto,
        MaxConns::Limit(n) => {
            if n > auto {
                warn!(max_conns = n, open_file_limit = nofile, "--max-conns is above what the open-file limit allows; accepts will back off when descriptors run out");
            }
            n
        }
    }
}

/// Splits `total` over `workers` so that the shares add up to `total` exactly.
pub fn shares(total: usize, workers: usize) -> Vec<usize> {
    (0..workers)
        .map(|i| total / workers + usize::from(i < total % workers))
        .collect()
}

/// Why io_uring cannot be used, or None when it can.
fn io_uring_unavailable() -> Option<String> {
    if std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|v| v.trim() == "2")
    {
        return Some("kernel.io_uring_disabled=2".into());
    }
    if monoio::utils::detect_uring() {
        return None;
    }
    // detect_uring says no: ask the kernel directly for a precise cause.
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: io_uring_setup with a zeroed params struct of the kernel's size; any fd returned
                                 // is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        if std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some() {
            return Some("MONOIO_FORCE_LEGACY_DRIVER is set".into());
        }
        return Some("the kernel lacks io_uring operations tern needs".into());
    }
    Some(format!(
        "io_uring_setup failed: {}",
        std::io::Error::last_os_error()
    ))
}

/// Builds the generation a reload puts in service from the one in service now (re-reading
/// files), or says in one line why it cannot.
pub type Reloader<'a> = dyn FnMut(&Generation) -> Result<Generation, String> + 'a;

/// Runs tern until it is told to stop. `reload` is called on SIGHUP; `on_ready` sees the bound
/// addresses once every worker serves (the demo prints its curl line there).
pub fn run(
    cfg: Config,
    reload: &mut Reloader<'_>,
    on_ready: impl FnOnce(&[SocketAddr]),
) -> Result<(), RunError> {
    let nofile = raise_nofile_limit();
    let total = max_conns(cfg.max_conns, nofile);
    let n = cfg.cpus.len();
    let driver = match io_uring_unavailable() {
        None => Driver::IoUring,
        Some(why) => {
            warn!("io_uring is not available ({why}); falling back to the epoll driver");
            Driver::Legacy
        }
    };
    crate::tls::warmup::seed_random();
    // Before any other thread starts (the environment, the umask): socket activation's
    // sockets, then the upgrade socket and, from a running tern answering there, its sockets.
    let mut inherited = listeners::from_systemd().map_err(RunError::Config)?;
    let mut upgrade = upgrade::Start::begin(cfg.upgrade_socket.as_deref())?;
    inherited.extend(upgrade.take_sockets());
    let registry = Arc::new(Registry::new(n));
    let health = Health::default();
    // Bound now, with the listeners (before privileges drop); served from a thread started
    // once the process is confined. Before the listeners: a taken address then fails before
    // any socket is bound next to a predecessor's.
    let metrics_listener = bind_metrics(&cfg)?;
    let listeners =
        Listeners::open(&cfg.generation.listen, n, inherited).map_err(RunError::Config)?;
    let mut per_worker = listeners
        .for_workers(n)
        .map_err(|e| RunError::Runtime(format!("cannot hand out the listeners: {e}")))?;
    // Armed before privileges drop, so directories only root may list are watched too; its
    // thread starts once the process is confined.
    let watcher = match cfg.watch {
        true => Some(
            crate::watch::Watcher::arm(&cfg.generation.files)
                .map_err(|e| RunError::Runtime(format!("--watch: cannot use inotify: {e}")))?,
        ),
        false => None,
    };
    // Listeners are bound and keys loaded: nothing left needs root.
    match &cfg.user {
        Some(user) => {
            crate::privileges::drop_to(user).map_err(|e| {
                RunError::Config(format!("--user {}: cannot switch: {e}", user.name))
            })?;
            info!(user = %user.name, uid = user.uid, "running as an unprivileged user");
        }
        None if crate::privileges::is_root() => {
            warn!("running as root; --user NAME drops privileges once the listeners are bound")
        }
        None => {}
    }
    // Before the sandbox, which may not let the notify socket be reached afterwards; and
    // before any thread starts (the metrics thread, the workers), since Landlock covers only
    // threads started after it.
    crate::sys::notify::connect();
    if cfg.sandbox {
        crate::sys::landlock::confine(&cfg.files_read, &cfg.files_written);
    }
    let metrics = start_metrics(&cfg, metrics_listener, &registry, &health)?;
    let watcher = match watcher.map(|w| w.start()).transpose() {
        Ok(w) => w,
        Err(e) => {
            return Err(RunError::Runtime(format!(
                "--watch: cannot start its thread: {e}"
            )))
        }
    };
    let stats = registry.workers().to_vec();
    let mut pool_stats = registry.generation(&pool_names(&cfg.generation));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut controls = Vec::new();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for (id, (&cpu, share)) in cfg.cpus.iter().zip(shares(total, n)).enumerate() {
        let (tx, rx) = flume::bounded(4);
        controls.push(tx);
        let spec = worker::Spec {
            id,
            cpu,
            driver,
            uring_restrict: cfg.uring_restrict,
            listeners: std::mem::take(&mut per_worker[id]),
            generation: cfg.generation.clone(),
            pool_stats: std::mem::take(&mut pool_stats[id]),
            settings: cfg.settings.clone(),
            max_conns: share,
            front: cfg.front,
            drain_timeout: cfg.drain_timeout,
            stats: stats[id].clone(),
            access_log: cfg.access_log.clone(),
            log_format: cfg.log_format,
            control: rx,
            ready: ready_tx.clone(),
        };
        match worker::spawn(spec) {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop_all(&controls);
                return Err(RunError::Runtime(format!("cannot start worker {id}: {e}")));
            }
        }
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(msg)) => {
                stop_all(&controls);
                return Err(RunError::Runtime(msg));
            }
            Err(_) => {
                stop_all(&controls);
                return Err(RunError::Runtime(
                    "a worker did not start within 30s".into(),
                ));
            }
        }
    }
    listeners.log();
    let bound = listeners.addrs();
    // Every worker accepts: a predecessor may stop now.
    let upgrade = upgrade.finish(listeners);
    for pool in cfg.generation.pools.iter() {
        // As written: `10.0.0.5:8080`, `unix:/run/app.sock`.
        let backends: Vec<String> = pool.backends.iter().map(|b| b.to_string()).collect();
        info!(pool = %pool.name, backends = ?backends, balance = ?pool.balance, "backend pool");
    }
    crate::report::certificates(&cfg.generation.tls.certs);
    health.set_ready();
    info!(workers = n, mode = ?cfg.mode, max_conns = total, "tern ready");
    crate::sys::notify::ready();
    on_ready(&bound);
    let state = Supervisor {
        controls,
        stats,
        drain_timeout: cfg.drain_timeout,
        drain_delay: cfg.drain_delay,
        drain_at: None,
        generation: cfg.generation.clone(),
        health,
        metrics,
        registry,
        watcher,
        upgrade,
        bound: bound.clone(),
    };
    state.supervise(handles, reload)
}
/// Binds `--metrics` (before privileges drop, as the listeners are).
fn bind_metrics(cfg: &Config) -> Result<Option<std::net::TcpListener>, RunError> {
    let Some(addr) = cfg.metrics else {
        return Ok(None);
    };
    std::net::TcpListener::bind(addr)
        .map(Some)
        .map_err(|e| RunError::Config(format!("--metrics {addr}: cannot listen: {e}")))
}

/// Starts the metrics thread before the workers, so `/readyz` answers 503 while they start.
fn start_metrics(
    cfg: &Config,
    listener: Option<std::net::TcpListener>,
    registry: &Arc<Registry>,
    health: &Health,
) -> Result<Option<metrics::Server>, RunError> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let state = Arc::new(metrics::State {
        registry: registry.clone(),
        process: metrics::Process::new(
            cfg.cpus.len(),
            cfg.settings.http.enabled,
            &cfg.generation.tls,
        ),
        health: health.clone(),
    });
    let server = metrics::Server::start(listener, state)
        .map_err(|e| RunError::Runtime(format!("cannot start the metrics thread: {e}")))?;
    info!("metrics on {}", server.local_addr());
    Ok(Some(server))
}

fn stop_all(controls: &[flume::Sender<Control>]) {
    for c in controls {
        let _ = c.try_send(Control::Drain);
    }
}

/// What the control thread keeps once the workers run.
struct Supervisor {
    controls: Vec<flume::Sender<Control>>,
    stats: Vec<Arc<WorkerStats>>,
    drain_timeout: Duration,
    /// `--drain-delay`: between /healthz turning 503 and the listeners closing.
    drain_delay: Duration,
    /// The end of the drain delay, while it runs.
    drain_at: Option<std::time::Instant>,
    /// The generation in service.
    generation: Arc<Generation>,
    health: Health,
    metrics: Option<metrics::Server>,
    registry: Arc<Registry>,
    /// `--watch`: asks for reloads when files of the generation change.
    watcher: Option<crate::watch::Watcher>,
    /// `--upgrade-socket`: answers a successor, and says when it is ready to take over.
    upgrade: Option<upgrade::Server>,
    /// The addresses the listeners are bound to.
    bound: Vec<SocketAddr>,
}

/// The pool names of a generation, by pool index (for their counters).
fn pool_names(g: &Generation) -> Vec<&str> {
    g.pools.iter().map(|p| p.name.as_str()).collect()
}

impl Supervisor {
    fn supervise(
        mut self,
        handles: Vec<JoinHandle<()>>,
        reload: &mut Reloader<'_>,
    ) -> Result<(), RunError> {
        let mut draining = false;
        let mut failed = false;
        loop {
            if let Some(sig) = wait_signal(Duration::from_millis(200)) {
                match sig {
                    libc::SIGHUP if !draining => self.reload(reload, "SIGHUP"),
                    libc::SIGHUP => {}
                    _ if draining => {
                        warn!("second signal: exiting now without waiting for open connections");
                        std::process::exit(1);
                    }
                    _ => {
                        self.signalled(sig);
                        draining = true;
                    }
                }
            }
            if self
                .drain_at
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                self.drain_at = None;
                self.drain("drain delay over");
            }
            if let Some(pid) = self.upgrade.as_ref().and_then(|u| u.successor_ready()) {
                let server = self.upgrade.take();
                self.drain(&format!(
                    "upgrade: pid {pid} accepts on every listening socket"
                ));
                draining = true;
                // Workers are told: the successor gets the upgrade socket, and this process
                // closes its copies of the listening sockets.
                if let Some(s) = server {
                    s.hand_over();
                }
            }
            if let Some(changed) = self.watcher.as_ref().and_then(|w| w.changed()) {
                if !draining {
                    self.reload(reload, &changed_files(&changed));
                }
            }
            if handles.iter().all(|h| h.is_finished()) {
                break;
            }
            if !draining && handles.iter().any(|h| h.is_finished()) {
                error!("a worker stopped unexpectedly; shutting down");
                self.health.set_draining();
                failed = true;
                draining = true;
                self.upgrade = None;
                crate::sys::notify::stopping();
                stop_all(&self.controls);
            }
        }
        for h in handles {
            if h.join().is_err() {
                failed = true;
            }
        }
        let t = Totals::sum(self.stats.iter().map(|s| &**s));
        info!(
            accepted = t.accepted,
            handshakes_ok = t.handshakes_ok,
            handshakes_failed = t.handshakes_failed,
            refused_at_limit = t.refused_at_limit,
            backend_connect_failures = t.backend_connect_failures,
            bytes_to_backend = t.bytes_to_backend,
            bytes_to_client = t.bytes_to_client,
            "stopped"
        );
        if failed {
            return Err(RunError::Runtime("a worker failed".into()));
        }
        Ok(())
    }

    /// SIGTERM/SIGINT: drain, at once or after `--drain-delay`. During the delay /healthz
    /// answers 503 and the service manager hears STOPPING=1, but the listeners keep accepting:
    /// a balancer that checks /healthz every few hundred milliseconds has taken tern out by
    /// the time they close, so no connection it sent meanwhile meets a closed port (or is
    /// reset in a closing accept queue).
    fn signalled(&mut self, sig: i32) {
        if self.drain_delay.is_zero() {
            self.drain(&format!("signal {sig}"));
            return;
        }
        self.health.set_draining();
        self.upgrade = None;
        crate::sys::notify::stopping();
        info!(
            "signal {sig}: /healthz answers 503; still accepting for {} (--drain-delay), then draining",
            crate::util::duration::show(self.drain_delay)
        );
        self.drain_at = Some(std::time::Instant::now() + self.drain_delay);
    }

    /// Stops accepting (SIGTERM/SIGINT, or a successor took over) and lets open connections
    /// finish. No successor can be answered any more: the upgrade socket closes.
    fn drain(&mut self, why: &str) {
        self.health.set_draining();
        self.upgrade = None;
        let open = Totals::sum(self.stats.iter().map(|s| &**s)).open;
        info!(
            open,
            "{why}: no longer accepting; draining for up to {}",
            crate::util::duration::show(self.drain_timeout)
        );
        crate::sys::notify::stopping();
        stop_all(&self.controls);
    }

    /// SIGHUP or `--watch`: reload, then watch the files of the generation now in service
    /// (whether the reload worked or not: links may point elsewhere, files may have moved).
    /// Done or refused, the service manager hears READY=1 after it.
    fn reload(&mut self, reload: &mut Reloader<'_>, why: &str) {
        crate::sys::notify::reloading();
        if !self.put_in_service(reload, why) {
            self.rearm();
        }
        crate::sys::notify::ready();
    }

    fn rearm(&self) {
        if let Some(w) = &self.watcher {
            w.rearm(&self.generation.files);
        }
    }

    /// Builds and checks the next generation, then hands it to every worker. A generation that
    /// fails its checks is not sent: the one in service stays, one line says why, and false is
    /// returned. Otherwise the watches follow the new generation before the result is logged.
    fn put_in_service(&mut self, reload: &mut Reloader<'_>, why: &str) -> bool {
        let started = std::time::Instant::now();
        info!("{why}: reloading certificates and configuration");
        let next = match reload(&self.generation) {
            Ok(g) => g,
            Err(e) => {
                error!(
                    "reload failed, still serving generation {}: {e}",
                    self.generation.id
                );
                self.reload_failed();
                return false;
            }
        };
        if next.listen != self.generation.listen {
            warn!(
                "reload: the listen addresses changed; listeners are bound at start only, so \
                 the old ones stay (restart or upgrade the binary to change them)"
            );
        }
        // Checked here once, so that no worker is sent a generation it cannot serve.
        if let Err(e) = crate::tls::ServerTls::new(&next.tls, None) {
            error!(
                "reload failed, still serving generation {}: tls: {e}",
                self.generation.id
            );
            self.reload_failed();
            return false;
        }
        let next = Arc::new(next);
        let mut pool_stats = self.registry.generation(&pool_names(&next));
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut sent = 0;
        for (id, c) in self.controls.iter().enumerate() {
            let stats = std::mem::take(&mut pool_stats[id]);
            if c.send_timeout(
                Control::Reload(next.clone(), stats, ack_tx.clone()),
                Duration::from_secs(5),
            )
            .is_ok()
            {
                sent += 1;
            }
        }
        drop(ack_tx);
        let mut switched = 0;
        for _ in 0..sent {
            match ack_rx.recv_timeout(Duration::from_secs(10)) {
                Ok((_, Ok(()))) => switched += 1,
                Ok((id, Err(e))) => error!(worker = id, "reload: {e}"),
                Err(_) => break,
            }
        }
        self.generation = next.clone();
        self.rearm();
        if switched == self.controls.len() {
            if let Some(m) = &self.metrics {
                m.state().process.reload_succeeded(&next.tls);
            }
            for addr in &self.bound {
                info!("listening on {addr}");
            }
            crate::report::certificates(&next.tls.certs);
            info!(
                generation = next.id,
                certificates = next.tls.certs.len(),
                pools = next.pools.len(),
                "reloaded in {} ms",
                started.elapsed().as_millis()
            );
        } else {
            self.reload_failed();
            error!(
                generation = next.id,
                "reload reached {switched} of {} workers",
                self.controls.len()
            );
        }
        true
    }

    fn reload_failed(&self) {
        if let Some(m) = &self.metrics {
            m.state().process.reload_failed();
        }
    }
}

/// `files changed (a.pem, b.key)` for the log, naming at most three.
fn changed_files(files: &[std::path::PathBuf]) -> String {
    let mut names: Vec<String> = files
        .iter()
        .take(3)
        .map(|f| f.display().to_string())
        .collect();
    if files.len() > 3 {
        names.push(format!("{} more", files.len() - 3));
    }
    format!("files changed ({})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(1, 2), vec![1, 0]);
        for (t, w) in [(7, 1), (100, 7), (5, 5)] {
            assert_eq!(shares(t, w).iter().sum::<usize>(), t);
        }
    }

    #[test]
    fn auto_limit_follows_the_fd_limit() {
        assert_eq!(max_conns(MaxConns::Auto, 1024), 480);
        assert_eq!(max_conns(MaxConns::Limit(7), 1024), 7);
    }
}
