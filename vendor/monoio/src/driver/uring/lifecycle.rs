//! Uring state lifecycle.
//! Partly borrow from tokio-uring.

use std::{
    io,
    task::{Context, Poll, Waker},
};

use crate::{driver::op::CompletionMeta, utils::slab::Ref};

pub(crate) enum Lifecycle {
    /// The operation has been submitted to uring and is currently in-flight
    Submitted,

    /// The submitter is waiting for the completion of the operation
    Waiting(Waker),

    /// The submitter no longer has interest in the operation result. The state
    /// must be passed to the driver and held until the operation completes.
    #[allow(dead_code)]
    Ignored(Box<dyn std::any::Any>),

    /// The operation has completed.
    Completed(io::Result<u32>, u32),

    // TERN PATCH: multishot operations (vendor/monoio/TERN-PATCH.md, "multishot receive").
    /// A multishot operation: one submission, many completions, queued in arrival order until
    /// the owner takes them (boxed, so that every other slot stays as small as upstream's).
    Multi(Box<super::multishot::MultiState>),

    /// A multishot operation whose owner went away before its last completion. Completions
    /// still arriving give their buffers straight back to the ring; the last one frees the
    /// slot. The box also holds what the kernel may still use (the descriptor).
    IgnoredMulti(Box<(std::rc::Rc<super::buf_ring::BufRing>, Box<dyn std::any::Any>)>),
    // END TERN PATCH
}

impl<'a> Ref<'a, Lifecycle> {
    // TERN PATCH: returns whether the (multishot) operation asks to be cancelled.
    pub(crate) fn complete(mut self, result: io::Result<u32>, flags: u32) -> bool {
        // END TERN PATCH
        let ref_mut = &mut *self;
        match ref_mut {
            Lifecycle::Submitted => {
                *ref_mut = Lifecycle::Completed(result, flags);
            }
            Lifecycle::Waiting(_) => {
                let old = std::mem::replace(ref_mut, Lifecycle::Completed(result, flags));
                match old {
                    Lifecycle::Waiting(waker) => {
                        waker.wake();
                    }
                    _ => unsafe { std::hint::unreachable_unchecked() },
                }
            }
            Lifecycle::Ignored(..) => {
                self.remove();
            }
            Lifecycle::Completed(..) => unsafe { std::hint::unreachable_unchecked() },
            // TERN PATCH: multishot completions queue up; an abandoned one recycles its buffer.
            Lifecycle::Multi(state) => return state.push(result, flags),
            Lifecycle::IgnoredMulti(ignored) => {
                if let Some(bid) = io_uring::cqueue::buffer_select(flags) {
                    ignored.0.recycle_filled(bid);
                }
                if !io_uring::cqueue::more(flags) {
                    self.remove();
                }
            }
            // END TERN PATCH
        }
        // TERN PATCH
        false
        // END TERN PATCH
    }

    #[allow(clippy::needless_pass_by_ref_mut)]
    pub(crate) fn poll_op(mut self, cx: &mut Context<'_>) -> Poll<CompletionMeta> {
        let ref_mut = &mut *self;
        match ref_mut {
            Lifecycle::Submitted => {
                *ref_mut = Lifecycle::Waiting(cx.waker().clone());
                return Poll::Pending;
            }
            Lifecycle::Waiting(waker) => {
                if !waker.will_wake(cx.waker()) {
                    *ref_mut = Lifecycle::Waiting(cx.waker().clone());
                }
                return Poll::Pending;
            }
            _ => {}
        }

        match self.remove() {
            Lifecycle::Completed(result, flags) => Poll::Ready(CompletionMeta { result, flags }),
            _ => unsafe { std::hint::unreachable_unchecked() },
        }
    }

    // return if the op must has been finished
    pub(crate) fn drop_op<T: 'static>(mut self, data: &mut Option<T>) -> bool {
        let ref_mut = &mut *self;
        match ref_mut {
            Lifecycle::Submitted | Lifecycle::Waiting(_) => {
                if let Some(data) = data.take() {
                    *ref_mut = Lifecycle::Ignored(Box::new(data));
                } else {
                    *ref_mut = Lifecycle::Ignored(Box::new(())); // () is a ZST, so it does not
                                                                 // allocate
                };
                return false;
            }
            Lifecycle::Completed(..) => {
                self.remove();
            }
            Lifecycle::Ignored(..) => unsafe { std::hint::unreachable_unchecked() },
            // TERN PATCH: multishot slots are never owned by an `Op`.
            Lifecycle::Multi(..) | Lifecycle::IgnoredMulti(..) => unreachable!(),
            // END TERN PATCH
        }
        true
    }
}
