//! The tcp-mode byte pump: after the handshake, plaintext flows client → backend and backend →
//! client at the same time, as two futures in one task.
//!
//! Rules it keeps:
//! - client records are decrypted in place in the read buffer and the plaintext written from
//!   there; backend bytes are sealed straight into the write buffer: no other copies;
//! - each direction reads only after its last write finished, so a slow reader holds back the
//!   other side and memory stays bounded;
//! - buffers come from the worker's pool only while bytes move: once the connection has been
//!   quiet for [`RELEASE_AFTER`], pending reads are called off and re-issued as readiness waits
//!   that hold no buffer; with `--uring-recv multishot` the client socket and a plain
//!   backend's each keep one multishot receive armed instead, which holds no buffer until bytes
//!   arrive (`multishot`, below);
//! - a connection quiet on both sides is *parked*: the two direction futures (boxed, a few KiB)
//!   are dropped — safe, since each is only waiting for readiness and holds no data — and one
//!   small future waits for either socket to become readable; then they are made anew. An
//!   idle connection costs its TLS keys, its sockets and that wait;
//! - a half-close is carried through: client close_notify/FIN → shutdown(write) to the backend;
//!   backend FIN → close_notify + shutdown(write) to the client;
//! - a reset or error on one side resets the other (SO_LINGER 0);
//! - records to the client are sealed and written by whoever holds the sending half
//!   ([`Baton`]), so sequence numbers go out in order even when the receiving side has to
//!   answer (alerts, renegotiation refusals) while data flows.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{select, try_join, Either};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpStream;

use super::bufpool::{BufPool, PoolBuf};
use super::handshake::Carry;
use super::split::{is_cancelled, split, Half};
use super::tlsio::{ClientError, ClientOut, Sending};
use crate::backend::conn::{BackendRx, BackendStream, BackendTx};
use crate::stats::WorkerStats;
use crate::tls::{Control, Established, Rx, RxEvent, TlsError, Tx};
use crate::util::baton::Baton;

mod multishot;

/// Quiet time after which a connection's buffers go back to the pool.
pub const RELEASE_AFTER: Duration = Duration::from_millis(500);
/// How often a released connection's watcher looks again (activity resumes reads with buffers).
const RECHECK: Duration = Duration::from_secs(5);
/// After releasing, how long the directions get to settle into readiness waits before the
/// watcher looks whether the connection can be parked.
const PARK_CHECK: Duration = Duration::from_millis(20);
/// Backend reads leave this much room so the records they become fit one pooled buffer.
pub const RECORD_SLACK: usize = 128;

/// How a pumped connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both directions finished with a clean close.
    Done,
    /// No byte either way for the idle timeout.
    Idle,
    /// The client side failed; the backend was reset.
    ClientFailed(Failure),
    /// The backend side failed; the client was reset.
    BackendFailed(Failure),
}

#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    Tls(TlsError),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("closed by both sides"),
            Outcome::Idle => f.write_str("idle timeout"),
            Outcome::ClientFailed(e) => write!(f, "client side failed ({e}); backend reset"),
            Outcome::BackendFailed(e) => write!(f, "backend side failed ({e}); client reset"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "i/o: {e}"),
            Failure::Tls(e) => e.fmt(f),
        }
    }
}

enum Side {
    Client(Failure),
    Backend(Failure),
}

fn client_side(e: ClientError) -> Side {
    Side::Client(match e {
        ClientError::Io(e) => Failure::Io(e),
        ClientError::Tls(e) => Failure::Tls(e),
        ClientError::Full => Failure::Io(io::Error::other("client buffer full")),
    })
}

fn client_io(e: io::Error) -> Side {
    Side::Client(Failure::Io(e))
}
fn backend_io(e: io::Error) -> Side {
    Side::Backend(Failure::Io(e))
}

const FROM_CLIENT: usize = 0;
const FROM_BACKEND: usize = 1;

/// Everything a tunnel starts from: the TLS halves, both sockets (read and write halves), and
/// bytes already read on either side that have not been passed on yet.
pub struct Tunnel {
    pub rx: Rx,
    pub tx: Tx,
    pub control: RefCell<Control>,
    pub client: (Half, Half),
    pub backend: (BackendRx, BackendTx),
    /// Client ciphertext not yet opened.
    pub carry: Carry,
    /// Client plaintext not yet forwarded.
    pub to_backend: Vec<u8>,
    /// Backend bytes not yet sent to the client.
    pub to_client: Vec<u8>,
}

