//! The listening sockets, wherever they come from — bound here, inherited from systemd (socket
//! activation), or received from the tern this one replaces (`--upgrade-socket`) — as one
//! [`Listeners`] value the control thread hands out to the workers.
//!
//! Each worker accepts on its own descriptors (dups): the control thread keeps one of each
//! socket only while a successor may ask for them, so a drain still closes them promptly.
//!
//! - Bound: one `SO_REUSEPORT` socket per worker and address; the kernel spreads connections.
//! - Received from a predecessor: every worker socket of the old process, whose accept queues
//!   stay open throughout (closing a `SO_REUSEPORT` socket drops the connections waiting in its
//!   queue, which is why a second instance binding the same port is not a zero-downtime
//!   upgrade). With more workers than sockets, the extra workers get `SO_REUSEPORT` siblings
//!   bound next to them; with fewer, a worker takes several.
//! - Inherited from systemd: every worker gets a dup of the one socket and they share its
//!   accept queue. No siblings are bound: the socket may lack `SO_REUSEPORT` (systemd sets it
//!   only with `ReusePort=yes`), and siblings would die with this process while systemd's
//!   socket lives on to queue connections across a service restart — connections hashed to a
//!   sibling in that moment would be lost.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

/// A listening socket this process did not bind itself.
#[derive(Debug)]
pub struct Inherited {
    pub addr: SocketAddr,
    pub fd: OwnedFd,
    /// Every worker accepts on it (socket activation), rather than it being one worker's own.
    pub shared: bool,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Socket activation: the descriptor number and its `LISTEN_FDNAMES` name.
    Systemd { fd: i32, name: Option<String> },
    /// Handed over by the tern with this pid.
    Predecessor { pid: u32 },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Systemd { fd, name: Some(n) } => write!(f, "socket activation fd {fd} ({n})"),
            Source::Systemd { fd, name: None } => write!(f, "socket activation fd {fd}"),
            Source::Predecessor { pid } => write!(f, "tern pid {pid}"),
        }
    }
}

/// One socket of an address, and whether every worker accepts on it.
#[derive(Debug)]
pub struct Sock {
    pub fd: OwnedFd,
    pub shared: bool,
}

/// The sockets of one `--listen` address.
#[derive(Debug)]
pub struct Group {
    /// The real address (port 0 resolved).
    pub addr: SocketAddr,
    pub socks: Vec<Sock>,
    /// How the sockets came, for the log: "" when bound here.
    origin: String,
}

#[derive(Debug, Default)]
pub struct Listeners {
    groups: Vec<Group>,
    /// Received sockets no `--listen` asks for any more: kept open until the predecessor has
    /// handed over (so nothing changes for it before), then closed by [`close_unwanted`].
    ///
    /// [`close_unwanted`]: Listeners::close_unwanted
    unwanted: Vec<Inherited>,
}

impl Listeners {
    /// The sockets for `addrs` and `workers` workers: inherited ones where they match an
    /// address, bound ones for the rest. A socket-activation socket matching no address is an
    /// error naming it; one from a predecessor is kept aside for [`close_unwanted`].
    ///
    /// [`close_unwanted`]: Listeners::close_unwanted
    pub fn open(
        addrs: &[SocketAddr],
        workers: usize,
        inherited: Vec<Inherited>,
    ) -> Result<Listeners, String> {
        let mut pool = inherited;
        let mut out = Listeners::default();
        for &addr in addrs {
            let fail = |e: std::io::Error| format!("--listen {addr}: cannot listen: {e}");
            let (mine, rest): (Vec<_>, Vec<_>) = pool.into_iter().partition(|i| i.addr == addr);
            pool = rest;
            let source = mine.first().map(|i| i.source.clone());
            let mut socks: Vec<Sock> = mine
                .into_iter()
                .map(|i| Sock {
                    fd: i.fd,
                    shared: i.shared,
                })
                .collect();
            let own = socks.iter().filter(|s| !s.shared).count();
            let mut real = addr;
            if socks.is_empty() {
                // The first bind resolves port 0; the others share the port it got.
                let first = bind(addr).map_err(fail)?;
                real = first.local_addr().map_err(fail)?;
                socks.push(Sock {
                    fd: first.into(),
                    shared: false,
                });
            }
            let inherited = match source {
                Some(_) => socks.len(),
                None => 0,
            };
            if !socks.iter().any(|s| s.shared) {
                for _ in own.max(1)..workers {
                    socks.push(Sock {
                        fd: bind(real).map_err(fail)?.into(),
                        shared: false,
                    });
                }
            }
            let origin = match source {
                None => String::new(),
                Some(src) => describe(&src, inherited, socks.len() - inherited),
            };
            out.groups.push(Group {
                addr: real,
                socks,
                origin,
            });
        }
        if let Some(stray) = pool
            .iter()
            .find(|i| matches!(i.source, Source::Systemd { .. }))
        {
            return Err(format!(
                "{}: an inherited socket on {} that no --listen asks for",
                stray.source, stray.addr
            ));
        }
        out.unwanted = pool;
        Ok(out)
    }

