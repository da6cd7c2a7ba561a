//! Message bodies, streamed: a scanner is fed the bytes after a head in pieces split anywhere,
//! says how many belong to this message (the rest is the next message: pipelining), and checks
//! chunked framing as it goes without copying or changing a byte, so the body is forwarded as
//! received and memory stays bounded whatever its size.

use super::fields::Framing;

/// A body that breaks its framing (status 400 from a client; the caller answers 502 for a
/// backend's), or is larger than allowed (413).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramingError {
    pub status: u16,
    pub reason: &'static str,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for FramingError {}

fn bad<T>(reason: &'static str) -> Result<T, FramingError> {
    Err(FramingError {
        status: 400,
        reason,
    })
}

fn too_large<T>() -> Result<T, FramingError> {
    Err(FramingError {
        status: 413,
        reason: "body too large",
    })
}

/// Limits on the parts of chunked framing that are not data: a size line (size, extensions)
/// and the whole trailer section. Both are scanned byte by byte but never stored, so these
/// bound time spent on framing, not memory.
const MAX_SIZE_LINE: usize = 1024;
const MAX_TRAILERS: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex digits of a chunk size (`any`: at least one seen).
    Size {
        any: bool,
    },
    /// Whitespace after the size: only `;` (an extension) may follow.
    SizeWs,
    /// A chunk extension, up to CR.
    Ext,
    /// Expecting the LF of a size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Where a body ends. Fed the bytes that follow a head, in pieces split anywhere; every call
/// says how many of the bytes given belong to this body. Nothing is copied or changed: the
/// caller forwards exactly those bytes.
#[derive(Debug, Clone)]
pub struct BodyScanner {
    kind: Kind,
    /// Bytes of this body seen so far (data and framing).
    pub seen: u64,
    /// Data bytes seen so far (chunk data, without the framing).
    pub data: u64,
    /// Most data bytes allowed (413 past it).
    limit: Option<u64>,
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
        BodyScanner::with_limit(framing, None)
    }

    /// A scanner that refuses (413) a body of more than `max_body` data bytes: a chunked body
    /// as soon as a chunk size line takes it past the limit, before that chunk's data. A
    /// Content-Length over the limit is refused at the first `feed`, but is better refused at
    /// head time with `RequestHead::check_body_limit`.
    pub fn with_limit(framing: Framing, max_body: Option<u64>) -> BodyScanner {
        let kind = match framing {
            Framing::None | Framing::Length(0) => Kind::Empty,
            Framing::Length(n) => Kind::Length { left: n },
            Framing::Chunked => Kind::Chunked {
                state: Chunk::Size { any: false },
                size: 0,
                line: 0,
                trailers: 0,
            },
            Framing::Close => Kind::Close,
        };
        BodyScanner {
            kind,
            seen: 0,
            data: 0,
            limit: max_body,
        }
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

    /// Takes bytes from the front of `input`; returns how many belong to this body. Fewer
    /// than `input.len()` only when the body is done: the rest is the next message. After an
    /// error the scanner must not be fed again (the connection is closed).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let n = match &mut self.kind {
            Kind::Empty => 0,
            Kind::Close => {
                self.data += input.len() as u64;
                input.len()
            }
            Kind::Length { left } => {
                if self.seen == 0 && self.limit.is_some_and(|max| *left > max) {
                    return too_large();
                }
                let n = (*left).min(input.len() as u64);
                *left -= n;
                self.data += n;
                // `n <= input.len()`, so it fits a usize.
                n as usize
            }
            Kind::Chunked {
                state,
                size,
                line,
                trailers,
            } => {
                let mut c = ChunkScan {
                    state,
                    size,
                    line,
                    trailers,
                    data: &mut self.data,
                    limit: self.limit,
                };
                c.scan(input)?
            }
        };
        if self.limit.is_some_and(|max| self.data > max) {
            return too_large();
        }
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

/// tchar (RFC 9110 §5.6.2): what a trailer field name is made of.
fn is_token(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

/// The chunked state borrowed out of `Kind::Chunked` for one `feed`.
struct ChunkScan<'a> {
    state: &'a mut Chunk,
    size: &'a mut u64,
    /// Bytes of the current size line.
    line: &'a mut usize,
    /// Bytes of the trailer section.
    trailers: &'a mut usize,
    data: &'a mut u64,
    limit: Option<u64>,
}

