//! The client side of an established TLS connection as the connection loops use it: a sending
//! half (records sealed straight into pooled buffers and written in order), and, for http
//! mode, a reader that turns records into a plaintext byte stream.

use std::cell::RefCell;
use std::io;

use monoio::buf::{IoBuf, IoBufMut};

use super::bufpool::{BufPool, PoolBuf};
use super::handshake::Carry;
use super::split::Half;
use crate::backend::conn::BackendTx;
use crate::tls::record::{Opener, HEADER_LEN};
use crate::tls::{Control, Rx, RxEvent, TlsError, Tx};
use crate::util::baton::Baton;

mod ring;
use ring::ClientRing;

/// Why reading from or writing to the client failed.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Tls(TlsError),
    /// Unread plaintext fills the buffer (a head larger than the limits allow).
    Full,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Tls(e) => e.fmt(f),
            ClientError::Full => f.write_str("client data exceeds the buffer"),
        }
    }
}

/// The client socket's write half with the TLS sending state: sealing a record and writing it
/// happen under one hold of the [`Baton`], so records leave in sequence order even when two
/// futures of one connection both send.
pub struct Sending {
    pub half: Half,
    pub tx: Tx,
}

/// The sending side of a client connection.
pub struct ClientOut<'a> {
    pub sending: Baton<Sending>,
    pub control: &'a RefCell<Control>,
    pub pool: &'a BufPool,
}

impl ClientOut<'_> {
    /// Seals `data` as application data and writes it out.
    pub async fn send(&self, data: &[u8]) -> Result<(), ClientError> {
        let mut s = self.sending.take().await;
        let mut off = 0;
        while off < data.len() {
            let mut out = self.pool.get();
            let sealed = s.tx.seal_data(&data[off..], out.space(), self.control);
            let (taken, written) = match sealed {
                Ok(x) => x,
                Err(e) => {
                    self.pool.put(out);
                    return Err(ClientError::Tls(e));
                }
            };
            out.set_filled(written);
            let (res, out) = s.half.write_all(out).await;
            self.pool.put(out);
            res.map_err(ClientError::Io)?;
            off += taken;
        }
        Ok(())
    }

    /// Seals one record built by `seal` and writes it.
    async fn send_record(
        &self,
        seal: impl FnOnce(&mut Tx, &mut [u8]) -> Result<usize, TlsError>,
    ) -> Result<(), ClientError> {
        let mut s = self.sending.take().await;
        let mut out = self.pool.get();
        let n = match seal(&mut s.tx, out.space()) {
            Ok(n) => n,
            Err(e) => {
                self.pool.put(out);
                return Err(ClientError::Tls(e));
            }
        };
        if n == 0 {
            self.pool.put(out);
            return Ok(());
        }
        out.set_filled(n);
        let (res, out) = s.half.write_all(out).await;
        self.pool.put(out);
        res.map(drop).map_err(ClientError::Io)
    }

    /// Records the receiving side owes the client (a renegotiation refusal).
    pub async fn send_replies(&self) -> Result<(), ClientError> {
        let control = self.control;
        self.send_record(|tx, out| tx.seal_replies(out, control))
            .await
    }

    /// Tells the client why its connection is being closed (best effort).
    pub async fn send_failure(&self, e: &TlsError) {
        let _ = self
            .send_record(|tx, out| Ok(tx.seal_failure(e, out)))
            .await;
    }

    /// close_notify, then FIN.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.send_record(|tx, out| tx.seal_close_notify(out))
            .await?;
        let s = self.sending.take().await;
        s.half.shutdown_write().map_err(ClientError::Io)
    }
}

/// Client records in, a plaintext byte stream out (http mode). Ciphertext and plaintext live
/// in pooled buffers held only while they hold bytes. With `--uring-recv multishot` the
/// ciphertext comes from an armed multishot receive instead of single reads (`ring`).
pub struct TlsReader {
    rx: Rx,
    cipher: Option<PoolBuf>,
    cstart: usize,
    plain: Option<PoolBuf>,
    pstart: usize,
    finished: bool,
    ring: Option<Box<ClientRing>>,
}