impl Tunnel {
    /// A fresh tunnel over two sockets (tcp mode).
    pub fn new(
        session: Established,
        client: TcpStream,
        backend: BackendStream,
        carry: Carry,
    ) -> Tunnel {
        Tunnel {
            rx: session.rx,
            tx: session.tx,
            control: session.control,
            client: split(client),
            backend: backend.split(),
            carry,
            to_backend: session.early,
            to_client: Vec::new(),
        }
    }
}

struct Pump<'a> {
    out: ClientOut<'a>,
    last_io: Cell<Instant>,
    /// Per direction: calls off that direction's pending read when the connection goes quiet.
    /// Made by the first single read (each is an allocation): a direction read through
    /// multishot receive never needs one.
    cancel: [RefCell<Option<Canceller>>; 2],
    released: Cell<bool>,
    /// Per direction: bytes have arrived since the connection was last quiet. A direction
    /// that has not seen any waits for readiness before taking a buffer, so a connection that
    /// completes its handshake and then sits idle never holds one.
    hot: [Cell<bool>; 2],
    /// Per direction: waiting for readiness while holding nothing (so it may be parked).
    waiting: [Cell<bool>; 2],
    /// Per direction: finished (its half-close carried through).
    done: [Cell<bool>; 2],
    /// Per direction: plaintext bytes passed on (for the connection log).
    moved: [Cell<u64>; 2],
    pool: &'a BufPool,
    stats: &'a WorkerStats,
}

/// The client → backend direction's state; it outlives the direction's future, which is
/// dropped while the connection is parked.
struct ClientSide {
    rx: Rx,
    half: Half,
    to_backend: BackendTx,
    /// Client ciphertext not yet opened: `buf[start..]`.
    buf: Option<PoolBuf>,
    start: usize,
    early: Vec<u8>,
    /// The client's multishot receive (`--uring-recv multishot`), armed for the whole
    /// connection, parked or not; `None`: single reads. Boxed: a connection task stays small.
    ring: Option<Box<multishot::Ring>>,
}

struct BackendSide {
    half: BackendRx,
    early: Vec<u8>,
    /// A plain backend's multishot receive, as the client's (`ClientSide::ring`).
    ring: Option<Box<multishot::Ring>>,
}

enum Active {
    /// Both directions ended (or one failed), or the connection idled out (`None`).
    Ended(Option<Result<(), Side>>),
    /// Both directions are quiet: park.
    Parked,
}

enum WatchEnd {
    Idle,
    Park,
}

/// Plaintext bytes a pumped connection passed on: (client → backend, backend → client).
pub type Moved = (u64, u64);

