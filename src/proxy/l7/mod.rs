//! http mode: HTTP/1.1 over the client's TLS connection. Each request head is parsed and held
//! to RFC 9112 (`http`), routed by Host and path to a pool, sent to a backend (kept-alive
//! connections are reused) with forwarding headers, its body streamed through; the response
//! head comes back cleaned of hop-by-hop headers and its body is streamed to the client.
//! Errors tern detects itself are answered with a real HTTP status and `Connection: close`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use monoio::net::TcpStream;
use tracing::debug;

use super::accesslog::{method_name, Entry};
use super::handshake::Carry;
use super::pump::{self, Tunnel};
use super::split::{split, Half};
use super::tlsio::{ClientError, ClientOut, Sending, TlsReader};
use super::Ctx;
use crate::backend::addr::BackendAddr;
use crate::backend::conn::{BackendRx, BackendStream, BackendTx};
use crate::backend::pool::{ConnectError, Pool};
use crate::backend::proxy_out;
use crate::http::{self, forward, BodyScanner, Framing, IdentityFields, Method, RequestHead};
use crate::proxyproto::Version as ProxyVersion;
use crate::route::normalize_host;
use crate::tls::Established;
use crate::util::baton::Baton;
use std::rc::Rc;

mod response;

/// What one request needs after its head bytes are gone.
struct Request {
    method: Method,
    /// The method as sent, for the access log, when it is not one tern knows by name.
    other_method: Option<String>,
    /// 0 for an HTTP/1.0 client, which needs `Connection: keep-alive` spelled out.
    minor: u8,
    body: Framing,
    keep_alive: bool,
    upgrade: bool,
    host: Option<String>,
    path: String,
}

/// How an exchange with a backend ended.
enum Exchange {
    /// The response is complete. `reuse`: the backend connection can take another request.
    Done {
        status: u16,
        close: bool,
        reuse: bool,
        bytes_out: u64,
    },
    /// The backend switched protocols (101): tunnel from here.
    Upgrade { leftover: Vec<u8> },
    /// Failed before any response byte reached the client: answer with this status.
    Refused {
        status: u16,
        retry: bool,
        why: String,
    },
    /// Failed after the response started: the client connection is cut.
    Broken(String),
}

struct Http<'a> {
    ctx: &'a Ctx,
    out: ClientOut<'a>,
    peer: SocketAddr,
    sni: Option<String>,
    /// The certificates that may answer for the connection's server name.
    sni_group: crate::tls::store::Group,
    /// When the current request's final response head came from the backend (access log).
    response_at: Cell<Option<Instant>>,
    /// The client presented a verified certificate (routes with `client_auth = "required"`).
    cert_verified: bool,
    /// The identity headers every request of this connection carries to the backend.
    identity: IdentityFields,
    /// The PROXY protocol headers (v1, v2) for this client connection, made once if a pool
    /// sends them. Backend connections opened with one are kept for this connection only.
    proxy_headers: [Option<Rc<[u8]>>; 2],
}

/// Where a PROXY version's header is kept.
fn slot(v: ProxyVersion) -> usize {
    match v {
        ProxyVersion::V1 => 0,
        ProxyVersion::V2 => 1,
    }
}