impl TlsReader {
    pub fn new(
        rx: Rx,
        carry: Carry,
        early: &[u8],
        pool: &BufPool,
    ) -> Result<TlsReader, ClientError> {
        let mut r = TlsReader {
            rx,
            cipher: carry.buf,
            cstart: carry.start,
            plain: None,
            pstart: 0,
            finished: false,
            ring: None,
        };
        if !early.is_empty() {
            let mut p = pool.get();
            if early.len() > p.capacity() {
                pool.put(p);
                return Err(ClientError::Full);
            }
            p.space()[..early.len()].copy_from_slice(early);
            p.set_filled(early.len());
            r.plain = Some(p);
        }
        Ok(r)
    }

    /// Arms a multishot receive on the client socket when this worker's ring has the receive
    /// buffers (`--uring-recv multishot` on io_uring); otherwise reads stay single.
    pub fn arm(&mut self, client: &Half) {
        self.ring = ClientRing::arm(client);
    }

    /// Plaintext received and not yet consumed.
    pub fn plaintext(&self) -> &[u8] {
        self.plain
            .as_ref()
            .map_or(&[], |p| &p.filled()[self.pstart..])
    }

    /// The client has closed (close_notify or EOF): no more plaintext will come.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn consume(&mut self, n: usize, pool: &BufPool) {
        self.pstart += n;
        if let Some(p) = &self.plain {
            debug_assert!(self.pstart <= p.len());
            if self.pstart >= p.len() {
                // Drained: hand the buffer back (an idle keep-alive connection holds none).
                if let Some(p) = self.plain.take() {
                    pool.put(p);
                }
                self.pstart = 0;
            }
        }
    }

    /// Writes the first `n` plaintext bytes to `to` and consumes them, without copying.
    pub async fn forward(
        &mut self,
        n: usize,
        to: &mut BackendTx,
        pool: &BufPool,
    ) -> io::Result<()> {
        let Some(p) = self.plain.take() else {
            return Ok(());
        };
        let start = self.pstart;
        let (res, slice) = to.write_all(p.slice(start..start + n), pool).await;
        self.plain = Some(slice.into_inner());
        res?;
        self.consume(n, pool);
        Ok(())
    }

    /// Hands what is left to a tunnel: (ciphertext not yet opened, plaintext not yet consumed).
    /// An armed receive is cancelled first and what it already took is opened into the
    /// plaintext, so the tunnel can arm its own.
    pub async fn into_parts(
        mut self,
        control: &RefCell<Control>,
        pool: &BufPool,
    ) -> (Rx, Carry, Vec<u8>) {
        let mut leftover = self.plaintext().to_vec();
        if let Some(ring) = self.ring.take() {
            self.disarm(*ring, &mut leftover, control, pool).await;
        }
        if let Some(p) = self.plain {
            pool.put(p);
        }
        (
            self.rx,
            Carry {
                buf: self.cipher,
                start: self.cstart,
            },
            leftover,
        )
    }

    /// Reads and opens records until new plaintext arrives. `Ok(0)`: the client finished.
    pub async fn fill(
        &mut self,
        client: &mut Half,
        out: &ClientOut<'_>,
    ) -> Result<usize, ClientError> {
        let pool = out.pool;
        loop {
            let mut added = self.open_records(out.control, pool)?;
            if !self.cipher_pending() && self.ring.as_ref().is_some_and(|r| r.rest.is_some()) {
                added = self.open_rest(added, out.control, pool)?;
            }
            if out.control.borrow().reply_due() {
                out.send_replies().await?;
            }
            if added > 0 {
                return Ok(added);
            }
            if self.finished {
                return Ok(0);
            }
            self.read_more(client, pool).await?;
        }
    }

    /// Whether the pooled ciphertext buffer holds bytes not yet opened.
    fn cipher_pending(&self) -> bool {
        self.cipher.as_ref().is_some_and(|c| self.cstart < c.len())
    }

    fn open_records(
        &mut self,
        control: &RefCell<Control>,
        pool: &BufPool,
    ) -> Result<usize, ClientError> {
        let Some(c) = self.cipher.as_mut() else {
            return Ok(0);
        };
        let len = c.len();
        let added = open_into(
            &mut self.rx,
            &mut c.space()[..len],
            &mut self.cstart,
            Plain {
                buf: &mut self.plain,
                start: &mut self.pstart,
                finished: &mut self.finished,
            },
            0,
            control,
            pool,
        )?;
        self.drop_drained_plain(pool);
        Ok(added)
    }

    fn drop_drained_plain(&mut self, pool: &BufPool) {
        if self.plain.as_ref().is_some_and(|p| p.len() == self.pstart) {
            if let Some(p) = self.plain.take() {
                pool.put(p);
            }
            self.pstart = 0;
        }
    }

    /// Returns once some ciphertext is here (read now, or still unopened from before), or the
    /// client has closed: the first bytes of a request, which start its header timeout even
    /// while the record they belong to is incomplete.
    pub async fn first_bytes(
        &mut self,
        client: &mut Half,
        pool: &BufPool,
    ) -> Result<(), ClientError> {
        if self.finished
            || self.cipher_pending()
            || self.ring.as_ref().is_some_and(|r| r.rest.is_some())
        {
            return Ok(());
        }
        self.read_more(client, pool).await
    }

    async fn read_more(&mut self, client: &mut Half, pool: &BufPool) -> Result<(), ClientError> {
        if self.ring.is_some() {
            return self.read_ring(client, pool).await;
        }
        self.read_single(client, pool).await
    }

    /// Reads more ciphertext. With nothing pending, waits for readiness before taking a
    /// buffer, so a keep-alive connection between requests holds none.
    async fn read_single(&mut self, client: &mut Half, pool: &BufPool) -> Result<(), ClientError> {
        let partial = match self.cipher.take() {
            Some(mut c) if self.cstart < c.len() => {
                let len = c.len();
                c.space().copy_within(self.cstart..len, 0);
                c.set_filled(len - self.cstart);
                Some(c)
            }
            Some(c) => {
                pool.put(c);
                None
            }
            None => None,
        };
        self.cstart = 0;
        let buf = match partial {
            Some(c) => c,
            None => {
                client.readable().await.map_err(ClientError::Io)?;
                pool.get()
            }
        };
        let at = buf.len();
        let (res, slice) = client.read(buf.slice_mut(at..)).await;
        let buf = slice.into_inner();
        match res {
            Ok(0) => {
                self.finished = true;
                pool.put(buf);
                Ok(())
            }
            Ok(_) => {
                self.cipher = Some(buf);
                Ok(())
            }
            Err(e) => {
                pool.put(buf);
                Err(ClientError::Io(e))
            }
        }
    }
}

