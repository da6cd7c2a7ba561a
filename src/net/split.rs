//! Read and write halves of one socket, for the two directions of a connection running as two
//! futures in one task.
//!
//! monoio has `into_split`, but its write half shuts the socket down (FIN) when dropped; a proxy
//! must choose how each side closes — FIN after a clean end, RST to carry a reset through — so
//! these halves do nothing on drop. The socket closes when the last half goes.

use std::cell::UnsafeCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent};
use monoio::BufResult;

use super::stream::Stream;

pub struct Half(Rc<UnsafeCell<Stream>>);

/// The halves of a client's TCP socket or a backend's TCP or Unix one.
pub fn split(stream: impl Into<Stream>) -> (Half, Half) {
    let shared = Rc::new(UnsafeCell::new(stream.into()));
    (Half(shared.clone()), Half(shared))
}

impl Half {
    fn stream(&mut self) -> &mut Stream {
        // SAFETY: one half only reads and the other only writes. monoio's TcpStream and
        // UnixStream read and write each just clone the descriptor into an independent kernel
        // operation (the contract behind their `Split` marker, which both implement), so the
        // two `&mut` never touch the same state; and a worker is single-threaded.
        unsafe { &mut *self.0.get() }
    }

    pub fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> + '_ {
        self.stream().read(buf)
    }

    /// A read that `handle`'s canceller can call off; a cancelled read returns
    /// [`is_cancelled`] errors (any bytes that raced the cancel are still returned).
    pub fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        handle: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> + '_ {
        self.stream().cancelable_read(buf, handle)
    }

    /// Arms a multishot receive into buffer group `group` of this worker's ring (io_uring
    /// only; `Unsupported` on epoll): see `monoio::buf_ring`.
    pub fn recv_multishot(&self, group: u16) -> io::Result<monoio::buf_ring::MultishotRecv> {
        // SAFETY: a shared borrow to arm an operation that clones the descriptor, as a read.
        unsafe { &*self.0.get() }.recv_multishot(group)
    }

    /// Waits until the socket has something to read (data, EOF or an error), holding no buffer.
    pub async fn readable(&mut self) -> io::Result<()> {
        self.stream().readable(false).await
    }

    pub fn write_all<T: IoBuf + 'static>(
        &mut self,
        buf: T,
    ) -> impl Future<Output = BufResult<usize, T>> + '_ {
        self.stream().write_all(buf)
    }

    /// Sends FIN: nothing more will be written.
    pub fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on our own open socket.
        match unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Arms SO_LINGER with a zero timeout so that closing sends RST instead of FIN: how a
    /// reset on one side is carried through to the other. A Unix socket (a `unix:` backend)
    /// takes the option and has no reset to send: it just closes.
    pub fn reset_on_close(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on our own open socket with a plain struct value.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    fn fd(&self) -> RawFd {
        // SAFETY: a shared read of the descriptor number only.
        unsafe { (*self.0.get()).as_raw_fd() }
    }

    /// Another handle on the same socket, to keep it open (and set how it closes) after the
    /// futures owning the halves are gone.
    pub fn keep(&self) -> Half {
        Half(self.0.clone())
    }

    /// The socket back from its last handle (`None` while another handle exists).
    pub fn into_stream(self) -> Option<Stream> {
        Rc::try_unwrap(self.0).ok().map(UnsafeCell::into_inner)
    }
}

/// Whether a read error only says the read was called off.
pub fn is_cancelled(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECANCELED) | Some(libc::EINTR))
}

#[cfg(test)]
mod tests {
    /// Each socket half shares one allocation holding the stream for the connection's life:
    /// a descriptor, not cached addresses (vendor/monoio/TERN-PATCH.md, sixth change: 80
    /// bytes a TCP stream while it cached them).
    #[test]
    fn a_stream_half_is_small() {
        let stream = std::mem::size_of::<super::Stream>();
        assert!(stream <= 24, "a stream is {stream} bytes");
    }
}
