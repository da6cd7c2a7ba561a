//! A backend for the backend-hop tests: optionally reads a PROXY protocol header first, then
//! optionally speaks TLS (rustls, with session tickets, optionally requiring a client
//! certificate), then echoes (tcp mode) or answers HTTP/1.1 requests (http mode) with what it
//! saw of the connection. Everything it sees is recorded per connection, so a test can assert
//! that a refused handshake got no byte of the client's, or that a session resumed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tern::proxyproto::{self, Parsed};

use super::WAIT;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Echo,
    Http,
}

pub struct Opts {
    pub serve: Serve,
    /// Expect a PROXY protocol header before anything else.
    pub proxy: bool,
    /// TLS with this chain and key (files); `None`: plain TCP.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Require a client certificate signed by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
    pub tls12_only: bool,
}

impl Opts {
    pub fn new(serve: Serve) -> Opts {
        Opts {
            serve,
            proxy: false,
            tls: None,
            client_ca: None,
            tls12_only: false,
        }
    }
}

/// What one connection showed.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub proxy: Option<proxyproto::Header>,
    /// `Some(Err)`: the TLS handshake failed (why).
    pub handshake: Option<Result<(), String>>,
    pub resumed: bool,
    pub version: Option<String>,
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub client_cert: Option<CertificateDer<'static>>,
    /// Application bytes received (after the handshake, if any).
    pub app_bytes: usize,
    pub requests: Vec<String>,
}

pub struct HopBackend {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
}

impl HopBackend {
    pub fn start(opts: Opts) -> HopBackend {
        let cfg = opts.tls.as_ref().map(|(c, k)| server_config(c, k, &opts));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
        let all = conns.clone();
        let opts = Arc::new(opts);
        std::thread::spawn(move || {
            for (id, s) in listener.incoming().flatten().enumerate() {
                let _ = s.set_read_timeout(Some(WAIT));
                let _ = s.set_write_timeout(Some(WAIT));
                let seen = Arc::new(Mutex::new(Seen::default()));
                all.lock().unwrap().push(seen.clone());
                let (cfg, opts) = (cfg.clone(), opts.clone());
                std::thread::spawn(move || handle(s, id, cfg, &opts, &seen));
            }
        });
        HopBackend { addr, conns }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Waits until `n` connections were accepted and each has finished its handshake (or
    /// failed it).
    pub fn wait_conns(&self, n: usize) -> Vec<Seen> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let seen = self.seen();
            let settled = seen
                .iter()
                .all(|s| s.handshake.is_some() || s.app_bytes > 0 || !s.requests.is_empty());
            if seen.len() >= n && settled {
                return seen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "backend saw {seen:?}, wanted {n} connections"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn server_config(cert: &Path, key: &Path, opts: &Opts) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let b = ServerConfig::builder_with_protocol_versions(versions);
    let b = match &opts.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            b.with_client_cert_verifier(
                WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap(),
            )
        }
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(chain, key).unwrap();
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec(), b"echo".to_vec()];
    Arc::new(cfg)
}

/// Reads exactly the PROXY header off `s` (peeking first, so nothing after it is taken).
fn read_proxy(s: &mut TcpStream) -> Option<proxyproto::Header> {
    let mut buf = vec![0u8; 1024];
    for _ in 0..200 {
        let n = s.peek(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        match proxyproto::parse(&buf[..n]) {
            Ok(Parsed::Header { len, header }) => {
                let mut take = vec![0u8; len];
                s.read_exact(&mut take).ok()?;
                return Some(header);
            }
            Ok(Parsed::Incomplete { .. }) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("backend got a bad PROXY header: {e}"),
        }
    }
    None
}

fn handle(
    mut tcp: TcpStream,
    id: usize,
    cfg: Option<Arc<ServerConfig>>,
    opts: &Opts,
    seen: &Mutex<Seen>,
) {
    if opts.proxy {
        let h = read_proxy(&mut tcp);
        seen.lock().unwrap().proxy = h;
    }
    let Some(cfg) = cfg else {
        seen.lock().unwrap().handshake = Some(Ok(()));
        serve(&mut tcp, None, id, opts, seen);
        return;
    };
    let mut conn = ServerConnection::new(cfg).unwrap();
    let mut rounds = 0;
    while conn.is_handshaking() {
        rounds += 1;
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if rounds > 50 => {
                seen.lock().unwrap().handshake = Some(Err("peer went away".into()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                // Whatever follows a failed handshake is counted too: it must be nothing.
                let mut rest = Vec::new();
                let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = tcp.read_to_end(&mut rest);
                let mut s = seen.lock().unwrap();
                s.handshake = Some(Err(e.to_string()));
                return;
            }
        }
    }
    {
        let mut s = seen.lock().unwrap();
        s.handshake = Some(Ok(()));
        s.resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        s.version = conn.protocol_version().map(|v| format!("{v:?}"));
        s.sni = conn.server_name().map(str::to_string);
        s.alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        s.client_cert = conn.peer_certificates().and_then(|c| c.first().cloned());
    }
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    serve(&mut tls, Some(()), id, opts, seen);
}

fn serve(s: &mut dyn StreamExt, tls: Option<()>, id: usize, opts: &Opts, seen: &Mutex<Seen>) {
    let mut buf = vec![0u8; 64 * 1024];
    match opts.serve {
        Serve::Echo => loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    s.close();
                    return;
                }
                Ok(n) => {
                    seen.lock().unwrap().app_bytes += n;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    let _ = s.flush();
                }
            }
        },
        Serve::Http => {
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let Some(end) = find_head_end(&pending) else {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            seen.lock().unwrap().app_bytes += n;
                            pending.extend_from_slice(&buf[..n]);
                            continue;
                        }
                    }
                };
                let head = String::from_utf8_lossy(&pending[..end]).to_string();
                pending.drain(..end);
                let line = head.lines().next().unwrap_or("").to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = {
                    let mut st = seen.lock().unwrap();
                    st.requests.push(line.clone());
                    let src = st
                        .proxy
                        .as_ref()
                        .and_then(|h| h.addrs)
                        .map(|a| a.src.to_string());
                    format!(
                        "conn={id} resumed={} sni={:?} alpn={:?} src={:?} n={}",
                        st.resumed,
                        st.sni,
                        st.alpn.as_deref().map(String::from_utf8_lossy),
                        src,
                        st.requests.len()
                    )
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                let _ = s.flush();
                if tls.is_some() && path == "/close-notify" {
                    // close_notify, then keep the socket open: only the record says it ended.
                    s.close();
                    let _ = s.read(&mut buf);
                    return;
                }
                if tls.is_some() && path == "/rekey" {
                    s.rekey();
                }
            }
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// What `serve` needs beyond reading and writing: a clean close, and a key update (TLS).
trait StreamExt: Read + Write {
    fn close(&mut self);
    fn rekey(&mut self) {}
}

impl StreamExt for TcpStream {
    fn close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl StreamExt for rustls::StreamOwned<ServerConnection, TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }

    fn rekey(&mut self) {
        self.conn.refresh_traffic_keys().unwrap();
        let _ = self.flush();
    }
}
