//! The server side of the TLS handshake over a monoio socket, with the cause of any failure.
//!
//! Reads wait for readiness before taking a buffer from the pool, and a partial record waits
//! in a small heap copy, so a client that connects and stalls holds no pooled buffer while the
//! handshake timeout runs.

use std::fmt;
use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::bufpool::{BufPool, PoolBuf};
use crate::stats::FailReason;
use crate::tls::{Accepting, Established, Step, TlsError};

/// Ciphertext read from the client but not yet opened (the client may send its first request
/// in the same segment as its Finished message): `buf[start..]`.
pub struct Carry {
    pub buf: Option<PoolBuf>,
    pub start: usize,
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

impl HandshakeError {
    /// The class it is counted under.
    pub fn reason(&self) -> FailReason {
        match self {
            HandshakeError::Io(_) => FailReason::Io,
            HandshakeError::Eof => FailReason::Eof,
            HandshakeError::PlainHttp => FailReason::PlainHttp,
            // On the server side rustls verifies one certificate only: the client's.
            HandshakeError::Tls(TlsError::Protocol(
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented,
            )) => FailReason::ClientCert,
            HandshakeError::Tls(TlsError::PeerAlert(_))
            | HandshakeError::Tls(TlsError::Protocol(rustls::Error::AlertReceived(_))) => {
                FailReason::Alert
            }
            HandshakeError::Tls(_) => FailReason::Protocol,
        }
    }
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

/// Drives the handshake to completion.
pub async fn run(
    stream: &mut TcpStream,
    mut accepting: Accepting,
    pool: &BufPool,
) -> Result<(Established, Carry), HandshakeError> {
    // Received bytes not yet consumed: in a pooled buffer at [start..len], or parked in a
    // small heap copy while waiting for the rest.
    let mut inb: Option<PoolBuf> = None;
    let mut start = 0;
    let mut parked: Vec<u8> = Vec::new();
    let mut reads = 0u32;
    loop {
        let mut out = pool.get();
        let stepped = match inb.as_mut() {
            Some(b) => {
                let len = b.len();
                accepting.step(&mut b.space()[start..len], out.space())
            }
            None => accepting.step(&mut [], out.space()),
        };
        let (consumed, step) = match stepped {
            Ok(s) => s,
            Err(e) => {
                let plain_http =
                    reads == 1 && inb.as_ref().is_some_and(|b| looks_like_http(b.filled()));
                let n = if plain_http {
                    out.space()[..PLAIN_HTTP_REPLY.len()].copy_from_slice(PLAIN_HTTP_REPLY);
                    PLAIN_HTTP_REPLY.len()
                } else {
                    // rustls queued an alert saying why; send it, best effort.
                    accepting.alert(out.space())
                };
                out.set_filled(n);
                let (_, out) = stream.write_all(out).await;
                pool.put(out);
                if let Some(b) = inb {
                    pool.put(b);
                }
                return Err(if plain_http {
                    HandshakeError::PlainHttp
                } else {
                    HandshakeError::Tls(e)
                });
            }
        };
        start += consumed;
        match step {
            Step::Send(n) => {
                out.set_filled(n);
                let (res, out) = stream.write_all(out).await;
                pool.put(out);
                if let Err(e) = res {
                    if let Some(b) = inb {
                        pool.put(b);
                    }
                    return Err(HandshakeError::Io(e));
                }
                continue;
            }
            Step::Done => {
                pool.put(out);
                let established = accepting.finish().map_err(HandshakeError::Tls);
                let carry = Carry { buf: inb, start };
                return match established {
                    Ok(e) => Ok((e, carry)),
                    Err(e) => {
                        if let Some(b) = carry.buf {
                            pool.put(b);
                        }
                        Err(e)
                    }
                };
            }
            Step::NeedMore => pool.put(out),
        }
        // Park what is left, give the buffer back, wait for the peer, then read.
        if let Some(b) = inb.take() {
            parked.clear();
            parked.extend_from_slice(&b.filled()[start..]);
            pool.put(b);
        }
        if let Err(e) = stream.readable(false).await {
            return Err(HandshakeError::Io(e));
        }
        let mut b = pool.get();
        if parked.len() >= b.capacity() {
            pool.put(b);
            return Err(HandshakeError::Io(io::Error::other(
                "handshake message too large",
            )));
        }
        b.space()[..parked.len()].copy_from_slice(&parked);
        b.set_filled(parked.len());
        let at = parked.len();
        let (res, slice) = stream.read(b.slice_mut(at..)).await;
        let b = slice.into_inner();
        start = 0;
        match res {
            Ok(0) => {
                pool.put(b);
                return Err(HandshakeError::Eof);
            }
            Ok(_) => {
                reads += 1;
                inb = Some(b);
            }
            Err(e) => {
                pool.put(b);
                return Err(HandshakeError::Io(e));
            }
        }
    }
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
