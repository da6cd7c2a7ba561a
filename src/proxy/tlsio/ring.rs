//! http mode's client reads with `--uring-recv multishot`: one multishot receive stays armed
//! on the client socket for the connection's life and the kernel fills a buffer of the
//! worker's ring only when bytes arrive, instead of a readiness wait plus one read per chunk.
//!
//! A ring buffer is dealt with as soon as it comes: the end of a record cut at the last
//! buffer's end is copied into the pooled ciphertext buffer (which holds that record's front),
//! the whole records after it are opened in place in the ring buffer (their plaintext copied
//! into the plaintext buffer, as from the pooled one), and a trailing partial record is copied
//! into the pooled buffer. Then the ring buffer goes back to the ring; only when the plaintext
//! buffer has no room for the next record (a pipelined request waiting for the one before it
//! to be consumed) is the ring buffer kept (`rest`) until the next `fill`. So a keep-alive
//! connection idle between requests holds no ring buffer and no pooled one.
//!
//! Should the ring run dry (`ENOBUFS`: the kernel ended the receive with the bytes still in
//! the socket), one read goes the single way and the next receive arms again.

use std::cell::RefCell;

use monoio::buf_ring::{MultishotRecv, RingBuf};
use tracing::debug;

use super::{open_into, ClientError, Plain, TlsReader};
use crate::net::bufpool::BufPool;
use crate::net::ringrecv::{self, complete_record};
use crate::net::split::Half;
use crate::tls::record::{copy_in_pieces, Opener};
use crate::tls::{Control, RxEvent};

/// Filled ring buffers a connection may have waiting untaken while its request loop is busy
/// elsewhere (a backend answering): then the driver pauses the receive and the bytes wait in
/// the socket, as with single reads. As the tcp pump's limit.
const QUEUE_LIMIT: usize = 4;

/// The client socket's armed receive.
pub(super) struct ClientRing {
    rx: MultishotRecv,
    /// A ring buffer whose whole records did not fit the plaintext buffer yet.
    pub(super) rest: Option<RingBuf>,
}

impl ClientRing {
    pub(super) fn arm(half: &Half) -> Option<Box<ClientRing>> {
        monoio::buf_ring::available(ringrecv::GROUP)?;
        match half.recv_multishot(ringrecv::GROUP) {
            Ok(mut rx) => {
                rx.set_queue_limit(QUEUE_LIMIT);
                debug!("http: client records through a multishot receive");
                Some(Box::new(ClientRing { rx, rest: None }))
            }
            Err(e) => {
                debug!("http: multishot receive not armed ({e}); reading the single way");
                None
            }
        }
    }
}

