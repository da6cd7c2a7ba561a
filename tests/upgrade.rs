//! Zero-downtime binary upgrades (`--upgrade-socket`) and systemd socket activation, against
//! the real binary: a new tern takes the listening sockets of the running one while clients
//! keep connecting and sending, and not one connect or request fails.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http::{read_response, TestBackend};
use common::*;
use rustls::version::TLS13;

/// The load tests take both cores for a few seconds each: one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Tcp,
    Http,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// Requests per kept-alive connection before the client closes it (and opens another), as
/// browsers and pools do; an old tern drains once its connections are done.
const PER_CONNECTION: u64 = 50;

/// Clients in threads: two that keep connections alive for [`PER_CONNECTION`] requests, four
/// that open a new connection (a TLS handshake) per request — the ones that would find a
/// closed accept queue. Every failure is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(addr: SocketAddr, certs: &Certs, mode: Mode) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let cfg = certs.client(&[&TLS13]);
        let threads = [PER_CONNECTION, PER_CONNECTION, 1, 1, 1, 1]
            .into_iter()
            .map(|per| {
                let (stop, done, failures, cfg) =
                    (stop.clone(), done.clone(), failures.clone(), cfg.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match one_connection(addr, &cfg, mode, per, &done) {
                            Ok(()) => {}
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
            started: Instant::now(),
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests more than now were answered.
    fn wait_for(&self, more: u64) {
        let target = self.done() + more;
        let deadline = Instant::now() + WAIT;
        while self.done() < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} (failures: {:?})",
                self.done(),
                self.failures.lock().unwrap().first()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients: requests answered, and the failures.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "load: {done} requests in {secs:.1}s ({:.0}/s)",
            done as f64 / secs
        );
        (done, std::mem::take(&mut *self.failures.lock().unwrap()))
    }
}

/// One connection carrying `requests` requests, each checked.
fn one_connection(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    mode: Mode,
    requests: u64,
    done: &AtomicU64,
) -> Result<(), String> {
    let s = connect(addr, cfg).map_err(|e| format!("connect and handshake: {e}"))?;
    let mut r = BufReader::new(s);
    for i in 0..requests {
        let fail = |e: std::io::Error| format!("request {i} on its connection: {e}");
        match mode {
            Mode::Tcp => {
                let msg = format!("ping {i:08}\n");
                r.get_mut().write_all(msg.as_bytes()).map_err(fail)?;
                let mut back = vec![0u8; msg.len()];
                r.read_exact(&mut back).map_err(fail)?;
                if back != msg.as_bytes() {
                    return Err(format!("request {i}: echoed {back:?}"));
                }
            }
            Mode::Http => {
                r.get_mut()
                    .write_all(b"GET /name HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .map_err(fail)?;
                let resp = read_response(&mut r, false).map_err(fail)?;
                if resp.status != 200 || resp.text() != "b" {
                    return Err(format!("request {i}: {} {}", resp.status, resp.text()));
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    let s = r.get_mut();
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(())
}

fn backend_for(mode: Mode) -> SocketAddr {
    match mode {
        Mode::Tcp => echo_backend(),
        Mode::Http => TestBackend::start("b").addr,
    }
}

fn args(
    certs: &Certs,
    listen: &str,
    backend: SocketAddr,
    mode: Mode,
    workers: usize,
    sock: &Path,
) -> Vec<String> {
    let mut v: Vec<String> = [
        "--listen",
        listen,
        "--backend",
        &backend.to_string(),
        "--mode",
        mode.flag(),
        "--workers",
        &workers.to_string(),
        "--upgrade-socket",
        sock.to_str().unwrap(),
        // Connections end on their own long before: reaching this would be a failure.
        "--drain-timeout",
        "60s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(certs.args());
    v
}

fn start(args: &[String]) -> Tern {
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Waits for `old` to hand over to `new` and exit 0 after draining.
fn handed_over(old: &mut Tern, new: &Tern) {
    let status = old.wait_exit(WAIT).expect("the old tern did not exit");
    assert_eq!(status.code(), Some(0), "{}", old.log_text());
    let log = old.log_text();
    assert!(
        log.contains(&format!(
            "upgrade: pid {} accepts on every listening socket: no longer accepting",
            new.pid()
        )),
        "{log}"
    );
    assert!(!log.contains("drain timeout"), "{log}");
    assert!(
        new.log_text()
            .contains(&format!("upgrade: pid {} stopped accepting", old.pid())),
        "{}",
        new.log_text()
    );
}

fn upgrade_under_load(mode: Mode) {
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let certs = Certs::new();
    let backend = backend_for(mode);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("tern.sock");
    let mut old = start(&args(&certs, "127.0.0.1:0", backend, mode, 2, &sock));
    let addr = old.addr();
    let load = Load::start(addr, &certs, mode);
    load.wait_for(500);

    // More workers than the old one had sockets: siblings are bound beside them.
    let new = start(&args(&certs, &addr.to_string(), backend, mode, 3, &sock));
    assert!(
        new.log_text().contains("2 sockets, 1 more bound"),
        "{}",
        new.log_text()
    );
    handed_over(&mut old, &new);
    // The new one serves everything now.
    load.wait_for(500);
    let (done, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{mode:?}: {} of the requests failed (of {done} answered), first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(new.log_text().contains(&format!("listening on {addr}")));
}

#[test]
fn an_upgrade_under_load_drops_nothing_in_tcp_mode() {
    upgrade_under_load(Mode::Tcp);
}

#[test]
fn an_upgrade_under_load_drops_nothing_in_http_mode() {
    upgrade_under_load(Mode::Http);
}

#[test]
fn a_new_tern_that_cannot_start_leaves_the_old_one_serving() {
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let certs = Certs::new();
    let backend = echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("tern.sock");
    let mut old = start(&args(&certs, "127.0.0.1:0", backend, Mode::Tcp, 2, &sock));
    let addr = old.addr().to_string();
    let load = Load::start(old.addr(), &certs, Mode::Tcp);
    load.wait_for(200);

    // A bad certificate: refused before it even asks the old one.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let mut a = args(&certs, &addr, backend, Mode::Tcp, 2, &sock);
    let at = a.iter().position(|x| x == "--cert").unwrap();
    a[at + 1] = bad.display().to_string();
    let (status, err) = run_tern(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("bad.pem"), "{err}");

    // Failing after it was sent the sockets (its --metrics address is taken): the old one
    // notices the connection close without `ready` and carries on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = args(&certs, &addr, backend, Mode::Tcp, 2, &sock);
    a.extend(["--metrics".into(), taken.local_addr().unwrap().to_string()]);
    let (status, err) = run_tern(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--metrics"), "{err}");
    assert!(
        old.wait_log("before it was ready; still serving", WAIT),
        "{}",
        old.log_text()
    );
    load.wait_for(200);
    assert!(old.is_running());
    assert!(!old.log_text().contains("no longer accepting"));

    // And it still hands over to a good one.
    let new = start(&args(&certs, &addr, backend, Mode::Tcp, 1, &sock));
    handed_over(&mut old, &new);
    load.wait_for(200);
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn the_successor_takes_over_the_upgrade_socket_for_the_next_upgrade() {
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let certs = Certs::new();
    let backend = echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("tern.sock");
    let mut first = start(&args(&certs, "127.0.0.1:0", backend, Mode::Tcp, 2, &sock));
    let addr = first.addr().to_string();
    let load = Load::start(first.addr(), &certs, Mode::Tcp);
    load.wait_for(200);
    let mut second = start(&args(&certs, &addr, backend, Mode::Tcp, 1, &sock));
    handed_over(&mut first, &second);
    load.wait_for(200);
    let third = start(&args(&certs, &addr, backend, Mode::Tcp, 2, &sock));
    handed_over(&mut second, &third);
    assert!(
        third.log_text().contains("2 sockets"),
        "the sockets the first one bound, passed on: {}",
        third.log_text()
    );
    load.wait_for(200);
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");

    // The socket is owner-only.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Stopped, it answers no more (under the sandbox the file stays: nothing may be removed);
    // the next tern finds nobody there and starts afresh on the same path.
    let mut third = third;
    third.signal(libc::SIGTERM);
    assert_eq!(third.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let fresh = start(&args(&certs, &addr, backend, Mode::Tcp, 1, &sock));
    let log = fresh.log_text();
    assert!(
        log.contains(&format!("listening on {addr}")) && !log.contains("(from tern pid"),
        "bound afresh: {log}"
    );
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
}

/// The kernel socket (inode) behind a descriptor of this process.
fn socket_inode(fd: i32) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let link = link.to_str().unwrap();
    link.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

/// The listening TCP sockets of process `pid` on `port`, by inode.
fn listening_on(pid: i32, port: u16) -> Vec<u64> {
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            if f[3] == "0A" && u16::from_str_radix(local_port, 16).unwrap() == port {
                listening.push(f[9].parse::<u64>().unwrap());
            }
        }
    }
    let mut mine = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy().to_string();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok())
            {
                if listening.contains(&inode) {
                    mine.push(inode);
                }
            }
        }
    }
    mine.sort();
    mine.dedup();
    mine
}

/// tern with `listener` as fd 3 and the socket-activation variables systemd sets, through
/// `sh -c '... exec tern'` so that LISTEN_PID is tern's own pid.
fn activated(listener: &std::net::TcpListener, args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=https exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tern"))
        .args(args);
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) are made.
    unsafe {
        cmd.pre_exec(move || {
            let ok = match fd {
                // Already 3: only the close-on-exec flag needs clearing.
                3 => libc::fcntl(3, libc::F_SETFD, 0) == 0,
                _ => libc::dup2(fd, 3) == 3,
            };
            match ok {
                true => Ok(()),
                false => Err(std::io::Error::last_os_error()),
            }
        })
    };
    cmd
}

#[test]
fn socket_activation_serves_on_the_inherited_socket_without_binding() {
    let certs = Certs::new();
    let backend = echo_backend().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inode = socket_inode(listener.as_raw_fd());
    let mut a = vec![
        "--listen".to_string(),
        addr.to_string(),
        // Not inherited: bound as usual.
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--backend".into(),
        backend,
        "--workers".into(),
        "2".into(),
    ];
    a.extend(certs.args());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let tern = Tern::start_command(activated(&listener, &a));
    assert!(
        tern.log_text().contains(&format!(
            "listening on {addr} (from socket activation fd 3 (https))"
        )),
        "{}",
        tern.log_text()
    );
    // Both workers accept on the one inherited socket: no socket of tern's own on that port.
    assert_eq!(listening_on(tern.pid(), addr.port()), vec![inode]);
    // The test's copy is closed: only tern's remain, and they serve.
    drop(listener);
    for target in [addr, tern.addrs[1]] {
        let mut s = connect(target, &certs.client(&[&TLS13])).unwrap();
        s.write_all(b"activated").unwrap();
        let mut back = [0u8; 9];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"activated");
    }
    assert_ne!(tern.addrs[1].port(), addr.port());
}

#[test]
fn an_inherited_socket_no_listen_asks_for_is_refused() {
    let certs = Certs::new();
    let backend = echo_backend().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut a = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--backend".into(),
        backend,
    ];
    a.extend(certs.args());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut cmd = activated(&listener, &a);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket activation fd 3 (https)") && err.contains(&addr.to_string()),
        "{err}"
    );
}

/// The child's output, or a panic (after killing it) if it does not exit within [`WAIT`].
fn wait_output(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tern did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_upgrade_can_change_the_listen_addresses() {
    // Not beside the under-load upgrades: with both cores saturated by their load, an echo
    // through this test's tern once missed its 20 s read timeout in a full `cargo test`.
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let certs = Certs::new();
    let backend = echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("tern.sock");
    let mut a = args(&certs, "127.0.0.1:0", backend, Mode::Tcp, 1, &sock);
    a.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let mut old = start(&a);
    let (kept, dropped) = (old.addrs[0], old.addrs[1]);
    // Keeps the first address, drops the second, adds a new one.
    let mut a = args(&certs, &kept.to_string(), backend, Mode::Tcp, 1, &sock);
    a.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let new = start(&a);
    handed_over(&mut old, &new);
    let log = new.log_text();
    assert!(
        log.contains(&format!(
            "closing the listening socket on {dropped} from tern pid {}",
            old.pid()
        )),
        "{log}"
    );
    assert_eq!(new.addrs[0], kept);
    let added = new.addrs[1];
    for target in [kept, added] {
        let mut s = connect(target, &certs.client(&[&TLS13])).unwrap();
        s.write_all(b"moved").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
    }
    assert!(
        std::net::TcpStream::connect(dropped).is_err(),
        "{dropped} still accepts"
    );
}
