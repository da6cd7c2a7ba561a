//! Handshake admission: how many TLS handshakes one worker runs at once.
//!
//! A full handshake costs the server a key exchange and a signature (a few hundred µs of CPU
//! here); an established connection costs a few µs per request. A worker is one thread, so
//! every handshake whose crypto is ready to run stands in the same run queue as the requests
//! of established connections: with thousands of handshakes in flight a request waits behind
//! all of them. Bounding the handshakes in flight bounds that wait, and the CPU the worker
//! has promised to new connections.
//!
//! - A handshake asks for a slot once its ClientHello is all here (reading it costs nothing)
//!   and before its first crypto (`Accepting::step` with the hello); it holds the slot until
//!   the handshake ends, however it ends.
//! - Full handshakes get at most `full` slots; resumptions, which are cheaper, may use up to
//!   `total` (= 2 × full) slots with the full ones, and a waiting resumption is admitted
//!   before any waiting full handshake.
//! - The accept loop stops accepting while `waiting + in flight` reaches `total`, and resumes
//!   when a handshake ends: past that, new connections wait in the kernel's accept queue
//!   (and its SYN backlog) instead of in tern, where their clients' own timers keep running
//!   and nothing of the worker is spent on them.
//!
//! Single-threaded (one per worker): `Cell`s and wakers, no atomics but the stats counters.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::stats::WorkerStats;

/// What a handshake will cost, as its ClientHello says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No resumption offered (or not a ClientHello we could read): key exchange and signature.
    Full = 0,
    /// A TLS 1.3 PSK or a TLS 1.2 ticket is offered: no signature.
    Resumption = 1,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Full, Kind::Resumption];

    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Resumption => "resumption",
        }
    }
}

/// A place in the queue.
struct Ticket {
    kind: Kind,
    /// A slot was handed to this ticket (and counted in flight).
    granted: Cell<bool>,
    /// Its waiter went away before it was granted; skipped when granting.
    cancelled: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// One worker's admission state.
pub struct Admission {
    /// Full handshakes in flight at most (`usize::MAX`: unbounded).
    full_limit: usize,
    /// Handshakes of either kind in flight at most; also the accept loop's bound on
    /// `waiting + in flight`.
    total_limit: usize,
    full: Cell<usize>,
    total: Cell<usize>,
    queues: [RefCell<VecDeque<Rc<Ticket>>>; 2],
    /// Live (not cancelled, not granted) tickets, by kind.
    waiting: [Cell<usize>; 2],
    accept_waiters: RefCell<Vec<Waker>>,
    stats: Arc<WorkerStats>,
}

/// A slot: held by a handshake until it ends.
pub struct Permit {
    admission: Rc<Admission>,
    kind: Kind,
}

impl Admission {
    /// `max_full`: full handshakes in flight at most; 0 for no bound. Resumptions may use
    /// twice as many slots in all.
    pub fn new(max_full: usize, stats: Arc<WorkerStats>) -> Rc<Admission> {
        let (full_limit, total_limit) = match max_full {
            0 => (usize::MAX, usize::MAX),
            n => (n, n.saturating_mul(2)),
        };
        let a = &stats.admission;
        a.limit_full
            .set(if max_full == 0 { 0 } else { full_limit as u64 });
        a.limit_total
            .set(if max_full == 0 { 0 } else { total_limit as u64 });
        Rc::new(Admission {
            full_limit,
            total_limit,
            full: Cell::new(0),
            total: Cell::new(0),
            queues: Default::default(),
            waiting: Default::default(),
            accept_waiters: RefCell::new(Vec::new()),
            stats,
        })
    }

    /// Handshakes in flight now (holding a permit).
    pub fn in_flight(&self) -> usize {
        self.total.get()
    }

    /// Handshakes waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting[0].get() + self.waiting[1].get()
    }

    fn fits(&self, kind: Kind) -> bool {
        self.total.get() < self.total_limit
            && (kind == Kind::Resumption || self.full.get() < self.full_limit)
    }

    /// Whether the accept loop may take another connection.
    pub fn has_room(&self) -> bool {
        self.waiting().saturating_add(self.total.get()) < self.total_limit
    }

