//! tcp mode: handshake, connect a backend, pump bytes both ways unchanged.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use tracing::debug;

use super::accesslog::ConnEntry;
use super::handshake::{self, Carry, HandshakeError};
use super::pump::{self, Tunnel};
use super::{Ctx, ProxyCtx};
use crate::backend::addr::BackendAddr;
use crate::backend::pool::{Lease, Pool};
use crate::backend::proxy_out;
use crate::stats::{FailReason, TlsVersion};
use crate::tls::{Established, SessionInfo};

/// Serves one accepted connection: the handshake, then tcp or http mode. `peer` is the
/// client's address (from the PROXY header on `--accept-proxy` listeners, else the socket's),
/// `local` the address it connected to (the header's destination, else the socket's own).
pub async fn serve_connection(ctx: Ctx, client: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let accepted = Instant::now();
    // Everything before the long-lived part runs in its own boxed future, so that its state
    // (the handshake, the backend connect) does not size every connection's task.
    let started = Box::pin(start(&ctx, client, peer, local, accepted)).await;
    match started {
        None => {}
        Some(Started::Http(client, session, carry)) => {
            // Boxed so that tcp-mode connections do not carry http mode's larger state.
            Box::pin(super::l7::serve(
                ctx.clone(),
                client,
                peer,
                local,
                session,
                carry,
            ))
            .await;
        }
        Some(Started::Tcp {
            tunnel,
            lease,
            info,
            version,
        }) => {
            let backend_addr = lease.addr();
            // Boxed as well, so that this task is sized for neither mode: an http-mode
            // connection would otherwise carry the pump's state (1.8 KiB) unused beside its
            // own boxed one, for its whole life.
            let pump = pump::run(tunnel, &ctx.bufs, ctx.settings.idle_timeout, &ctx.stats);
            let (outcome, moved) = Box::pin(pump).await;
            drop(lease);
            debug!(%peer, %local, backend = %backend_addr, version, "connection ended: {outcome}");
            if ctx.access_log.is_none() {
                // No log line to write: no string formatted for it.
                return;
            }
            let end = outcome.to_string();
            conn_log(
                &ctx,
                peer,
                info.as_deref(),
                Some(backend_addr),
                moved,
                accepted,
                &end,
            );
        }
    }
}

/// TLS alert descriptions (RFC 8446 §6).
const HANDSHAKE_FAILURE: u8 = 40;
const CERTIFICATE_REQUIRED: u8 = 116;

enum Started<'a> {
    Http(TcpStream, Box<Established>, Carry),
    Tcp {
        tunnel: Box<Tunnel>,
        lease: Lease<'a>,
        /// Only the connection log reads it, at the end: kept (boxed) only when there is
        /// one, since its strings would otherwise be held by every idle connection for nothing.
        info: Option<Box<SessionInfo>>,
        version: &'static str,
    },
}

/// The tcp-mode connection log line (`--access-log`), however the connection ended.
fn conn_log(
    ctx: &ProxyCtx,
    peer: SocketAddr,
    info: Option<&SessionInfo>,
    backend: Option<&BackendAddr>,
    (up, down): pump::Moved,
    accepted: Instant,
    end: &str,
) {
    let Some(log) = &ctx.access_log else {
        return;
    };
    log.record_conn(&ConnEntry {
        client: peer,
        sni: info.and_then(|i| i.sni.as_deref()),
        alpn: info.and_then(|i| i.alpn.as_deref()),
        version: info.map_or("-", |i| i.version),
        cipher: info.map_or("", |i| i.suite),
        resumed: info.is_some_and(|i| i.resumed),
        backend,
        bytes_to_backend: up,
        bytes_to_client: down,
        duration: accepted.elapsed(),
        end,
    });
}

