//! The server side of the TLS handshake over a monoio socket, with the cause of any failure.
//!
//! Reads wait for readiness before taking a buffer from the pool, and a partial record waits
//! in a small heap copy, so a client that connects and stalls holds no pooled buffer while the
//! handshake timeout runs. A client flight larger than one pooled buffer (a ClientHello with
//! thousands of extensions) is gathered in a heap buffer up to [`MAX_HANDSHAKE_INPUT`]. A
//! refused handshake ends with the alert saying why, a FIN, and a bounded drain of the input.
//!
//! Before its first crypto, a handshake takes a slot from the worker's [`Admission`]: once the
//! whole ClientHello is here (read with `tls::hello::peek`, which also says whether it offers
//! resumption), it asks for a slot of that kind — waiting for one holding a heap copy of the
//! hello, not a pooled buffer — and holds it until the handshake ends.

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::bufpool::{BufPool, PoolBuf};
use crate::frontdoor::admission::{Admission, Kind, Permit};
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

/// The most client handshake bytes held at once: rustls joins handshake messages of up to
/// 64 KiB (a ClientHello with many extensions, as tlsfuzzer sends), and a message that size
/// arrives as several records. Past one pooled buffer they wait in a heap buffer, grown only
/// for such a client.
const MAX_HANDSHAKE_INPUT: usize = 0xffff + 4 + 16 * 1024;
/// A refused client may still be sending (a ClientHello of megabytes, say); tern reads and
/// drops it until the client closes, goes quiet for [`LINGER_IDLE`], or [`LINGER_MAX`] has
/// passed (all within the handshake timeout). Closing with unread input would reset the
/// connection, and the reset can destroy the alert before the client reads it.
const LINGER_IDLE: Duration = Duration::from_secs(1);
const LINGER_MAX: Duration = Duration::from_secs(5);
const DECODE_ERROR: u8 = 50;

/// Received handshake bytes not yet consumed: `buf[start..]`.
enum Input {
    None,
    Pooled(PoolBuf),
    /// A flight larger than one pooled buffer.
    Heap(Vec<u8>),
}

/// The slot a handshake needs, once its first flight is all in `first` (`None`: not yet).
/// What is not a readable ClientHello counts as full: rustls refuses it at no cost, and a
/// hello this peek misread must not run unbounded.
/// The hello is read once, by `accepting`, which keeps it for the rest of the handshake.
fn kind_of(accepting: &mut Accepting, first: &[u8]) -> Option<Kind> {
    if !accepting.hello_seen(first) {
        return None;
    }
    match accepting.hello() {
        Some(h) if h.resumption => Some(Kind::Resumption),
        _ => Some(Kind::Full),
    }
}

impl Input {
    /// The bytes not yet consumed.
    fn pending(&self, start: usize) -> Option<&[u8]> {
        match self {
            Input::Pooled(b) => Some(&b.filled()[start..]),
            Input::Heap(v) => Some(&v[start..]),
            Input::None => None,
        }
    }
}