pub async fn serve(
    ctx: Ctx,
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    session: Box<Established>,
    carry: Carry,
) {
    // Boxed in, and unboxed in a block (which frees the box at once): an `async fn` keeps its
    // arguments for its whole life beside the locals made from them, so an `Established` (0.9
    // KiB) taken by value would be held twice by every keep-alive connection.
    let Established {
        rx,
        tx,
        control,
        info,
        early,
    } = {
        let boxed = session;
        *boxed
    };
    // PROXY headers for the pools that send them, with the address the client reached.
    let mut proxy_headers: [Option<Rc<[u8]>>; 2] = [None, None];
    for v in ctx.pools.iter().filter_map(|p| p.proxy_protocol()) {
        proxy_headers[slot(v)]
            .get_or_insert_with(|| proxy_out::header(v, peer, local, &info).into());
    }
    let (mut client_rx, client_tx) = split(client);
    let keep = client_rx.keep();
    let mut reader = match TlsReader::new(rx, carry, &early, &ctx.bufs) {
        Ok(r) => r,
        Err(e) => {
            debug!(%peer, "http: {e}");
            return;
        }
    };
    drop(early);
    // `--uring-recv multishot` on io_uring: the client's records come from an armed receive.
    reader.arm(&client_rx);
    let conn = Http {
        ctx: &ctx,
        out: ClientOut {
            sending: Baton::new(Sending {
                half: client_tx,
                tx,
            }),
            control: &control,
            pool: &ctx.bufs,
        },
        peer,
        sni_group: ctx.certs.group_for(info.sni.as_deref()),
        sni: info.sni,
        response_at: Cell::new(None),
        proxy_headers,
        cert_verified: info.client_cert.verified().is_some(),
        identity: super::identity_fields(&info.client_cert, ctx.settings.http.cert_headers),
    };
    drop(info.client_cert);
    let upgrade = conn.requests(&mut reader, &mut client_rx).await;
    conn.forget_kept();
    let Some((backend, leftover)) = upgrade else {
        return;
    };
    // 101 Switching Protocols: from here on, bytes both ways unchanged.
    let Some(Sending { half, tx }) = conn.out.sending.into_inner() else {
        return;
    };
    let (rx, carry, to_backend) = reader.into_parts(&control, &ctx.bufs).await;
    let tunnel = Box::new(Tunnel {
        rx,
        tx,
        control,
        client: (client_rx, half),
        backend,
        carry,
        to_backend,
        to_client: leftover,
    });
    // Boxed: it is larger than the keep-alive state, which would otherwise be sized for it.
    let pump = pump::run(tunnel, &ctx.bufs, ctx.settings.idle_timeout, &ctx.stats);
    let (outcome, _) = Box::pin(pump).await;
    debug!(%peer, %local, "upgraded connection ended: {outcome}");
    drop(keep);
}

