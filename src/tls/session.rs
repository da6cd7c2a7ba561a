//! A server-side TLS session, sans-IO: the handshake ([`Accepting`], rustls' unbuffered API)
//! and then the established connection ([`Rx`] and [`Tx`], tern's own record layer on the
//! traffic secrets rustls hands over, in `tls::established`). The proxy's I/O loops own
//! sockets and buffers; every rustls call for a connection happens in these two files.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::ServerConfig;

use super::capture::Watch;
use super::established::Kernel;
use super::hello::{self, Hello, Peek};
use super::identity::{ClientCert, ClientIdentity};
use super::record::{self, Opener, RecordError, Version};

pub use super::established::{Control, Established, Rx, RxEvent, Tx};

/// Why a TLS session failed; the cause is kept whole so it reaches the log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake failed: the peer broke the protocol, offered nothing we accept, or
    /// sent something that is not TLS at all.
    Protocol(rustls::Error),
    /// A record after the handshake was refused (tampered, oversized, unexpected).
    Record(RecordError),
    /// The peer sent a fatal alert (its description code).
    PeerAlert(u8),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "tls: {e}"),
            TlsError::Record(e) => write!(f, "tls record: {e}"),
            TlsError::PeerAlert(d) => write!(f, "tls: peer sent fatal alert {d}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<RecordError> for TlsError {
    fn from(e: RecordError) -> Self {
        TlsError::Record(e)
    }
}

/// Negotiated parameters.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub version: &'static str,
    /// rustls' name for the suite (`TLS13_AES_128_GCM_SHA256`): static, so a handshake
    /// formats no string for it.
    pub suite: &'static str,
    /// The server name the client asked for (SNI), lower-case.
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub resumed: bool,
    /// The client certificate, when the handshake asked for one (mTLS).
    pub client_cert: ClientCert,
}

/// What the certificate resolver saw of the ClientHello being processed on this thread.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    pub sni: Option<String>,
    /// `--strict-sni` refused the name: the client is told `unrecognized_name`.
    pub unrecognized: bool,
}

thread_local! {
    /// Filled by the certificate resolver (rustls' unbuffered server exposes neither the name
    /// nor the refusal); `Accepting::step` collects it right after the synchronous rustls call
    /// in which the resolver ran.
    static RESOLVED: RefCell<Option<Resolved>> = const { RefCell::new(None) };
}

pub(super) fn record_resolved(r: Resolved) {
    RESOLVED.with(|s| *s.borrow_mut() = Some(r));
}

/// RFC 6066 §3's alert for a server name no certificate covers (`--strict-sni`).
const UNRECOGNIZED_NAME: u8 = 112;

/// What to do after [`Accepting::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this many bytes from the start of `out`, then call `step` again.
    Send(usize),
    /// Read more from the peer, append it to the unconsumed input, then call `step` again.
    NeedMore,
    /// The handshake is complete and everything is sent: call [`Accepting::finish`].
    Done,
}

/// The largest chunk rustls may hand over at once (one record), so `out` must have this much
/// room before another is taken.
const MAX_CHUNK: usize = record::MAX_FRAGMENT + 2048 + record::HEADER_LEN;

/// A handshake in progress.
pub struct Accepting {
    conn: UnbufferedServerConnection,
    /// Application data rustls decrypted before the hand-over (sent in the same flight as the
    /// client's Finished).
    early: Vec<u8>,
    /// The name the certificate resolver saw.
    sni: Option<String>,
    /// The ClientHello as tern read it before rustls (`None` until it is all here, or when it
    /// could not be read; rustls then has the last word).
    hello: Option<Hello>,
    hello_done: bool,
    /// Takes the TLS 1.3 traffic secrets as rustls derives them, named by the hello's random
    /// (`tls::capture`): with them the connection drops rustls' key schedule at the hand-over.
    watch: Option<Watch>,
    /// `--strict-sni` refused the name.
    unrecognized: bool,
    /// Certificates with different client-auth settings: the config is chosen by the
    /// ClientHello's name once it is all here, before rustls is shown a byte (`conn` is the
    /// default's until then). `None` once chosen, or when one config serves every name.
    choose: Option<Arc<super::Configs>>,
    /// The config asks for a client certificate.
    asks_cert: bool,
    /// rustls has produced handshake records: from here on its alerts are protected (TLS 1.3)
    /// or follow its ServerHello, so tern cannot write one of its own.
    sent: bool,
    /// Bytes past the consumed point that rustls has been shown (see `advance`).
    shown: usize,
}