/// Pumps until both directions are done, one side fails, or the connection idles out.
pub async fn run(
    t: Box<Tunnel>,
    pool: &BufPool,
    idle: Option<Duration>,
    stats: &WorkerStats,
) -> (Outcome, Moved) {
    let Tunnel {
        rx,
        tx,
        control,
        client: (crx, ctx),
        backend: (brx, btx),
        carry,
        to_backend,
        to_client,
    } = {
        // The box is moved into this block, so it is freed here: destructuring `*t` in place
        // would keep its allocation (a `Tunnel`, 864 bytes) until `run` returns, that is, for
        // the connection's whole life.
        let boxed = t;
        *boxed
    };
    // Keep both sockets open past the futures below, to choose how each is closed.
    let (client, backend) = (crx.keep(), brx.keep());
    let pump = Pump {
        out: ClientOut {
            sending: Baton::new(Sending { half: ctx, tx }),
            control: &control,
            pool,
        },
        last_io: Cell::new(Instant::now()),
        cancel: Default::default(),
        released: Cell::new(false),
        hot: Default::default(),
        waiting: Default::default(),
        done: Default::default(),
        moved: Default::default(),
        pool,
        stats,
    };
    let ring = multishot::Ring::arm(&crx);
    let mut c = ClientSide {
        rx,
        half: crx,
        to_backend: btx,
        buf: carry.buf,
        start: carry.start,
        early: to_backend,
        ring,
    };
    let mut brx = brx;
    // A TLS backend's records are read by its own layer (`BackendRx`), the single way.
    let ring = match brx.is_tls() {
        false => multishot::Ring::arm(brx.half_mut()),
        true => None,
    };
    let mut b = BackendSide {
        half: brx,
        early: to_client,
        ring,
    };
    let result = loop {
        let active = Box::pin(pump.active(&mut c, &mut b, idle));
        match active.await {
            Active::Ended(r) => break r,
            Active::Parked => {}
        }
        if !pump.parked(&mut c, &mut b, idle).await {
            break None;
        }
    };
    if let Some(buf) = c.buf.take() {
        pool.put(buf);
    }
    b.half.release(pool);
    let moved = (
        pump.moved[FROM_CLIENT].get(),
        pump.moved[FROM_BACKEND].get(),
    );
    let outcome = match result {
        Some(Ok(_)) => Outcome::Done,
        None => Outcome::Idle,
        Some(Err(Side::Client(Failure::Tls(e)))) => {
            backend.reset_on_close();
            // The client was sent an alert saying why (`client_to_backend`). Closing now,
            // with the rest of what it sent still unread, would make the kernel answer with a
            // reset that can overtake the alert: close the backend at once, then FIN and a
            // bounded lingering drain, as after an http-mode error answer.
            drop((b, c.to_backend, backend, pump));
            // The drain reads the socket itself: no receive may be armed beside it.
            c.ring = None;
            if !matches!(e, TlsError::PeerAlert(_)) && client.shutdown_write().is_ok() {
                super::linger::drain(&mut c.half, pool).await;
            }
            return (Outcome::ClientFailed(Failure::Tls(e)), moved);
        }
        Some(Err(Side::Client(f))) => {
            backend.reset_on_close();
            Outcome::ClientFailed(f)
        }
        Some(Err(Side::Backend(f))) => {
            client.reset_on_close();
            Outcome::BackendFailed(f)
        }
    };
    (outcome, moved)
}