enum HeadRead {
    Ready,
    /// The client closed, or stayed silent past the idle timeout, between requests.
    Gone,
    Refuse(u16, &'static str),
    Failed(ClientError),
}

impl<'a> Http<'a> {
    /// Serves requests until the connection ends; returns the backend of an upgrade.
    async fn requests(
        &self,
        reader: &mut TlsReader,
        client: &mut Half,
    ) -> Option<((BackendRx, BackendTx), Vec<u8>)> {
        let s = &self.ctx.settings;
        let mut head = RequestHead::default();
        let mut scratch = Vec::new();
        loop {
            let read = self.read_head(reader, client, &mut head).await;
            if matches!(read, HeadRead::Ready | HeadRead::Refuse(..)) {
                self.ctx.stats.http.requests.inc();
            }
            match read {
                HeadRead::Ready => {}
                HeadRead::Gone => return None,
                HeadRead::Failed(e) => {
                    debug!(peer = %self.peer, "http: reading a request: {e}");
                    return None;
                }
                HeadRead::Refuse(status, why) => {
                    debug!(peer = %self.peer, status, "http: refused: {why}");
                    self.log_refused_head(reader.plaintext(), status);
                    self.answer(status, client).await;
                    return None;
                }
            }
            let started = Instant::now();
            self.response_at.set(None);
            let src = reader.plaintext();
            let req = Request {
                method: head.method(),
                other_method: (head.method() == Method::Other)
                    .then(|| String::from_utf8_lossy(&src[head.method_at.clone()]).into_owned()),
                body: head.body(),
                minor: head.minor,
                keep_alive: head.keep_alive(),
                upgrade: head.upgrade,
                host: head
                    .host
                    .clone()
                    .map(|r| normalize_host(&String::from_utf8_lossy(&src[r]))),
                path: String::from_utf8_lossy(path_of(&src[head.target.clone()])).into_owned(),
            };
            // Body bytes that came with the head are checked before anything reaches a
            // backend: a broken chunked body sent in one go is refused outright.
            let early_body_ok = req.body != Framing::Chunked
                || BodyScanner::new(Framing::Chunked)
                    .feed(&src[head.len..])
                    .is_ok();
            let refusal = if early_body_ok {
                self.check(&req)
            } else {
                Err(400)
            };
            let pool = match refusal {
                Ok(pool) => pool,
                Err(status) => {
                    self.log(&req, None, status, 0, None, started);
                    self.answer(status, client).await;
                    return None;
                }
            };
            self.ctx.pool_stats[pool].requests.inc();
            forward::request_with(
                src,
                &head,
                self.peer.ip(),
                s.http.forward,
                &self.identity,
                &mut scratch,
            );
            reader.consume(head.len, &self.ctx.bufs);

            let mut retried = false;
            loop {
                // Boxed: a connection waiting between requests holds none of this.
                let (exchange, backend) =
                    Box::pin(self.exchange(pool, &req, &scratch, reader, client, !retried)).await;
                match exchange {
                    Exchange::Done {
                        status,
                        close,
                        reuse,
                        bytes_out,
                    } => {
                        self.log(
                            &req,
                            Some(pool),
                            status,
                            bytes_out,
                            backend.as_ref().map(|b| b.0),
                            started,
                        );
                        if let (true, Some((_, index, (rx, tx)))) = (reuse, backend) {
                            let p = &self.ctx.pools[pool];
                            if let Some(stream) = BackendStream::join(rx, tx, &self.ctx.bufs) {
                                p.put_idle(index, stream, self.proxy_header(p.proxy_protocol()));
                            }
                        }
                        if close {
                            let _ = self.out.close().await;
                            return None;
                        }
                        break;
                    }
                    Exchange::Upgrade { leftover } => {
                        self.log(
                            &req,
                            Some(pool),
                            101,
                            0,
                            backend.as_ref().map(|b| b.0),
                            started,
                        );
                        return backend.map(|(_, _, halves)| (halves, leftover));
                    }
                    Exchange::Refused { status, retry, why } => {
                        if retry && !retried {
                            debug!(peer = %self.peer, "http: retrying on a new connection: {why}");
                            retried = true;
                            continue;
                        }
                        debug!(peer = %self.peer, status, "http: {why}");
                        self.log(
                            &req,
                            Some(pool),
                            status,
                            0,
                            backend.as_ref().map(|b| b.0),
                            started,
                        );
                        self.answer(status, client).await;
                        return None;
                    }
                    Exchange::Broken(why) => {
                        debug!(peer = %self.peer, "http: exchange cut: {why}");
                        self.log(
                            &req,
                            Some(pool),
                            0,
                            0,
                            backend.as_ref().map(|b| b.0),
                            started,
                        );
                        return None;
                    }
                }
            }
        }
    }

    /// This connection's PROXY header of version `v`.
    fn proxy_header(&self, v: Option<ProxyVersion>) -> Option<Rc<[u8]>> {
        self.proxy_headers[slot(v?)].clone()
    }

    /// The connection ends: backend connections kept for it alone are closed.
    fn forget_kept(&self) {
        for p in &self.ctx.pools {
            if let Some(h) = self.proxy_header(p.proxy_protocol()) {
                p.drop_tagged(&h);
            }
        }
    }

    /// Routing and the checks that need no backend: 421, 404, 403, 413.
    fn check(&self, req: &Request) -> Result<usize, u16> {
        let ctx = self.ctx;
        if !ctx
            .certs
            .shares(ctx.certs.group_for(req.host.as_deref()), self.sni_group)
        {
            // The Host belongs to another certificate than the one this connection shows.
            return Err(421);
        }
        let Some(route) = ctx
            .routes
            .pick_route(req.host.as_deref(), req.path.as_bytes())
        else {
            return Err(404);
        };
        if route.client_cert_required && !self.cert_verified {
            // As nginx's `if ($ssl_client_verify != SUCCESS) { return 403; }`.
            return Err(403);
        }
        let pool = route.pool;
        if let (Framing::Length(n), Some(max)) = (req.body, ctx.settings.http.max_body) {
            if n > max {
                return Err(413);
            }
        }
        Ok(pool)
    }

