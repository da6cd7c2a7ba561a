//! Message bodies, streamed: a scanner is fed the bytes after a head in pieces split anywhere,
//! says how many belong to this message (the rest is the next message: pipelining), and checks
//! chunked framing as it goes without copying or changing a byte, so the body is forwarded as
//! received and memory stays bounded whatever its size.

use super::fields::Framing;

/// A body that breaks its framing; answered with 400 (from a client) or 502 (from a backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Limits on the parts of chunked framing that are not data.
const MAX_SIZE_LINE: usize = 1024;
const MAX_TRAILERS: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// After the size: `;ext` or whitespace up to CR.
    Ext,
    /// Expecting the LF of a size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Where a body ends.
#[derive(Debug, Clone)]
pub struct BodyScanner {
    kind: Kind,
    /// Bytes of this body seen so far (data and framing).
    pub seen: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Empty,
    Length {
        left: u64,
    },
    Chunked {
        state: Chunk,
        size: u64,
        line: usize,
        trailers: usize,
    },
    Close,
}

impl BodyScanner {
    pub fn new(framing: Framing) -> BodyScanner {
        let kind = match framing {
            Framing::None | Framing::Length(0) => Kind::Empty,
            Framing::Length(n) => Kind::Length { left: n },
            Framing::Chunked => Kind::Chunked {
                state: Chunk::Size { digits: 0 },
                size: 0,
                line: 0,
                trailers: 0,
            },
            Framing::Close => Kind::Close,
        };
        BodyScanner { kind, seen: 0 }
    }

    /// Whether the body is complete (a close-delimited body never is: it ends at EOF).
    pub fn done(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Length { left } => *left == 0,
            Kind::Chunked { state, .. } => *state == Chunk::Done,
            Kind::Close => false,
        }
    }

    /// Takes bytes from the front of `input`; returns how many belong to this body.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let n = match &mut self.kind {
            Kind::Empty => 0,
            Kind::Close => input.len(),
            Kind::Length { left } => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                n as usize
            }
            Kind::Chunked {
                state,
                size,
                line,
                trailers,
            } => scan_chunked(input, state, size, line, trailers)?,
        };
        self.seen += n as u64;
        Ok(n)
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

