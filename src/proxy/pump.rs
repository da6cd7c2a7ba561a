//! The tcp-mode byte pump: after the handshake, plaintext flows client → backend and backend →
//! client at the same time, as two futures in one task sharing the TLS session.
//!
//! Rules it keeps:
//! - each direction reads only after its last write finished, so a slow reader holds back the
//!   other side and buffers stay bounded (one per direction, reused for every read);
//! - a half-close is carried through: client close_notify/FIN → shutdown(write) to the backend;
//!   backend FIN → close_notify + shutdown(write) to the client;
//! - a reset or error on one side resets the other (SO_LINGER 0);
//! - records to the client are written by whoever holds the write half ([`Baton`]), so
//!   application data and the alerts or key updates caused by reading never interleave.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{select, try_join, Either};
use monoio::buf::IoBuf;
use monoio::net::TcpStream;

use super::handshake::Carry;
use super::split::{split, Half};
use crate::stats::WorkerStats;
use crate::tls::{Plain, ServerSession, TlsError};
use crate::util::baton::Baton;

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

fn client_io(e: io::Error) -> Side {
    Side::Client(Failure::Io(e))
}
fn backend_io(e: io::Error) -> Side {
    Side::Backend(Failure::Io(e))
}

struct Tx {
    half: Half,
    buf: Vec<u8>,
}

struct Pump<'a> {
    tls: RefCell<ServerSession>,
    client_tx: Baton<Tx>,
    last_io: Cell<Instant>,
    stats: &'a WorkerStats,
}

/// Pumps until both directions are done, one side fails, or the connection idles out.
pub async fn run(
    tls: ServerSession,
    client: TcpStream,
    backend: TcpStream,
    carry: Carry,
    buf_size: usize,
    idle: Option<Duration>,
    stats: &WorkerStats,
) -> Outcome {
    let (crx, ctx) = split(client);
    let (brx, btx) = split(backend);
    // Keep both sockets open past the futures below, to choose how each is closed.
    let (client, backend) = (crx.keep(), brx.keep());
    let pump = Pump {
        tls: RefCell::new(tls),
        client_tx: Baton::new(Tx {
            half: ctx,
            buf: Vec::with_capacity(buf_size + 512),
        }),
        last_io: Cell::new(Instant::now()),
        stats,
    };
    let both = try_join(
        pump.client_to_backend(crx, btx, carry, vec![0; buf_size]),
        pump.backend_to_client(brx, Vec::with_capacity(buf_size)),
    );
    let result = match idle {
        None => Some(both.await),
        Some(idle) => match select(pin!(both), pin!(pump.idle_watch(idle))).await {
            Either::Left((r, _)) => Some(r),
            Either::Right(_) => None,
        },
    };
    match result {
        Some(Ok(_)) => Outcome::Done,
        None => Outcome::Idle,
        Some(Err(Side::Client(f))) => {
            backend.reset_on_close();
            Outcome::ClientFailed(f)
        }
        Some(Err(Side::Backend(f))) => {
            client.reset_on_close();
            Outcome::BackendFailed(f)
        }
    }
}

impl Pump<'_> {
    fn touch(&self) {
        self.last_io.set(Instant::now());
    }

    async fn idle_watch(&self, idle: Duration) {
        loop {
            let deadline = self.last_io.get() + idle;
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            monoio::time::sleep(deadline - now).await;
        }
    }

    /// Client ciphertext in, plaintext out to the backend.
    async fn client_to_backend(
        &self,
        mut rx: Half,
        mut backend: Half,
        carry: Carry,
        mut plain: Vec<u8>,
    ) -> Result<(), Side> {
        let Carry {
            mut buf,
            mut start,
            mut end,
        } = carry;
        loop {
            // Everything already decrypted goes out first.
            loop {
                let got = self.tls.borrow_mut().read_plain(&mut plain);
                match got {
                    Plain::Data(n) => {
                        let (res, slice) = backend.write_all(plain.slice(..n)).await;
                        plain = slice.into_inner();
                        res.map_err(backend_io)?;
                        self.stats.bytes_to_backend.add(n as u64);
                        self.touch();
                    }
                    Plain::Closed => {
                        let _ = backend.shutdown_write();
                        return Ok(());
                    }
                    Plain::Empty => break,
                }
            }
            // Reading may have queued records for the client (key update, alert).
            if self.tls.borrow().wants_write() {
                self.flush_client().await?;
            }
            if start < end {
                let fed = self.tls.borrow_mut().feed(&buf[start..end]);
                match fed {
                    Ok(0) => {
                        return Err(client_io(io::Error::other("tls session made no progress")))
                    }
                    Ok(n) => start += n,
                    Err(e) => {
                        let _ = self.flush_client().await;
                        return Err(Side::Client(Failure::Tls(e)));
                    }
                }
                continue;
            }
            let (res, b) = rx.read(buf).await;
            buf = b;
            match res.map_err(client_io)? {
                // FIN without close_notify: still a half-close to carry through.
                0 => {
                    let _ = backend.shutdown_write();
                    return Ok(());
                }
                n => (start, end) = (0, n),
            }
            self.touch();
        }
    }

    /// Backend plaintext in, records out to the client.
    async fn backend_to_client(&self, mut rx: Half, mut buf: Vec<u8>) -> Result<(), Side> {
        loop {
            let (res, b) = rx.read(buf).await;
            buf = b;
            let n = res.map_err(backend_io)?;
            if n == 0 {
                self.tls.borrow_mut().close_notify();
                let mut tx = self.client_tx.take().await;
                self.flush_held(&mut tx).await?;
                let _ = tx.half.shutdown_write();
                return Ok(());
            }
            self.touch();
            let mut off = 0;
            while off < n {
                let taken = self.tls.borrow_mut().write_plain(&buf[off..n]);
                if taken == 0 && !self.tls.borrow().wants_write() {
                    return Err(client_io(io::Error::other(
                        "tls session closed for writing",
                    )));
                }
                off += taken;
                self.flush_client().await?;
            }
            self.stats.bytes_to_client.add(n as u64);
        }
    }

    async fn flush_client(&self) -> Result<(), Side> {
        let mut tx = self.client_tx.take().await;
        self.flush_held(&mut tx).await
    }

    async fn flush_held(&self, tx: &mut Tx) -> Result<(), Side> {
        loop {
            tx.buf.clear();
            self.tls.borrow_mut().write_tls_into(&mut tx.buf);
            if tx.buf.is_empty() {
                return Ok(());
            }
            let (res, b) = tx.half.write_all(std::mem::take(&mut tx.buf)).await;
            tx.buf = b;
            res.map_err(client_io)?;
            self.touch();
        }
    }
}
