//! A connection to a backend: plain TCP or Unix socket, or TLS over it with tern's own record
//! layer. The connection loops use its two halves ([`BackendRx`], [`BackendTx`]) where they
//! used socket halves before; over TLS, records from the backend are opened in place in a
//! pooled buffer and their plaintext read from where it lies, and plaintext to the backend is
//! sealed straight into the write buffer, as on the client side.
//!
//! Opening: TCP (or Unix socket) connect, then the PROXY protocol header if the pool sends one
//! (before any TLS byte: it describes the client's connection), then the TLS handshake.
//! Nothing of a request is written before the handshake, and with it the certificate check,
//! has passed.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use futures_util::future::Either;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelHandle};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;

use super::addr::BackendAddr;
use crate::net::bufpool::{BufPool, PoolBuf};
use crate::net::split::{split, Half};
use crate::net::stream::Stream;
use crate::tls::client::{ClientTls, Connecting};
use crate::tls::record::MAX_FRAGMENT;
use crate::tls::{Control, Established, Rx, RxEvent, SessionInfo, Step, TlsError, Tx};

/// A whole backend connection: what the idle pool keeps between requests.
pub struct BackendStream {
    stream: Stream,
    tls: Option<Box<TlsParts>>,
}

struct TlsParts {
    rx: Rx,
    tx: Tx,
    control: Rc<RefCell<Control>>,
    info: SessionInfo,
    /// Records received and not yet opened (the handshake's leftovers).
    carry: Option<PoolBuf>,
}

/// A TLS failure on the backend side, as the I/O error the loops handle (its cause kept).
fn tls_io(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("backend {e}"))
}

/// Connects to `addr`, sends `header` (the PROXY protocol, empty for none), then, with `tls`,
/// runs the handshake towards `name`. Unbounded: the caller times it. A Unix socket path that
/// does not exist or has nobody listening fails here like a refused TCP connect.
pub async fn open(
    addr: &BackendAddr,
    header: &[u8],
    tls: Option<(&ClientTls, &str)>,
    pool: &BufPool,
) -> io::Result<BackendStream> {
    let mut stream = match addr {
        BackendAddr::Tcp(a) => Stream::Tcp(TcpStream::connect_addr(*a).await?),
        BackendAddr::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
    };
    stream.set_nodelay();
    if !header.is_empty() {
        let (res, _) = stream.write_all(header.to_vec()).await;
        res?;
    }
    let Some((client, name)) = tls else {
        return Ok(BackendStream { stream, tls: None });
    };
    let connecting = client.connect(name).map_err(tls_io)?;
    let (est, carry) = handshake(&mut stream, connecting, pool).await?;
    Ok(BackendStream::with_tls(stream, est, carry))
}

