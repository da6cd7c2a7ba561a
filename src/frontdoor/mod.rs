//! The front door: everything between `accept()` and the TLS handshake's crypto. In order:
//!
//! 1. `--proxy-from` (listeners with `--accept-proxy`): the socket's own peer must be a
//!    trusted balancer, or the connection is closed before a byte is read.
//! 2. The PROXY header (`--accept-proxy`), read within `--proxy-timeout`; from here on the
//!    address it carries is the client's address everywhere.
//! 3. `--allow` / `--deny` on the client's address.
//! 4. `--max-conns-per-ip`, this worker's share.
//! 5. `--max-conns`, this worker's share (on `--accept-proxy` listeners the slot is taken at
//!    accept, before the header is read, so connections waiting for their header are bounded
//!    too).
//! 6. Handshake admission (`--max-handshakes`), in front of the handshake's first crypto.
//!
//! Refused connections are closed at once with a reset and counted. The pieces are pure or
//! per-worker and single-threaded: [`acl`] (prefix lists), [`per_ip`] (per-client counts),
//! [`admission`] (handshake slots); [`proxied`] turns a PROXY header into the connection's
//! addresses. `worker` runs the sequence; `proxy` asks admission for a slot.

pub mod acl;
pub mod admission;
pub mod per_ip;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::proxyproto::{self, Header};

pub use acl::{Acl, Cidr, PrefixSet};

/// What one listener checks before the handshake; part of the generation, so a reload
/// changes it for new connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerPolicy {
    /// Expect a PROXY protocol (v1 or v2) header before the TLS bytes.
    pub accept_proxy: bool,
    /// Which peers may send PROXY headers (`None`: any; only with `accept_proxy`).
    pub proxy_from: Option<PrefixSet>,
    /// Which client addresses are let in.
    pub acl: Acl,
}

/// Front-door knobs every listener of a worker shares, fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontSettings {
    /// Time a balancer has to send the whole PROXY header.
    pub proxy_timeout: Duration,
    /// Full handshakes in flight per worker at most (0: unbounded).
    pub max_handshakes: usize,
    /// Connections one client may hold on one worker (`--max-conns-per-ip` divided by the
    /// workers, rounded up); `None`: no limit.
    pub per_ip_share: Option<u32>,
}

impl Default for FrontSettings {
    fn default() -> Self {
        FrontSettings {
            proxy_timeout: Duration::from_secs(3),
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            per_ip_share: None,
        }
    }
}

/// The default bound on full handshakes in flight per worker.
///
/// A slot is held from the ClientHello to the client's Finished, so it covers one client round
/// trip besides the crypto: to keep a core busy with clients `rtt` away takes `N ≥ rtt / cost`
/// slots. One full handshake (with its first request and backend connect) cost this worker
/// 0.25–0.34 ms of CPU here (`bench-env/flood.sh`, one worker; X25519 and X25519MLKEM768,
/// ECDSA P-256; PERF.md "Handshake floods"), so 256 slots are 65–85 ms of CPU: a core stays
/// busy for clients up to that far away, and the handshake crypto a worker has taken on at
/// any moment, which requests of established connections may queue behind, is at most that.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// The connection's addresses once the PROXY header is read: the client (`peer`) and the
/// address it connected to (`local`). A LOCAL header or one without addresses (UNKNOWN,
/// AF_UNSPEC, AF_UNIX) leaves the socket's own. v4-mapped addresses come back as IPv4.
pub fn proxied(
    header: Option<&Header>,
    socket_peer: SocketAddr,
    socket_local: SocketAddr,
) -> (SocketAddr, SocketAddr) {
    match header.and_then(|h| h.addrs) {
        Some(a) => (canonical(a.src), canonical(a.dst)),
        None => (socket_peer, socket_local),
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Reads the PROXY header off `stream`: `Ok(None)` for LOCAL.
pub async fn read_proxy_header(
    stream: &monoio::net::TcpStream,
    timeout: Duration,
) -> Result<Option<Header>, proxyproto::io::ReadError> {
    proxyproto::io::read_header(stream, timeout, proxyproto::DEFAULT_MAX_HEADER).await
}

/// Makes the close of `stream` a reset (SO_LINGER 0): a refused client learns at once, and
/// no TIME_WAIT is left behind for a connection that never carried anything.
pub fn reset_on_close(stream: &impl AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to a live linger
    // struct and its exact size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxyproto::{parse, Parsed};

    fn header(bytes: &[u8]) -> Header {
        match parse(bytes).unwrap() {
            Parsed::Header { header, .. } => header,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_header_decides_the_addresses() {
        let sp: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let sl: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let h = header(b"PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\r\n");
        assert_eq!(
            proxied(Some(&h), sp, sl),
            (
                "203.0.113.7:5555".parse().unwrap(),
                "198.51.100.1:443".parse().unwrap()
            )
        );
        // LOCAL (read_header gives None) and UNKNOWN keep the socket's addresses.
        assert_eq!(proxied(None, sp, sl), (sp, sl));
        let unknown = header(b"PROXY UNKNOWN\r\n");
        assert_eq!(proxied(Some(&unknown), sp, sl), (sp, sl));
        // A v6 header carrying v4-mapped addresses (HAProxy on a [::] bind) gives IPv4.
        let mapped = header(b"PROXY TCP6 ::ffff:203.0.113.7 ::ffff:198.51.100.1 5555 443\r\n");
        assert_eq!(
            proxied(Some(&mapped), sp, sl).0,
            "203.0.113.7:5555".parse().unwrap()
        );
    }
}