fn scan_chunked(
    input: &[u8],
    state: &mut Chunk,
    size: &mut u64,
    line: &mut usize,
    trailers: &mut usize,
) -> Result<usize, FramingError> {
    let bad = |why| Err(FramingError(why));
    let mut i = 0;
    while i < input.len() {
        match *state {
            Chunk::Done => break,
            Chunk::Data => {
                // Skip data in one step: this is where the bytes are.
                let take = (*size).min((input.len() - i) as u64) as usize;
                i += take;
                *size -= take as u64;
                if *size == 0 {
                    *state = Chunk::DataCr;
                }
                continue;
            }
            _ => {}
        }
        let b = input[i];
        i += 1;
        *state = match *state {
            Chunk::Size { digits } => match hex(b) {
                Some(d) => {
                    if digits >= 16 {
                        return bad("chunk size too long");
                    }
                    *size = *size * 16 + d;
                    *line += 1;
                    Chunk::Size { digits: digits + 1 }
                }
                None if digits == 0 => return bad("chunk size is not hex"),
                None => match b {
                    b'\r' => Chunk::SizeLf,
                    b';' | b' ' | b'\t' => Chunk::Ext,
                    _ => return bad("invalid character after chunk size"),
                },
            },
            Chunk::Ext => {
                *line += 1;
                if *line > MAX_SIZE_LINE {
                    return bad("chunk extension too long");
                }
                match b {
                    b'\r' => Chunk::SizeLf,
                    b'\n' => return bad("bare LF in chunk size line"),
                    0..=8 | 10..=31 | 127 => return bad("control character in chunk extension"),
                    _ => Chunk::Ext,
                }
            }
            Chunk::SizeLf => {
                if b != b'\n' {
                    return bad("chunk size line not ended by CRLF");
                }
                *line = 0;
                if *size == 0 {
                    Chunk::TrailerStart
                } else {
                    Chunk::Data
                }
            }
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return bad("chunk data longer than its size"),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { digits: 0 },
                _ => return bad("chunk data not ended by CRLF"),
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::TrailerLf { empty: true },
                b'\n' => return bad("bare LF in trailers"),
                _ => {
                    *trailers += 1;
                    Chunk::TrailerLine
                }
            },
            Chunk::TrailerLine => {
                *trailers += 1;
                if *trailers > MAX_TRAILERS {
                    return bad("trailer section too large");
                }
                match b {
                    b'\r' => Chunk::TrailerLf { empty: false },
                    b'\n' => return bad("bare LF in trailers"),
                    _ => Chunk::TrailerLine,
                }
            }
            Chunk::TrailerLf { empty } => {
                if b != b'\n' {
                    return bad("trailer line not ended by CRLF");
                }
                if empty {
                    Chunk::Done
                } else {
                    Chunk::TrailerStart
                }
            }
            Chunk::Data | Chunk::Done => unreachable!("handled above"),
        };
        if *state == Chunk::Done {
            break;
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(framing: Framing, input: &[u8]) -> Result<(usize, bool), FramingError> {
        let mut s = BodyScanner::new(framing);
        let n = s.feed(input)?;
        Ok((n, s.done()))
    }

    /// Feeds `input` split at every position (and byte by byte): the result must not depend on
    /// how the bytes arrived.
    fn scan_split(framing: Framing, input: &[u8]) -> Result<(usize, bool), FramingError> {
        let whole = scan_whole(framing, input);
        for cut in 0..=input.len() {
            let mut s = BodyScanner::new(framing);
            let a = s.feed(&input[..cut]);
            let r = a.and_then(|n| {
                if n < cut {
                    Ok((n, s.done()))
                } else {
                    s.feed(&input[cut..]).map(|m| (n + m, s.done()))
                }
            });
            assert_eq!(r, whole, "cut at {cut}");
        }
        let mut s = BodyScanner::new(framing);
        let mut total = 0;
        for b in input {
            match s.feed(std::slice::from_ref(b)) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(Err(e), whole, "byte by byte");
                    return whole;
                }
            }
            if s.done() {
                break;
            }
        }
        assert_eq!(Ok((total, s.done())), whole, "byte by byte");
        whole
    }

    #[test]
    fn chunked_bodies_end_where_they_should() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            scan_split(Framing::Chunked, &with_next),
            Ok((body.len(), true))
        );
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(
            scan_split(Framing::Chunked, trailers),
            Ok((trailers.len(), true))
        );
        let upper = b"A\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(scan_split(Framing::Chunked, upper), Ok((upper.len(), true)));
        let unfinished = b"5\r\nhel";
        assert_eq!(
            scan_split(Framing::Chunked, unfinished),
            Ok((unfinished.len(), false))
        );
    }

    #[test]
    fn bad_chunked_framing_is_refused() {
        for bad in [
            &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"g\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"5;\x01\r\n",
            b" 5\r\n",
        ] {
            assert!(
                scan_split(Framing::Chunked, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("5;{}\r\n", "e".repeat(2000));
        assert!(scan_whole(Framing::Chunked, long_ext.as_bytes()).is_err());
        let huge_trailers = format!("0\r\nX: {}\r\n\r\n", "t".repeat(40_000));
        assert!(scan_whole(Framing::Chunked, huge_trailers.as_bytes()).is_err());
    }

    #[test]
    fn length_and_close_and_none() {
        assert_eq!(scan_split(Framing::Length(5), b"helloGET"), Ok((5, true)));
        assert_eq!(scan_split(Framing::Length(10), b"hello"), Ok((5, false)));
        assert_eq!(scan_split(Framing::None, b"GET"), Ok((0, true)));
        assert_eq!(scan_whole(Framing::Close, b"anything"), Ok((8, false)));
        let mut s = BodyScanner::new(Framing::Length(3));
        s.feed(b"ab").unwrap();
        s.feed(b"cd").unwrap();
        assert_eq!(s.seen, 3);
    }
}