/// Drives a client handshake to completion; the records that came after it.
async fn handshake(
    stream: &mut Stream,
    mut c: Connecting,
    pool: &BufPool,
) -> io::Result<(Established, Option<PoolBuf>)> {
    let mut inb = pool.get();
    let mut start = 0;
    let mut out = pool.get();
    let result = loop {
        let len = inb.len();
        let (used, step) = match c.step(&mut inb.space()[start..len], out.space()) {
            Ok(s) => s,
            Err(e) => {
                // Best effort: the alert says why (a certificate that did not verify).
                let n = c.alert(out.space());
                out.set_filled(n);
                let (_, o) = stream.write_all(out).await;
                out = o;
                break Err(tls_io(e));
            }
        };
        start += used;
        match step {
            Step::Send(n) => {
                out.set_filled(n);
                let (res, o) = stream.write_all(out).await;
                out = o;
                if let Err(e) = res {
                    break Err(e);
                }
            }
            Step::Done => break c.finish().map_err(tls_io),
            Step::NeedMore => {
                if start == len {
                    inb.set_filled(0);
                } else if start > 0 {
                    inb.space().copy_within(start..len, 0);
                    inb.set_filled(len - start);
                }
                start = 0;
                let at = inb.len();
                if at == inb.capacity() {
                    break Err(io::Error::other("backend handshake message too large"));
                }
                let (res, slice) = stream.read(inb.slice_mut(at..)).await;
                inb = slice.into_inner();
                match res {
                    Ok(0) => {
                        break Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "backend closed during the TLS handshake",
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    pool.put(out);
    match result {
        Ok(est) if start < inb.len() => {
            let len = inb.len();
            inb.space().copy_within(start..len, 0);
            inb.set_filled(len - start);
            Ok((est, Some(inb)))
        }
        other => {
            pool.put(inb);
            other.map(|est| (est, None))
        }
    }
}

impl BackendStream {
    fn with_tls(stream: Stream, est: Established, carry: Option<PoolBuf>) -> BackendStream {
        BackendStream {
            stream,
            tls: Some(Box::new(TlsParts {
                rx: est.rx,
                tx: est.tx,
                control: Rc::new(est.control),
                info: est.info,
                carry,
            })),
        }
    }

    /// The TLS session with the backend, when there is one.
    pub fn tls_info(&self) -> Option<&SessionInfo> {
        self.tls.as_ref().map(|t| &t.info)
    }

    /// The read and write halves, for the two directions of a connection.
    pub fn split(self) -> (BackendRx, BackendTx) {
        let (r, w) = split(self.stream);
        match self.tls {
            None => (
                BackendRx { half: r, tls: None },
                BackendTx { half: w, tls: None },
            ),
            Some(t) => {
                let t = *t;
                let start = 0;
                (
                    BackendRx {
                        half: r,
                        tls: Some(Box::new(RxTls {
                            rx: t.rx,
                            control: t.control.clone(),
                            carry: t.carry,
                            plain: 0..0,
                            start,
                            closed: false,
                            info: t.info,
                        })),
                    },
                    BackendTx {
                        half: w,
                        tls: Some(Box::new(TxTls {
                            tx: t.tx,
                            control: t.control,
                        })),
                    },
                )
            }
        }
    }

    /// The connection back from its halves, to keep it for the next request; `None` when it
    /// cannot be kept (bytes still unread, the backend closed, a handle still elsewhere).
    pub fn join(rx: BackendRx, tx: BackendTx, pool: &BufPool) -> Option<BackendStream> {
        let BackendRx { half: r, tls: rtls } = rx;
        let BackendTx { half: w, tls: wtls } = tx;
        drop(w);
        let stream = r.into_stream()?;
        match (rtls, wtls) {
            (None, None) => Some(BackendStream { stream, tls: None }),
            (Some(r), Some(w)) => {
                let mut r = *r;
                if r.closed
                    || !r.plain.is_empty()
                    || r.carry.as_ref().is_some_and(|c| c.len() > r.start)
                {
                    return None;
                }
                if let Some(b) = r.carry.take() {
                    pool.put(b);
                }
                Some(BackendStream {
                    stream,
                    tls: Some(Box::new(TlsParts {
                        rx: r.rx,
                        tx: w.tx,
                        control: w.control,
                        info: r.info,
                        carry: None,
                    })),
                })
            }
            _ => None,
        }
    }

    /// Whether a kept-alive connection is still usable: no EOF, no error, and nothing
    /// unexpected waiting. Over TLS the backend may have sent records meanwhile: they are
    /// opened here, and a session ticket or key update leaves the connection usable, while a
    /// close_notify, an alert or data nobody asked for ends it.
    pub fn idle_ok(&mut self) -> bool {
        let fd = self.stream.as_raw_fd();
        let Some(t) = self.tls.as_deref_mut() else {
            return peek_nothing(fd);
        };
        let mut wire: Vec<u8> = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            // SAFETY: a non-blocking read into a local buffer on our own open socket, which no
            // pending operation uses (the connection is idle).
            let n = unsafe {
                libc::recv(
                    fd,
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    return false;
                }
                break;
            }
            if n == 0 || wire.len() > 4 * MAX_FRAGMENT {
                return false;
            }
            wire.extend_from_slice(&chunk[..n as usize]);
        }
        let mut at = 0;
        while at < wire.len() {
            match t.rx.next(&mut wire[at..], &t.control) {
                Ok(Some((n, RxEvent::Skip))) => at += n,
                // A record cut in two while idle would need keeping; rare enough to close.
                _ => return false,
            }
        }
        true
    }
}

/// A non-blocking peek finds nothing to read (and no EOF or error).
fn peek_nothing(fd: i32) -> bool {
    let mut byte = 0u8;
    // SAFETY: a non-blocking peek of one byte into a local on our own open socket.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// The receiving half.
pub struct BackendRx {
    half: Half,
    tls: Option<Box<RxTls>>,
}

struct RxTls {
    rx: Rx,
    control: Rc<RefCell<Control>>,
    /// Received bytes: plaintext not yet read at `plain`, records not yet opened from `start`
    /// (`plain.end <= start`).
    carry: Option<PoolBuf>,
    plain: Range<usize>,
    start: usize,
    /// close_notify arrived: no more plaintext.
    closed: bool,
    info: SessionInfo,
}

impl RxTls {
    /// Opens every whole record at `start`, gathering their plaintext at the front of the
    /// buffer (behind it everything was read already). Only when no plaintext is pending.
    fn open(&mut self) -> io::Result<()> {
        debug_assert!(self.plain.is_empty());
        let Some(b) = self.carry.as_mut() else {
            return Ok(());
        };
        let len = b.len();
        let mut end = 0;
        while self.start < len && !self.closed {
            let opened = self.rx.next(&mut b.space()[self.start..len], &self.control);
            match opened.map_err(tls_io)? {
                None => break,
                Some((n, RxEvent::Data(r))) => {
                    let r = self.start + r.start..self.start + r.end;
                    b.space().copy_within(r.clone(), end);
                    end += r.len();
                    self.start += n;
                }
                Some((n, RxEvent::Skip)) => self.start += n,
                Some((n, RxEvent::Closed)) => {
                    self.start += n;
                    self.closed = true;
                }
            }
        }
        self.plain = 0..end;
        Ok(())
    }

    /// Everything read was passed on: the buffer goes back to the pool (a kept-alive
    /// connection between requests holds none).
    fn give_back_drained(&mut self, pool: &BufPool) {
        if self.plain.is_empty() && self.carry.as_ref().is_some_and(|b| self.start >= b.len()) {
            if let Some(b) = self.carry.take() {
                pool.put(b);
            }
            self.start = 0;
            self.plain = 0..0;
        }
    }

    /// With no plaintext pending: moves a partial record to the front of the buffer, or gives
    /// the buffer back when nothing is left. The buffer to read more into, if one is kept.
    fn compact(&mut self, pool: &BufPool) -> Option<PoolBuf> {
        let mut b = self.carry.take()?;
        let len = b.len();
        let rest = len - self.start.min(len);
        self.start = 0;
        self.plain = 0..0;
        if rest == 0 {
            pool.put(b);
            return None;
        }
        b.space().copy_within(len - rest..len, 0);
        b.set_filled(rest);
        Some(b)
    }
}

impl BackendRx {
    /// The socket underneath (readiness, the way it closes).
    pub fn half_mut(&mut self) -> &mut Half {
        &mut self.half
    }

    /// Another handle on the socket, to keep it open (and choose how it closes) after the
    /// futures owning the halves are gone.
    pub fn keep(&self) -> Half {
        self.half.keep()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Waits until there is something to read, holding no buffer.
    pub async fn readable(&mut self) -> io::Result<()> {
        if let Some(t) = &self.tls {
            if !t.plain.is_empty() || t.closed {
                return Ok(());
            }
        }
        self.half.readable().await
    }

    /// Reads plaintext into `buf` (0 at the end). Over TLS, records are read into a pooled
    /// buffer held while they are, opened there, and copied from there into `buf`. The plain
    /// read is the socket's own future; the TLS one is boxed, so that the futures holding a
    /// read (moved whole on every request) stay the size they were without TLS.
    pub fn read<'a, T: IoBufMut + 'a>(
        &'a mut self,
        buf: T,
        pool: &'a BufPool,
    ) -> impl Future<Output = BufResult<usize, T>> + 'a {
        if self.tls.is_none() {
            Either::Left(self.half.read(buf))
        } else {
            Either::Right(Box::pin(self.read_tls(buf, pool)))
        }
    }

    async fn read_tls<T: IoBufMut>(&mut self, mut buf: T, pool: &BufPool) -> BufResult<usize, T> {
        let Some(t) = self.tls.as_deref_mut() else {
            return self.half.read(buf).await;
        };
        loop {
            if !t.plain.is_empty() {
                let room = buf.bytes_total();
                let n = room.min(t.plain.len());
                // Invariant: plaintext is pending only inside the carried buffer.
                let b = t.carry.as_ref().expect("plaintext lies in the carry");
                let from = &b.filled()[t.plain.start..t.plain.start + n];
                // SAFETY: `write_ptr` is valid for `bytes_total` bytes (the IoBufMut contract)
                // and `n` is at most that; the regions cannot overlap (our own buffer).
                unsafe {
                    std::ptr::copy_nonoverlapping(from.as_ptr(), buf.write_ptr(), n);
                    buf.set_init(n);
                }
                t.plain.start += n;
                t.give_back_drained(pool);
                return (Ok(n), buf);
            }
            if t.closed {
                return (Ok(0), buf);
            }
            if let Err(e) = t.open() {
                return (Err(e), buf);
            }
            if !t.plain.is_empty() || t.closed {
                continue;
            }
            let got = match t.compact(pool) {
                Some(b) => {
                    let at = b.len();
                    let (res, slice) = self.half.read(b.slice_mut(at..)).await;
                    (res, slice.into_inner())
                }
                None => {
                    if let Err(e) = self.half.readable().await {
                        return (Err(e), buf);
                    }
                    self.half.read(pool.get()).await
                }
            };
            match got {
                (Ok(0), b) => {
                    // FIN without close_notify (or inside a record): the end all the same.
                    pool.put(b);
                    t.closed = true;
                }
                (Ok(_), b) => t.carry = Some(b),
                (Err(e), b) => {
                    pool.put(b);
                    return (Err(e), buf);
                }
            }
        }
    }

    /// TLS only (the tcp-mode pump): the plaintext pending, opened from what was read.
    /// Empty when more must be read ([`take_partial`](Self::take_partial), then
    /// [`put_read`](Self::put_read)) or the backend finished ([`finished`](Self::finished)).
    pub fn pending(&mut self) -> io::Result<&[u8]> {
        let Some(t) = self.tls.as_deref_mut() else {
            return Ok(&[]);
        };
        if t.plain.is_empty() && !t.closed {
            t.open()?;
        }
        Ok(match &t.carry {
            Some(b) => &b.filled()[t.plain.clone()],
            None => &[],
        })
    }

    /// The pending plaintext was passed on.
    pub fn consumed(&mut self, pool: &BufPool) {
        if let Some(t) = self.tls.as_deref_mut() {
            t.plain = t.plain.end..t.plain.end;
            t.give_back_drained(pool);
        }
    }

    /// TLS: the backend sent close_notify or FIN, and every byte before it was read.
    pub fn finished(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.closed && t.plain.is_empty())
    }

    /// TLS, with nothing pending: the buffer holding a partial record (to read the rest into),
    /// or `None` (read into a fresh buffer).
    pub fn take_partial(&mut self, pool: &BufPool) -> Option<PoolBuf> {
        self.tls.as_deref_mut()?.compact(pool)
    }

    /// TLS: what a read brought (`buf` holds it after whatever partial record it was given
    /// with); an empty buffer is the backend's FIN.
    pub fn put_read(&mut self, buf: PoolBuf, pool: &BufPool) {
        let Some(t) = self.tls.as_deref_mut() else {
            pool.put(buf);
            return;
        };
        if buf.is_empty() {
            pool.put(buf);
            t.closed = true;
        } else {
            t.carry = Some(buf);
        }
    }

    /// Reads into a buffer `handle` can call off (the tcp-mode pump releasing buffers of a
    /// quiet connection).
    pub fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        handle: CancelHandle,
    ) -> impl std::future::Future<Output = BufResult<usize, T>> + '_ {
        self.half.cancelable_read(buf, handle)
    }

    /// Gives back a buffer this half holds (the connection ends).
    pub fn release(&mut self, pool: &BufPool) {
        if let Some(t) = self.tls.as_deref_mut() {
            if let Some(b) = t.carry.take() {
                pool.put(b);
            }
            t.plain = 0..0;
            t.start = 0;
        }
    }
}

/// The sending half.
pub struct BackendTx {
    half: Half,
    tls: Option<Box<TxTls>>,
}

struct TxTls {
    tx: Tx,
    control: Rc<RefCell<Control>>,
}

impl BackendTx {
    /// Writes all of `buf`: as it is, or sealed into records in pooled buffers (a boxed
    /// future, as for [`BackendRx::read`]).
    pub fn write_all<'a, T: IoBuf + 'static>(
        &'a mut self,
        buf: T,
        pool: &'a BufPool,
    ) -> impl Future<Output = BufResult<usize, T>> + 'a {
        if self.tls.is_none() {
            Either::Left(self.half.write_all(buf))
        } else {
            Either::Right(Box::pin(self.write_tls(buf, pool)))
        }
    }

    async fn write_tls<T: IoBuf + 'static>(
        &mut self,
        buf: T,
        pool: &BufPool,
    ) -> BufResult<usize, T> {
        let Some(t) = self.tls.as_deref_mut() else {
            return self.half.write_all(buf).await;
        };
        // SAFETY: `read_ptr` is valid for `bytes_init` initialised bytes (the IoBuf contract),
        // and `buf` is not touched while `data` is used.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let mut off = 0;
        while off < data.len() {
            let mut out = pool.get();
            let sealed = t.tx.seal_data(&data[off..], out.space(), &t.control);
            let (taken, written) = match sealed {
                Ok(x) => x,
                Err(e) => {
                    pool.put(out);
                    return (Err(tls_io(e)), buf);
                }
            };
            out.set_filled(written);
            let (res, out) = self.half.write_all(out).await;
            pool.put(out);
            if let Err(e) = res {
                return (Err(e), buf);
            }
            off += taken;
        }
        let n = data.len();
        (Ok(n), buf)
    }

    /// Nothing more will be written: close_notify over TLS, then FIN.
    pub async fn shutdown(&mut self, pool: &BufPool) -> io::Result<()> {
        if let Some(t) = self.tls.as_deref_mut() {
            let mut out = pool.get();
            let n = t.tx.seal_close_notify(out.space()).unwrap_or(0);
            out.set_filled(n);
            let (res, out) = self.half.write_all(out).await;
            pool.put(out);
            res?;
        }
        self.half.shutdown_write()
    }
}