impl Pump<'_> {
    /// Counts bytes passed on in one direction, for the worker and for this connection.
    fn moved(&self, dir: usize, n: u64) {
        let total = if dir == FROM_CLIENT {
            &self.stats.bytes_to_backend
        } else {
            &self.stats.bytes_to_client
        };
        total.add(n);
        self.moved[dir].set(self.moved[dir].get() + n);
    }

    /// What a single read in direction `dir` registers with, so the watcher can call it off.
    fn cancel_handle(&self, dir: usize) -> CancelHandle {
        self.cancel[dir]
            .borrow_mut()
            .get_or_insert_with(Canceller::new)
            .handle()
    }

    fn touch(&self) {
        self.last_io.set(Instant::now());
        self.released.set(false);
    }

    async fn active(
        &self,
        c: &mut ClientSide,
        b: &mut BackendSide,
        idle: Option<Duration>,
    ) -> Active {
        let dirs = try_join(self.client_to_backend(c), self.backend_to_client(b));
        match select(pin!(dirs), pin!(self.watch(idle))).await {
            Either::Left((r, _)) => Active::Ended(Some(r.map(drop))),
            Either::Right((WatchEnd::Idle, _)) => Active::Ended(None),
            Either::Right((WatchEnd::Park, _)) => Active::Parked,
        }
    }

    /// Parked: waits until either open side has something to read (`true`), or the idle
    /// timeout (`false`).
    async fn parked(
        &self,
        c: &mut ClientSide,
        b: &mut BackendSide,
        idle: Option<Duration>,
    ) -> bool {
        let deadline = idle.map(|d| self.last_io.get() + d);
        let (cdone, bdone) = (self.done[FROM_CLIENT].get(), self.done[FROM_BACKEND].get());
        let client = async {
            if cdone {
                std::future::pending::<()>().await
            }
            match c.ring.as_mut() {
                // An armed receive holds no buffer: it takes one only when bytes arrive, and
                // keeps that completion for the direction to resume with.
                Some(ring) if !ring.dry => ring.wait().await,
                _ => {
                    let _ = c.half.readable().await;
                }
            }
        };
        let backend = async {
            if bdone {
                std::future::pending::<()>().await
            }
            match b.ring.as_mut() {
                Some(ring) if !ring.dry => ring.wait().await,
                _ => {
                    let _ = b.half.readable().await;
                }
            }
        };
        let timer = async {
            match deadline {
                Some(d) => monoio::time::sleep(d.saturating_duration_since(Instant::now())).await,
                None => std::future::pending().await,
            }
        };
        let (client, backend, timer) = (pin!(client), pin!(backend), pin!(timer));
        let either_side = pin!(select(client, backend));
        let woke = matches!(select(either_side, timer).await, Either::Left(_));
        if woke {
            self.touch();
        }
        woke
    }

    /// Whether every direction still open is waiting for readiness and holds nothing.
    fn parkable(&self) -> bool {
        (0..2).all(|d| self.done[d].get() || self.waiting[d].get())
    }

    /// Releases buffers of a quiet connection, parks it, and returns once it idles out.
    async fn watch(&self, idle: Option<Duration>) -> WatchEnd {
        loop {
            let last = self.last_io.get();
            let now = Instant::now();
            let idle_at = idle.map(|d| last + d);
            if idle_at.is_some_and(|t| now >= t) {
                return WatchEnd::Idle;
            }
            if self.released.get() && self.parkable() {
                return WatchEnd::Park;
            }
            let release_at = last + RELEASE_AFTER;
            let next = if !self.released.get() && now >= release_at {
                for c in &self.cancel {
                    let old = c.borrow_mut().take();
                    if let Some(old) = old {
                        // The next read makes a new one.
                        drop(old.cancel());
                    }
                }
                self.released.set(true);
                // Let the directions settle into their readiness waits, then look again.
                now + PARK_CHECK
            } else if self.released.get() {
                now + RECHECK
            } else {
                release_at
            };
            let next = idle_at.map_or(next, |t| t.min(next));
            monoio::time::sleep(next.saturating_duration_since(now)).await;
        }
    }

    /// Reads into a pooled buffer (empty at EOF). While the connection is busy the read is
    /// issued at once; after the watcher calls it off it waits for readiness holding nothing.
    async fn read_pooled(&self, half: &mut Half, dir: usize, limit: usize) -> io::Result<PoolBuf> {
        let mut poll_first = !self.hot[dir].get();
        loop {
            if poll_first {
                self.waiting[dir].set(true);
                let ready = half.readable().await;
                self.waiting[dir].set(false);
                ready?;
            }
            let handle = self.cancel_handle(dir);
            let buf = self.pool.get();
            let (res, buf) = half.cancelable_read(buf.slice_mut(..limit), handle).await;
            let buf = buf.into_inner();
            match res {
                Ok(_) => {
                    self.hot[dir].set(true);
                    return Ok(buf);
                }
                Err(e) if is_cancelled(&e) => {
                    self.pool.put(buf);
                    self.hot[dir].set(false);
                    poll_first = true;
                }
                Err(e) => {
                    self.pool.put(buf);
                    return Err(e);
                }
            }
        }
    }

    /// Client records in, plaintext out to the backend.
    async fn client_to_backend(&self, c: &mut ClientSide) -> Result<(), Side> {
        if self.done[FROM_CLIENT].get() {
            return Ok(());
        }
        if !c.early.is_empty() {
            let early = std::mem::take(&mut c.early);
            let n = early.len() as u64;
            let (res, _) = c.to_backend.write_all(early, self.pool).await;
            res.map_err(backend_io)?;
            self.moved(FROM_CLIENT, n);
        }
        let result = self.client_records(c).await;
        if let Err(Side::Client(Failure::Tls(e))) = &result {
            self.out.send_failure(e).await;
        }
        if result.is_ok() {
            self.done[FROM_CLIENT].set(true);
        }
        result
    }

    async fn client_records(&self, c: &mut ClientSide) -> Result<(), Side> {
        if c.ring.is_some() {
            let result = self.client_records_multishot(c).await;
            if result.is_ok() {
                // Ended (close_notify or FIN): call the receive off. Bytes a client sends
                // after its close_notify are never read (with single reads they wait in the
                // socket); an armed receive would hold QUEUE_LIMIT ring buffers of them for
                // as long as the backend takes to answer.
                c.ring = None;
            }
            return result;
        }
        loop {
            if self.flush_pooled(c).await? {
                return Ok(());
            }
            if self.read_single(c).await? {
                return Ok(());
            }
        }
    }

    /// Opens every whole record in the pooled buffer (`buf[start..]`), gathering the plaintext
    /// at its front, and writes it to the backend; then keeps a partial record at the front of
    /// the buffer (`start` 0), or gives the buffer back. `true`: the client closed
    /// (close_notify), carried through to the backend.
    async fn flush_pooled(&self, c: &mut ClientSide) -> Result<bool, Side> {
        let (mut plain_end, mut closed) = (0, false);
        if let Some(b) = c.buf.as_mut() {
            let len = b.len();
            let opened = open_records(&mut c.rx, &mut b.space()[..len], c.start, self.out.control)?;
            plain_end = opened.plain_end;
            c.start = opened.end;
            closed = opened.closed;
        }
        self.send_due_replies().await?;
        if plain_end > 0 {
            // Invariant: plain_end > 0 only after records were opened from `buf`.
            let b = c.buf.take().expect("plaintext came from this buffer");
            let (res, b) = self.plain_to_backend(c, b, plain_end).await;
            c.buf = Some(b);
            res?;
        }
        if closed {
            let _ = c.to_backend.shutdown(self.pool).await;
            return Ok(true);
        }
        // Keep a partial record at the front of the buffer, or give the buffer back.
        c.buf = match c.buf.take() {
            Some(mut b) if c.start < b.len() => {
                let len = b.len();
                b.space().copy_within(c.start..len, 0);
                b.set_filled(len - c.start);
                Some(b)
            }
            Some(b) => {
                self.pool.put(b);
                None
            }
            None => None,
        };
        c.start = 0;
        Ok(false)
    }

    /// The records the client's last ones asked for (renegotiation refused, a key update).
    async fn send_due_replies(&self) -> Result<(), Side> {
        if self.out.control.borrow().reply_due() {
            self.out.send_replies().await.map_err(client_side)?;
        }
        Ok(())
    }

    /// The plaintext of opened client records, gathered at the front of `buf`
    /// (`..plain_end`, see [`open_records`]), to the backend. The buffer comes back whatever
    /// happened.
    async fn plain_to_backend<T: IoBuf + 'static>(
        &self,
        c: &mut ClientSide,
        buf: T,
        plain_end: usize,
    ) -> (Result<(), Side>, T) {
        let (res, slice) = c
            .to_backend
            .write_all(buf.slice(..plain_end), self.pool)
            .await;
        if res.is_ok() {
            self.moved(FROM_CLIENT, plain_end as u64);
            self.touch();
        }
        (res.map(|_| ()).map_err(backend_io), slice.into_inner())
    }

    /// One read from the client into the pooled buffer: after the partial record it holds,
    /// or into a fresh one (see [`Self::read_pooled`]). `true`: FIN, carried through.
    async fn read_single(&self, c: &mut ClientSide) -> Result<bool, Side> {
        let got = match c.buf.take() {
            None => {
                self.read_pooled(&mut c.half, FROM_CLIENT, self.pool.size())
                    .await
            }
            Some(b) => {
                let at = b.len();
                let handle = self.cancel_handle(FROM_CLIENT);
                let (res, slice) = c.half.cancelable_read(b.slice_mut(at..), handle).await;
                let b = slice.into_inner();
                match res {
                    Ok(0) => {
                        self.pool.put(b);
                        Ok(self.pool.get())
                    }
                    Ok(_) => Ok(b),
                    // Called off while idle mid-record: keep the bytes, read again.
                    Err(e) if is_cancelled(&e) => Ok(b),
                    Err(e) => {
                        self.pool.put(b);
                        Err(e)
                    }
                }
            }
        };
        let b = got.map_err(client_io)?;
        if b.is_empty() {
            // FIN (without close_notify, or mid-record): still a half-close to carry.
            self.pool.put(b);
            let _ = c.to_backend.shutdown(self.pool).await;
            return Ok(true);
        }
        c.buf = Some(b);
        self.touch();
        Ok(false)
    }

    /// Backend plaintext in, records out to the client.
    async fn backend_to_client(&self, b: &mut BackendSide) -> Result<(), Side> {
        if self.done[FROM_BACKEND].get() {
            return Ok(());
        }
        if !b.early.is_empty() {
            let early = std::mem::take(&mut b.early);
            self.out.send(&early).await.map_err(client_side)?;
            self.moved(FROM_BACKEND, early.len() as u64);
        }
        if b.half.is_tls() {
            // Boxed: a plain backend's direction does not carry the TLS one's state.
            return Box::pin(self.backend_records(b)).await;
        }
        if b.ring.is_some() {
            return self.backend_plain_multishot(b).await;
        }
        loop {
            let limit = self.pool.size() - RECORD_SLACK;
            let input = self
                .read_pooled(b.half.half_mut(), FROM_BACKEND, limit)
                .await
                .map_err(backend_io)?;
            let ended = self.plain_to_client(input.filled()).await;
            self.pool.put(input);
            if ended? {
                return Ok(());
            }
        }
    }

    /// One read of a plain backend's bytes, sealed to the client; no bytes is the backend's
    /// FIN, carried through as close_notify. `true`: that end. The caller gives the read's
    /// buffer back whatever happened.
    async fn plain_to_client(&self, bytes: &[u8]) -> Result<bool, Side> {
        let n = bytes.len();
        if n == 0 {
            self.out.close().await.map_err(client_side)?;
            self.done[FROM_BACKEND].set(true);
            return Ok(true);
        }
        self.touch();
        self.out.send(bytes).await.map_err(client_side)?;
        self.touch();
        self.moved(FROM_BACKEND, n as u64);
        Ok(false)
    }

    /// Backend records in (a TLS backend), records out to the client: each read's records
    /// are opened in place and their plaintext sealed from there into the client's records.
    async fn backend_records(&self, b: &mut BackendSide) -> Result<(), Side> {
        loop {
            let plain = b.half.pending().map_err(backend_io)?;
            let n = plain.len();
            if n > 0 {
                self.touch();
                let result = self.out.send(plain).await;
                b.half.consumed(self.pool);
                result.map_err(client_side)?;
                self.touch();
                self.stats.bytes_to_client.add(n as u64);
                continue;
            }
            if b.half.finished() {
                self.out.close().await.map_err(client_side)?;
                self.done[FROM_BACKEND].set(true);
                return Ok(());
            }
            match b.half.take_partial(self.pool) {
                None => {
                    let size = self.pool.size();
                    let input = self
                        .read_pooled(b.half.half_mut(), FROM_BACKEND, size)
                        .await
                        .map_err(backend_io)?;
                    b.half.put_read(input, self.pool);
                }
                Some(buf) => {
                    let at = buf.len();
                    let handle = self.cancel_handle(FROM_BACKEND);
                    let (res, slice) = b.half.cancelable_read(buf.slice_mut(at..), handle).await;
                    let mut buf = slice.into_inner();
                    match res {
                        // FIN inside a record: the end, as on the client side.
                        Ok(0) => buf.set_filled(0),
                        Ok(_) => {}
                        // Called off while idle mid-record: keep the bytes, read again.
                        Err(e) if is_cancelled(&e) => {}
                        Err(e) => {
                            self.pool.put(buf);
                            return Err(backend_io(e));
                        }
                    }
                    b.half.put_read(buf, self.pool);
                }
            }
        }
    }
}

