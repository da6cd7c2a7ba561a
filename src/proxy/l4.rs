//! tcp mode: handshake, connect a backend, pump bytes both ways unchanged.

use std::net::SocketAddr;

use monoio::net::TcpStream;
use tracing::debug;

use super::handshake::{self, HandshakeError};
use super::{pump, Ctx};

pub async fn serve(ctx: Ctx, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let stats = &ctx.stats;
    let mut tls = match ctx.tls.session() {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, "cannot start a tls session: {e}");
            return;
        }
    };
    let mut wbuf = Vec::new();
    let hs = handshake::run(
        &mut client,
        &mut tls,
        Vec::with_capacity(ctx.settings.buf_size),
        &mut wbuf,
    );
    let carry = match monoio::time::timeout(ctx.settings.handshake_timeout, hs).await {
        Ok(Ok(carry)) => {
            stats.handshakes_ok.inc();
            carry
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
    let (backend, backend_addr) = match ctx.backends.connect(stats).await {
        Ok(b) => b,
        Err(e) => {
            debug!(%peer, "no backend reachable, closing the client: {e}");
            tls.close_notify();
            let _ = monoio::time::timeout(
                ctx.settings.connect_timeout,
                handshake::flush(&mut client, &mut tls, &mut wbuf),
            )
            .await;
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    let info = tls.info();
    let outcome = pump::run(
        tls,
        client,
        backend,
        carry,
        ctx.settings.buf_size,
        ctx.settings.idle_timeout,
        stats,
    )
    .await;
    debug!(%peer, backend = %backend_addr, version = info.version, "connection ended: {outcome}");
}
