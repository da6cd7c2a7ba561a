//! The front door's steps that need the worker: which listener's policy applies, the checks
//! on the client's address, the PROXY header read of `--accept-proxy` listeners, and the
//! connection task that holds its slots. The order of the checks is `frontdoor`'s (see its
//! module comment); the pure pieces live there.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_util::FutureExt;
use monoio::net::TcpStream;
use tracing::debug;

use super::{Gate, Slot};
use crate::frontdoor::admission::Admission;
use crate::frontdoor::per_ip::{IpSlot, PerIp};
use crate::frontdoor::{self, FrontSettings, ListenerPolicy};
use crate::generation::Generation;
use crate::proxy;

/// The front door's per-worker state, shared by the accept loops of every listener.
pub(super) struct Front {
    pub settings: FrontSettings,
    pub admission: Rc<Admission>,
    pub per_ip: Option<Rc<PerIp>>,
}

/// Which listener an accept loop serves: its place in the generation's `listen` list.
pub(super) struct Door {
    index: usize,
    /// The address asked for (before port 0 was resolved), to find the listener's policy in
    /// a reloaded generation whose list changed.
    asked: Option<SocketAddr>,
    /// The policy at start, kept for a reload that dropped this address (its socket stays
    /// bound, and must not lose its checks).
    start: Rc<ListenerPolicy>,
}

impl Door {
    pub fn new(index: usize, g: &Generation) -> Door {
        Door {
            index,
            asked: g.listen.get(index).copied(),
            start: Rc::new(g.policies.get(index).cloned().unwrap_or_default()),
        }
    }

    /// This listener's policy in `g`.
    pub fn policy<'a>(&'a self, g: &'a Generation) -> &'a ListenerPolicy {
        let at = if g.listen.get(self.index).copied() == self.asked {
            Some(self.index)
        } else {
            g.listen.iter().position(|a| Some(*a) == self.asked)
        };
        at.and_then(|i| g.policies.get(i)).unwrap_or(&self.start)
    }
}

/// What a connection holds while it is open: its `--max-conns` slot and its client's count.
struct Held {
    _slot: Slot,
    _ip: Option<IpSlot>,
}

/// The checks on the client's address (after the PROXY header, where there is one): allow and
/// deny, then the client's share. `None`: refused and counted.
fn client_checks(
    id: usize,
    policy: &ListenerPolicy,
    front: &Front,
    stats: &crate::stats::WorkerStats,
    peer: SocketAddr,
) -> Option<Option<IpSlot>> {
    if let Err(why) = policy.acl.check(peer.ip()) {
        stats.denied.inc();
        debug!(worker = id, %peer, "refused: {why}");
        return None;
    }
    match &front.per_ip {
        None => Some(None),
        Some(map) => match map.enter(peer.ip()) {
            Some(slot) => Some(Some(slot)),
            None => {
                stats.refused_per_ip.inc();
                debug!(worker = id, %peer, "refused: the client holds its --max-conns-per-ip share");
                None
            }
        },
    }
}

/// The address a connection reached: the listener's, unless it listens on every address.
fn local_addr(stream: &TcpStream, listening: SocketAddr) -> SocketAddr {
    if listening.ip().is_unspecified() {
        stream.local_addr().unwrap_or(listening)
    } else {
        listening
    }
}

/// Serves a connection that passed the front door, holding its slots until it ends; logs
/// (instead of losing the worker) should it panic.
///
/// Not an `async fn` nor an `async` block: either keeps a second copy of what it awaits (the
/// arguments, or the moved-in future) beside the awaited future in its state, for the
/// connection's whole life. A combinator holds the connection's future once.
fn connection(
    id: usize,
    ctx: proxy::Ctx,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    held: Held,
) -> impl std::future::Future<Output = ()> {
    let conn = std::panic::AssertUnwindSafe(proxy::l4::serve_connection(ctx, stream, peer, local));
    conn.catch_unwind().map(move |r| {
        if r.is_err() {
            tracing::error!(worker = id, %peer, "connection task panicked; connection closed");
        }
        drop(held);
    })
}

