// TERN PATCH: this whole file is tern's (vendor/monoio/TERN-PATCH.md, "multishot receive").
//! Multishot receive (`IORING_OP_RECV` with `IORING_RECV_MULTISHOT`, Linux 6.0) into a
//! provided-buffer ring: one submission keeps delivering completions, each naming the ring
//! buffer the kernel filled, while `IORING_CQE_F_MORE` is set.
//!
//! The op's slab slot holds a queue of completions instead of one result (`MultiState`); the
//! slot lives until the completion without `F_MORE`, whoever owns it by then.

use std::{
    cell::UnsafeCell,
    collections::VecDeque,
    future::poll_fn,
    io,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use io_uring::{cqueue, opcode, types};

use super::{buf_ring::BufRing, buf_ring::RingBuf, lifecycle::Lifecycle, UringInner};
use crate::driver::shared_fd::SharedFd;

/// The slab state of an armed multishot op.
pub(crate) struct MultiState {
    queue: VecDeque<(io::Result<u32>, u32)>,
    waker: Option<Waker>,
    ended: bool,
    /// Completions allowed to wait before the driver cancels the receive (a pause).
    limit: usize,
    /// The driver cancelled it for reaching `limit`.
    paused: bool,
}

impl MultiState {
    fn new(limit: usize) -> Self {
        MultiState {
            queue: VecDeque::new(),
            waker: None,
            ended: false,
            limit,
            paused: false,
        }
    }

    /// Queues a completion; `true` asks the driver to cancel the receive (see
    /// [`MultishotRecv::set_queue_limit`]).
    pub(crate) fn push(&mut self, result: io::Result<u32>, flags: u32) -> bool {
        if !cqueue::more(flags) {
            self.ended = true;
        }
        self.queue.push_back((result, flags));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        if !self.ended && !self.paused && self.queue.len() >= self.limit {
            self.paused = true;
            return true;
        }
        false
    }
}

/// How the stream stands between completions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No op in the kernel: the next poll arms one.
    Idle,
    /// Armed at this slab index.
    Armed(usize),
    /// End of file was delivered: every later poll says so again.
    Eof,
    /// Cancelled and drained: every later poll says so.
    Cancelled,
}

/// A multishot receive on one socket into one buffer group (see
/// [`TcpStream::recv_multishot`](crate::net::TcpStream::recv_multishot)).
///
/// [`next`](Self::next) yields, in order:
/// - `Ok(buf)` with bytes: a ring buffer the kernel filled; dropping it returns it to the ring;
/// - `Ok(buf)` empty: end of file (and again on every later call);
/// - `Err(ENOBUFS)`: every buffer of the group was in use when bytes arrived, so the kernel
///   ended the receive; nothing was lost (the bytes stay in the socket). The next call arms
///   again, so give buffers back first;
/// - `Err(ECANCELED)`: after [`cancel`](Self::cancel), once every completion that raced the
///   cancel was delivered (and again on every later call);
/// - other errors: the socket's; the next call arms again.
///
/// When the kernel ends the receive for any other reason (a completion without `F_MORE`), the
/// next call re-arms it, so the stream never stalls. Dropping the stream gives queued
/// buffers back and cancels the receive; its bytes not yet taken are lost, as with any read
/// that is dropped.
pub struct MultishotRecv {
    driver: Rc<UnsafeCell<UringInner>>,
    fd: SharedFd,
    ring: Rc<BufRing>,
    state: State,
    cancel_sent: bool,
    cancelled: bool,
    arms: u64,
    limit: usize,
}