/// The handshake, and in tcp mode the backend connection; `None` when the connection ended.
async fn start(
    ctx: &ProxyCtx,
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    accepted: Instant,
) -> Option<Started<'_>> {
    let _ = client.set_nodelay(true);
    let stats = &ctx.stats;
    let accepting = match ctx.tls.accept() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, "cannot start a tls session: {e}");
            return None;
        }
    };
    let started = Instant::now();
    let hs = handshake::run(&mut client, accepting, &ctx.bufs, &ctx.admission);
    let (mut session, carry) = match monoio::time::timeout(ctx.settings.handshake_timeout, hs).await
    {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            stats.handshake_failed(TlsVersion::Unknown, e.reason());
            match e {
                HandshakeError::Eof => debug!(%peer, "handshake: {e}"),
                _ => debug!(%peer, "handshake failed: {e}"),
            }
            if !ctx.settings.http.enabled {
                let end = format!("handshake failed: {e}");
                conn_log(ctx, peer, None, None, (0, 0), accepted, &end);
            }
            return None;
        }
        Err(_) => {
            stats.handshake_failed(TlsVersion::Unknown, FailReason::Timeout);
            debug!(%peer, "handshake timed out");
            if !ctx.settings.http.enabled {
                conn_log(
                    ctx,
                    peer,
                    None,
                    None,
                    (0, 0),
                    accepted,
                    "handshake timed out",
                );
            }
            return None;
        }
    };
    if let Some(id) = session.info.client_cert.verified() {
        debug!(%peer, subject = %id.subject, cn = ?id.cn, "client certificate verified");
    }
    let version = TlsVersion::from_name(session.info.version);
    if ctx.settings.http.enabled {
        stats.handshake_completed(version, session.info.resumed, started.elapsed());
        return Some(Started::Http(client, Box::new(session), carry));
    }
    // tcp mode routes on the server name alone.
    let sni = session.info.sni.as_deref();
    let route = ctx.routes.pick_host_route(sni);
    if route.is_some_and(|r| r.client_cert_required)
        && session.info.client_cert.verified().is_none()
    {
        // The route is for verified clients only: the handshake is refused after the fact,
        // with the alert a required certificate gets (RFC 8446 §4.4.2.4; TLS 1.2 has none of
        // its own).
        stats.handshake_failed(version, FailReason::ClientCert);
        debug!(%peer, ?sni, "handshake refused: this route requires a client certificate");
        let desc = match session.info.version {
            "TLSv1.3" => CERTIFICATE_REQUIRED,
            _ => HANDSHAKE_FAILURE,
        };
        if let Some(b) = carry.buf {
            ctx.bufs.put(b);
        }
        let mut out = ctx.bufs.get();
        let n = session.tx.seal_alert(2, desc, out.space()).unwrap_or(0);
        out.set_filled(n);
        let write = client.write_all(out);
        if let Ok((_, out)) = monoio::time::timeout(ctx.settings.connect_timeout, write).await {
            ctx.bufs.put(out);
        }
        return None;
    }
    stats.handshake_completed(version, session.info.resumed, started.elapsed());
    let connected = match route {
        Some(route) => {
            let pool = &ctx.pools[route.pool];
            let header = proxy_header(pool, peer, local, &session);
            pool.connect(peer.ip(), header.as_ref(), stats, &ctx.bufs)
                .await
                .map_err(|e| e.to_string())
        }
        None => Err(format!("no route for server name {sni:?}")),
    };
    let (backend, lease) = match connected {
        Ok(b) => b,
        Err(e) => {
            debug!(%peer, "no backend reachable, closing the client: {e}");
            let end = format!("no backend: {e}");
            conn_log(ctx, peer, Some(&session.info), None, (0, 0), accepted, &end);
            if let Some(b) = carry.buf {
                ctx.bufs.put(b);
            }
            let mut out = ctx.bufs.get();
            let n = session.tx.seal_close_notify(out.space()).unwrap_or(0);
            out.set_filled(n);
            let write = client.write_all(out);
            if let Ok((_, out)) = monoio::time::timeout(ctx.settings.connect_timeout, write).await {
                ctx.bufs.put(out);
            }
            return None;
        }
    };
    let version = session.info.version;
    // Only for the access log, and moved out, not cloned: the tunnel does not read it (a
    // clone copied the name's string).
    let info = ctx
        .access_log
        .is_some()
        .then(|| Box::new(std::mem::take(&mut session.info)));
    Some(Started::Tcp {
        tunnel: Box::new(Tunnel::new(session, client, backend, carry)),
        lease,
        info,
        version,
    })
}

/// The PROXY protocol header for the backend, when the pool sends one: the client's address
/// and the one it reached (both from an upstream's PROXY header on `--accept-proxy`).
pub(super) fn proxy_header(
    pool: &Pool,
    peer: SocketAddr,
    local: SocketAddr,
    session: &Established,
) -> Option<Rc<[u8]>> {
    let version = pool.proxy_protocol()?;
    Some(proxy_out::header(version, peer, local, &session.info).into())
}

#[cfg(test)]
mod tests {
    use crate::util::future_size::{of4 as future_size4, of6 as future_size6};

    /// A connection's task is allocated once, at its largest state, for its whole life: the
    /// handshake, the backend connect, and each mode's long-lived part are boxed so that an
    /// idle connection pays only for its own mode's state. (Measured with rustc 1.95 and
    /// monoio's timers unpadded: the pump 1.8 KiB while `Control` held rustls' key schedule
    /// inline (1.3 KiB since), the task 2.2 KiB while it held the pump inline; with the timers
    /// padded 2.5 KiB and 3 KiB; a task holding the handshake was 7.3 KiB.)
    #[test]
    fn an_idle_connection_task_stays_small() {
        let task = future_size4(super::serve_connection);
        let pump = future_size4(super::super::pump::run);
        assert!(task <= 512, "connection task is {task} bytes");
        // 1,280 bytes is one of mimalloc's size classes; the next is 1,536.
        assert!(pump <= 1280, "pump state is {pump} bytes");
        // http mode's keep-alive state (4.1 KiB while it took the `Established` by value).
        let http = future_size6(super::super::l7::serve);
        assert!(http <= 2368, "http-mode state is {http} bytes");
    }

    /// A parked connection waits on a timer beside its sockets. monoio's timer entries are
    /// not padded to cache lines (vendor/monoio/TERN-PATCH.md, fifth change): padded, a
    /// `Sleep` was 640 bytes, and every future holding one was 128-byte aligned.
    #[test]
    fn a_timer_is_small() {
        let sleep = std::mem::size_of::<monoio::time::Sleep>();
        assert!(sleep <= 192, "a Sleep is {sleep} bytes");
        assert!(std::mem::align_of::<monoio::time::Sleep>() <= 16);
    }
}
