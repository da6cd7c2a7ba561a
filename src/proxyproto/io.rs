//! Reading a PROXY header off an accepted socket without taking a byte more: the TLS
//! ClientHello behind it stays in the socket for the handshake, which reads it as usual.
//!
//! Each round waits for readability, peeks at what has arrived (`recv(MSG_PEEK)`) and
//! parses it. A whole header is then consumed with a read of exactly its length. A partial
//! one is consumed too, since `Incomplete` means every byte seen belongs to the header;
//! leaving it in the socket would keep the socket readable and the next wait would return
//! at once, spinning. The reads are plain non-blocking `recv`s of bytes already peeked, so
//! they complete at once; readiness is always waited for with `readable(false)`, which on
//! the epoll driver polls the socket instead of trusting a readiness flag those reads left
//! stale.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::net::TcpStream;

use super::{parse_with, Command, Error, Header, Parsed, V1_MAX_LINE};

/// What is peeked at first: the spec's smallest TCP segment any host must accept (576 - 40),
/// which the spec sizes both formats to fit. A larger v2 header grows the buffer to its
/// announced length (up to `max`).
const FIRST_PEEK: usize = 536;

#[derive(Debug)]
pub enum ReadError {
    /// No whole header within the timeout.
    Timeout,
    /// The peer closed after `after` bytes of a header (0: before sending any).
    Closed {
        after: usize,
    },
    /// The bytes are not a valid header.
    Invalid(Error),
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("no complete PROXY header within the timeout"),
            ReadError::Closed { after: 0 } => f.write_str("closed before sending a PROXY header"),
            ReadError::Closed { after } => {
                write!(f, "closed after {after} bytes of a PROXY header")
            }
            ReadError::Invalid(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads the PROXY header at the start of `stream` within `timeout` in total, consuming
/// exactly its bytes. `max` bounds a v2 header's length (`DEFAULT_MAX_HEADER` is a good
/// value). `Ok(None)`: a LOCAL header (the balancer's own connection, such as a health
/// check): use the socket's addresses. The runtime must have its timer enabled.
pub async fn read_header(
    stream: &TcpStream,
    timeout: Duration,
    max: usize,
) -> Result<Option<Header>, ReadError> {
    match monoio::time::timeout(timeout, read(stream, max)).await {
        Ok(Ok(h)) => Ok((h.command == Command::Proxy).then_some(h)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ReadError::Timeout),
    }
}

async fn read(stream: &TcpStream, max: usize) -> Result<Header, ReadError> {
    let fd = stream.as_raw_fd();
    // buf[..have] was consumed from the socket already (a partial header).
    let mut buf = vec![0u8; FIRST_PEEK.min(max.max(V1_MAX_LINE))];
    let mut have = 0;
    loop {
        stream.readable(false).await.map_err(ReadError::Io)?;
        let n = match recv(fd, &mut buf[have..], libc::MSG_PEEK) {
            Ok(0) => return Err(ReadError::Closed { after: have }),
            Ok(n) => n,
            Err(e) if retry(&e) => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        match parse_with(&buf[..have + n], max) {
            Ok(Parsed::Header { len, header }) => {
                // `buf[..have]` was a proper prefix of this header (`Incomplete`), so
                // `have < len`; refuse rather than panic should the parser ever disagree.
                let rest = buf
                    .get_mut(have..len)
                    .ok_or(ReadError::Invalid(Error::NotProxy))?;
                consume(fd, rest)?;
                return Ok(header);
            }
            Ok(Parsed::Incomplete { at_least }) => {
                consume(fd, &mut buf[have..have + n])?;
                have += n;
                // A v2 length over `max` was refused by parse_with, and a v1 line is at
                // most 107 bytes, so this stays bounded.
                let want = at_least.max(have + 1);
                if buf.len() < want {
                    buf.resize(want, 0);
                }
            }
            Err(e) => return Err(ReadError::Invalid(e)),
        }
    }
}

/// A spurious wake-up (nothing to read after all) or an interrupted call: wait again.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Takes bytes already peeked out of the socket. They are queued, so the non-blocking
/// reads return them at once; anything else means the socket changed under us.
fn consume(fd: RawFd, mut dst: &mut [u8]) -> Result<(), ReadError> {
    while !dst.is_empty() {
        match recv(fd, dst, 0) {
            Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => dst = &mut dst[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}

fn recv(fd: RawFd, dst: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: a non-blocking recv into a buffer we own mutably for its whole length, on the
    // stream's descriptor, which stays open while the caller borrows the stream.
    let n = unsafe {
        libc::recv(
            fd,
            dst.as_mut_ptr().cast(),
            dst.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        // Non-negative and at most dst.len().
        Ok(n as usize)
    }
}

#[cfg(test)]
#[path = "io_tests.rs"]
mod tests;
