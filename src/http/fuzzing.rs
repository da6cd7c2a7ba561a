//! The bodies of the fuzz targets (`fuzz/`), kept in the library so that a plain test can run
//! them over the stored corpus on stable Rust (`tests/fuzz_corpus.rs`). Each asserts
//! properties, not just the absence of panics: a fuzzer finds a broken property as readily
//! as a crash.

use super::body::BodyScanner;
use super::fields::{Framing, Name};
use super::forward::{self, ForwardPolicy};
use super::request::{self, Limits, RequestHead};
use super::response::{self, ResponseHead};

/// Request (and response) head parsing and rewriting never panic, and what they accept is
/// consistent: ranges inside the head, the same answer without the bytes after the head and
/// `Ok(false)` for any shorter prefix of it, and a forwarded head that parses again with the
/// same request line and framing, carrying no hop-by-hop field of the client's.
pub fn request_head(data: &[u8]) {
    // Small limits for some inputs, so that 414 and 431 are reached within libFuzzer's
    // default input size; a head ending exactly at its CRLFCRLF gets the defaults.
    let limits = if data.last().is_some_and(|b| b & 4 != 0) {
        Limits {
            max_line: 48,
            max_head: 160,
            max_fields: 6,
        }
    } else {
        Limits::default()
    };
    let mut head = RequestHead::default();
    if let Ok(true) = request::parse(data, &limits, &mut head) {
        check_request(data, &head, &limits);
    }
    let head_request = data.first().is_some_and(|b| b & 2 == 2);
    let mut resp = ResponseHead::default();
    if let Ok(true) = response::parse(data, head_request, &mut resp) {
        check_response(data, &resp, head_request);
    }
}

fn check_request(data: &[u8], head: &RequestHead, limits: &Limits) {
    assert!(head.len <= data.len());
    assert!(head.line.end <= head.len && head.target.end <= head.line.end);
    for f in &head.fields {
        assert!(f.name_at.end < f.value.start || f.value.is_empty());
        assert!(f.line.end <= head.len && f.value.end <= f.line.end);
    }
    // Pipelined bytes change nothing; a prefix of a head is incomplete, never an error.
    let mut alone = RequestHead::default();
    assert_eq!(
        request::parse(&data[..head.len], limits, &mut alone),
        Ok(true)
    );
    assert_eq!(alone.len, head.len);
    let step = (head.len / 64).max(1);
    for cut in (0..head.len).step_by(step).chain([head.len - 1]) {
        let r = request::parse(&data[..cut], limits, &mut alone);
        assert_eq!(r, Ok(false), "prefix of {cut} bytes");
    }

    let policy = ForwardPolicy {
        trust_client: data.first().is_some_and(|b| b & 1 == 1),
        forwarded: true,
    };
    let mut out = Vec::new();
    forward::request(data, head, [203, 0, 113, 7].into(), policy, &mut out);
    // What tern forwards parses again, with the same request line and framing.
    let mut again = RequestHead::default();
    let big = Limits {
        max_head: usize::MAX,
        max_line: usize::MAX,
        max_fields: usize::MAX,
    };
    assert_eq!(request::parse(&out, &big, &mut again), Ok(true));
    assert_eq!(again.len, out.len());
    assert_eq!(out[again.line.clone()], data[head.line.clone()]);
    assert_eq!(again.body(), head.body());
    assert_eq!(again.upgrade, head.upgrade);
    let host = |src: &[u8], h: &RequestHead| h.host.clone().map(|r| src[r].to_vec());
    assert_eq!(host(&out, &again), host(data, head));
    let count = |n: Name| again.fields.iter().filter(|f| f.name == n).count();
    assert_eq!(count(Name::XForwardedFor), 1);
    assert_eq!(count(Name::XForwardedProto), 1);
    assert_eq!(count(Name::Forwarded), 1);
    assert!(count(Name::ContentLength) <= 1);
    assert_eq!(
        count(Name::KeepAlive) + count(Name::ProxyConnection) + count(Name::Te),
        0
    );
    assert!(again.fields.iter().all(|f| !f.listed_in_connection));
}

fn check_response(data: &[u8], resp: &ResponseHead, head_request: bool) {
    assert!(resp.len <= data.len() && resp.line.end <= resp.len);
    let minor = data.get(1).map_or(1, |b| b & 1);
    let keep_alive = data.get(1).is_some_and(|b| b & 2 == 2);
    let mut out = Vec::new();
    forward::response_for(data, resp, minor, keep_alive, &mut out);
    let mut again = ResponseHead::default();
    assert_eq!(response::parse(&out, head_request, &mut again), Ok(true));
    assert_eq!(again.len, out.len());
    assert_eq!((again.status, again.body()), (resp.status, resp.body()));
}

/// The chunked scanner never panics and gives the same answer however the input is split:
/// `data[0]` seeds the piece sizes and picks a body limit, the rest is the body.
pub fn chunked(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let limit = (seed & 0x80 != 0).then_some(u64::from(seed & 0x7f) * 8);
    let whole = {
        let mut s = BodyScanner::with_limit(Framing::Chunked, limit);
        s.feed(body).map(|n| (n, s.done(), s.data))
    };
    if let Ok((n, done, _)) = whole {
        assert!(n <= body.len());
        assert!(done || n == body.len(), "stopped early without finishing");
    }
    // Pieces of 0 to 15 bytes, sizes from a small linear congruential sequence.
    let mut state = u32::from(seed) | 1;
    let mut s = BodyScanner::with_limit(Framing::Chunked, limit);
    let mut at = 0;
    let split = loop {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = ((state >> 16) % 16) as usize;
        let end = (at + len).min(body.len());
        match s.feed(&body[at..end]) {
            Err(e) => break Err(e),
            Ok(n) => {
                let short = n < end - at;
                at += n;
                if short || s.done() || at == body.len() {
                    break Ok((at, s.done(), s.data));
                }
            }
        }
    };
    assert_eq!(whole, split);
    if let Ok((n, true, _)) = whole {
        agrees_with_httparse(&body[..n]);
    }
}

/// A second opinion on a body the scanner accepted whole: httparse's (more lenient) chunk
/// size parser must read the same chunk sizes at the same places, so the two cannot disagree
/// about where the body ends. httparse refuses more than 16 digits, leading zeros included;
/// such lines are skipped over by hand.
fn agrees_with_httparse(body: &[u8]) {
    let mut at = 0;
    loop {
        let rest = &body[at..];
        let size = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((used, size))) => {
                at += used;
                size
            }
            other => {
                let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                assert!(digits > 16, "httparse disagrees: {other:?}");
                let line = rest.windows(2).position(|w| w == b"\r\n");
                let line = line.unwrap_or_else(|| panic!("no CRLF after {digits} digits"));
                let zeros = rest.iter().take_while(|&&b| b == b'0').count();
                let hex = std::str::from_utf8(&rest[zeros..digits]).unwrap_or("");
                at += line + 2;
                u64::from_str_radix(hex, 16).unwrap_or(0)
            }
        };
        if size == 0 {
            break;
        }
        // The scanner accepted this chunk, so its data and CRLF lie within `body`.
        let end = usize::try_from(size).ok().and_then(|s| at.checked_add(s));
        let end = end
            .filter(|&e| e < body.len())
            .expect("chunk inside the body");
        assert_eq!(body.get(end..end + 2), Some(&b"\r\n"[..]));
        at = end + 2;
    }
    // What follows the last chunk is the trailer section, ending in an empty line.
    assert!(body[at..].ends_with(b"\r\n"));
}