    /// Waits until the accept loop may take another connection.
    pub async fn room(&self) {
        poll_fn(|cx| {
            if self.has_room() {
                return Poll::Ready(());
            }
            let mut w = self.accept_waiters.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    fn wake_accept(&self) {
        if self.has_room() {
            for w in std::mem::take(&mut *self.accept_waiters.borrow_mut()) {
                w.wake();
            }
        }
    }

    /// Counts a slot taken (the caller makes it a [`Permit`], which gives it back).
    fn count_taken(&self, kind: Kind) {
        if kind == Kind::Full {
            self.full.set(self.full.get() + 1);
        }
        let total = self.total.get() + 1;
        self.total.set(total);
        let s = &self.stats.admission;
        s.admitted[kind as usize].inc();
        s.in_flight.set(total as u64);
        if total as u64 > s.in_flight_max.get() {
            s.in_flight_max.set(total as u64);
        }
    }

    fn take(self: &Rc<Self>, kind: Kind) -> Permit {
        self.count_taken(kind);
        Permit {
            admission: self.clone(),
            kind,
        }
    }

    fn set_waiting_gauge(&self) {
        self.stats.admission.waiting.set(self.waiting() as u64);
    }

    /// A slot for a handshake of `kind`: at once when one is free and nobody of its kind
    /// waits, else in turn (resumptions first).
    pub fn admit(self: &Rc<Self>, kind: Kind) -> Admit {
        if self.waiting[kind as usize].get() == 0 && self.fits(kind) {
            return Admit {
                admission: self.clone(),
                state: AdmitState::Ready(Some(self.take(kind))),
            };
        }
        let ticket = Rc::new(Ticket {
            kind,
            granted: Cell::new(false),
            cancelled: Cell::new(false),
            waker: RefCell::new(None),
        });
        self.queues[kind as usize]
            .borrow_mut()
            .push_back(ticket.clone());
        let w = &self.waiting[kind as usize];
        w.set(w.get() + 1);
        self.stats.admission.queued[kind as usize].inc();
        self.set_waiting_gauge();
        Admit {
            admission: self.clone(),
            state: AdmitState::Queued(ticket),
        }
    }

    /// Hands free slots to waiting tickets: resumptions first, then full handshakes, each
    /// in arrival order.
    fn dispatch(self: &Rc<Self>) {
        'grant: loop {
            for kind in [Kind::Resumption, Kind::Full] {
                if !self.fits(kind) {
                    continue;
                }
                let next = {
                    let mut q = self.queues[kind as usize].borrow_mut();
                    loop {
                        match q.pop_front() {
                            Some(t) if t.cancelled.get() => continue,
                            other => break other,
                        }
                    }
                };
                if let Some(t) = next {
                    let w = &self.waiting[kind as usize];
                    w.set(w.get() - 1);
                    // Counted in flight now; the waiter turns it into its permit.
                    self.count_taken(kind);
                    t.granted.set(true);
                    if let Some(waker) = t.waker.borrow_mut().take() {
                        waker.wake();
                    }
                    continue 'grant;
                }
            }
            break;
        }
        self.set_waiting_gauge();
    }

    fn release(self: &Rc<Self>, kind: Kind) {
        if kind == Kind::Full {
            self.full.set(self.full.get() - 1);
        }
        self.total.set(self.total.get() - 1);
        self.stats.admission.in_flight.set(self.total.get() as u64);
        self.dispatch();
        self.wake_accept();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.kind);
    }
}

enum AdmitState {
    Ready(Option<Permit>),
    Queued(Rc<Ticket>),
    Done,
}

/// The wait for a slot. Dropped before it is granted (the handshake timed out), it leaves the
/// queue; dropped after, it gives the slot back.
pub struct Admit {
    admission: Rc<Admission>,
    state: AdmitState,
}

impl Admit {
    /// Whether the slot is not free yet (awaiting would wait).
    pub fn must_wait(&self) -> bool {
        matches!(&self.state, AdmitState::Queued(t) if !t.granted.get())
    }
}

impl Future for Admit {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = &mut *self;
        match &mut this.state {
            AdmitState::Ready(p) => {
                // Invariant: Ready holds its permit until this first and only Ready poll.
                let permit = p.take().expect("permit present until returned");
                this.state = AdmitState::Done;
                Poll::Ready(permit)
            }
            AdmitState::Queued(t) if t.granted.get() => {
                let kind = t.kind;
                this.state = AdmitState::Done;
                // The slot was counted when it was granted.
                Poll::Ready(Permit {
                    admission: this.admission.clone(),
                    kind,
                })
            }
            AdmitState::Queued(t) => {
                *t.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            AdmitState::Done => Poll::Pending,
        }
    }
}

impl Drop for Admit {
    fn drop(&mut self) {
        if let AdmitState::Queued(t) = &self.state {
            if t.granted.get() {
                // Granted but never collected: give the slot back.
                drop(Permit {
                    admission: self.admission.clone(),
                    kind: t.kind,
                });
            } else {
                t.cancelled.set(true);
                let w = &self.admission.waiting[t.kind as usize];
                w.set(w.get() - 1);
                self.admission.set_waiting_gauge();
                self.admission.wake_accept();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    fn is_ready<F: Future>(f: Pin<&mut F>) -> Option<F::Output> {
        let waker = futures_util::task::noop_waker();
        match f.poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[test]
    fn full_handshakes_never_exceed_their_bound() {
        let stats = Arc::new(WorkerStats::default());
        let a = Admission::new(2, stats.clone());
        let p1 = is_ready(std::pin::pin!(a.admit(Kind::Full))).unwrap();
        let p2 = is_ready(std::pin::pin!(a.admit(Kind::Full))).unwrap();
        let mut w3 = Box::pin(a.admit(Kind::Full));
        let mut w4 = Box::pin(a.admit(Kind::Full));
        assert!(is_ready(w3.as_mut()).is_none());
        assert!(is_ready(w4.as_mut()).is_none());
        assert_eq!((a.in_flight(), a.waiting()), (2, 2));
        assert!(
            !a.has_room(),
            "2 in flight + 2 waiting = the accept bound of 4"
        );
        drop(p1);
        assert_eq!((a.in_flight(), a.waiting()), (2, 1), "handed on at once");
        assert!(a.has_room());
        let p3 = is_ready(w3.as_mut()).expect("the first in line got it");
        assert!(is_ready(w4.as_mut()).is_none());
        drop((p2, p3));
        let p4 = is_ready(w4.as_mut()).unwrap();
        drop(p4);
        let s = &stats.admission;
        assert_eq!(s.in_flight.get(), 0);
        assert_eq!(s.in_flight_max.get(), 2);
        assert_eq!(s.admitted[0].get(), 4);
        assert_eq!(s.queued[0].get(), 2);
        assert_eq!((s.limit_full.get(), s.limit_total.get()), (2, 4));
    }

    #[test]
    fn resumptions_go_first_and_have_their_own_room() {
        let stats = Arc::new(WorkerStats::default());
        let a = Admission::new(1, stats.clone());
        let full = is_ready(std::pin::pin!(a.admit(Kind::Full))).unwrap();
        let mut waiting_full = Box::pin(a.admit(Kind::Full));
        assert!(is_ready(waiting_full.as_mut()).is_none());
        // The full slot is taken, but a resumption fits in the total of 2.
        let r1 = is_ready(std::pin::pin!(a.admit(Kind::Resumption))).expect("own room");
        let mut r2 = Box::pin(a.admit(Kind::Resumption));
        assert!(is_ready(r2.as_mut()).is_none(), "total of 2 reached");
        drop(full);
        // The freed slot goes to the waiting resumption, not the full handshake before it.
        let r2 = is_ready(r2.as_mut()).expect("resumption first");
        assert!(is_ready(waiting_full.as_mut()).is_none());
        drop(r1);
        let f2 = is_ready(waiting_full.as_mut()).expect("then the full one");
        drop((r2, f2));
        assert_eq!(stats.admission.in_flight_max.get(), 2);
        assert_eq!(stats.admission.queued[Kind::Resumption as usize].get(), 1);
    }

    #[test]
    fn a_waiter_that_goes_away_leaves_the_queue_and_its_slot() {
        let stats = Arc::new(WorkerStats::default());
        let a = Admission::new(1, stats.clone());
        let p = is_ready(std::pin::pin!(a.admit(Kind::Full))).unwrap();
        let mut gone = Box::pin(a.admit(Kind::Full));
        assert!(is_ready(gone.as_mut()).is_none());
        let mut next = Box::pin(a.admit(Kind::Full));
        assert!(is_ready(next.as_mut()).is_none());
        drop(gone); // timed out while waiting
        assert_eq!(a.waiting(), 1);
        drop(p);
        let p2 = is_ready(next.as_mut()).expect("skips the cancelled ticket");
        // Granted but dropped before it was collected: the slot comes back.
        let mut granted = Box::pin(a.admit(Kind::Full));
        assert!(is_ready(granted.as_mut()).is_none());
        drop(p2);
        assert_eq!(a.in_flight(), 1, "granted to the waiter");
        drop(granted);
        assert_eq!((a.in_flight(), a.waiting()), (0, 0));
        assert_eq!(stats.admission.waiting.get(), 0);
    }

    #[test]
    fn unbounded_admits_everything_and_still_counts() {
        let stats = Arc::new(WorkerStats::default());
        let a = Admission::new(0, stats.clone());
        let permits: Vec<Permit> = (0..1000)
            .map(|_| is_ready(std::pin::pin!(a.admit(Kind::Full))).unwrap())
            .collect();
        assert!(a.has_room());
        assert_eq!(stats.admission.in_flight_max.get(), 1000);
        assert_eq!(stats.admission.limit_full.get(), 0);
        drop(permits);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn the_accept_loop_wakes_when_a_handshake_ends() {
        rt().block_on(async {
            let stats = Arc::new(WorkerStats::default());
            let a = Admission::new(1, stats);
            let p1 = a.admit(Kind::Full).await;
            let waiting = a.admit(Kind::Full);
            let woke = Rc::new(Cell::new(false));
            let accept = {
                let a = a.clone();
                let woke = woke.clone();
                monoio::spawn(async move {
                    a.room().await;
                    woke.set(true);
                })
            };
            let mut waiting = Box::pin(waiting);
            assert!(is_ready(waiting.as_mut()).is_none());
            monoio::time::sleep(Duration::from_millis(5)).await;
            assert!(!woke.get(), "1 in flight + 1 waiting: no room");
            drop(p1);
            accept.await;
            assert!(woke.get());
            let p2 = waiting.await;
            drop(p2);
        });
    }
}
