//! The bodies of the fuzz targets (`fuzz/`), kept in the library so that a plain test can run
//! them over the stored corpus on stable Rust (`tests/fuzz_corpus.rs`).

use super::body::BodyScanner;
use super::fields::Framing;
use super::forward::{self, ForwardPolicy};
use super::request::{self, Limits, RequestHead};
use super::response::{self, ResponseHead};

/// Request-head parsing and rewriting must never panic, and a head it accepts must be
/// framed consistently: its length within the input, its ranges inside the head.
pub fn request_head(data: &[u8]) {
    let mut head = RequestHead::default();
    let limits = Limits::default();
    if let Ok(true) = request::parse(data, &limits, &mut head) {
        assert!(head.len <= data.len());
        for f in &head.fields {
            assert!(f.line.end <= head.len && f.value.end <= f.line.end);
        }
        let mut out = Vec::new();
        let policy = ForwardPolicy {
            trust_client: data.first().is_some_and(|b| b & 1 == 1),
            forwarded: true,
        };
        forward::request(data, &head, [203, 0, 113, 7].into(), policy, &mut out);
        assert!(out.ends_with(b"\r\n\r\n"));
        // What tern forwards must parse again, with the same framing.
        let mut again = RequestHead::default();
        let big = Limits {
            max_head: usize::MAX,
            max_line: usize::MAX,
            max_fields: 128,
        };
        if let Ok(true) = request::parse(&out, &big, &mut again) {
            assert_eq!(again.body(), head.body());
        }
    }
    let mut resp = ResponseHead::default();
    let _ = response::parse(data, false, &mut resp);
}

/// The chunked scanner must never panic, and must give the same answer however the input is
/// split (`data[0]` picks the split point).
pub fn chunked(data: &[u8]) {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut s = BodyScanner::new(Framing::Chunked);
        s.feed(body).map(|n| (n, s.done()))
    };
    let cut = (cut as usize).min(body.len());
    let mut s = BodyScanner::new(Framing::Chunked);
    let split = s.feed(&body[..cut]).and_then(|n| {
        if n < cut || s.done() {
            Ok((n, s.done()))
        } else {
            s.feed(&body[cut..]).map(|m| (n + m, s.done()))
        }
    });
    assert_eq!(whole, split);
    if let Ok((n, _)) = whole {
        assert!(n <= body.len());
    }
}
