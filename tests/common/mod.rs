//! Shared test rig: start the real `tern` binary on 127.0.0.1 port 0, a rustls client, test
//! certificates, and small blocking backends. Every wait is bounded; every process is killed
//! when its handle drops.
#![allow(dead_code)]

pub mod haproxy;
pub mod hop;
pub mod http;
pub mod pki;
pub mod scrape;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub const WAIT: Duration = Duration::from_secs(20);

/// A running tern; killed on drop.
pub struct Tern {
    child: Child,
    pub addrs: Vec<SocketAddr>,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tern {
    /// Starts `tern ARGS` and waits until it logs "tern ready".
    pub fn start(args: &[&str]) -> Tern {
        Self::start_with(args, &[])
    }

    /// `TERN_TEST_URING_RECV=multishot|single` in the test's environment adds
    /// `--uring-recv VALUE` to every tern started here that does not choose itself, so whole
    /// suites run either way (multishot is the default: `TERN_TEST_URING_RECV=single cargo
    /// test --test tcp_mode`).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Tern {
        let recv = std::env::var("TERN_TEST_URING_RECV").ok();
        let mut args = args.to_vec();
        if let Some(recv) = recv.as_deref() {
            if !args.contains(&"--uring-recv") {
                args.extend(["--uring-recv", recv]);
            }
        }
        Self::spawn(env!("CARGO_BIN_EXE_tern"), &args, env)
    }

    /// Starts tern through a wrapper program (e.g. `prlimit`), which must exec it.
    pub fn start_program(program: &str, args: &[&str]) -> Tern {
        Self::spawn(program, args, &[])
    }

    fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> Tern {
        let mut cmd = Command::new(program);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_command(cmd)
    }

    /// Starts a prepared command (which must run tern, or exec it) and waits until it logs
    /// "tern ready".
    pub fn start_command(mut cmd: Command) -> Tern {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tern");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut tern = Tern {
            child,
            addrs: Vec::new(),
            lines,
            log,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tern.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        // Text or JSON lines: the address ends at a space or a quote.
                        let addr: String = rest
                            .chars()
                            .take_while(|c| !matches!(c, ' ' | '"' | ',' | '}'))
                            .collect();
                        tern.addrs.push(addr.parse().unwrap());
                    }
                    if line.contains("tern ready") {
                        return tern;
                    }
                }
                Err(_) => panic!("tern did not become ready; log:\n{}", tern.log_text()),
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until at least `n` log lines contain `needle`.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .log_text()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
                >= n
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// utime + stime of the process, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tern to completion (for refusals at start-up): exit status and stderr.
pub fn run_tern(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tern {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test CA and a localhost certificate it signed, on disk in a temp dir.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pem: PathBuf,
    pub ca: CertificateDer<'static>,
}

impl Certs {
    pub fn new() -> Certs {
        Self::with_alg(&rcgen::PKCS_ECDSA_P256_SHA256)
    }

    pub fn with_alg(alg: &'static rcgen::SignatureAlgorithm) -> Certs {
        Self::make(alg, &["localhost"])
    }

    /// A CA and a certificate for these names.
    pub fn for_names(names: &[&str]) -> Certs {
        Self::make(&rcgen::PKCS_ECDSA_P256_SHA256, names)
    }

    fn make(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> Certs {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        Certs {
            cert: write("cert.pem", &chain),
            key: write("key.pem", &key.serialize_pem()),
            pem: write("both.pem", &format!("{chain}{}", key.serialize_pem())),
            ca: ca.der().clone(),
            _dir: dir,
        }
    }

    /// `--cert C --key K` as arguments.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
        ]
    }

    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        Arc::new(
            ClientConfig::builder_with_protocol_versions(versions)
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// Common tern arguments: one worker on 127.0.0.1:0 to `backend`, plus `extra`.
pub fn tern_args(certs: &Certs, backend: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--backend".into(),
        backend.to_string(),
        "--workers".into(),
        "1".into(),
    ];
    v.extend(certs.args());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn start_tern(certs: &Certs, backend: SocketAddr, extra: &[&str]) -> Tern {
    let args = tern_args(certs, backend, extra);
    Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes the handshake, with read/write timeouts on the socket.
pub fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    connect_as(addr, cfg, "localhost")
}

/// Connects asking for server name `name`.
pub fn connect_as(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream> {
    tls_over(TcpStream::connect_timeout(&addr, WAIT)?, cfg, name)
}

/// The TLS handshake over an already connected socket (read/write timeouts set on it).
pub fn tls_over(tcp: TcpStream, cfg: &Arc<ClientConfig>, name: &str) -> std::io::Result<TlsStream> {
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.set_write_timeout(Some(WAIT))?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    let conn = ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Reads until close_notify/EOF; returns everything read.
pub fn read_to_end(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// A deterministic byte pattern of `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// A blocking backend: each accepted connection is handed to `handler` on its own thread.
pub fn backend<F>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(WAIT));
            let _ = stream.set_write_timeout(Some(WAIT));
            let handler = handler.clone();
            std::thread::spawn(move || handler(stream));
        }
    });
    addr
}

/// Echoes until EOF, then closes its write side.
pub fn echo_backend() -> SocketAddr {
    backend(|mut s| {
        if echo_until_eof(&mut s) {
            let _ = s.shutdown(Shutdown::Write);
        }
    })
}

/// Writes back what `s` reads until EOF (true) or an error (false).
pub fn echo_until_eof(s: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Err(_) => return false,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return false;
                }
            }
        }
    }
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// SO_LINGER 0: closing `s` then sends RST instead of FIN.
pub fn reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setting an option on an open socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}