/// Drives the handshake to completion, within a slot of `admission` from its first crypto on.
pub async fn run(
    stream: &mut TcpStream,
    mut accepting: Accepting,
    pool: &BufPool,
    admission: &Rc<Admission>,
) -> Result<(Established, Carry), HandshakeError> {
    // Received bytes not yet consumed: in `input` at [start..] (parked in a heap copy while
    // waiting for the rest, see `read_more`).
    let mut input = Input::None;
    let mut start = 0;
    let mut reads = 0u32;
    // Held from the ClientHello to the end of the handshake, however it ends.
    let mut permit: Option<Permit> = None;
    loop {
        if permit.is_none() {
            if let Some(first) = input.pending(start) {
                match kind_of(&mut accepting, first) {
                    None => {
                        // Not all of the hello yet: read on without giving rustls anything.
                        let read = read_more(stream, pool, &mut accepting, &mut input, &mut start);
                        read.await?;
                        reads += 1;
                        continue;
                    }
                    Some(kind) => {
                        let admit = admission.admit(kind);
                        if admit.must_wait() {
                            // Wait holding a heap copy of the hello, not a pooled buffer.
                            if let Input::Pooled(b) = std::mem::replace(&mut input, Input::None) {
                                input = Input::Heap(b.filled()[start..].to_vec());
                                pool.put(b);
                                start = 0;
                            }
                        }
                        permit = Some(admit.await);
                    }
                }
            }
        }
        let mut out = pool.get();
        let stepped = match &mut input {
            Input::Pooled(b) => {
                let len = b.len();
                accepting.step(&mut b.space()[start..len], out.space())
            }
            Input::Heap(v) => accepting.step(&mut v[start..], out.space()),
            Input::None => accepting.step(&mut [], out.space()),
        };
        let (consumed, step) = match stepped {
            Ok(s) => s,
            Err(refusal) => {
                let plain_http = reads == 1 && input.pending(0).is_some_and(looks_like_http);
                let n = if plain_http {
                    out.space()[..PLAIN_HTTP_REPLY.len()].copy_from_slice(PLAIN_HTTP_REPLY);
                    PLAIN_HTTP_REPLY.len()
                } else {
                    // The rest of the flight and the alert saying why.
                    refusal.send
                };
                if let Input::Pooled(b) = input {
                    pool.put(b);
                }
                out.set_filled(n);
                close_after(stream, out, pool).await;
                return Err(if plain_http {
                    HandshakeError::PlainHttp
                } else {
                    HandshakeError::Tls(refusal.error)
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
                    if let Input::Pooled(b) = input {
                        pool.put(b);
                    }
                    return Err(HandshakeError::Io(e));
                }
                continue;
            }
            Step::Done => {
                pool.put(out);
                let carry = match into_carry(input, start, pool) {
                    Ok(carry) => carry,
                    Err(e) => return Err(HandshakeError::Io(e)),
                };
                let established = accepting.finish().map_err(HandshakeError::Tls);
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
        read_more(stream, pool, &mut accepting, &mut input, &mut start).await?;
        reads += 1;
    }
}

/// Parks what is left of the input, gives a pooled buffer back, waits for the peer, then reads
/// behind the parked bytes: into a pooled buffer while they fit one, else into a heap buffer up
/// to [`MAX_HANDSHAKE_INPUT`] (past it the client is refused with `decode_error`).
async fn read_more(
    stream: &mut TcpStream,
    pool: &BufPool,
    accepting: &mut Accepting,
    input: &mut Input,
    start: &mut usize,
) -> Result<(), HandshakeError> {
    let parked = match std::mem::replace(input, Input::None) {
        Input::Pooled(b) => {
            let v = b.filled()[*start..].to_vec();
            pool.put(b);
            v
        }
        Input::Heap(mut v) => {
            v.drain(..*start);
            v
        }
        Input::None => Vec::new(),
    };
    *start = 0;
    if let Err(e) = stream.readable(false).await {
        return Err(HandshakeError::Io(e));
    }
    let read = if parked.len() < pool.size() {
        let mut b = pool.get();
        b.space()[..parked.len()].copy_from_slice(&parked);
        b.set_filled(parked.len());
        let at = parked.len();
        let (res, slice) = stream.read(b.slice_mut(at..)).await;
        (res, Input::Pooled(slice.into_inner()))
    } else if parked.len() < MAX_HANDSHAKE_INPUT {
        // Read into the heap buffer itself, at most up to the bound.
        let mut v = parked;
        v.reserve_exact((MAX_HANDSHAKE_INPUT - v.len()).min(pool.size()));
        let (at, end) = (v.len(), v.capacity().min(MAX_HANDSHAKE_INPUT));
        let (res, slice) = stream.read(v.slice_mut(at..end)).await;
        (res, Input::Heap(slice.into_inner()))
    } else {
        let mut out = pool.get();
        let n = accepting.refuse(DECODE_ERROR, out.space());
        out.set_filled(n);
        close_after(stream, out, pool).await;
        return Err(HandshakeError::Io(io::Error::other(
            "client handshake messages larger than 80 KiB",
        )));
    };
    match read {
        (Ok(0), got) => {
            if let Input::Pooled(b) = got {
                pool.put(b);
            }
            Err(HandshakeError::Eof)
        }
        (Ok(_), got) => {
            *input = got;
            Ok(())
        }
        (Err(e), got) => {
            if let Input::Pooled(b) = got {
                pool.put(b);
            }
            Err(HandshakeError::Io(e))
        }
    }
}

/// The bytes after the handshake, for the connection loops: they take a pooled buffer.
fn into_carry(input: Input, start: usize, pool: &BufPool) -> io::Result<Carry> {
    match input {
        Input::None => Ok(Carry {
            buf: None,
            start: 0,
        }),
        Input::Pooled(b) => Ok(Carry {
            buf: Some(b),
            start,
        }),
        Input::Heap(v) => {
            let rest = &v[start..];
            let mut b = pool.get();
            if rest.len() > b.capacity() {
                pool.put(b);
                return Err(io::Error::other("too much data after the handshake"));
            }
            b.space()[..rest.len()].copy_from_slice(rest);
            b.set_filled(rest.len());
            Ok(Carry {
                buf: Some(b),
                start: 0,
            })
        }
    }
}

/// Sends `out` (the refusal), then closes gracefully: FIN, then reads and drops what the
/// client still sends (see [`LINGER_IDLE`]). Each read waits for readiness first, so a
/// lingering client holds no buffer while it is quiet.
async fn close_after(stream: &mut TcpStream, out: PoolBuf, pool: &BufPool) {
    if out.is_empty() {
        pool.put(out);
        return;
    }
    let (res, out) = stream.write_all(out).await;
    pool.put(out);
    if res.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        loop {
            match monoio::time::timeout(LINGER_IDLE, stream.readable(false)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            let (res, b) = stream.read(pool.get()).await;
            pool.put(b);
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
        }
    };
    // A read the timeout calls off keeps its buffer; the pool makes another when asked.
    let _ = monoio::time::timeout(LINGER_MAX, drain).await;
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
