// TERN PATCH: this whole file is tern's (vendor/monoio/TERN-PATCH.md, "multishot receive").
//! Multishot receive into provided-buffer rings, io_uring driver only.
//!
//! A runtime registers buffer groups ([`Runtime::register_buf_ring`] before it runs, e.g. on
//! a ring still disabled for io_uring restrictions, or [`register`] from inside it); a
//! socket's [`recv_multishot`](crate::net::TcpStream::recv_multishot) then keeps one receive
//! armed that holds no buffer until bytes arrive, and yields each filled buffer as an owned
//! [`RingBuf`] that goes back to the ring when dropped. On the epoll driver every entry point
//! here fails with [`io::ErrorKind::Unsupported`], so callers can fall back to plain reads.

use std::io;

pub use crate::driver::uring::{buf_ring::RingBuf, multishot::MultishotRecv};
use crate::{driver::CURRENT, IoUringDriver, Runtime};

/// The error every entry point returns where buffer rings do not exist (the epoll driver).
pub fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "multishot receive needs the io_uring driver",
    )
}

/// Whether `e` is [`unsupported`]'s error.
pub fn is_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
}

/// Drivers that can hold buffer rings.
pub trait BufRingDriver {
    /// Maps `entries` buffers of `buf_len` bytes (`entries` a power of two, at most 32768)
    /// and registers them as buffer group `group` (`IORING_REGISTER_PBUF_RING`, Linux 5.19).
    fn register_buf_ring(&self, group: u16, entries: u16, buf_len: usize) -> io::Result<()>;
}

impl BufRingDriver for IoUringDriver {
    fn register_buf_ring(&self, group: u16, entries: u16, buf_len: usize) -> io::Result<()> {
        IoUringDriver::register_buf_ring(self, group, entries, buf_len)
    }
}

impl<D: BufRingDriver> Runtime<D> {
    /// Registers a buffer group on this runtime's ring (see [`BufRingDriver`]). Works before
    /// the first `block_on`, also on a ring created disabled (`IORING_SETUP_R_DISABLED`), so
    /// it can happen before io_uring restrictions forbid registering anything.
    pub fn register_buf_ring(&self, group: u16, entries: u16, buf_len: usize) -> io::Result<()> {
        self.driver.register_buf_ring(group, entries, buf_len)
    }
}

/// [`Runtime::register_buf_ring`] from inside the running runtime.
pub fn register(group: u16, entries: u16, buf_len: usize) -> io::Result<()> {
    CURRENT.with(|inner| match inner {
        crate::driver::Inner::Uring(this) => {
            // SAFETY: single-threaded driver, no other borrow live during the call.
            let inner = unsafe { &mut *this.get() };
            inner.register_buf_ring(group, entries, buf_len)
        }
        #[allow(unreachable_patterns)]
        _ => Err(unsupported()),
    })
}

/// Buffers of `group` currently in the ring, free for the kernel (`None`: no such group on
/// this runtime, or not an io_uring runtime).
pub fn available(group: u16) -> Option<u16> {
    CURRENT.with(|inner| inner.buf_ring_available(group))
}
// END TERN PATCH
