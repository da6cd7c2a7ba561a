//! `--max-conns-per-ip`: how many connections one client may hold open on this worker.
//!
//! Per worker, not exact: each worker lets one client have `share` connections at once (the
//! limit divided by the workers, rounded up) and keeps its own count, so nothing is shared
//! between cores. A client can therefore reach at most `share × workers` connections in
//! total, and reaches that only if the kernel's SO_REUSEPORT hash (over the source port,
//! among others) spreads its connections evenly; it may be refused below the limit when the
//! hash puts more than `share` of them on one worker.
//!
//! IPv4 clients are counted per address, IPv6 clients per /64: one IPv6 host usually holds a
//! whole /64 (SLAAC, privacy addresses) and can pick a fresh address in it for every
//! connection, so a per-address count would not limit it at all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

/// One worker's counts. Entries exist only while a client has connections open, so the map
/// holds at most one entry per open connection.
///
/// The map is hashed with the standard library's keyed SipHash: clients choose the keys (their
/// addresses), and a fixed hash would let them aim for one bucket.
pub struct PerIp {
    share: u32,
    open: RefCell<HashMap<IpAddr, u32>>,
}

/// A connection's place in its client's count, given back on drop.
pub struct IpSlot {
    map: Rc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    /// `share`: connections one client may hold on this worker (at least 1).
    pub fn new(share: u32) -> Rc<PerIp> {
        Rc::new(PerIp {
            share: share.max(1),
            open: RefCell::new(HashMap::new()),
        })
    }

    /// Counts a new connection of `ip`, or `None` when it already holds its share here.
    pub fn enter(self: &Rc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = key(ip);
        let mut open = self.open.borrow_mut();
        let n = open.entry(key).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: self.clone(),
            key,
        })
    }

    /// Connections `ip` holds on this worker.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.open.borrow().get(&key(ip)).copied().unwrap_or(0)
    }

    /// Clients with connections open on this worker.
    pub fn clients(&self) -> usize {
        self.open.borrow().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.map.open.borrow_mut();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A worker's share of a process-wide per-client limit: `ceil(limit / workers)`.
pub fn share(limit: u32, workers: usize) -> u32 {
    let w = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    limit.div_ceil(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_per_client_and_forgets_at_zero() {
        let m = PerIp::new(2);
        let a1 = m.enter(ip("192.0.2.1")).unwrap();
        let a2 = m.enter(ip("192.0.2.1")).unwrap();
        assert!(m.enter(ip("192.0.2.1")).is_none(), "a third is refused");
        let b = m.enter(ip("192.0.2.2")).unwrap();
        assert_eq!((m.count(ip("192.0.2.1")), m.clients()), (2, 2));
        drop(a1);
        let a3 = m.enter(ip("192.0.2.1")).expect("a slot freed");
        drop((a2, a3, b));
        assert_eq!(m.clients(), 0, "entries are removed at zero");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_as_ipv4() {
        let m = PerIp::new(1);
        let _x = m.enter(ip("2001:db8:1:2:aaaa::1")).unwrap();
        assert!(m.enter(ip("2001:db8:1:2:bbbb::9")).is_none(), "same /64");
        let _y = m.enter(ip("2001:db8:1:3::1")).expect("another /64");
        let _z = m.enter(ip("198.51.100.7")).unwrap();
        assert!(
            m.enter(ip("::ffff:198.51.100.7")).is_none(),
            "v4-mapped is the same client"
        );
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn shares_round_up() {
        assert_eq!(share(10, 3), 4);
        assert_eq!(share(1, 4), 1);
        assert_eq!(share(8, 2), 4);
        assert_eq!(share(5, 0), 5);
        assert_eq!(PerIp::new(0).share, 1);
    }
}
