//! The established connection's two directions ([`Rx`] and [`Tx`], tern's own record layer on
//! the traffic secrets rustls hands over after a handshake, `tls::session` for a client
//! connection, `tls::client` for a backend one) and what they share ([`Control`]: key updates
//! and the replies owed).

use std::cell::RefCell;
use std::ops::Range;

use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;

use super::posthandshake::{Asked, Joiner};
use super::record::{self, Opener, RecordError, Sealer, Version};
use super::session::{SessionInfo, TlsError};
use super::traffic::{NextKeys, TrafficSecrets};

/// A session after the handshake, in parts the two directions of a connection can own.
pub struct Established {
    pub rx: Rx,
    pub tx: Tx,
    /// Shared by both directions: key updates and replies the receiving side owes.
    pub control: RefCell<Control>,
    pub info: SessionInfo,
    /// Plaintext that arrived with the handshake; forward it before anything else.
    pub early: Vec<u8>,
}

/// What the two directions share: the key schedule (TLS 1.3 key updates) and the records
/// the receiving side asks the sending side to send.
pub struct Control {
    kernel: Kernel,
    /// KeyUpdates the peer asked for (update_requested) and we owe: one reply each, up to
    /// [`MAX_UPDATES_DUE`]; more requests before we answer share the last reply, as RFC 8446
    /// §4.6.3 allows (so a client cannot make tern queue without bound).
    tx_updates_due: u8,
    /// The peer asked to renegotiate (TLS 1.2); we answer no_renegotiation.
    decline_renegotiation: bool,
}

impl Control {
    /// Whether a record should go to the peer now, even without application data: a
    /// renegotiation refusal, or the KeyUpdate a peer's update_requested asked for (sent at
    /// once rather than before our next data, so a peer waiting for it is not left waiting).
    pub fn reply_due(&self) -> bool {
        self.decline_renegotiation || self.tx_updates_due > 0
    }

    /// The keys one direction moves to at a TLS 1.3 key update (`key_len`: its AEAD's).
    fn next(&mut self, tx: bool, key_len: usize) -> Result<NextKeys, TlsError> {
        let r = match (&mut self.kernel, tx) {
            (Kernel::Own(s), _) => return Ok(s.update(tx, key_len)),
            (Kernel::None, _) => return Err(RecordError::Exhausted.into()),
            (Kernel::Server(k), true) => k.update_tx_secret(),
            (Kernel::Server(k), false) => k.update_rx_secret(),
            (Kernel::Client(k), true) => k.update_tx_secret(),
            (Kernel::Client(k), false) => k.update_rx_secret(),
        };
        let (_, secrets) = r.map_err(TlsError::Protocol)?;
        NextKeys::from_rustls(&secrets)
            .ok_or_else(|| RecordError::Unexpected("cipher suite").into())
    }

    /// Whether this connection still holds rustls' key schedule (for tests: a server
    /// connection should not).
    #[cfg(test)]
    pub(super) fn keeps_rustls_schedule(&self) -> bool {
        matches!(self.kernel, Kernel::Server(_) | Kernel::Client(_))
    }
}

/// The key schedule after the handshake.
pub(super) enum Kernel {
    /// A TLS 1.3 server connection's own (`tls::traffic`): its two traffic secrets. Boxed
    /// (112 bytes): inline they would put the tcp pump's state just past an allocator size
    /// class (1,280 bytes), costing more than the box.
    Own(Box<TrafficSecrets>),
    /// Nothing to update: a TLS 1.2 server connection, whose keys never change.
    None,
    /// rustls' server-side schedule: kept only when the secrets could not be taken
    /// (`tls::capture`). Boxed, as the next: inline, its 576 bytes would size every
    /// connection's `Control`, whichever variant it holds.
    Server(Box<KernelConnection<ServerConnectionData>>),
    /// rustls' client-side one (backend connections), which also takes session tickets.
    Client(Box<KernelConnection<ClientConnectionData>>),
}

impl Control {
    /// TLS 1.3 NewSessionTicket messages (one record may hold several): handed to rustls,
    /// which keeps them in the client config's session cache for the next connection.
    fn new_session_tickets(&mut self, mut msgs: &[u8]) -> Result<(), TlsError> {
        let Kernel::Client(k) = &mut self.kernel else {
            return Err(RecordError::Unexpected("session ticket sent to a server").into());
        };
        while !msgs.is_empty() {
            let [NEW_SESSION_TICKET, a, b, c, rest @ ..] = msgs else {
                return Err(
                    RecordError::Unexpected("handshake message after the handshake").into(),
                );
            };
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if rest.len() < len {
                return Err(
                    RecordError::Unexpected("handshake message split across records").into(),
                );
            }
            let (ticket, next) = rest.split_at(len);
            k.handle_new_session_ticket(ticket)
                .map_err(TlsError::Protocol)?;
            msgs = next;
        }
        Ok(())
    }
}