/// The plaintext side [`open_into`] appends to.
struct Plain<'a> {
    buf: &'a mut Option<PoolBuf>,
    start: &'a mut usize,
    finished: &'a mut bool,
}

/// Opens the whole records of `c` from `*cstart` on, appending their plaintext to `plain`
/// (a pooled buffer, taken when needed) until it has no room for the next record. `added`:
/// plaintext already added by this call's caller (then a full buffer is not an error, the
/// caller consumes and calls again). Returns `added` plus what this call added.
fn open_into(
    rx: &mut Rx,
    c: &mut [u8],
    cstart: &mut usize,
    plain: Plain<'_>,
    mut added: usize,
    control: &RefCell<Control>,
    pool: &BufPool,
) -> Result<usize, ClientError> {
    let len = c.len();
    while *cstart < len {
        let Some(rec_len) = Opener::record_len(&c[*cstart..]) else {
            break;
        };
        // Room for the record's plaintext (at most its body) in the plaintext buffer.
        let need = rec_len.saturating_sub(HEADER_LEN);
        let p = plain.buf.get_or_insert_with(|| pool.get());
        if p.capacity() - p.len() < need && *plain.start > 0 {
            let plen = p.len();
            p.space().copy_within(*plain.start..plen, 0);
            p.set_filled(plen - *plain.start);
            *plain.start = 0;
        }
        if p.capacity() - p.len() < need {
            if added > 0 {
                break; // the caller consumes, then calls again
            }
            return Err(ClientError::Full);
        }
        let opened = rx
            .next(&mut c[*cstart..len], control)
            .map_err(ClientError::Tls)?;
        match opened {
            None => break,
            Some((n, RxEvent::Data(r))) => {
                let plen = p.len();
                let data = &c[*cstart + r.start..*cstart + r.end];
                p.space()[plen..plen + data.len()].copy_from_slice(data);
                p.set_filled(plen + data.len());
                added += data.len();
                *cstart += n;
            }
            Some((n, RxEvent::Skip)) => *cstart += n,
            Some((n, RxEvent::Closed)) => {
                *cstart += n;
                *plain.finished = true;
                break;
            }
        }
    }
    Ok(added)
}