    /// The addresses served, in `--listen` order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.groups.iter().map(|g| g.addr).collect()
    }

    /// Each worker's listeners (its own descriptors, dups of ours): a dup of every shared
    /// socket, and the own sockets dealt round-robin.
    pub fn for_workers(&self, workers: usize) -> std::io::Result<Vec<Vec<std::net::TcpListener>>> {
        let mut out: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
        for g in &self.groups {
            let own: Vec<&Sock> = g.socks.iter().filter(|s| !s.shared).collect();
            for s in g.socks.iter().filter(|s| s.shared) {
                for w in out.iter_mut() {
                    w.push(s.fd.try_clone()?.into());
                }
            }
            for (i, s) in own.iter().enumerate() {
                out[i % workers].push(s.fd.try_clone()?.into());
            }
        }
        Ok(out)
    }

    /// Logs `listening on ADDR` per address (the line tests and operators look for), saying
    /// where inherited sockets came from.
    pub fn log(&self) {
        for g in &self.groups {
            match g.origin.as_str() {
                "" => info!("listening on {}", g.addr),
                o => info!("listening on {} ({o})", g.addr),
            }
        }
    }

    /// Every socket, for a successor.
    pub fn sockets(&self) -> impl Iterator<Item = (SocketAddr, bool, BorrowedFd<'_>)> {
        self.groups.iter().flat_map(|g| {
            g.socks
                .iter()
                .map(move |s| (g.addr, s.shared, s.fd.as_fd()))
        })
    }

    /// Closes the sockets a predecessor handed over that no `--listen` wants (connections
    /// waiting in them are lost; the log says so).
    pub fn close_unwanted(&mut self) {
        for i in self.unwanted.drain(..) {
            info!(
                "closing the listening socket on {} from {}: no --listen asks for it",
                i.addr, i.source
            );
        }
    }
}

/// "from tern pid 12, 2 sockets, 1 more bound" for the log.
fn describe(source: &Source, inherited: usize, bound: usize) -> String {
    let mut s = format!("from {source}");
    if inherited > 1 {
        s.push_str(&format!(", {inherited} sockets"));
    }
    if bound > 0 {
        s.push_str(&format!(", {bound} more bound"));
    }
    s
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    // Every worker binds its own socket to the same address; the kernel spreads connections.
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Checks that `fd` is a listening TCP socket and returns its address; makes it non-blocking
/// and close-on-exec (socket activation passes descriptors without either).
pub fn check_listener(fd: &OwnedFd) -> Result<SocketAddr, String> {
    let s = socket2::SockRef::from(fd);
    let io = |e: std::io::Error| e.to_string();
    if s.r#type().map_err(io)? != Type::STREAM || !s.is_listener().map_err(io)? {
        return Err("not a listening stream socket".into());
    }
    let addr = s
        .local_addr()
        .map_err(io)?
        .as_socket()
        .ok_or("not a TCP socket")?;
    s.set_nonblocking(true).map_err(io)?;
    s.set_cloexec(true).map_err(io)?;
    Ok(addr)
}