/// A failed handshake: why, and how many bytes at the start of `out` to send before closing
/// (any part of the flight not sent yet, then the alert saying why, when there is one).
#[derive(Debug)]
pub struct Refusal {
    pub error: TlsError,
    pub send: usize,
}

/// Which alert a refusal may carry when rustls queued none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Own {
    /// The peer closed or sent an alert: nothing to tell it.
    Silent,
    /// Say why in a plaintext alert, if nothing has been sent yet.
    Alert,
}

const ALERT_FATAL: u8 = 2;

impl Accepting {
    /// `(config, asks_cert)`: the config to start with, and whether it asks for a client
    /// certificate.
    pub(super) fn new(
        (config, asks_cert): (&Arc<ServerConfig>, bool),
        choose: Option<Arc<super::Configs>>,
    ) -> Result<Accepting, TlsError> {
        Ok(Accepting {
            conn: UnbufferedServerConnection::new(config.clone()).map_err(TlsError::Protocol)?,
            early: Vec::new(),
            sni: None,
            hello: None,
            hello_done: false,
            watch: None,
            unrecognized: false,
            choose,
            asks_cert,
            sent: false,
            shown: 0,
        })
    }
    /// With per-certificate client authentication: waits for the whole ClientHello (read by
    /// `step` just before), then starts rustls on the config of the name it asks for.
    /// `false`: not all here yet.
    fn choose_config(&mut self) -> Result<bool, TlsError> {
        if self.choose.is_none() {
            return Ok(true);
        }
        if !self.hello_done {
            return Ok(false);
        }
        let Some(configs) = self.choose.take() else {
            return Ok(true);
        };
        // Not a ClientHello tern can read: the default's config, and rustls says why.
        let sni = self.hello.as_ref().and_then(|h| h.sni.as_deref());
        let (config, asks_cert) = configs.for_name(sni);
        if !Arc::ptr_eq(config, configs.for_name(None).0) {
            self.conn =
                UnbufferedServerConnection::new(config.clone()).map_err(TlsError::Protocol)?;
            self.asks_cert = asks_cert;
        }
        Ok(true)
    }

    /// The client's first flight as tern read it, once it is all here: its server name and
    /// whether it tries to resume.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// Whether the whole ClientHello is in `incoming` (the bytes not yet given to rustls),
    /// read once for admission and the config choice alike; then see [`hello`](Self::hello).
    pub fn hello_seen(&mut self, incoming: &[u8]) -> bool {
        self.peek_hello(incoming);
        self.hello_done
    }

    /// Reads the ClientHello from the bytes not yet given to rustls (which may change them).
    fn peek_hello(&mut self, incoming: &[u8]) {
        if self.hello_done {
            return;
        }
        match hello::peek(incoming) {
            Peek::Incomplete => {}
            Peek::NotHello => self.hello_done = true,
            Peek::Hello(h) => {
                self.watch = Watch::new(h.random);
                self.hello = Some(h);
                self.hello_done = true;
            }
        }
    }

    /// Advances the handshake over the received, not yet consumed bytes in `incoming`
    /// (decrypted in place), writing records to send into `out` (at least 32 KiB). Returns how
    /// many bytes of `incoming` were consumed, and what to do next; or, when the handshake
    /// fails, what to send before closing.
    pub fn step(&mut self, incoming: &mut [u8], out: &mut [u8]) -> Result<(usize, Step), Refusal> {
        // Read before rustls sees it (usually already, for admission), so the watch is set.
        self.peek_hello(incoming);
        match self.choose_config() {
            Ok(true) => {}
            Ok(false) => return Ok((0, Step::NeedMore)),
            Err(e) => return Err(self.refusal(e, Own::Alert, out, 0)),
        }
        let mut end = self.shown.min(incoming.len());
        let stepped = self.advance(incoming, out, &mut end);
        if let Ok((consumed, _)) = &stepped {
            self.shown = end - consumed;
        }
        stepped
    }

