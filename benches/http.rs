//! Criterion benches of the sans-IO HTTP layer: a browser-like request head (563 bytes, 12
//! fields) parsed and checked, then also rewritten for the backend; a response head parsed and
//! rewritten; a 1 MiB chunked body (4 KiB chunks) scanned. Throughput is in bytes of input; the
//! time per iteration is the cost per request.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tern::http::{
    forward, request, response, BodyScanner, ForwardPolicy, Framing, Limits, RequestHead,
    ResponseHead,
};

const BROWSER_REQUEST: &[u8] = b"GET /static/app/main.3f9a1c.js?v=20261124 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/garden/tools?page=2\r\n\
Connection: keep-alive\r\n\
Cookie: session=3b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Priority: u=2\r\n\r\n";

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 24 Nov 2026 05:00:00 GMT\r\n\
Content-Type: application/javascript\r\nContent-Length: 18342\r\nConnection: keep-alive\r\n\
Cache-Control: public, max-age=31536000\r\nETag: \"6745a1b0-47a6\"\r\n\r\n";

fn bench_heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_head");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let mut out = Vec::with_capacity(2048);
    g.bench_function("request_parse", |b| {
        b.iter(|| {
            assert!(request::parse(BROWSER_REQUEST, &limits, &mut head).unwrap());
            head.len
        })
    });
    g.bench_function("request_parse_and_rewrite", |b| {
        b.iter(|| {
            assert!(request::parse(BROWSER_REQUEST, &limits, &mut head).unwrap());
            forward::request(
                BROWSER_REQUEST,
                &head,
                [203, 0, 113, 7].into(),
                ForwardPolicy::default(),
                &mut out,
            );
            out.len()
        })
    });
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    let mut resp = ResponseHead::default();
    g.bench_function("response_parse_and_rewrite", |b| {
        b.iter(|| {
            assert!(response::parse(RESPONSE, false, &mut resp).unwrap());
            forward::response(RESPONSE, &resp, false, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn bench_chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..256 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'x', 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("http_body");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked_scan_1MiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            let mut s = BodyScanner::new(Framing::Chunked);
            // Fed in 16 KiB pieces, as reads deliver it.
            let mut n = 0;
            for piece in body.chunks(16 * 1024) {
                n += s.feed(piece).unwrap();
            }
            assert!(s.done());
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_heads, bench_chunked);
criterion_main!(benches);