impl MultishotRecv {
    pub(crate) fn new(
        driver: Rc<UnsafeCell<UringInner>>,
        fd: SharedFd,
        group: u16,
    ) -> io::Result<Self> {
        // SAFETY: single-threaded driver; no other borrow of it is live during this call.
        let inner = unsafe { &mut *driver.get() };
        let ring = inner.buf_ring(group).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no buffer ring registered for group {group}"),
            )
        })?;
        let mut this = MultishotRecv {
            driver,
            fd,
            ring,
            state: State::Idle,
            cancel_sent: false,
            cancelled: false,
            arms: 0,
            limit: usize::MAX,
        };
        this.arm()?;
        Ok(this)
    }

    fn inner(&self) -> &mut UringInner {
        // SAFETY: single-threaded driver; callers hold no other borrow of it.
        unsafe { &mut *self.driver.get() }
    }

    fn arm(&mut self) -> io::Result<()> {
        debug_assert_eq!(self.state, State::Idle);
        let group = self.ring.group();
        let fd = self.fd.raw_fd();
        let limit = self.limit;
        let inner = self.inner();
        if inner.uring.submission().is_full() {
            inner.submit()?;
        }
        let index = inner
            .ops
            .slab
            .insert(Lifecycle::Multi(Box::new(MultiState::new(limit))));
        let sqe = opcode::RecvMulti::new(types::Fd(fd), group)
            .build()
            .user_data(index as _);
        // SAFETY: the entry points at no memory of ours: the kernel picks ring buffers, which
        // live as long as the ring (held by this stream and the driver).
        if unsafe { inner.uring.submission().push(&sqe) }.is_err() {
            inner.ops.slab.remove(index);
            return Err(io::Error::other("submission queue full"));
        }
        self.state = State::Armed(index);
        self.arms += 1;
        Ok(())
    }

    /// Asks the kernel to end the receive. Completions that raced the cancel are still
    /// delivered by `next`, then `Err(ECANCELED)`; no bytes the kernel already put in a
    /// buffer are lost.
    pub fn cancel(&mut self) {
        self.cancelled = true;
        if let State::Armed(index) = self.state {
            if !self.cancel_sent {
                self.cancel_sent = true;
                // SAFETY: index is this stream's live slot.
                unsafe { UringInner::cancel_op(&self.driver, index) };
            }
        }
    }

    /// Bounds the ring buffers this stream can hold without being read: once `limit`
    /// completions wait untaken (its owner is busy elsewhere, say writing to a slow peer), the
    /// driver cancels the receive, and the next `next` after the queued ones arms it again.
    /// Transparent to `next` (no `ECANCELED`); bytes not yet received stay in the socket, so
    /// one slow connection cannot take every buffer of the group. Default: no limit.
    pub fn set_queue_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
        if let State::Armed(index) = self.state {
            // SAFETY: an armed slot stays in the slab until this stream removes it.
            let mut slot = unsafe { self.inner().ops.slab.get(index).unwrap_unchecked() };
            if let Lifecycle::Multi(multi) = &mut *slot {
                multi.limit = self.limit;
            }
        }
    }

    /// How many receives this stream submitted: 1 plus one per re-arm after the kernel ended
    /// one (`ENOBUFS`, an error, or an end without `F_MORE`).
    pub fn arms(&self) -> u64 {
        self.arms
    }

    /// Completions that arrived and wait to be taken by `next`.
    pub fn queued(&self) -> usize {
        let State::Armed(index) = self.state else {
            return 0;
        };
        // SAFETY: an armed slot stays in the slab until this stream removes it.
        let slot = unsafe { self.inner().ops.slab.get(index).unwrap_unchecked() };
        match &*slot {
            Lifecycle::Multi(multi) => multi.queue.len(),
            _ => 0,
        }
    }

    /// Buffers of this stream's group currently in the ring, free for the kernel.
    pub fn available(&self) -> u16 {
        self.ring.available()
    }

    /// The next completion (see the type's documentation).
    pub async fn next(&mut self) -> io::Result<RingBuf> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Poll form of [`next`](Self::next).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<RingBuf>> {
        loop {
            let index = match self.state {
                State::Eof => return Poll::Ready(Ok(RingBuf::eof())),
                State::Cancelled => return Poll::Ready(Err(cancelled())),
                State::Idle if self.cancelled => {
                    self.state = State::Cancelled;
                    continue;
                }
                State::Idle => {
                    if let Err(e) = self.arm() {
                        return Poll::Ready(Err(e));
                    }
                    continue;
                }
                State::Armed(index) => index,
            };
            let ring = self.ring.clone();
            let inner = self.inner();
            // SAFETY: an armed slot stays in the slab until this stream removes it.
            let mut slot = unsafe { inner.ops.slab.get(index).unwrap_unchecked() };
            let Lifecycle::Multi(multi) = &mut *slot else {
                unreachable!("multishot slot in another state")
            };
            let next = multi.queue.pop_front();
            let drained = multi.ended && multi.queue.is_empty();
            let paused = multi.paused;
            if next.is_none() && !drained {
                match &multi.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => multi.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            if drained {
                slot.remove();
                self.state = State::Idle;
                self.cancel_sent = false;
            }
            let Some((result, flags)) = next else {
                // Ended by a completion already delivered: arm again (or report the cancel).
                continue;
            };
            let out = match result {
                Ok(0) => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        ring.recycle_filled(bid);
                    }
                    self.end_with(State::Eof);
                    Ok(RingBuf::eof())
                }
                Ok(n) => match cqueue::buffer_select(flags) {
                    Some(bid) => Ok(RingBuf::filled(ring, bid, n as usize)),
                    None => Err(io::Error::other("multishot completion without a buffer")),
                },
                // The driver's pause (queue limit), not the owner's cancel: arm again.
                Err(e)
                    if e.raw_os_error() == Some(libc::ECANCELED) && paused && !self.cancelled =>
                {
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                    self.end_with(State::Cancelled);
                    Err(e)
                }
                Err(e) => Err(e),
            };
            return Poll::Ready(out);
        }
    }

    /// A sticky end (EOF, cancelled). Both come on a completion without `F_MORE`, so the slot
    /// is normally gone already; were it not, it is left to the driver to drain.
    fn end_with(&mut self, end: State) {
        self.release_slot();
        self.state = end;
    }

    /// Leaves an armed slot to the driver: queued buffers go back to the ring, later
    /// completions too, and the final one frees the slot.
    fn release_slot(&mut self) {
        let State::Armed(index) = self.state else {
            return;
        };
        self.state = State::Idle;
        let ring = self.ring.clone();
        let keep = Box::new(self.fd.clone());
        let cancel_sent = self.cancel_sent;
        let inner = self.inner();
        // SAFETY: an armed slot stays in the slab until this stream removes it.
        let mut slot = unsafe { inner.ops.slab.get(index).unwrap_unchecked() };
        let Lifecycle::Multi(multi) = &mut *slot else {
            unreachable!("multishot slot in another state")
        };
        for (_, flags) in multi.queue.drain(..) {
            if let Some(bid) = cqueue::buffer_select(flags) {
                ring.recycle_filled(bid);
            }
        }
        if multi.ended {
            slot.remove();
            return;
        }
        *slot = Lifecycle::IgnoredMulti(Box::new((ring, keep)));
        drop(slot);
        if !cancel_sent {
            // SAFETY: index is the slot just handed to the driver, still live.
            unsafe { UringInner::cancel_op(&self.driver, index) };
        }
    }
}

impl Drop for MultishotRecv {
    fn drop(&mut self) {
        self.release_slot();
    }
}

fn cancelled() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}
// END TERN PATCH
