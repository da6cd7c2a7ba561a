//! Both directions of a tcp-mode connection with `--uring-recv multishot` (a TLS backend's
//! records are read by its own layer, the single way): one receive stays armed per socket for
//! the whole connection, and the kernel fills a buffer of the worker's ring only when bytes
//! arrive, so a quiet direction holds no buffer and costs no submission per read. From the
//! client come records; from a plain backend, bytes sealed straight from the ring buffer.
//!
//! Records are opened in place in the ring buffer and their plaintext written from there; a
//! record cut at the buffer's end is copied into a pooled buffer (the only copy), completed
//! from the front of the next ring buffer, and opened there. Every ring buffer goes back to
//! the ring once its bytes are written, so an idle connection pins none.
//!
//! An armed receive keeps taking buffers while the direction is busy writing to the backend,
//! so each connection may have at most [`QUEUE_LIMIT`] filled buffers waiting: then the driver
//! pauses the receive (the bytes stay in the socket, the backend's pace holds the client back
//! as with single reads) and arms it again once they are taken. Should the ring still run dry
//! (`ENOBUFS`: every buffer held by busy connections), the kernel ends the receive with the
//! bytes still in the socket: this direction then reads once the single way (readiness,
//! pooled buffer) and arms again, counted in `tern_uring_recv_ring_empty_total` (tests/ring_dry.rs
//! drives a ring dry end to end).

use std::io;

use monoio::buf_ring::{MultishotRecv, RingBuf};
use tracing::debug;

use super::{
    backend_io, client_io, open_records, BackendSide, ClientSide, Pump, Side, FROM_BACKEND,
    FROM_CLIENT,
};
use crate::net::ringrecv::{self, complete_record};
use crate::net::split::Half;
use crate::tls::record::copy_in_pieces;

/// Filled ring buffers one connection may have waiting while it writes to the backend: 4 of
/// the worker's 64 (128 KiB), so a dozen stalled backends still leave the ring to the rest.
const QUEUE_LIMIT: usize = 4;

/// A connection's armed multishot receive.
pub(super) struct Ring {
    rx: MultishotRecv,
    /// A completion taken while the connection was parked, for the direction to resume with.
    pending: Option<io::Result<RingBuf>>,
    /// The last receive ended with `ENOBUFS`: read once the single way before arming again
    /// (arming on an empty ring would end at once, and a parked connection would spin).
    pub(super) dry: bool,
}

impl Ring {
    /// Arms a receive on the client socket if this worker's ring has the receive buffers
    /// (`--uring-recv multishot`, io_uring, a kernel that took the buffer ring).
    pub(super) fn arm(half: &Half) -> Option<Box<Ring>> {
        monoio::buf_ring::available(ringrecv::GROUP)?;
        match half.recv_multishot(ringrecv::GROUP) {
            Ok(mut rx) => Some(Box::new(Ring {
                rx: {
                    rx.set_queue_limit(QUEUE_LIMIT);
                    rx
                },
                pending: None,
                dry: false,
            })),
            Err(e) => {
                debug!("multishot receive not armed ({e}); reading the single way");
                None
            }
        }
    }

    /// Parked: waits until bytes (or EOF, or an error) arrive, and keeps that completion.
    pub(super) async fn wait(&mut self) {
        if self.pending.is_none() {
            self.pending = Some(self.rx.next().await);
        }
    }

    async fn next(&mut self) -> io::Result<RingBuf> {
        match self.pending.take() {
            Some(got) => got,
            None => self.rx.next().await,
        }
    }
}