/// An `--accept-proxy` connection: the PROXY header, then the checks on the address it
/// carries, then the connection itself. It already holds its `--max-conns` slot.
#[allow(clippy::too_many_arguments)]
fn serve_proxied(
    id: usize,
    ctx: proxy::Ctx,
    door: Rc<Door>,
    front: Rc<Front>,
    stream: TcpStream,
    socket_peer: SocketAddr,
    listening: SocketAddr,
    slot: Slot,
) {
    monoio::spawn(async move {
        let socket_local = local_addr(&stream, listening);
        let header = match frontdoor::read_proxy_header(&stream, front.settings.proxy_timeout).await
        {
            Ok(h) => h,
            Err(e) => {
                ctx.stats.proxy_header_refused.inc();
                debug!(worker = id, peer = %socket_peer, "refused: {e}");
                frontdoor::reset_on_close(&stream);
                return;
            }
        };
        let (peer, local) = frontdoor::proxied(header.as_ref(), socket_peer, socket_local);
        let policy = door.policy(&ctx.generation);
        let Some(ip) = client_checks(id, policy, &front, &ctx.stats, peer) else {
            frontdoor::reset_on_close(&stream);
            return;
        };
        let held = Held {
            _slot: slot,
            _ip: ip,
        };
        connection(id, ctx, stream, peer, local, held).await;
    });
}

/// One listener's accept side: what it needs to take a connection through the front door.
pub(super) struct Acceptor {
    pub id: usize,
    pub door: Rc<Door>,
    /// The listener's own address.
    pub listening: SocketAddr,
    pub current: Rc<RefCell<proxy::Ctx>>,
    pub gate: Rc<Gate>,
    pub front: Rc<Front>,
}

impl Acceptor {
    /// A `--max-conns` slot, or `None` (counted and logged) when the worker is at its limit;
    /// the caller then drops the stream, which closes it.
    fn enter_gate(&self, ctx: &proxy::Ctx, peer: SocketAddr) -> Option<Slot> {
        let slot = self.gate.enter();
        if slot.is_none() {
            ctx.stats.refused_at_limit.inc();
            debug!(worker = self.id, %peer, "at the connection limit: closing");
        }
        slot
    }

    /// Takes an accepted connection through the checks, in their order, and starts its task.
    pub fn take(&self, stream: TcpStream, peer: SocketAddr) {
        let id = self.id;
        let ctx = self.current.borrow().clone();
        ctx.stats.accepted.inc();
        let policy = self.door.policy(&ctx.generation);
        if policy.accept_proxy {
            if let Some(from) = &policy.proxy_from {
                if !from.contains(peer.ip()) {
                    ctx.stats.denied.inc();
                    debug!(worker = id, %peer, "refused: not a trusted proxy (--proxy-from)");
                    frontdoor::reset_on_close(&stream);
                    return;
                }
            }
            let Some(slot) = self.enter_gate(&ctx, peer) else {
                return;
            };
            serve_proxied(
                id,
                ctx,
                self.door.clone(),
                self.front.clone(),
                stream,
                peer,
                self.listening,
                slot,
            );
            return;
        }
        let Some(ip) = client_checks(id, policy, &self.front, &ctx.stats, peer) else {
            frontdoor::reset_on_close(&stream);
            return;
        };
        let Some(slot) = self.enter_gate(&ctx, peer) else {
            return;
        };
        let local = local_addr(&stream, self.listening);
        let held = Held {
            _slot: slot,
            _ip: ip,
        };
        monoio::spawn(connection(id, ctx, stream, peer, local, held));
    }
}

#[cfg(test)]
mod tests {
    use crate::util::future_size::{of4 as future_size4, of6 as future_size6};

    /// The spawned task wraps the connection's future without a second copy of it or of its
    /// arguments (as an `async fn` wrapper kept: 3.4 KiB around a 3 KiB future).
    #[test]
    fn the_connection_task_holds_its_future_once() {
        let task = future_size6(super::connection);
        let conn = future_size4(crate::proxy::l4::serve_connection);
        assert!(
            task <= conn + 128,
            "task {task} bytes around a {conn}-byte future"
        );
    }
}