    /// [`step`](Self::step), showing rustls `incoming[..end]` and moving `end` on one whole
    /// record at a time, only when rustls has used what it was shown. Otherwise, given a
    /// client's Finished and the records after it in one buffer, rustls goes on to open those
    /// itself under the new keys, and fails on a bad one without the alert tern's own record
    /// layer would send. `end` stays on a record boundary; an incomplete record after it is
    /// shown too (rustls takes nothing from it, but refuses a header that is not TLS at once).
    fn advance(
        &mut self,
        incoming: &mut [u8],
        out: &mut [u8],
        end: &mut usize,
    ) -> Result<(usize, Step), Refusal> {
        let mut consumed = 0;
        let mut produced = 0;
        let mut tail = false;
        loop {
            if !self.conn.is_handshaking() && !self.conn.wants_write() {
                // Stop here: records after the handshake are ours to open.
                let step = if produced > 0 {
                    Step::Send(produced)
                } else {
                    Step::Done
                };
                return Ok((consumed, step));
            }
            if produced > 0 && out.len() - produced < MAX_CHUNK {
                return Ok((consumed, Step::Send(produced)));
            }
            let visible = if tail { incoming.len() } else { *end };
            self.peek_hello(&incoming[consumed..]);
            let status = self
                .conn
                .process_tls_records(&mut incoming[consumed..visible]);
            if let Some(r) = RESOLVED.with(|s| s.borrow_mut().take()) {
                self.sni = r.sni;
                self.unrecognized = r.unrecognized;
            }
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    let e = TlsError::Protocol(e);
                    return Err(self.refusal(e, Own::Alert, out, produced));
                }
            };
            let failed = match state {
                ConnectionState::EncodeTlsData(mut e) => match e.encode(&mut out[produced..]) {
                    Ok(n) => {
                        produced += n;
                        self.sent = true;
                        None
                    }
                    Err(EncodeError::InsufficientSize(_)) | Err(EncodeError::AlreadyEncoded) => {
                        Some((
                            general("handshake record larger than the output buffer"),
                            Own::Alert,
                        ))
                    }
                },
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    consumed += discard;
                    return Ok((consumed, Step::Send(produced)));
                }
                ConnectionState::BlockedHandshake => {
                    consumed += discard;
                    match Opener::record_len(&incoming[*end..]) {
                        Some(len) if *end + len <= incoming.len() => {
                            *end += len;
                            tail = false;
                            continue;
                        }
                        _ if !tail && *end < incoming.len() => {
                            tail = true;
                            continue;
                        }
                        _ => {}
                    }
                    let step = if produced > 0 {
                        Step::Send(produced)
                    } else {
                        Step::NeedMore
                    };
                    return Ok((consumed, step));
                }
                ConnectionState::ReadTraffic(mut r) => {
                    let mut failed = None;
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec)
                                if self.early.len() + rec.payload.len()
                                    <= 2 * record::MAX_FRAGMENT =>
                            {
                                self.early.extend_from_slice(rec.payload)
                            }
                            Ok(_) => {
                                failed = Some((
                                    general("too much data before the handshake finished"),
                                    Own::Alert,
                                ));
                                break;
                            }
                            Err(e) => {
                                failed = Some((TlsError::Protocol(e), Own::Alert));
                                break;
                            }
                        }
                    }
                    failed
                }
                ConnectionState::WriteTraffic(_) => {
                    // Handshake done, nothing to send; the top of the loop returns.
                    consumed += discard;
                    if self.conn.is_handshaking() {
                        return Ok((consumed, Step::NeedMore));
                    }
                    continue;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    Some((general("peer closed during the handshake"), Own::Silent))
                }
                // 0-RTT is not enabled; anything else is a future rustls state.
                _ => Some((general("unexpected handshake state"), Own::Alert)),
            };
            consumed += discard;
            if let Some((e, own)) = failed {
                return Err(self.refusal(e, own, out, produced));
            }
        }
    }

    /// After rustls failed: the alert it queued, encoded after the `produced` bytes of `out`
    /// still to send. rustls is asked only while it has records queued: then it hands them
    /// over before looking at any input. Otherwise it would parse input again, and its
    /// offsets into a fragmented handshake message may no longer match the buffer (an index
    /// out of range), or it would fail a second time (a debug assertion). When it queued
    /// nothing and nothing has been sent yet, tern writes a plaintext alert itself: rustls
    /// 0.23 leaves some record-level errors (records interleaved with a fragmented
    /// ClientHello, runs of empty records) without one.
    fn refusal(
        &mut self,
        error: TlsError,
        own: Own,
        out: &mut [u8],
        mut produced: usize,
    ) -> Refusal {
        if self.unrecognized {
            // rustls would say access_denied for a name the resolver refused; RFC 6066 wants
            // unrecognized_name, and nothing has been sent yet (the resolver runs on the
            // ClientHello), so tern says it in plaintext.
            produced += self.refuse(UNRECOGNIZED_NAME, &mut out[produced..]);
            return Refusal {
                error,
                send: produced,
            };
        }
        let mut queued = 0;
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(&mut []);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => match e.encode(&mut out[produced..]) {
                    Ok(n) => {
                        produced += n;
                        queued += n;
                    }
                    Err(_) => break,
                },
                _ => break,
            }
        }
        if queued == 0 && own == Own::Alert {
            produced += self.refuse(alert_for(&error), &mut out[produced..]);
        }
        Refusal {
            error,
            send: produced,
        }
    }

    /// A fatal plaintext alert with description `desc` into `out`, for a handshake refused by
    /// tern itself (e.g. a ClientHello larger than it accepts); returns its length, or 0 once
    /// rustls has sent records (its later alerts are protected, and only it holds the keys).
    pub fn refuse(&mut self, desc: u8, out: &mut [u8]) -> usize {
        let alert = [record::ALERT, 3, 3, 0, 2, ALERT_FATAL, desc];
        if self.sent || out.len() < alert.len() {
            return 0;
        }
        out[..alert.len()].copy_from_slice(&alert);
        self.sent = true;
        alert.len()
    }

    /// The established session; the handshake must have returned [`Step::Done`].
    pub fn finish(self) -> Result<Established, TlsError> {
        let conn = self.conn;
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Version::Tls13,
            Some(rustls::ProtocolVersion::TLSv1_2) => Version::Tls12,
            _ => return Err(TlsError::Protocol(rustls::Error::HandshakeNotComplete)),
        };
        let suite = conn.negotiated_cipher_suite();
        let limit = match suite {
            Some(rustls::SupportedCipherSuite::Tls13(s)) => s.common.confidentiality_limit,
            Some(rustls::SupportedCipherSuite::Tls12(s)) => s.common.confidentiality_limit,
            _ => u64::MAX,
        };
        let info = SessionInfo {
            version: match version {
                Version::Tls13 => "TLSv1.3",
                Version::Tls12 => "TLSv1.2",
            },
            suite: suite_name(suite),
            // rustls asks the certificate resolver on resumptions too, so this is always set
            // when the client sent a name (tests/routing.rs checks resumed sessions route).
            sni: self.sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            // Verified by rustls (a resumed session's chain comes from its ticket, which only
            // opens under the same client-auth setting: see `ClientAuth::context`).
            client_cert: match conn.peer_certificates().and_then(|c| c.first()) {
                _ if !self.asks_cert => ClientCert::NotRequested,
                Some(leaf) => ClientCert::Verified(Box::new(ClientIdentity::from_der(leaf))),
                None => ClientCert::Absent,
            },
        };
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(TlsError::Protocol)?;
        // rustls' schedule (and its 800 bytes) is kept only when tern has no secrets of its
        // own to update from: a ClientHello it could not read, or one it saw twice at once.
        let kernel = match (version, self.watch.and_then(Watch::take)) {
            (Version::Tls12, _) => Kernel::None,
            (Version::Tls13, Some(own)) => Kernel::Own(Box::new(own)),
            (Version::Tls13, None) => Kernel::Server(Box::new(kernel)),
        };
        Established::new(version, limit, secrets, kernel, info, self.early)
    }
}