impl Pump<'_> {
    pub(super) async fn client_records_multishot(&self, c: &mut ClientSide) -> Result<(), Side> {
        loop {
            // The handshake's carry, or a record just completed from a ring buffer.
            if self.flush_pooled(c).await? {
                return Ok(());
            }
            let ring = c
                .ring
                .as_mut()
                .expect("multishot direction without its receive");
            if ring.dry {
                ring.dry = false;
                self.stats.recv_ring_empty.inc();
                if self.read_single(c).await? {
                    return Ok(());
                }
                continue;
            }
            // Holding nothing while it waits, unless a partial record sits in the pooled buffer.
            let holds_nothing = c.buf.is_none();
            self.waiting[FROM_CLIENT].set(holds_nothing);
            let got = ring.next().await;
            self.waiting[FROM_CLIENT].set(false);
            let mut rb = match got {
                Ok(rb) => rb,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    ring.dry = true;
                    continue;
                }
                Err(e) => return Err(client_io(e)),
            };
            if rb.is_empty() {
                // FIN (without close_notify, or mid-record): still a half-close to carry.
                if let Some(b) = c.buf.take() {
                    self.pool.put(b);
                }
                let _ = c.to_backend.shutdown(self.pool).await;
                return Ok(());
            }
            self.touch();
            if let Some(b) = c.buf.as_mut() {
                let taken = complete_record(b, &rb);
                rb.advance(taken);
                if self.flush_pooled(c).await? {
                    return Ok(());
                }
            }
            if rb.is_empty() {
                continue;
            }
            if self.ring_records(c, rb).await? {
                return Ok(());
            }
        }
    }

    /// Opens the whole records of a ring buffer in place and writes their plaintext from
    /// there; a trailing partial record goes to a pooled buffer (`c.buf`, empty before). The
    /// ring buffer goes back to the ring on return. `true`: close_notify, carried through.
    async fn ring_records(&self, c: &mut ClientSide, mut rb: RingBuf) -> Result<bool, Side> {
        let opened = open_records(&mut c.rx, &mut rb, 0, self.out.control)?;
        if !opened.closed && opened.end < rb.len() {
            let mut b = self.pool.get();
            let rest = &rb[opened.end..];
            copy_in_pieces(&mut b.space()[..rest.len()], rest);
            b.set_filled(rest.len());
            debug_assert!(c.buf.is_none() && c.start == 0);
            c.buf = Some(b);
        }
        self.send_due_replies().await?;
        if opened.plain_end > 0 {
            let (res, _rb) = self.plain_to_backend(c, rb, opened.plain_end).await;
            res?;
        }
        if opened.closed {
            let _ = c.to_backend.shutdown(self.pool).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// A plain backend's bytes in, records out to the client, sealed straight from the ring
    /// buffer (as from a pooled one in the single way: ring buffers are a pooled buffer less
    /// `RECORD_SLACK` long, so their records fit one pooled write).
    pub(super) async fn backend_plain_multishot(&self, b: &mut BackendSide) -> Result<(), Side> {
        loop {
            let ring = b
                .ring
                .as_mut()
                .expect("multishot direction without its receive");
            let got = if ring.dry {
                ring.dry = false;
                self.stats.recv_ring_empty.inc();
                let limit = self.pool.size() - super::RECORD_SLACK;
                let input = self
                    .read_pooled(b.half.half_mut(), FROM_BACKEND, limit)
                    .await
                    .map_err(backend_io)?;
                Either::Pooled(input)
            } else {
                self.waiting[FROM_BACKEND].set(true);
                let got = ring.next().await;
                self.waiting[FROM_BACKEND].set(false);
                match got {
                    Ok(rb) => Either::Ring(rb),
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        ring.dry = true;
                        continue;
                    }
                    Err(e) => return Err(backend_io(e)),
                }
            };
            let ended = self.plain_to_client(got.bytes()).await;
            got.give_back(self);
            if ended? {
                return Ok(());
            }
        }
    }
}

/// A backend read, from the ring or (after `ENOBUFS`) from the pool.
enum Either {
    Ring(RingBuf),
    Pooled(super::PoolBuf),
}

impl Either {
    fn bytes(&self) -> &[u8] {
        match self {
            Either::Ring(rb) => rb,
            Either::Pooled(b) => b.filled(),
        }
    }

    fn give_back(self, pump: &Pump<'_>) {
        if let Either::Pooled(b) = self {
            pump.pool.put(b);
        }
    }
}
