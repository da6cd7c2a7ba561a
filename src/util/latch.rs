//! A one-way, single-threaded signal: set once, every waiter (now or later) sees it.
//! Used inside a worker to tell its accept loops to stop when the control thread asks to drain.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    pub fn set(&self) {
        self.set.set(true);
        for w in std::mem::take(&mut *self.waiters.borrow_mut()) {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_before_and_after_set_all_return() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let latch = Latch::default();
            let early = async {
                latch.wait().await;
                assert!(latch.is_set());
            };
            let setter = async {
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                latch.set();
            };
            monoio::join!(early, setter);
            latch.wait().await; // already set: returns at once
        });
    }
}