/// The sockets systemd passed (`LISTEN_PID` = this process, `LISTEN_FDS` from fd 3, optional
/// `LISTEN_FDNAMES`), checked; the variables are removed so nothing started later sees them.
/// Called by the control thread before it starts any thread.
pub fn from_systemd() -> Result<Vec<Inherited>, String> {
    let Some(pid) = std::env::var_os("LISTEN_PID") else {
        return Ok(Vec::new());
    };
    let fds = std::env::var("LISTEN_FDS").unwrap_or_default();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Single-threaded here: the control thread before any other thread is started.
        std::env::remove_var(v);
    }
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        // Meant for another process (a parent's leftovers).
        return Ok(Vec::new());
    }
    let n: i32 = fds
        .parse()
        .map_err(|_| format!("socket activation: LISTEN_FDS={fds:?} is not a number"))?;
    let names: Vec<&str> = names.split(':').collect();
    let mut out = Vec::new();
    for (i, fd) in (3..3 + n).enumerate() {
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .map(|n| n.to_string());
        let source = Source::Systemd { fd, name };
        // SAFETY: F_GETFD only reads the descriptor's flags; it fails for a closed one.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("{source}: not an open descriptor (LISTEN_FDS={n})"));
        }
        // SAFETY: systemd passed descriptors 3..3+LISTEN_FDS to this process and they were
        // open at exec, so nothing in it could have been given these numbers; from here this
        // OwnedFd is their only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = check_listener(&fd).map_err(|e| format!("{source}: {e}"))?;
        out.push(Inherited {
            addr,
            fd,
            shared: true,
            source,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited(addr: SocketAddr, shared: bool, source: Source) -> Inherited {
        let l = bind(addr).unwrap();
        Inherited {
            addr: l.local_addr().unwrap(),
            fd: l.into(),
            shared,
            source,
        }
    }

    fn any() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn bound_addresses_get_one_socket_per_worker_on_one_port() {
        let l = Listeners::open(&[any(), any()], 3, Vec::new()).unwrap();
        let addrs = l.addrs();
        assert_ne!(addrs[0].port(), 0);
        assert_ne!(addrs[0], addrs[1]);
        let per = l.for_workers(3).unwrap();
        assert!(per.iter().all(|w| w.len() == 2));
        assert!(per.iter().all(|w| w[0].local_addr().unwrap() == addrs[0]));
        assert_eq!(l.sockets().count(), 6);
    }

    #[test]
    fn received_sockets_are_dealt_out_and_topped_up() {
        let pred = Source::Predecessor { pid: 1 };
        let a = inherited(any(), false, pred.clone());
        let addr = a.addr;
        let b = inherited(addr, false, pred.clone());
        let a_id = socket_id(&a.fd);
        // Two received, four workers: two siblings bound beside them on the same address.
        let l = Listeners::open(&[addr], 4, vec![a, b]).unwrap();
        assert_eq!(l.addrs(), vec![addr]);
        assert_eq!(l.sockets().count(), 4);
        let per = l.for_workers(4).unwrap();
        assert!(per.iter().all(|w| w.len() == 1));
        assert_eq!(
            socket_id(&per[0][0]),
            a_id,
            "the received socket itself, not a new one"
        );
        // Fewer workers than sockets: one takes several.
        let per = l.for_workers(3).unwrap();
        assert_eq!(per.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1]);
    }

    #[test]
    fn shared_sockets_go_to_every_worker_without_siblings() {
        let s = inherited(any(), true, Source::Systemd { fd: 3, name: None });
        let (addr, id) = (s.addr, socket_id(&s.fd));
        let l = Listeners::open(&[addr], 3, vec![s]).unwrap();
        assert_eq!(l.sockets().count(), 1);
        let per = l.for_workers(3).unwrap();
        assert!(per.iter().all(|w| w.len() == 1 && socket_id(&w[0]) == id));
    }

    #[test]
    fn unmatched_inherited_sockets() {
        let s = inherited(
            any(),
            true,
            Source::Systemd {
                fd: 3,
                name: Some("web".into()),
            },
        );
        let addr = s.addr;
        let e = Listeners::open(&[any()], 1, vec![s]).unwrap_err();
        assert!(
            e.contains("socket activation fd 3 (web)") && e.contains(&addr.to_string()),
            "{e}"
        );
        // From a predecessor: kept until the hand-over, then closed.
        let p = inherited(any(), false, Source::Predecessor { pid: 7 });
        let mut l = Listeners::open(&[any()], 1, vec![p]).unwrap();
        assert_eq!(l.unwanted.len(), 1);
        l.close_unwanted();
        assert!(l.unwanted.is_empty());
    }

    #[test]
    fn a_non_listening_descriptor_is_refused() {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let fd: OwnedFd = s.into();
        assert!(check_listener(&fd).unwrap_err().contains("not a listening"));
        let l = bind(any()).unwrap();
        let fd: OwnedFd = l.into();
        assert_eq!(check_listener(&fd).unwrap().ip(), any().ip());
    }

    /// The kernel socket behind a descriptor (its inode), to tell dups from new sockets.
    fn socket_id(fd: &impl AsFd) -> u64 {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).unwrap();
        let link = link.to_str().unwrap();
        link.trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap()
    }
}
