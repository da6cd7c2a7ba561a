//! Client TLS: the rustls config the load generator offers, and a small adapter that drives a
//! `rustls::ClientConnection` over a monoio `TcpStream` (or, with `--plain`, moves plain HTTP
//! bytes over it, for the plaintext reference rows).
//!
//! Why our own adapter rather than monoio-rustls: monoio-rustls keeps the `ClientConnection`
//! private (so a handshake cannot be seen to have resumed) and drops error causes. This one is
//! ~100 lines, reads TLS straight into a reused buffer, hands decrypted bytes to the HTTP layer and
//! keeps the cause of every failure.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12Resumption};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, NamedGroup,
    SignatureScheme,
};

/// What the client offers. One key-exchange group and one cipher (per TLS version) are offered so
/// that every terminator negotiates the same thing whatever its own preference order.
pub struct ClientOpts {
    pub tls12: bool,
    pub group: String,
    pub cipher: String,
    pub resume: bool,
    pub verify_sig: bool,
    pub alpn: Option<String>,
}

/// Build the shared client config and return the ticket counter with it.
pub fn client_config(o: &ClientOpts) -> Result<(Arc<ClientConfig>, Arc<CountingStore>), String> {
    use aws_lc_rs::cipher_suite as cs;
    use aws_lc_rs::kx_group as kx;
    let group = match o.group.as_str() {
        "x25519" => kx::X25519,
        "p256" | "secp256r1" => kx::SECP256R1,
        "p384" | "secp384r1" => kx::SECP384R1,
        "x25519mlkem768" => kx::X25519MLKEM768,
        g => {
            return Err(format!(
                "unknown --group {g} (x25519, p256, p384, x25519mlkem768)"
            ))
        }
    };
    let cipher_suites = match o.cipher.as_str() {
        "aes128" => vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        "aes256" => vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        "chacha20" => vec![
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        "any" => aws_lc_rs::default_provider().cipher_suites,
        c => {
            return Err(format!(
                "unknown --cipher {c} (aes128, aes256, chacha20, any)"
            ))
        }
    };
    let provider = Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups: vec![group],
        ..aws_lc_rs::default_provider()
    });
    // aws-lc seeds its random generator on first use (jitterentropy: 30-50 ms, more on a busy
    // machine): do it now, not inside the first handshake of a short measured window.
    provider
        .secure_random
        .fill(&mut [0u8; 16])
        .map_err(|_| "cannot get random bytes".to_string())?;
    let versions: &[&rustls::SupportedProtocolVersion] = if o.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let verifier = Arc::new(AcceptAnyCert {
        provider: provider.clone(),
        verify_sig: o.verify_sig,
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let store = Arc::new(CountingStore {
        inner: o.resume.then(|| ClientSessionMemoryCache::new(256)),
        tls13: Mutex::default(),
        tickets: AtomicU64::new(0),
    });
    // With resumption off this is exactly `Resumption::disabled()` (a store that keeps nothing,
    // TLS 1.2 resumption disabled) except that it counts the tickets the server sends.
    cfg.resumption = if o.resume {
        Resumption::store(store.clone())
    } else {
        Resumption::store(store.clone()).tls12_resumption(Tls12Resumption::Disabled)
    };
    if let Some(a) = &o.alpn {
        cfg.alpn_protocols = a.split(',').map(|p| p.as_bytes().to_vec()).collect();
    }
    Ok((Arc::new(cfg), store))
}

/// Accepts any certificate chain: the test certificates are self-signed, and skipping path
/// building saves client CPU (the server's work is the same either way). The handshake signature
/// (CertificateVerify / ServerKeyExchange) is NOT checked unless `verify_sig` is set: an ECDSA
/// P-256 verify costs the client 2-3x what the server's sign costs it, which would make the
/// single client core the bottleneck of a handshake run. run.sh's readiness probe runs with
/// `--verify-sig` so every terminator is shown to sign correctly before it is measured.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
    verify_sig: bool,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verify_sig {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verify_sig {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Most TLS 1.3 tickets kept (the newest are used first).
const MAX_TICKETS: usize = 4096;

/// A session store that counts the TLS 1.3 tickets servers send (so a run shows whether a
/// terminator really has tickets off) and, with resumption on, keeps them.
///
/// TLS 1.3 tickets are single-use. rustls' own `ClientSessionMemoryCache` keeps at most 8 per
/// server; with dozens of connections in flight that pool runs dry and a "resumed" run does
/// many full handshakes. So TLS 1.3 tickets live in one large pool here (one target per run, so
/// the server name is not looked at); the rest (kx hint, TLS 1.2 sessions) stays in rustls' cache.
#[derive(Debug)]
pub struct CountingStore {
    inner: Option<ClientSessionMemoryCache>,
    tls13: Mutex<VecDeque<rustls::client::Tls13ClientSessionValue>>,
    pub tickets: AtomicU64,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        if let Some(i) = &self.inner {
            i.set_kx_hint(name, group)
        }
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.as_ref().and_then(|i| i.kx_hint(name))
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        if let Some(i) = &self.inner {
            i.set_tls12_session(name, value)
        }
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.as_ref().and_then(|i| i.tls12_session(name))
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        if let Some(i) = &self.inner {
            i.remove_tls12_session(name)
        }
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let _ = name;
        self.tickets.fetch_add(1, Ordering::Relaxed);
        if self.inner.is_some() {
            let mut q = self.tls13.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= MAX_TICKETS {
                q.pop_front();
            }
            q.push_back(value);
        }
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let _ = name;
        self.tls13
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_back()
    }
}

/// Size of the buffer TLS bytes are read into (one `read` per fill).
const READ_BUF: usize = 64 * 1024;

/// A TLS client connection over a monoio TCP stream. Decrypted bytes collect in `plain`; the
/// caller consumes them (and must, between fills, or `plain` grows). Without TLS (`--plain`)
/// the bytes read are the plaintext.
pub struct TlsConn {
    tcp: TcpStream,
    tls: Option<ClientConnection>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    pub plain: Vec<u8>,
    /// The peer sent close_notify.
    closed: bool,
}

impl TlsConn {
    /// `cfg: None`: plain TCP, no handshake.
    pub async fn connect(
        addr: SocketAddr,
        cfg: Option<&Arc<ClientConfig>>,
        name: &ServerName<'static>,
    ) -> io::Result<TlsConn> {
        let tcp = TcpStream::connect_addr(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = match cfg {
            Some(cfg) => {
                Some(ClientConnection::new(cfg.clone(), name.clone()).map_err(io::Error::other)?)
            }
            None => None,
        };
        let mut c = TlsConn {
            tcp,
            tls,
            rbuf: Vec::with_capacity(READ_BUF),
            wbuf: Vec::with_capacity(16 * 1024),
            plain: Vec::with_capacity(16 * 1024),
            closed: false,
        };
        while c.handshaking() {
            c.flush().await?;
            if !c.handshaking() {
                break;
            }
            if c.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed during the handshake",
                ));
            }
        }
        // In TLS 1.3 the client Finished is still queued here; it leaves with the first request.
        Ok(c)
    }

    fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The server has sent close_notify (it may still be waiting for ours before its FIN).
    pub fn peer_closed(&self) -> bool {
        self.closed
    }

    pub fn resumed(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    /// Write every queued TLS record to the socket.
    pub async fn flush(&mut self) -> io::Result<()> {
        while let Some(tls) = self.tls.as_mut().filter(|t| t.wants_write()) {
            let mut buf = std::mem::take(&mut self.wbuf);
            buf.clear();
            tls.write_tls(&mut buf)?;
            let (res, buf) = self.tcp.write_all(buf).await;
            self.wbuf = buf;
            res?;
        }
        Ok(())
    }

    /// Encrypt and send all of `data`.
    pub async fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.tls.is_none() {
            let mut buf = std::mem::take(&mut self.wbuf);
            buf.clear();
            buf.extend_from_slice(data);
            let (res, buf) = self.tcp.write_all(buf).await;
            self.wbuf = buf;
            return res.map(|_| ());
        }
        while let Some(tls) = self.tls.as_mut().filter(|_| !data.is_empty()) {
            let n = tls.writer().write(data)?;
            data = &data[n..];
            self.flush().await?;
        }
        Ok(())
    }

    /// Read once from the socket, decrypt, and append the plaintext to `plain`. Returns the number
    /// of TLS bytes read; 0 means the peer closed (FIN, or close_notify).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.fill_plain().await;
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.clear();
        let (res, buf) = self.tcp.read(buf).await;
        self.rbuf = buf;
        let n = res?;
        if n == 0 {
            return Ok(0);
        }
        let mut off = 0;
        while let Some(tls) = self.tls.as_mut().filter(|_| off < n) {
            let mut rd = &self.rbuf[off..n];
            let k = tls.read_tls(&mut rd)?;
            if k == 0 {
                return Err(io::Error::other("rustls accepted no bytes"));
            }
            off += k;
            let st = tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.closed |= st.peer_has_closed();
            self.drain_plaintext()?;
        }
        // Handshake messages (e.g. the client's reply to a KeyUpdate) may be due.
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) && !self.handshaking() {
            self.flush().await?;
        }
        Ok(if self.closed && self.plain.is_empty() {
            0
        } else {
            n
        })
    }

    /// Plain TCP: read once, appending to `plain` (straight into it when it is empty, as it is
    /// while a body is being counted and dropped). 0 means the peer closed.
    async fn fill_plain(&mut self) -> io::Result<usize> {
        if self.plain.is_empty() {
            let mut buf = std::mem::take(&mut self.plain);
            buf.reserve(READ_BUF);
            let (res, buf) = self.tcp.read(buf).await;
            self.plain = buf;
            return res;
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.clear();
        let (res, buf) = self.tcp.read(buf).await;
        self.rbuf = buf;
        let n = res?;
        self.plain.extend_from_slice(&self.rbuf[..n]);
        Ok(n)
    }

    fn drain_plaintext(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let mut rd = tls.reader();
        loop {
            match rd.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(b) => {
                    let len = b.len();
                    self.plain.extend_from_slice(b);
                    rd.consume(len);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // FIN without close_notify: treat like a close; the caller sees 0 next time.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Send close_notify (best effort).
    pub async fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.flush().await;
        }
    }
}