impl TlsReader {
    /// Waits for the next ring buffer (holding no buffer meanwhile) and takes it in: the cut
    /// record's end into the pooled buffer, the rest kept for [`Self::open_rest`].
    pub(super) async fn read_ring(
        &mut self,
        client: &mut Half,
        pool: &BufPool,
    ) -> Result<(), ClientError> {
        // The pooled buffer keeps only a partial record, moved to its front.
        match self.cipher.take() {
            Some(mut c) if self.cstart < c.len() => {
                let len = c.len();
                c.space().copy_within(self.cstart..len, 0);
                c.set_filled(len - self.cstart);
                self.cipher = Some(c);
            }
            Some(c) => pool.put(c),
            None => {}
        }
        self.cstart = 0;
        let ring = self.ring.as_mut().expect("read_ring without a receive");
        debug_assert!(ring.rest.is_none());
        let mut rb = match ring.rx.next().await {
            Ok(rb) => rb,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The ring ran dry: the bytes are still in the socket. The next `next` arms
                // again (arming now, on an empty ring, would end at once).
                return self.read_single(client, pool).await;
            }
            Err(e) => return Err(ClientError::Io(e)),
        };
        if rb.is_empty() {
            self.finished = true;
            return Ok(());
        }
        if let Some(c) = self.cipher.as_mut() {
            let taken = complete_record(c, &rb);
            rb.advance(taken);
        }
        if !rb.is_empty() {
            ring.rest = Some(rb);
        }
        Ok(())
    }

    /// Opens the kept ring buffer's whole records in place (the pooled buffer holds nothing
    /// unopened), then moves a trailing partial record into a pooled buffer and gives the ring
    /// buffer back; it stays only when the plaintext buffer is full. `added` as [`open_into`].
    pub(super) fn open_rest(
        &mut self,
        added: usize,
        control: &RefCell<Control>,
        pool: &BufPool,
    ) -> Result<usize, ClientError> {
        let ring = self.ring.as_mut().expect("open_rest without a receive");
        let Some(mut rb) = ring.rest.take() else {
            return Ok(added);
        };
        let mut start = 0;
        let opened = open_into(
            &mut self.rx,
            &mut rb,
            &mut start,
            Plain {
                buf: &mut self.plain,
                start: &mut self.pstart,
                finished: &mut self.finished,
            },
            added,
            control,
            pool,
        );
        let added = match opened {
            Ok(n) => n,
            Err(e) => {
                self.drop_drained_plain(pool);
                return Err(e);
            }
        };
        rb.advance(start);
        if !self.finished && !rb.is_empty() {
            let whole = Opener::record_len(&rb).is_some_and(|l| l <= rb.len());
            if whole {
                ring.rest = Some(rb); // waits for the plaintext to be consumed
            } else {
                let mut c = match self.cipher.take() {
                    Some(mut c) => {
                        c.set_filled(0);
                        c
                    }
                    None => pool.get(),
                };
                copy_in_pieces(&mut c.space()[..rb.len()], &rb);
                c.set_filled(rb.len());
                self.cipher = Some(c);
                self.cstart = 0;
            }
        }
        self.drop_drained_plain(pool);
        Ok(added)
    }

    /// Before a tunnel takes over the socket (an upgrade): cancels the receive and opens what
    /// it took (a kept ring buffer, buffers that raced the cancel) into `leftover`, the
    /// plaintext the tunnel passes on first; a trailing partial record stays in `cipher`.
    pub(super) async fn disarm(
        &mut self,
        mut ring: ClientRing,
        leftover: &mut Vec<u8>,
        control: &RefCell<Control>,
        pool: &BufPool,
    ) {
        let mut taken: Vec<u8> = Vec::new();
        if let Some(c) = self.cipher.take() {
            taken.extend_from_slice(&c.filled()[self.cstart..]);
            pool.put(c);
        }
        self.cstart = 0;
        if let Some(rb) = ring.rest.take() {
            taken.extend_from_slice(&rb);
        }
        ring.rx.cancel();
        // Completions that raced the cancel come first, then ECANCELED (or EOF, or ENOBUFS:
        // the receive has ended and anything later is still in the socket).
        while let Ok(rb) = ring.rx.next().await {
            if rb.is_empty() {
                break;
            }
            taken.extend_from_slice(&rb);
        }
        drop(ring);
        let mut start = 0;
        while start < taken.len() && !self.finished {
            match self.rx.next(&mut taken[start..], control) {
                Ok(Some((n, RxEvent::Data(r)))) => {
                    leftover.extend_from_slice(&taken[start + r.start..start + r.end]);
                    start += n;
                }
                Ok(Some((n, RxEvent::Skip))) => start += n,
                Ok(Some((n, RxEvent::Closed))) => {
                    start += n;
                    self.finished = true;
                }
                // Not all there (kept for the tunnel), or broken (the tunnel fails on it).
                Ok(None) | Err(_) => break,
            }
        }
        let rest = &taken[start..];
        if !rest.is_empty() && !self.finished {
            let mut c = pool.get();
            let n = rest.len().min(c.capacity());
            c.space()[..n].copy_from_slice(&rest[..n]);
            c.set_filled(n);
            self.cipher = Some(c);
        }
    }
}