    /// Waits for a whole request head: silence before its first byte is the idle timeout (the
    /// connection just closes); after it, the head must be complete within the header timeout.
    /// The first byte is the first byte of ciphertext, so a client that trickles an incomplete
    /// TLS record gets its 408 as one that trickles a head does.
    async fn read_head(
        &self,
        reader: &mut TlsReader,
        client: &mut Half,
        head: &mut RequestHead,
    ) -> HeadRead {
        let s = &self.ctx.settings;
        let mut deadline: Option<Instant> = None;
        let idle = s.idle_timeout.unwrap_or(Duration::from_secs(24 * 3600));
        loop {
            if deadline.is_none() && reader.plaintext().is_empty() && !reader.finished() {
                match monoio::time::timeout(idle, reader.first_bytes(client, &self.ctx.bufs)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return HeadRead::Failed(e),
                    Err(_) => return HeadRead::Gone,
                }
                deadline = Some(Instant::now() + s.http.header_timeout);
            }
            if !reader.plaintext().is_empty() {
                match http::request::parse(reader.plaintext(), &s.http.limits, head) {
                    Ok(true) => return HeadRead::Ready,
                    Ok(false) => {}
                    Err(e) => return HeadRead::Refuse(e.status, e.reason),
                }
                deadline.get_or_insert_with(|| Instant::now() + s.http.header_timeout);
            } else if reader.finished() {
                return HeadRead::Gone;
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => idle,
            };
            match monoio::time::timeout(wait, reader.fill(client, &self.out)).await {
                Ok(Ok(0)) => {
                    if reader.plaintext().is_empty() {
                        return HeadRead::Gone;
                    }
                    return HeadRead::Refuse(400, "client closed inside a request head");
                }
                Ok(Ok(_)) => {}
                Ok(Err(ClientError::Full)) => {
                    return HeadRead::Refuse(431, "request head too large")
                }
                Ok(Err(e)) => return HeadRead::Failed(e),
                Err(_) if deadline.is_some() => {
                    return HeadRead::Refuse(408, "request head not sent in time")
                }
                Err(_) => return HeadRead::Gone,
            }
        }
    }