impl ChunkScan<'_> {
    fn scan(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let mut i = 0;
        while i < input.len() {
            match *self.state {
                Chunk::Done => break,
                Chunk::Data => {
                    // Data is passed over in one step, not byte by byte: it is most of the
                    // bytes. `take <= input.len() - i`, so it fits a usize.
                    let take = (*self.size).min((input.len() - i) as u64) as usize;
                    i += take;
                    *self.size -= take as u64;
                    if *self.size == 0 {
                        *self.state = Chunk::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            // `i < input.len()` by the loop condition.
            let b = input[i];
            i += 1;
            *self.state = self.step(b)?;
            if *self.state == Chunk::Done {
                break;
            }
        }
        Ok(i)
    }

    /// One byte of framing (anything but chunk data).
    fn step(&mut self, b: u8) -> Result<Chunk, FramingError> {
        let size_line = matches!(*self.state, Chunk::Size { .. } | Chunk::SizeWs | Chunk::Ext);
        if size_line {
            *self.line += 1;
            if *self.line > MAX_SIZE_LINE {
                return bad("chunk size line too long");
            }
        }
        let in_trailers = matches!(
            *self.state,
            Chunk::TrailerStart
                | Chunk::TrailerName
                | Chunk::TrailerValue
                | Chunk::TrailerLf { .. }
        );
        if in_trailers {
            *self.trailers += 1;
            if *self.trailers > MAX_TRAILERS {
                return bad("trailer section too large");
            }
        }
        Ok(match *self.state {
            Chunk::Size { any } => match hex(b) {
                Some(d) => {
                    if *self.size > u64::MAX >> 4 {
                        return bad("chunk size overflows");
                    }
                    *self.size = *self.size << 4 | d;
                    Chunk::Size { any: true }
                }
                // `0x10`, `-5`, ` 5`, an empty size: refused.
                None if !any => return bad("chunk size is not hex"),
                None => match b {
                    b'\r' => Chunk::SizeLf,
                    b';' => Chunk::Ext,
                    b' ' | b'\t' => Chunk::SizeWs,
                    b'\n' => return bad("bare LF in chunk size line"),
                    _ => return bad("invalid character after chunk size"),
                },
            },
            // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): whitespace after the
            // size must lead to an extension.
            Chunk::SizeWs => match b {
                b' ' | b'\t' => Chunk::SizeWs,
                b';' => Chunk::Ext,
                _ => return bad("whitespace after chunk size"),
            },
            // Extensions are ignored but bounded and free of control characters; their inner
            // syntax is not checked (a backend ignores them too).
            Chunk::Ext => match b {
                b'\r' => Chunk::SizeLf,
                b'\n' => return bad("bare LF in chunk size line"),
                b'\t' | b' '..=b'~' | 0x80..=0xff => Chunk::Ext,
                _ => return bad("control character in chunk extension"),
            },
            Chunk::SizeLf => {
                if b != b'\n' {
                    return bad("chunk size line not ended by CRLF");
                }
                *self.line = 0;
                if *self.size == 0 {
                    Chunk::TrailerStart
                } else {
                    // The whole chunk is refused before its data: nothing of it is forwarded.
                    *self.data = self.data.saturating_add(*self.size);
                    if self.limit.is_some_and(|max| *self.data > max) {
                        return too_large();
                    }
                    Chunk::Data
                }
            }
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return bad("chunk data longer than its size"),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { any: false },
                _ => return bad("chunk data not ended by CRLF"),
            },
            // Trailer fields follow the rules of header fields: a token, a colon (no
            // whitespace before it), a value without control characters, CRLF, no obs-fold.
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::TrailerLf { empty: true },
                b if is_token(b) => Chunk::TrailerName,
                _ => return bad("invalid trailer field"),
            },
            Chunk::TrailerName => match b {
                b':' => Chunk::TrailerValue,
                b if is_token(b) => Chunk::TrailerName,
                _ => return bad("invalid trailer field name"),
            },
            Chunk::TrailerValue => match b {
                b'\r' => Chunk::TrailerLf { empty: false },
                b'\t' | b' '..=b'~' | 0x80..=0xff => Chunk::TrailerValue,
                _ => return bad("invalid character in a trailer field"),
            },
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
            // `scan` handles both before calling `step`; answering with the state unchanged
            // keeps this total without a panic path.
            Chunk::Data | Chunk::Done => *self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(framing: Framing, input: &[u8]) -> Result<(usize, bool), FramingError> {
        let mut s = BodyScanner::new(framing);
        let n = s.feed(input)?;
        Ok((n, s.done()))
    }

    /// Feeds `input` split at every position, split at every pair of positions (for short
    /// inputs) and byte by byte: the result must not depend on how the bytes arrived.
    fn scan_split(framing: Framing, input: &[u8]) -> Result<(usize, bool), FramingError> {
        let whole = scan_whole(framing, input);
        let feed_pieces = |cuts: &[usize]| {
            let mut s = BodyScanner::new(framing);
            let mut total = 0;
            let mut from = 0;
            for &to in cuts.iter().chain(std::iter::once(&input.len())) {
                let n = s.feed(&input[from..to])?;
                total += n;
                if n < to - from || s.done() {
                    break;
                }
                from = to;
            }
            Ok((total, s.done()))
        };
        for cut in 0..=input.len() {
            assert_eq!(feed_pieces(&[cut]), whole, "cut at {cut}");
        }
        if input.len() <= 64 {
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    assert_eq!(feed_pieces(&[a, b]), whole, "cuts at {a}, {b}");
                }
            }
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed_pieces(&every), whole, "byte by byte");
        whole
    }

    fn chunked(input: &[u8]) -> Result<(usize, bool), FramingError> {
        scan_split(Framing::Chunked, input)
    }

    fn refused(input: &[u8]) -> &'static str {
        match chunked(input) {
            Err(e) => {
                assert_eq!(e.status, 400);
                e.reason
            }
            Ok(r) => panic!("accepted {:?}: {r:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_should() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(chunked(body), Ok((body.len(), true)));
        let upper = b"A\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(chunked(upper), Ok((upper.len(), true)));
        let zeros = b"0005\r\nhello\r\n000\r\n\r\n";
        assert_eq!(chunked(zeros), Ok((zeros.len(), true)));
        let ext = b"5 ; a=\"b c\" ;d\r\nhello\r\n0;x\r\n\r\n";
        assert_eq!(chunked(ext), Ok((ext.len(), true)));
    }

    #[test]
    fn bytes_after_the_last_chunk_are_left_for_the_next_request() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(chunked(&with_next), Ok((body.len(), true)));
        let mut s = BodyScanner::new(Framing::Chunked);
        assert_eq!(s.feed(&with_next), Ok(body.len()));
        assert_eq!(s.feed(b"more"), Ok(0), "a finished body takes nothing");
        assert_eq!((s.seen, s.data), (body.len() as u64, 5));
    }

    #[test]
    fn trailers_are_passed_and_checked() {
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\t2 \r\n\r\n";
        assert_eq!(chunked(trailers), Ok((trailers.len(), true)));
        assert_eq!(
            refused(b"0\r\nX: 1\n\r\n"),
            "invalid character in a trailer field"
        );
        assert_eq!(refused(b"0\r\n\n"), "invalid trailer field");
        assert_eq!(refused(b"0\r\nX : 1\r\n\r\n"), "invalid trailer field name");
        assert_eq!(
            refused(b"0\r\nX: 1\r\n folded\r\n\r\n"),
            "invalid trailer field"
        );
        assert_eq!(
            refused(b"0\r\nX: a\0b\r\n\r\n"),
            "invalid character in a trailer field"
        );
        assert_eq!(
            refused(b"0\r\nno colon\r\n\r\n"),
            "invalid trailer field name"
        );
        assert_eq!(refused(b"0\r\n\rX"), "trailer line not ended by CRLF");
        let huge = format!("0\r\nX: {}\r\n\r\n", "t".repeat(40_000));
        assert!(scan_whole(Framing::Chunked, huge.as_bytes()).is_err());
        let many: String = (0..5000).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("0\r\n{many}\r\n");
        assert!(scan_whole(Framing::Chunked, many.as_bytes()).is_err());
    }

    #[test]
    fn unfinished_bodies_are_not_done() {
        for unfinished in [
            &b"5\r\nhel"[..],
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"0\r\nX: 1\r\n",
            b"5",
        ] {
            assert_eq!(chunked(unfinished), Ok((unfinished.len(), false)));
        }
    }

    #[test]
    fn chunk_sizes_must_be_plain_hex() {
        assert_eq!(
            refused(b"0x5\r\nhello\r\n0\r\n\r\n"),
            "invalid character after chunk size"
        );
        assert_eq!(refused(b"0x10\r\n"), "invalid character after chunk size");
        assert_eq!(
            refused(b"-5\r\nhello\r\n0\r\n\r\n"),
            "chunk size is not hex"
        );
        assert_eq!(refused(b"+5\r\n"), "chunk size is not hex");
        assert_eq!(refused(b"g\r\n"), "chunk size is not hex");
        assert_eq!(refused(b"\r\n"), "chunk size is not hex");
        assert_eq!(refused(b" 5\r\n"), "chunk size is not hex");
        assert_eq!(refused(b"5 \r\nhello\r\n"), "whitespace after chunk size");
        assert_eq!(refused(b"5 6\r\n"), "whitespace after chunk size");
        assert_eq!(refused(b"5,6\r\n"), "invalid character after chunk size");
    }

    #[test]
    fn chunk_sizes_that_overflow_are_refused() {
        // 16 hex digits fill a u64; a 17th significant one overflows.
        assert_eq!(chunked(b"ffffffffffffffff\r\n"), Ok((18, false)));
        assert_eq!(refused(b"10000000000000000\r\n"), "chunk size overflows");
        assert_eq!(refused(b"fffffffffffffffff\r\n"), "chunk size overflows");
        // Leading zeros are no overflow, but the line is bounded.
        let zeros = format!("{}5\r\nhello\r\n0\r\n\r\n", "0".repeat(100));
        assert_eq!(chunked(zeros.as_bytes()), Ok((zeros.len(), true)));
        let endless = format!("{}5\r\n", "0".repeat(2000));
        assert!(scan_whole(Framing::Chunked, endless.as_bytes()).is_err());
    }

    #[test]
    fn chunk_extensions_are_bounded_and_clean() {
        assert_eq!(
            refused(b"5;\x01\r\n"),
            "control character in chunk extension"
        );
        assert_eq!(
            refused(b"5;a\0\r\n"),
            "control character in chunk extension"
        );
        let long_ext = format!("5;{}\r\n", "e".repeat(2000));
        assert_eq!(
            scan_whole(Framing::Chunked, long_ext.as_bytes())
                .unwrap_err()
                .reason,
            "chunk size line too long"
        );
    }

    #[test]
    fn bare_lf_and_missing_crlf_are_refused() {
        assert_eq!(
            refused(b"5\nhello\r\n0\r\n\r\n"),
            "bare LF in chunk size line"
        );
        assert_eq!(refused(b"5;x\nhello\r\n"), "bare LF in chunk size line");
        assert_eq!(
            refused(b"5\r\nhello\n0\r\n\r\n"),
            "chunk data longer than its size"
        );
        assert_eq!(
            refused(b"5\r\nhelloX\r\n"),
            "chunk data longer than its size"
        );
        assert_eq!(refused(b"5\r\nhello\rX"), "chunk data not ended by CRLF");
        assert_eq!(refused(b"5\rX"), "chunk size line not ended by CRLF");
        assert_eq!(refused(b"0\r\n\r\r"), "trailer line not ended by CRLF");
    }

    #[test]
    fn chunked_bodies_over_the_limit_are_413_before_their_data() {
        let mut s = BodyScanner::with_limit(Framing::Chunked, Some(8));
        assert_eq!(s.feed(b"5\r\nhello\r\n"), Ok(10));
        let e = s.feed(b"4\r\n").unwrap_err();
        assert_eq!((e.status, e.reason), (413, "body too large"));
        let mut s = BodyScanner::with_limit(Framing::Chunked, Some(8));
        let exact = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(s.feed(exact), Ok(exact.len()));
        assert!(s.done());
        // A size that cannot fit is refused even with the limit at its maximum.
        let mut s = BodyScanner::with_limit(Framing::Chunked, Some(u64::MAX));
        assert!(s.feed(b"ffffffffffffffff\r\n").is_ok());
    }

    #[test]
    fn lengths_over_the_limit_are_413() {
        let mut s = BodyScanner::with_limit(Framing::Length(9), Some(8));
        assert_eq!(s.feed(b"x").unwrap_err().status, 413);
        let mut s = BodyScanner::with_limit(Framing::Length(8), Some(8));
        assert_eq!(s.feed(b"12345678next"), Ok(8));
        assert!(s.done());
        let mut s = BodyScanner::with_limit(Framing::Close, Some(3));
        assert_eq!(s.feed(b"abc"), Ok(3));
        assert_eq!(s.feed(b"d").unwrap_err().status, 413);
    }

    #[test]
    fn length_and_close_and_none() {
        assert_eq!(scan_split(Framing::Length(5), b"helloGET"), Ok((5, true)));
        assert_eq!(scan_split(Framing::Length(10), b"hello"), Ok((5, false)));
        assert_eq!(scan_split(Framing::Length(0), b"GET"), Ok((0, true)));
        assert_eq!(scan_split(Framing::None, b"GET"), Ok((0, true)));
        assert_eq!(scan_whole(Framing::Close, b"anything"), Ok((8, false)));
        let mut s = BodyScanner::new(Framing::Length(3));
        s.feed(b"ab").unwrap();
        s.feed(b"cd").unwrap();
        assert_eq!((s.seen, s.data), (3, 3));
        let mut s = BodyScanner::new(Framing::Length(u64::MAX));
        assert_eq!(s.feed(&[0; 100]), Ok(100));
        assert!(!s.done());
    }
}
