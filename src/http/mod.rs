//! Sans-IO HTTP/1.1 for http mode: request and response heads parsed into byte ranges and held
//! to RFC 9112 (so tern and its backends never disagree about where a message ends), streaming
//! body framing, and the rewriting of heads on their way through. No sockets, no TLS, no
//! async: the proxy's I/O loop feeds bytes in and acts on what comes out.
//!
//! | file | holds |
//! |---|---|
//! | `fields` | header names, field ranges, Connection tokens, the framing rules both message kinds share, the line scan (bare LF, obs-fold) |
//! | `request` | request heads: limits (414/431), request line, Host and target checks |
//! | `response` | backend response heads and their framing by method and status (errors: 502) |
//! | `body` | `BodyScanner`: where a Content-Length or chunked body ends, streamed |
//! | `forward` | heads written onward (forwarding and hop-by-hop fields), tern's own error responses |
//! | `identity` | the client-certificate identity headers for the backend (mTLS), made safe |
//! | `fuzzing` | the fuzz targets' bodies, shared with a stable test over the corpus |
//!
//! How an I/O loop drives it, per client connection (all buffers reused across requests):
//!
//! 1. Read into a buffer; `request::parse(buf, &limits, &mut head)`: `Ok(false)` read more,
//!    `Err(e)` answer `forward::error_response(e.status)` and close, `Ok(true)` the head is
//!    `buf[..head.len]`. `head.check_body_limit(max_body)` refuses a too large
//!    Content-Length (413) before anything goes to a backend.
//! 2. `forward::request(buf, &head, client_ip, policy, &mut out)` writes the head for the
//!    backend (`forward::request_with` also appends the connection's client-certificate
//!    `IdentityFields`); send `out`, then drop `head.len` bytes from the buffer.
//! 3. `BodyScanner::with_limit(head.body(), max_body)`; while `!done()`, `feed(bytes)`
//!    returns how many of the bytes belong to the body: forward exactly those, keep the rest
//!    (a pipelined request). An error is the status to answer (400 or 413) and a close.
//! 4. Read the backend's reply; `response::parse(buf, method == HEAD, &mut resp)` (errors:
//!    502). Interim 1xx heads (`resp.is_interim()`) are passed on and parsing starts again
//!    after them. `forward::client_keep_alive` decides the client side;
//!    `forward::response_for` writes the head; a `BodyScanner::new(resp.body())` streams the
//!    body (a close-delimited one until EOF). `resp.backend_reusable()` says whether the
//!    backend connection may go back to its pool.

pub mod body;
pub mod fields;
pub mod forward;
pub mod fuzzing;
pub mod identity;
pub mod request;
pub mod response;

pub use body::{BodyScanner, FramingError};
pub use fields::{Framing, HeadError};
pub use forward::ForwardPolicy;
pub use identity::{CertHeaders, IdentityFields, PeerCert};
pub use request::{Limits, Method, RequestHead};
pub use response::ResponseHead;
