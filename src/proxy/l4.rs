//! tcp mode: handshake, connect a backend, pump bytes both ways unchanged.

use std::net::SocketAddr;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use tracing::debug;

use super::handshake::{self, Carry, HandshakeError};
use super::{pump, Ctx};
use crate::tls::Established;

/// Serves one accepted connection: the handshake, then tcp or http mode.
pub async fn serve_connection(ctx: Ctx, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let stats = &ctx.stats;
    let accepting = match ctx.tls.accept() {
        Ok(a) => a,
        Err(e) => {
            debug!(%peer, "cannot start a tls session: {e}");
            return;
        }
    };
    // Boxed: the handshake's state is only needed until it completes, so it should not stay
    // part of every long-lived connection's future.
    let hs = Box::pin(handshake::run(&mut client, accepting, &ctx.bufs));
    let (session, carry) = match monoio::time::timeout(ctx.settings.handshake_timeout, hs).await {
        Ok(Ok(done)) => {
            stats.handshakes_ok.inc();
            done
        }
        Ok(Err(e)) => {
            stats.handshakes_failed.inc();
            match e {
                HandshakeError::Eof => debug!(%peer, "handshake: {e}"),
                _ => debug!(%peer, "handshake failed: {e}"),
            }
            return;
        }
        Err(_) => {
            stats.handshakes_failed.inc();
            debug!(%peer, "handshake timed out");
            return;
        }
    };
    if ctx.settings.http.enabled {
        super::l7::serve(ctx, client, peer, session, carry).await;
    } else {
        serve(ctx, client, peer, session, carry).await;
    }
}

/// tcp mode after the handshake.
async fn serve(
    ctx: Ctx,
    mut client: TcpStream,
    peer: SocketAddr,
    mut session: Established,
    carry: Carry,
) {
    let stats = &ctx.stats;
    // tcp mode routes on the server name alone.
    let sni = session.info.sni.as_deref();
    let connected = match ctx.routes.pick_host(sni) {
        Some(pool) => ctx.pools[pool]
            .connect(peer.ip(), stats)
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!("no route for server name {sni:?}")),
    };
    let (backend, lease) = match connected {
        Ok(b) => b,
        Err(e) => {
            debug!(%peer, "no backend reachable, closing the client: {e}");
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
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    let version = session.info.version;
    let backend_addr = lease.addr();
    let tunnel = pump::Tunnel::new(session, client, backend, carry);
    let outcome = pump::run(tunnel, &ctx.bufs, ctx.settings.idle_timeout, stats).await;
    drop(lease);
    debug!(%peer, backend = %backend_addr, version, "connection ended: {outcome}");
}