    /// One request to one backend connection: head and body out, response back.
    async fn exchange(
        &self,
        pool: usize,
        req: &Request,
        head: &[u8],
        reader: &mut TlsReader,
        client: &mut Half,
        reuse: bool,
    ) -> (
        Exchange,
        Option<(&'a BackendAddr, usize, (BackendRx, BackendTx))>,
    ) {
        let ctx = self.ctx;
        let p: &Pool = &ctx.pools[pool];
        let header = self.proxy_header(p.proxy_protocol());
        let connected = p.connect_or_reuse(
            self.peer.ip(),
            header.as_ref(),
            &ctx.stats,
            reuse,
            &ctx.bufs,
        );
        let (stream, lease, reused) = match connected.await {
            Ok(c) => c,
            Err(ConnectError::NoneUsable) => {
                return (refused(503, false, "no usable backend".into()), None);
            }
            Err(ConnectError::Failed(e)) => return (refused(502, false, e.to_string()), None),
        };
        let (addr, index) = (lease.addr(), lease.index());
        let (mut brx, mut btx) = stream.split();
        // A kept-alive connection the backend closed meanwhile fails before any response byte:
        // a request that is safe to repeat and has no body goes once more on a new connection.
        let may_retry = reused && req.method.idempotent() && req.body == Framing::None;

        // When the request body was all sent: the backend's time to answer counts from then,
        // so a long upload is not cut short by --backend-timeout.
        let body_done = Cell::new((req.body == Framing::None).then(Instant::now));
        let response_started = Cell::new(false);
        // The rewritten head can be larger than one buffer (forwarding headers added to a
        // head near --max-header-bytes, an absolute-form target become Host): it goes out in
        // buffer-sized pieces, all of it, or the backend would read the body as head.
        let head_sent = {
            let mut buf = ctx.bufs.get();
            let mut res = Ok(0);
            for part in head.chunks(buf.capacity()) {
                buf.space()[..part.len()].copy_from_slice(part);
                buf.set_filled(part.len());
                let (r, b) = btx.write_all(buf, &ctx.bufs).await;
                buf = b;
                res = r;
                if res.is_err() {
                    break;
                }
            }
            ctx.bufs.put(buf);
            res
        };
        if let Err(e) = head_sent {
            return (
                refused(502, may_retry, format!("{addr}: sending the request: {e}")),
                None,
            );
        }
        let outcome = {
            let body = pin!(self.request_body(req, reader, client, &mut btx, &body_done));
            let response = pin!(self.response(
                req,
                &mut brx,
                may_retry,
                addr,
                &response_started,
                &body_done
            ));
            match select(body, response).await {
                Either::Left((Ok(()), response)) => response.await,
                Either::Left((Err(status), _)) if !response_started.get() => {
                    refused(status, false, "request body refused".into())
                }
                Either::Left((Err(status), _)) => Exchange::Broken(format!(
                    "request body refused ({status}) after the response began"
                )),
                Either::Right((r, _)) => r,
            }
        };
        let exchange = match outcome {
            // The backend answered before the whole request body arrived: the rest of the
            // body cannot be told from a next request, so the connection ends here.
            Exchange::Done {
                status, bytes_out, ..
            } if body_done.get().is_none() => Exchange::Done {
                status,
                close: true,
                reuse: false,
                bytes_out,
            },
            Exchange::Done {
                status,
                close,
                reuse,
                bytes_out,
            } => Exchange::Done {
                status,
                close: close || !req.keep_alive,
                reuse,
                bytes_out,
            },
            other => other,
        };
        drop(lease);
        (exchange, Some((addr, index, (brx, btx))))
    }

    /// tern's own answer, then the end of the connection: close_notify and FIN, then a
    /// lingering close, so that what the client is still sending cannot turn into a reset that
    /// makes it lose the answer.
    async fn answer(&self, status: u16, client: &mut Half) {
        let mut out = Vec::new();
        forward::error_response(status, &mut out);
        if self.out.send(&out).await.is_ok() && self.out.close().await.is_ok() {
            super::linger::drain(client, &self.ctx.bufs).await;
        }
    }

    /// Counts the request's outcome and writes its access-log line. `pool`: where it was
    /// routed (`None` when it was refused before routing).
    fn log(
        &self,
        req: &Request,
        pool: Option<usize>,
        status: u16,
        bytes_out: u64,
        backend: Option<&BackendAddr>,
        started: Instant,
    ) {
        self.ctx.stats.http.responses.record(status);
        if let Some(p) = pool.map(|p| &self.ctx.pool_stats[p]) {
            p.responses.record(status);
            if let Some(at) = self.response_at.get() {
                p.response_time.observe(at.duration_since(started));
            }
        }
        if let Some(log) = &self.ctx.access_log {
            log.record(&Entry {
                client: self.peer,
                sni: self.sni.as_deref(),
                method: req
                    .other_method
                    .as_deref()
                    .unwrap_or(method_name(req.method)),
                host: req.host.as_deref(),
                path: &req.path,
                status,
                bytes_out,
                backend,
                backend_time: self.response_at.get().map(|t| t.duration_since(started)),
                duration: started.elapsed(),
            });
        }
    }

    /// A head refused before it parsed (400, 408, 414, 431, 505) is logged too, with what its
    /// request line shows (escaped in the log; it is the client's word, not a parsed request).
    fn log_refused_head(&self, head: &[u8], status: u16) {
        self.ctx.stats.http.responses.record(status);
        let Some(log) = &self.ctx.access_log else {
            return;
        };
        let (method, path) = super::accesslog::request_line_words(head);
        log.record(&Entry {
            client: self.peer,
            sni: self.sni.as_deref(),
            method: &method,
            host: None,
            path: &path,
            status,
            bytes_out: 0,
            backend: None,
            backend_time: None,
            duration: Duration::ZERO,
        });
    }
}

fn refused(status: u16, retry: bool, why: String) -> Exchange {
    Exchange::Refused { status, retry, why }
}

/// The path of a request target (origin-form as is; absolute-form without scheme and host).
fn path_of(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            return rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(b"/", |p| &rest[p..]);
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_targets() {
        assert_eq!(path_of(b"/a/b?c"), b"/a/b?c");
        assert_eq!(path_of(b"http://h:1/x?y"), b"/x?y");
        assert_eq!(path_of(b"HTTPS://h"), b"/");
        assert_eq!(path_of(b"*"), b"*");
    }
}
