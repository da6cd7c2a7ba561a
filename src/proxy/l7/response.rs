//! The response half of an http-mode exchange: the request body streamed to the backend, then
//! the backend's response (interim 1xx heads and the final one) cleaned and streamed back.

use std::cell::Cell;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use monoio::buf::IoBufMut;

use super::{refused, Exchange, Http, Request};
use crate::backend::addr::BackendAddr;
use crate::backend::conn::{BackendRx, BackendTx};
use crate::http::{self, forward, BodyScanner, Framing, Method, ResponseHead};
use crate::proxy::bufpool::PoolBuf;
use crate::proxy::split::Half;
use crate::proxy::tlsio::TlsReader;

impl Http<'_> {
    /// Streams the request body from the client to the backend. Errors are the status to
    /// answer (400 for broken framing, 413 over the limit, 408 for a pause longer than
    /// `--body-timeout`); a client that goes away is 400 too (the answer will not be read).
    pub(super) async fn request_body(
        &self,
        req: &Request,
        reader: &mut TlsReader,
        client: &mut Half,
        backend: &mut BackendTx,
        done: &Cell<Option<Instant>>,
    ) -> Result<(), u16> {
        let ctx = self.ctx;
        // The limit counts body data only (not chunk framing): 413 past it.
        let mut scanner = BodyScanner::with_limit(req.body, ctx.settings.http.max_body);
        let wait = ctx.settings.http.body_timeout;
        while !scanner.done() {
            if reader.plaintext().is_empty() {
                match monoio::time::timeout(wait, reader.fill(client, &self.out)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Err(_) => return Err(408),
                    _ => return Err(400),
                }
            }
            let n = scanner.feed(reader.plaintext()).map_err(|e| e.status)?;
            if n > 0 {
                reader
                    .forward(n, backend, &ctx.bufs)
                    .await
                    .map_err(|_| 502u16)?;
                ctx.stats.bytes_to_backend.add(n as u64);
            }
        }
        done.set(Some(Instant::now()));
        Ok(())
    }

    /// Reads the response (waiting at most the backend timeout for its head), passes 1xx
    /// heads on, then sends the final head and streams the body to the client.
    pub(super) async fn response(
        &self,
        req: &Request,
        backend: &mut BackendRx,
        may_retry: bool,
        addr: &BackendAddr,
        started: &Cell<bool>,
        body_done: &Cell<Option<Instant>>,
    ) -> Exchange {
        let ctx = self.ctx;
        let pool = &ctx.bufs;
        let mut buf = pool.get();
        let mut resp = ResponseHead::default();
        let mut sent_any = false;
        let result = loop {
            let parsed = http::response::parse(buf.filled(), req.method == Method::Head, &mut resp);
            match parsed {
                Ok(true) if resp.is_interim() => {
                    // 100 Continue, 103 Early Hints: passed on as they come, except to an
                    // HTTP/1.0 client, which must not be sent one (RFC 9110 §15.2).
                    if req.minor > 0 {
                        let mut head = Vec::new();
                        forward::response(buf.filled(), &resp, false, &mut head);
                        started.set(true);
                        if self.out.send(&head).await.is_err() {
                            break Exchange::Broken("client gone".into());
                        }
                        sent_any = true;
                    }
                    let len = buf.len();
                    buf.space().copy_within(resp.len..len, 0);
                    buf.set_filled(len - resp.len);
                    continue;
                }
                Ok(true) => {
                    started.set(true);
                    self.response_at.set(Some(Instant::now()));
                    break self.final_response(req, &resp, buf, backend).await;
                }
                Ok(false) if buf.len() == buf.capacity() => {
                    break refused(502, false, format!("{addr}: response head too large"))
                }
                Ok(false) => {}
                Err(e) => break refused(e.status, false, format!("{addr}: {}", e.reason)),
            }
            let at = buf.len();
            let read = pin!(backend.read(buf.slice_mut(at..), pool));
            let expiry = pin!(backend_deadline(
                body_done,
                ctx.settings.http.backend_timeout
            ));
            let (res, slice) = match select(read, expiry).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => {
                    return refused(
                        504,
                        false,
                        format!("{addr}: no response within the backend timeout"),
                    );
                }
            };
            buf = slice.into_inner();
            match res {
                Ok(0) | Err(_) if buf.is_empty() && !sent_any => {
                    break refused(502, may_retry, format!("{addr}: closed before responding"));
                }
                Ok(0) => {
                    break refused(
                        502,
                        false,
                        format!("{addr}: closed inside the response head"),
                    )
                }
                Ok(_) => {}
                Err(e) => break refused(502, false, format!("{addr}: {e}")),
            }
        };
        result
    }

    async fn final_response(
        &self,
        req: &Request,
        resp: &ResponseHead,
        mut buf: PoolBuf,
        backend: &mut BackendRx,
    ) -> Exchange {
        let ctx = self.ctx;
        let pool = &ctx.bufs;
        if resp.status == 101 {
            if !req.upgrade {
                pool.put(buf);
                return refused(502, false, "101 without an upgrade request".into());
            }
            let mut head = Vec::new();
            forward::response(buf.filled(), resp, false, &mut head);
            let leftover = buf.filled()[resp.len..].to_vec();
            pool.put(buf);
            if self.out.send(&head).await.is_err() {
                return Exchange::Broken("client gone".into());
            }
            return Exchange::Upgrade { leftover };
        }
        let close = !forward::client_keep_alive(req.keep_alive, resp);
        let mut scanner = BodyScanner::new(resp.body());
        // Head and the body bytes already here go out together (one record for small replies).
        let mut staging = Vec::with_capacity(resp.len + 512);
        forward::response_for(buf.filled(), resp, req.minor, !close, &mut staging);
        let mut pending = resp.len;
        let mut bytes_out = 0u64;
        let mut extra = false;
        let idle = ctx
            .settings
            .idle_timeout
            .unwrap_or(Duration::from_secs(24 * 3600));
        loop {
            if pending < buf.len() {
                let n = match scanner.feed(&buf.filled()[pending..]) {
                    Ok(n) => n,
                    Err(e) => {
                        pool.put(buf);
                        return Exchange::Broken(format!("backend body: {e}"));
                    }
                };
                let body = &buf.filled()[pending..pending + n];
                bytes_out += n as u64;
                extra |= pending + n < buf.len();
                if staging.is_empty() {
                    // Past the head, body bytes are sealed straight from the read buffer,
                    // as in tcp mode: no staging copy.
                    if let Err(e) = self.out.send(body).await {
                        pool.put(buf);
                        return Exchange::Broken(format!("client: {e}"));
                    }
                    ctx.stats.bytes_to_client.add(n as u64);
                } else {
                    staging.extend_from_slice(body);
                }
            }
            if !staging.is_empty() {
                if let Err(e) = self.out.send(&staging).await {
                    pool.put(buf);
                    return Exchange::Broken(format!("client: {e}"));
                }
                ctx.stats.bytes_to_client.add(staging.len() as u64);
                // Released: a long body must not keep a buffer-sized copy for its lifetime.
                staging = Vec::new();
            }
            if scanner.done() || extra {
                break;
            }
            buf.set_filled(0);
            pending = 0;
            let read = monoio::time::timeout(idle, backend.read(buf, pool)).await;
            let Ok((res, b)) = read else {
                return Exchange::Broken("backend idle in the body".into());
            };
            buf = b;
            match res {
                Ok(0) if resp.body() == Framing::Close => break,
                Ok(0) => {
                    pool.put(buf);
                    return Exchange::Broken("backend closed inside the body".into());
                }
                Ok(_) => {}
                Err(e) => {
                    pool.put(buf);
                    return Exchange::Broken(format!("backend: {e}"));
                }
            }
        }
        pool.put(buf);
        Exchange::Done {
            status: resp.status,
            close,
            reuse: resp.backend_reusable() && !extra,
            bytes_out,
        }
    }
}

/// Resolves once the backend has had `timeout` since the request body was all sent. While the
/// body is still streaming it looks again every 100 ms (one timer, only during uploads).
async fn backend_deadline(body_done: &Cell<Option<Instant>>, timeout: Duration) {
    loop {
        if let Some(done) = body_done.get() {
            let left = (done + timeout).saturating_duration_since(Instant::now());
            monoio::time::sleep(left).await;
            return;
        }
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
}
