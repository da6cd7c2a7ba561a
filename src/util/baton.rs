//! An awaitable, single-threaded exclusive hand-over of a value.
//!
//! The two directions of a proxied connection run as two futures in one task. Both may need to
//! write TLS records to the client socket (application data one way, alerts and key updates the
//! other), and writes to one socket must not interleave, so the socket's write half travels as a
//! baton: whoever holds it may write, across awaits. No atomics: a worker is one thread.

use std::cell::RefCell;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::task::{Poll, Waker};

pub struct Baton<T> {
    slot: RefCell<Option<T>>,
    waiters: RefCell<Vec<Waker>>,
}

/// The value while it is held; handed back (and waiters woken) on drop.
pub struct Held<'a, T> {
    baton: &'a Baton<T>,
    value: Option<T>,
}

impl<T> Baton<T> {
    pub fn new(value: T) -> Self {
        Baton {
            slot: RefCell::new(Some(value)),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// The value back, once nobody holds it (`None` if a holder still has it).
    pub fn into_inner(self) -> Option<T> {
        self.slot.into_inner()
    }

    /// Waits until the value is free and takes it.
    pub async fn take(&self) -> Held<'_, T> {
        let value = poll_fn(|cx| {
            if let Some(v) = self.slot.borrow_mut().take() {
                return Poll::Ready(v);
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        Held {
            baton: self,
            value: Some(value),
        }
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Invariant: `value` is Some from construction until drop.
        self.value.as_ref().expect("held value present until drop")
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Invariant: `value` is Some from construction until drop.
        self.value.as_mut().expect("held value present until drop")
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        *self.baton.slot.borrow_mut() = self.value.take();
        let waiters = std::mem::take(&mut *self.baton.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn second_taker_waits_for_the_first() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let baton = Baton::new(0u32);
            let order = RefCell::new(Vec::new());
            let inside = Cell::new(false);
            let a = async {
                let mut h = baton.take().await;
                inside.set(true);
                order.borrow_mut().push("a-in");
                monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                *h += 1;
                inside.set(false);
                order.borrow_mut().push("a-out");
            };
            let b = async {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                let mut h = baton.take().await;
                assert!(!inside.get(), "b got the baton while a held it");
                order.borrow_mut().push("b-in");
                *h += 1;
            };
            monoio::join!(a, b);
            assert_eq!(*order.borrow(), vec!["a-in", "a-out", "b-in"]);
            assert_eq!(*baton.take().await, 2);
        });
    }
}
