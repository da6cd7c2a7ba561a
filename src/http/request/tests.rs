//! One test per rule of `request::parse`: each smuggling vector, each limit, each form of
//! target, on its own so a failure names the rule.

use super::*;

fn parse_all(text: &str) -> Result<RequestHead, HeadError> {
    let mut head = RequestHead::default();
    match parse(text.as_bytes(), &Limits::default(), &mut head)? {
        true => Ok(head),
        false => panic!("incomplete: {text:?}"),
    }
}

fn status(text: &str) -> u16 {
    match parse_all(text) {
        Ok(_) => 200,
        Err(e) => e.status,
    }
}

/// A POST with `extra` field lines: the status it gets.
fn with_fields(extra: &str) -> u16 {
    status(&format!("POST / HTTP/1.1\r\nHost: a\r\n{extra}\r\n"))
}

#[test]
fn a_plain_get() {
    let text = "GET /a?b=1 HTTP/1.1\r\nHost: Example.com\r\nUser-Agent: t\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert_eq!(h.len, text.len());
    assert_eq!(h.method(), Method::Get);
    assert_eq!(&text[h.method_at.clone()], "GET");
    assert_eq!(&text[h.target.clone()], "/a?b=1");
    assert_eq!(&text[h.host.clone().unwrap()], "Example.com");
    assert!(!h.host_from_target);
    assert_eq!(h.body(), Framing::None);
    assert!(h.keep_alive());
    assert_eq!(&text[h.fields[1].line.clone()], "User-Agent: t\r\n");
    assert_eq!(&text[h.fields[1].value.clone()], "t");
    assert_eq!(&text[h.line.clone()], "GET /a?b=1 HTTP/1.1\r\n");
}

#[test]
fn a_head_is_reused_across_requests() {
    let mut h = RequestHead::default();
    let limits = Limits::default();
    let a = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nX: 1\r\n\r\n";
    assert_eq!(parse(a, &limits, &mut h), Ok(true));
    let b = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(parse(b, &limits, &mut h), Ok(true));
    assert!(h.fields.is_empty() && h.host.is_none() && h.body() == Framing::None);
}

#[test]
fn partial_heads_wait_for_more() {
    let mut h = RequestHead::default();
    for text in [
        "",
        "G",
        "GET / HTT",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\n\r",
    ] {
        assert_eq!(
            parse(text.as_bytes(), &Limits::default(), &mut h),
            Ok(false),
            "{text:?}"
        );
    }
}

#[test]
fn every_prefix_of_a_head_is_partial() {
    let text = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let end = text.len() - 3;
    let mut h = RequestHead::default();
    for cut in 0..end {
        assert_eq!(
            parse(&text[..cut], &Limits::default(), &mut h),
            Ok(false),
            "{cut}"
        );
    }
    assert_eq!(parse(&text[..end], &Limits::default(), &mut h), Ok(true));
    assert_eq!(h.len, end);
}

#[test]
fn pipelined_bytes_are_not_part_of_the_head() {
    let text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
    let h = parse_all(text).unwrap();
    assert_eq!(&text[h.len..], "GET /2 HTTP/1.1\r\n");
}