/// The name of a negotiated suite, as rustls spells it (its `Debug` form for a known suite).
pub(super) fn suite_name(suite: Option<rustls::SupportedCipherSuite>) -> &'static str {
    suite.and_then(|s| s.suite().as_str()).unwrap_or("")
}

fn general(why: &str) -> TlsError {
    TlsError::Protocol(rustls::Error::General(why.into()))
}

/// The alert for a handshake error rustls sent none for.
fn alert_for(e: &TlsError) -> u8 {
    use rustls::{AlertDescription as A, Error as E};
    let desc = match e {
        TlsError::Protocol(E::InvalidMessage(m)) => A::from(*m),
        // Record-level misbehaviour: interleaving, empty records, stray change_cipher_spec.
        TlsError::Protocol(E::PeerMisbehaved(_)) => A::UnexpectedMessage,
        TlsError::Protocol(E::InappropriateMessage { .. })
        | TlsError::Protocol(E::InappropriateHandshakeMessage { .. }) => A::UnexpectedMessage,
        TlsError::Protocol(E::PeerIncompatible(_)) => A::HandshakeFailure,
        TlsError::Protocol(E::DecryptError) => A::BadRecordMac,
        TlsError::Protocol(E::PeerSentOversizedRecord) => A::RecordOverflow,
        TlsError::Record(r) => return r.alert(),
        _ => A::InternalError,
    };
    desc.into()
}