/// What one received record was.
#[derive(Debug, PartialEq, Eq)]
pub enum RxEvent {
    /// Application data, now plaintext at this range of the buffer given to `next`.
    Data(Range<usize>),
    /// A record with nothing for the application (empty data, a key update, a warning).
    Skip,
    /// close_notify: the peer will send no more.
    Closed,
}

/// The receiving half: opens records in place.
pub struct Rx {
    opener: Opener,
    version: Version,
    /// A post-handshake handshake message split over records, gathered so far.
    joiner: Joiner,
}

const KEY_UPDATE: u8 = 24;
const HELLO_REQUEST: u8 = 0;
const NEW_SESSION_TICKET: u8 = 4;
/// At most this many KeyUpdate replies are owed at once (27 bytes each on the wire).
const MAX_UPDATES_DUE: u8 = 32;
const ALERT_WARNING: u8 = 1;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const NO_RENEGOTIATION: u8 = 100;

impl Rx {
    /// Opens the record at the front of `buf`. `Ok(None)`: it is not all there yet.
    /// Otherwise: how many bytes it took, and what it was.
    pub fn next(
        &mut self,
        buf: &mut [u8],
        control: &RefCell<Control>,
    ) -> Result<Option<(usize, RxEvent)>, TlsError> {
        let Some(rec) = self.opener.open(buf)? else {
            return Ok(None);
        };
        let payload = &buf[rec.plain.clone()];
        if rec.typ != record::HANDSHAKE && self.version == Version::Tls13 && self.joiner.partial() {
            // RFC 8446 §5.1: no other record between the fragments of a handshake message.
            return Err(
                RecordError::Unexpected("record inside a fragmented handshake message").into(),
            );
        }
        let event = match rec.typ {
            record::APPLICATION_DATA if payload.is_empty() => RxEvent::Skip,
            record::APPLICATION_DATA => RxEvent::Data(rec.plain),
            record::ALERT => match payload {
                [_, CLOSE_NOTIFY] => RxEvent::Closed,
                [ALERT_WARNING, USER_CANCELED] => RxEvent::Skip,
                [ALERT_WARNING, _] if self.version == Version::Tls12 => RxEvent::Skip,
                [_, desc] => return Err(TlsError::PeerAlert(*desc)),
                // An alert is two bytes and never fragmented (RFC 8446 §5.1); an empty or
                // odd-sized one is refused with unexpected_message, as tlsfuzzer expects.
                _ => return Err(RecordError::Unexpected("malformed alert").into()),
            },
            record::HANDSHAKE => self.handshake_message(payload, control)?,
            _ => return Err(RecordError::Unexpected("record type after the handshake").into()),
        };
        Ok(Some((rec.len, event)))
    }

    /// Post-handshake messages (see [`Joiner`]): a TLS 1.3 KeyUpdate switches the receiving
    /// key after its record, and with update_requested makes a reply due; a TLS 1.2
    /// renegotiation request is declined with a no_renegotiation warning (as rustls does).
    fn handshake_message(
        &mut self,
        payload: &[u8],
        control: &RefCell<Control>,
    ) -> Result<RxEvent, TlsError> {
        // A backend (tern is its client) may send what a client never does: TLS 1.3
        // session tickets, which go to rustls for the next connection to resume (whole in
        // their record, as servers send them), and a TLS 1.2 HelloRequest, declined as a
        // renegotiation.
        if !self.joiner.partial() && control.borrow().is_client() {
            match (self.version, payload) {
                (Version::Tls13, [NEW_SESSION_TICKET, ..]) => {
                    control.borrow_mut().new_session_tickets(payload)?;
                    return Ok(RxEvent::Skip);
                }
                (Version::Tls12, [HELLO_REQUEST, 0, 0, 0]) => {
                    control.borrow_mut().decline_renegotiation = true;
                    return Ok(RxEvent::Skip);
                }
                _ => {}
            }
        }
        let asked = match self.version {
            Version::Tls13 => self.joiner.tls13(payload)?,
            Version::Tls12 => self.joiner.tls12(payload)?,
        };
        match asked {
            Asked::Nothing => {}
            Asked::KeyUpdate { reply } => {
                let keys = control.borrow_mut().next(false, self.opener.key_len())?;
                self.opener.rekey(&keys)?;
                if reply {
                    let mut c = control.borrow_mut();
                    c.tx_updates_due = (c.tx_updates_due + 1).min(MAX_UPDATES_DUE);
                }
            }
            Asked::Renegotiation => control.borrow_mut().decline_renegotiation = true,
        }
        Ok(RxEvent::Skip)
    }
}

/// The sending half: seals records straight into the output buffer.
pub struct Tx {
    sealer: Sealer,
    version: Version,
}

impl Tx {
    /// Wire bytes added per record.
    pub fn overhead(&self) -> usize {
        self.sealer.overhead()
    }