#[test]
fn empty_lines_before_the_request_line_are_skipped() {
    // RFC 9112 §2.2; they are part of `len` (consumed) but not of the request line.
    let text = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert_eq!(&text[h.line.clone()], "GET / HTTP/1.1\r\n");
    assert_eq!(h.len, text.len());
    assert_eq!(
        status("\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        400,
        "bare LF"
    );
}

#[test]
fn framing_of_request_bodies() {
    let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n").unwrap();
    assert_eq!(h.body(), Framing::Length(10));
    assert!(!h.normalize_length);
    let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
        .unwrap();
    assert_eq!(h.body(), Framing::Chunked);
    let h = parse_all(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    assert_eq!(h.body(), Framing::Chunked);
}

#[test]
fn identical_content_lengths_collapse_to_one() {
    for extra in [
        "Content-Length: 3, 3\r\n",
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        "Content-Length: 3\r\ncontent-length: 3,3\r\n",
    ] {
        let h = parse_all(&format!("POST / HTTP/1.1\r\nHost: a\r\n{extra}\r\n")).unwrap();
        assert_eq!(h.body(), Framing::Length(3), "{extra:?}");
        assert!(h.normalize_length, "{extra:?}");
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    assert_eq!(
        with_fields("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        400
    );
    assert_eq!(
        with_fields("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
        400
    );
    assert_eq!(
        with_fields("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
        400
    );
}

#[test]
fn differing_content_lengths_are_400() {
    assert_eq!(
        with_fields("Content-Length: 5\r\nContent-Length: 6\r\n"),
        400
    );
    assert_eq!(with_fields("Content-Length: 5, 6\r\n"), 400);
    assert_eq!(
        with_fields("Content-Length: 5\r\nContent-Length: 5, 6\r\n"),
        400
    );
}

#[test]
fn invalid_content_lengths_are_400() {
    for v in [
        "-1",
        "+5",
        "0x10",
        "1e3",
        "5 5",
        "",
        "abc",
        "99999999999999999999999",
        "5,",
    ] {
        assert_eq!(
            with_fields(&format!("Content-Length: {v}\r\n")),
            400,
            "{v:?}"
        );
    }
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400() {
    assert_eq!(with_fields("Transfer-Encoding: gzip\r\n"), 400);
    assert_eq!(with_fields("Transfer-Encoding: chunked, identity\r\n"), 400);
    assert_eq!(
        with_fields("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
        400
    );
    assert_eq!(with_fields("Transfer-Encoding: chunked, chunked\r\n"), 400);
    assert_eq!(
        with_fields("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        400
    );
    assert_eq!(with_fields("Transfer-Encoding: \r\n"), 400);
    assert_eq!(with_fields("Transfer-Encoding: xchunked\r\n"), 400);
}

#[test]
fn transfer_encoding_in_http_1_0_is_400() {
    assert_eq!(
        status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
}

#[test]
fn obs_fold_is_400() {
    assert_eq!(with_fields("X-Folded: a\r\n b\r\n"), 400);
    assert_eq!(with_fields("X-Folded: a\r\n\tb\r\n"), 400);
    // Whitespace before the first field is the same trick.
    assert_eq!(status("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
}

#[test]
fn whitespace_before_the_colon_is_400() {
    assert_eq!(with_fields("Content-Length : 5\r\n"), 400);
    assert_eq!(with_fields("Content-Length\t: 5\r\n"), 400);
    assert_eq!(with_fields("Transfer-Encoding : chunked\r\n"), 400);
}

#[test]
fn bare_lf_is_400() {
    assert_eq!(
        status("POST / HTTP/1.1\nHost: a\r\n\r\n"),
        400,
        "request line"
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n"),
        400,
        "field"
    );
    assert_eq!(status("POST / HTTP/1.1\r\nHost: a\n\n"), 400, "end");
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\n\n"),
        400,
        "blank line"
    );
    // Refused on arrival, not after waiting for a head that will never end in CRLFCRLF.
    let mut h = RequestHead::default();
    let partial = b"GET / HTTP/1.1\r\nHost: a\n\r\n";
    assert_eq!(
        parse(partial, &Limits::default(), &mut h)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn bare_cr_is_400() {
    assert_eq!(with_fields("X: a\rb\r\n"), 400);
    assert_eq!(status("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn control_characters_in_values_are_400() {
    for v in ["a\0b", "a\x7fb", "a\x01", "\x1bx", "a\x0bb"] {
        assert_eq!(with_fields(&format!("X-Bad: {v}\r\n")), 400, "{v:?}");
    }
    // HTAB and obs-text are allowed in values.
    assert_eq!(with_fields("X-Ok: a\tb\u{e9}\r\n"), 200);
}

#[test]
fn invalid_field_names_are_400() {
    for name in ["Bad Name", "Bad\0", "(x)", "a\"b", "X/Y", "Ä"] {
        assert_eq!(with_fields(&format!("{name}: x\r\n")), 400, "{name:?}");
    }
    assert_eq!(with_fields(": empty name\r\n"), 400);
}

#[test]
fn missing_host_is_400_in_http_1_1() {
    assert_eq!(status("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400, "empty");
    assert_eq!(
        status("GET / HTTP/1.0\r\n\r\n"),
        200,
        "HTTP/1.0 needs no Host"
    );
}

#[test]
fn two_hosts_are_400() {
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        400,
        "same"
    );
    assert_eq!(
        status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        400,
        "1.0"
    );
}

#[test]
fn invalid_hosts_are_400() {
    for host in ["a b", "a/b", "user@a", "a\\b", "a?b"] {
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")),
            400,
            "{host}"
        );
    }
    for host in ["a.example:8443", "[2001:db8::1]:443", "127.0.0.1"] {
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")),
            200,
            "{host}"
        );
    }
}

#[test]
fn request_targets() {
    assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(
        status("GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
        400,
        "authority-form"
    );
    assert_eq!(status("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(
        status("GET http://u@evil/x HTTP/1.1\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(status("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn absolute_form_names_the_host() {
    let text = "GET http://Other.example:8080/x HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert_eq!(&text[h.host.clone().unwrap()], "Other.example:8080");
    assert!(h.host_from_target);
    let text = "GET HTTPS://b?q HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert_eq!(&text[h.host.clone().unwrap()], "b");
    assert_eq!(
        status("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
        400,
        "empty"
    );
}

#[test]
fn connect_is_405_whatever_the_target() {
    assert_eq!(status("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), 405);
    assert_eq!(status("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
    assert_eq!(status("CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
}

#[test]
fn versions_other_than_1_0_and_1_1_are_505() {
    assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(
        status("GET / FOO/1.1\r\nHost: a\r\n\r\n"),
        400,
        "not a version"
    );
    assert_eq!(
        status("GET / http/1.1\r\nHost: a\r\n\r\n"),
        400,
        "case matters"
    );
    assert_eq!(status("GET /\r\nHost: a\r\n\r\n"), 400, "no version");
}

fn small() -> Limits {
    Limits {
        max_line: 64,
        max_head: 256,
        max_fields: 4,
    }
}

fn limited(text: &str, limits: &Limits) -> Result<bool, u16> {
    parse(text.as_bytes(), limits, &mut RequestHead::default()).map_err(|e| e.status)
}

#[test]
fn a_long_request_line_is_414() {
    let l = small();
    let at_limit = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(64 - 16));
    assert_eq!(limited(&at_limit, &l), Ok(true), "64 bytes with CRLF");
    let over = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(64 - 15));
    assert_eq!(limited(&over, &l), Err(414));
    // Unfinished but already too long; one byte less may still end in time.
    assert_eq!(limited(&format!("GET /{}", "x".repeat(59)), &l), Err(414));
    assert_eq!(limited(&format!("GET /{}", "x".repeat(58)), &l), Ok(false));
}

#[test]
fn a_large_head_is_431() {
    let l = small();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(300)
    );
    assert_eq!(limited(&big, &l), Err(431));
    let growing = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "y".repeat(300));
    assert_eq!(limited(&growing, &l), Err(431));
    // Exactly at the limit is fine, one byte more is not.
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(256 - base)
    );
    assert_eq!(limited(&exact, &l), Ok(true));
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(257 - base)
    );
    assert_eq!(limited(&over, &l), Err(431));
    // Pipelined bytes after a head within the limit do not count against it.
    let pipelined = format!("GET / HTTP/1.1\r\nHost: a\r\n\r\n{}", "z".repeat(1000));
    assert_eq!(limited(&pipelined, &l), Ok(true));
}

#[test]
fn too_many_fields_is_431() {
    let l = small();
    let four = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\n\r\n";
    assert_eq!(limited(four, &l), Ok(true));
    let five = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
    assert_eq!(limited(five, &l), Err(431));
    // Known before the head ends.
    assert_eq!(limited(&five[..five.len() - 2], &l), Err(431));
    let defaults = Limits::default();
    let fields: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let hundred = format!("GET / HTTP/1.1\r\n{fields}\r\n").replace("X-0: v", "Host: a");
    assert_eq!(limited(&hundred, &defaults), Ok(true));
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    assert_eq!(limited(&many, &defaults), Err(431));
}

#[test]
fn body_limits_are_413_at_head_time() {
    let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n").unwrap();
    assert_eq!(h.check_body_limit(Some(10)).unwrap_err().status, 413);
    assert!(h.check_body_limit(Some(11)).is_ok());
    assert!(h.check_body_limit(None).is_ok());
    let h = parse_all("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    assert!(
        h.check_body_limit(Some(0)).is_ok(),
        "chunked: known while streaming"
    );
}

#[test]
fn connection_semantics() {
    let h = parse_all("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    assert!(!h.keep_alive());
    let h = parse_all("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!h.keep_alive());
    let h = parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(h.keep_alive());
    let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, Upgrade\r\nX-Secret: 1\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert!(h.upgrade && h.expect_continue);
    let secret = h
        .fields
        .iter()
        .find(|f| &text[f.name_at.clone()] == "X-Secret")
        .unwrap();
    assert!(secret.listed_in_connection);
}

#[test]
fn connection_cannot_name_framing_fields_or_host() {
    let text = "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 5\r\n\r\n";
    let h = parse_all(text).unwrap();
    assert!(h.fields.iter().all(|f| !f.listed_in_connection));
    assert_eq!(h.body(), Framing::Length(5));
}

#[test]
fn upgrade_and_expect_are_ignored_in_http_1_0() {
    let h = parse_all(
        "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    assert!(!h.upgrade && !h.expect_continue);
    let h = parse_all("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!h.upgrade, "Upgrade without Connection: upgrade");
}
