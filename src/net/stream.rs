//! One connected stream socket, TCP or Unix: what the connection loops read and write. Clients
//! are always TCP; a backend is either (`--backend unix:/run/app.sock` skips a loopback TCP
//! hop). An enum rather than making every loop generic: both kinds are monoio's thin wrappers
//! around a descriptor submitting the same operations, so each call is one `match` and no
//! allocation, and the futures the loops hold keep one type whichever kind lies beneath.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use futures_util::future::Either;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

/// The same call on whichever stream it is, as one future type.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            Stream::Tcp($s) => Either::Left($call),
            Stream::Unix($s) => Either::Right($call),
        }
    };
}

impl Stream {
    /// Waits until there is something to read (data, EOF or an error), holding no buffer.
    pub fn readable(&self, relaxed: bool) -> impl Future<Output = io::Result<()>> + '_ {
        either!(self, s => s.readable(relaxed))
    }

    /// Arms a multishot receive into buffer group `group` of this worker's ring (io_uring
    /// only; `Unsupported` on epoll): see `monoio::buf_ring` and `net::ringrecv`.
    pub fn recv_multishot(&self, group: u16) -> io::Result<monoio::buf_ring::MultishotRecv> {
        match self {
            Stream::Tcp(s) => s.recv_multishot(group),
            Stream::Unix(s) => s.recv_multishot(group),
        }
    }

    /// Turns Nagle off (TCP only: a Unix socket has no such delay to switch off).
    pub fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncReadRent for Stream {
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.read(buf))
    }

    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.readv(buf))
    }
}

impl CancelableAsyncReadRent for Stream {
    fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.cancelable_read(buf, c))
    }

    fn cancelable_readv<T: IoVecBufMut>(
        &mut self,
        buf: T,
        c: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.cancelable_readv(buf, c))
    }
}

impl AsyncWriteRent for Stream {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.write(buf))
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        either!(self, s => s.writev(buf))
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        either!(self, s => s.flush())
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        either!(self, s => s.shutdown())
    }
}