    /// Seals as much of `data` as fits into `out` as application data, after any record the
    /// receiving side owes and any key update that is due. Returns (bytes of `data` taken,
    /// bytes written to `out`).
    pub fn seal_data(
        &mut self,
        data: &[u8],
        out: &mut [u8],
        control: &RefCell<Control>,
    ) -> Result<(usize, usize), TlsError> {
        let mut written = self.seal_replies(out, control)?;
        if self.sealer.near_limit() {
            written += self.seal_key_update(&mut out[written..], control)?;
        }
        let (taken, n) = self.sealer.seal_data(data, &mut out[written..])?;
        Ok((taken, written + n))
    }

    /// Records the receiving side asked for: a renegotiation refusal, a KeyUpdate.
    pub fn seal_replies(
        &mut self,
        out: &mut [u8],
        control: &RefCell<Control>,
    ) -> Result<usize, TlsError> {
        let mut written = 0;
        let decline = std::mem::take(&mut control.borrow_mut().decline_renegotiation);
        if decline {
            written += self.seal_alert(ALERT_WARNING, NO_RENEGOTIATION, out)?;
        }
        while control.borrow().tx_updates_due > 0 {
            written += self.seal_key_update(&mut out[written..], control)?;
            control.borrow_mut().tx_updates_due -= 1;
        }
        Ok(written)
    }

    /// KeyUpdate(update_not_requested) under the old key, then the switch to the next one
    /// (TLS 1.3). A TLS 1.2 key cannot be replaced: the connection must end.
    fn seal_key_update(
        &mut self,
        out: &mut [u8],
        control: &RefCell<Control>,
    ) -> Result<usize, TlsError> {
        if self.version == Version::Tls12 {
            return Err(RecordError::Exhausted.into());
        }
        let msg = [KEY_UPDATE, 0, 0, 1, 0];
        let n = self.sealer.seal(record::HANDSHAKE, &msg, out)?;
        let keys = control.borrow_mut().next(true, self.sealer.key_len())?;
        self.sealer.rekey(&keys)?;
        Ok(n)
    }

    /// A warning or fatal alert record.
    pub fn seal_alert(&mut self, level: u8, desc: u8, out: &mut [u8]) -> Result<usize, TlsError> {
        Ok(self.sealer.seal(record::ALERT, &[level, desc], out)?)
    }

    pub fn seal_close_notify(&mut self, out: &mut [u8]) -> Result<usize, TlsError> {
        self.seal_alert(ALERT_WARNING, CLOSE_NOTIFY, out)
    }

    /// The fatal alert for a failure, for the peer to see why (best effort).
    pub fn seal_failure(&mut self, e: &TlsError, out: &mut [u8]) -> usize {
        let desc = match e {
            TlsError::Record(r) => r.alert(),
            TlsError::PeerAlert(_) => return 0,
            TlsError::Protocol(_) => 80,
        };
        self.seal_alert(2, desc, out).unwrap_or(0)
    }
}

/// The client side (backend connections, `tls::client`): the same parts from what rustls hands
/// over after a client handshake.
impl Established {
    pub(super) fn from_client(
        version: Version,
        limit: u64,
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<ClientConnectionData>,
        info: SessionInfo,
    ) -> Result<Established, TlsError> {
        Established::new(
            version,
            limit,
            secrets,
            Kernel::Client(Box::new(kernel)),
            info,
            Vec::new(),
        )
    }

    /// Both sides' parts from the secrets and key schedule rustls hands over.
    pub(super) fn new(
        version: Version,
        limit: u64,
        secrets: rustls::ExtractedSecrets,
        kernel: Kernel,
        info: SessionInfo,
        early: Vec<u8>,
    ) -> Result<Established, TlsError> {
        let (rx_seq, rx_secrets) = secrets.rx;
        let (tx_seq, tx_secrets) = secrets.tx;
        Ok(Established {
            rx: Rx {
                opener: Opener::new(version, rx_seq, &rx_secrets, limit)?,
                version,
                joiner: Joiner::default(),
            },
            tx: Tx {
                sealer: Sealer::new(version, tx_seq, &tx_secrets, limit)?,
                version,
            },
            control: RefCell::new(Control {
                kernel,
                tx_updates_due: 0,
                decline_renegotiation: false,
            }),
            info,
            early,
        })
    }
}

impl Control {
    fn is_client(&self) -> bool {
        matches!(self.kernel, Kernel::Client(_))
    }
}

#[cfg(test)]
mod tests {
    /// Every connection holds a `Control` for its whole life: a pointer to its two traffic
    /// secrets and a few flags, not rustls' key schedule (576 bytes inline while it was kept).
    #[test]
    fn a_connections_key_schedule_is_small() {
        let control = std::mem::size_of::<super::Control>();
        assert!(control <= 32, "Control is {control} bytes");
    }
}
