//! The server side of the TLS handshake over a monoio socket, with the cause of any failure.

use std::fmt;
use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::tls::{ServerSession, TlsError};

/// Ciphertext read from the client but not yet given to the session (the client may send its
/// first request in the same segment as its Finished message).
pub struct Carry {
    pub buf: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    /// The client closed before the handshake finished.
    Eof,
    Tls(TlsError),
    /// Not TLS but a plaintext HTTP request; it was answered with a 400.
    PlainHttp,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "i/o: {e}"),
            HandshakeError::Eof => f.write_str("client closed during the handshake"),
            HandshakeError::Tls(e) => e.fmt(f),
            HandshakeError::PlainHttp => f.write_str("plaintext HTTP request on the TLS port"),
        }
    }
}

/// Drives the handshake to completion. `rbuf` must have capacity; it comes back inside the
/// [`Carry`] with whatever ciphertext followed the handshake.
pub async fn run(
    stream: &mut TcpStream,
    tls: &mut ServerSession,
    mut rbuf: Vec<u8>,
    wbuf: &mut Vec<u8>,
) -> Result<Carry, HandshakeError> {
    let (mut start, mut end) = (0, 0);
    let mut first_read = true;
    loop {
        if tls.wants_write() {
            flush(stream, tls, wbuf).await.map_err(HandshakeError::Io)?;
        }
        if !tls.is_handshaking() {
            return Ok(Carry {
                buf: rbuf,
                start,
                end,
            });
        }
        if start == end {
            let (res, buf) = stream.read(rbuf).await;
            rbuf = buf;
            match res.map_err(HandshakeError::Io)? {
                0 => return Err(HandshakeError::Eof),
                n => (start, end) = (0, n),
            }
        }
        match tls.feed(&rbuf[start..end]) {
            Ok(0) => {
                return Err(HandshakeError::Io(io::Error::other(
                    "tls session made no progress",
                )))
            }
            Ok(n) => start += n,
            Err(e) => {
                if first_read && looks_like_http(&rbuf[..end]) {
                    let _ = stream.write_all(PLAIN_HTTP_REPLY).await;
                    return Err(HandshakeError::PlainHttp);
                }
                // rustls queued an alert saying why; send it, best effort.
                let _ = flush(stream, tls, wbuf).await;
                return Err(HandshakeError::Tls(e));
            }
        }
        first_read = false;
    }
}

/// Writes every record the session has pending.
pub async fn flush(
    stream: &mut TcpStream,
    tls: &mut ServerSession,
    wbuf: &mut Vec<u8>,
) -> io::Result<()> {
    wbuf.clear();
    tls.write_tls_into(wbuf);
    let (res, buf) = stream.write_all(std::mem::take(wbuf)).await;
    *wbuf = buf;
    res.map(drop)
}

const PLAIN_HTTP_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 48\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// to reach it.\n";

/// A plaintext HTTP request starts with an upper-case method and a space; a TLS record starts
/// with a content-type byte (0x14..=0x18), so the two cannot be confused.
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method_len) && first.get(method_len) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_http_from_tls() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b"GE"));
        let text = std::str::from_utf8(PLAIN_HTTP_REPLY).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 48);
    }
}