/// What [`open_records`] found.
struct Opened {
    /// The plaintext of the opened records is `buf[..plain_end]`.
    plain_end: usize,
    /// Where the first record not opened (partial, or after close_notify) starts.
    end: usize,
    /// A close_notify was opened (nothing after it is looked at).
    closed: bool,
}

/// Opens every whole record in `buf[from..]` in place, gathering their plaintext at the front
/// of `buf` (plaintext is shorter than its record, so it never overtakes what is unopened).
fn open_records(
    rx: &mut Rx,
    buf: &mut [u8],
    from: usize,
    control: &RefCell<Control>,
) -> Result<Opened, Side> {
    let mut o = Opened {
        plain_end: 0,
        end: from,
        closed: false,
    };
    while o.end < buf.len() {
        let opened = rx.next(&mut buf[o.end..], control);
        match opened.map_err(|e| Side::Client(Failure::Tls(e)))? {
            None => break,
            Some((n, RxEvent::Data(r))) => {
                let r = o.end + r.start..o.end + r.end;
                buf.copy_within(r.clone(), o.plain_end);
                o.plain_end += r.len();
                o.end += n;
            }
            Some((n, RxEvent::Skip)) => o.end += n,
            Some((n, RxEvent::Closed)) => {
                o.end += n;
                o.closed = true;
                break;
            }
        }
    }
    Ok(o)
}
