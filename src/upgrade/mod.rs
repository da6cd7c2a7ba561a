//! Zero-downtime binary upgrades (`--upgrade-socket PATH`), as HAProxy's `-x` and Envoy's hot
//! restart do it: the new process receives the old one's listening sockets over a Unix socket
//! (`SCM_RIGHTS`) instead of binding its own, so not one accept queue is closed and no
//! connection is refused or reset.
//!
//! 1. The new tern loads and checks its configuration, then connects to PATH. Nobody answering
//!    (no file, or a stale one) means a fresh start: it binds PATH itself (mode 0600).
//! 2. The old tern's upgrade thread checks the peer is the same user (or root), answers
//!    `hello`, and sends every listening socket it has, with its address.
//! 3. The new tern serves them (see [`crate::listeners`]: more workers get `SO_REUSEPORT`
//!    siblings, fewer take several; addresses the old one lacked are bound), starts its
//!    workers, and once every one accepts says `ready`.
//! 4. Only then does the old tern stop accepting — the SIGTERM path: drain for
//!    `--drain-timeout`, exit 0 — close its copies (the sockets live on in the new process),
//!    and answer `done` with PATH's listening socket attached, so the new one owns PATH
//!    without a moment in which it is missing (and without needing write access to its
//!    directory after `--user`). The new one then closes the inherited sockets its `--listen`
//!    no longer names.
//!
//! If the new one fails before `ready`, the old one has changed nothing: it logs one line and
//! keeps serving (and waiting for the next successor). The messages are in [`wire`]; the
//! descriptor passing in [`fdpass`].

pub mod fdpass;
pub mod wire;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{info, warn};

use crate::listeners::{check_listener, Inherited, Listeners, Source};
use crate::util::poll::readable;
use wire::Message;

/// Each step of the conversation, except the wait for the successor's workers.
const STEP: Duration = Duration::from_secs(10);
/// How long the old tern waits for `ready`: longer than a new one takes to start its workers
/// (it gives up on them after 30 s).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long the new tern waits for `done` (the old one's control loop notices `ready` within
/// a fraction of a second).
const DONE_WAIT: Duration = Duration::from_secs(30);

/// Why the upgrade socket could not be used: a bad path (exit 2) or a failed conversation
/// with the running tern (exit 1).
#[derive(Debug)]
pub enum Error {
    Config(String),
    Runtime(String),
}

/// How this process starts with respect to `--upgrade-socket`.
pub enum Start {
    Off,
    /// Nobody answered on PATH: it is this process's now.
    Fresh(ControlSocket),
    /// A running tern answered and sent its sockets.
    Successor(Predecessor),
}

impl Start {
    /// Connects to PATH; binds it when no tern answers there.
    pub fn begin(path: Option<&Path>) -> Result<Start, Error> {
        let Some(path) = path else {
            return Ok(Start::Off);
        };
        match Predecessor::connect(path)? {
            Some(p) => Ok(Start::Successor(p)),
            None => Ok(Start::Fresh(
                ControlSocket::bind(path).map_err(Error::Config)?,
            )),
        }
    }

    /// The predecessor's sockets, for [`Listeners::open`].
    pub fn take_sockets(&mut self) -> Vec<Inherited> {
        match self {
            Start::Successor(p) => std::mem::take(&mut p.sockets),
            _ => Vec::new(),
        }
    }

    /// Once every worker accepts: tells the predecessor (if any), takes PATH over, closes the
    /// inherited sockets no longer wanted, and listens for the next successor. Nothing here
    /// stops this process: it serves already, so a failure is a warning.
    pub fn finish(self, mut listeners: Listeners) -> Option<Server> {
        let control = match self {
            Start::Off => return None,
            Start::Fresh(c) => c,
            Start::Successor(p) => {
                let (pid, path) = (p.pid, p.path.clone());
                let taken = p.ready();
                listeners.close_unwanted();
                match taken {
                    Ok(c) => {
                        info!("upgrade: pid {pid} stopped accepting and handed over {}; this tern serves alone now", path.display());
                        c
                    }
                    Err(e) => {
                        warn!("upgrade: pid {pid} did not confirm the hand-over ({e}); it may still accept too; binding {} anew", path.display());
                        match ControlSocket::bind(&path) {
                            Ok(c) => c,
                            Err(e) => {
                                warn!("upgrade: {e}; no further upgrade is possible");
                                return None;
                            }
                        }
                    }
                }
            }
        };
        let path = control.path.clone();
        match Server::start(control, listeners) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(
                    "--upgrade-socket {}: cannot start its thread: {e}; no upgrade is possible",
                    path.display()
                );
                None
            }
        }
    }
}

/// PATH's listening socket (`SOCK_SEQPACKET`). The file is removed when this is dropped, unless
/// it was handed to a successor or PATH now names another file.
pub struct ControlSocket {
    sock: Socket,
    path: PathBuf,
    /// (device, inode) of the file at PATH when this process took it.
    file: Option<(u64, u64)>,
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl ControlSocket {
    /// Binds PATH, owner-only. A socket file left there is replaced (the caller found nobody
    /// answering on it); any other file is refused.
    fn bind(path: &Path) -> Result<ControlSocket, String> {
        let shown = format!("--upgrade-socket {}", path.display());
        if let Ok(m) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_socket() {
                return Err(format!("{shown}: exists and is not a socket"));
            }
            std::fs::remove_file(path).map_err(|e| format!("{shown}: cannot replace: {e}"))?;
        }
        let fail = |e: io::Error| format!("{shown}: cannot listen: {e}");
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(fail)?;
        let addr = SockAddr::unix(path).map_err(fail)?;
        // The file is created by bind with the umask's mode: owner-only from the start, not
        // open to others until a chmod. The mask is the process's: this runs on the control
        // thread before any other thread starts (or, binding anew after a failed hand-over,
        // while no other thread creates files).
        // SAFETY: umask only swaps the process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = sock.bind(&addr);
        // SAFETY: as above, restoring the mask.
        unsafe { libc::umask(old) };
        bound.map_err(fail)?;
        sock.listen(8).map_err(fail)?;
        sock.set_nonblocking(true).map_err(fail)?;
        Ok(ControlSocket {
            sock,
            path: path.to_path_buf(),
            file: file_id(path),
        })
    }

    /// The listening socket a predecessor handed over with `done`.
    fn adopt(fd: OwnedFd, path: &Path) -> io::Result<ControlSocket> {
        let sock = Socket::from(fd);
        if sock.r#type()? != Type::SEQPACKET || !sock.is_listener()? {
            return Err(io::Error::other("not a listening SEQPACKET socket"));
        }
        sock.set_nonblocking(true)?;
        Ok(ControlSocket {
            sock,
            path: path.to_path_buf(),
            file: file_id(path),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if self.file.is_some() && file_id(&self.path) == self.file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The running tern that answered on PATH, and the sockets it sent.
pub struct Predecessor {
    conn: Socket,
    pub pid: u32,
    path: PathBuf,
    sockets: Vec<Inherited>,
}

impl Predecessor {
    /// None when nobody answers on PATH.
    fn connect(path: &Path) -> Result<Option<Predecessor>, Error> {
        let shown = format!("--upgrade-socket {}", path.display());
        let config = |e: io::Error| Error::Config(format!("{shown}: {e}"));
        let conn = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(config)?;
        match conn.connect(&SockAddr::unix(path).map_err(config)?) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => {
                return Ok(None)
            }
            Err(e) => return Err(Error::Config(format!("{shown}: cannot connect: {e}"))),
        }
        let runtime = |what: String| Error::Runtime(format!("{shown}: {what}"));
        let (_, uid) = fdpass::peer(conn.as_fd()).map_err(|e| runtime(e.to_string()))?;
        if !fdpass::trusted(uid) {
            return Err(runtime(format!(
                "answered by uid {uid}, not this user or root; not taking its sockets"
            )));
        }
        conn.set_read_timeout(Some(STEP))
            .map_err(|e| runtime(e.to_string()))?;
        conn.set_write_timeout(Some(STEP))
            .map_err(|e| runtime(e.to_string()))?;
        send(
            &conn,
            &Message::Hello {
                pid: std::process::id(),
            },
            &[],
        )
        .map_err(|e| runtime(format!("cannot talk to the running tern: {e}")))?;
        let pid = match receive(&conn) {
            Ok((Message::Hello { pid }, _)) => pid,
            Ok((Message::Refused(why), _)) => {
                return Err(runtime(format!("the running tern refused: {why}")))
            }
            Ok((m, _)) => return Err(runtime(format!("unexpected answer {m:?}"))),
            Err(e) => return Err(runtime(format!("the running tern: {e}"))),
        };
        let from = |e: String| runtime(format!("from pid {pid}: {e}"));
        let mut sockets = Vec::new();
        loop {
            match receive(&conn).map_err(from)? {
                (Message::Sockets(entries), fds) => {
                    for (entry, fd) in entries.into_iter().zip(fds) {
                        let addr = check_listener(&fd).map_err(from)?;
                        if addr != entry.addr {
                            return Err(from(format!(
                                "a socket announced as {} is bound to {addr}",
                                entry.addr
                            )));
                        }
                        sockets.push(Inherited {
                            addr,
                            fd,
                            shared: entry.shared,
                            source: Source::Predecessor { pid },
                        });
                    }
                }
                (Message::End { count }, _) if count == sockets.len() => break,
                (m, _) => return Err(from(format!("unexpected message {m:?}"))),
            }
        }
        info!(
            "upgrade: pid {pid} handed over {} listening sockets on {}",
            sockets.len(),
            path.display()
        );
        Ok(Some(Predecessor {
            conn,
            pid,
            path: path.to_path_buf(),
            sockets,
        }))
    }

    /// Says `ready`, and waits for `done` and PATH's socket.
    fn ready(self) -> Result<ControlSocket, String> {
        send(&self.conn, &Message::Ready, &[]).map_err(|e| e.to_string())?;
        self.conn
            .set_read_timeout(Some(DONE_WAIT))
            .map_err(|e| e.to_string())?;
        match receive(&self.conn)? {
            (Message::Done, mut fds) => {
                let fd = fds.pop().ok_or("done came without the socket")?;
                ControlSocket::adopt(fd, &self.path).map_err(|e| e.to_string())
            }
            (m, _) => Err(format!("unexpected message {m:?}")),
        }
    }
}

fn send(conn: &Socket, m: &Message, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    fdpass::send(conn.as_fd(), &wire::encode(m), fds)
}

/// One message, with exactly the descriptors it announces.
fn receive(conn: &Socket) -> Result<(Message, Vec<OwnedFd>), String> {
    let mut buf = vec![0u8; wire::MAX_LEN];
    let (n, fds) = match fdpass::recv(conn.as_fd(), &mut buf, wire::MAX_FDS) {
        Ok((0, _)) => return Err("closed the connection".into()),
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err("timed out".into()),
        Err(e) => return Err(e.to_string()),
    };
    let m = wire::decode(&buf[..n]).map_err(|e| e.to_string())?;
    if fds.len() != m.fds() {
        return Err(format!(
            "{} descriptors with a message announcing {}",
            fds.len(),
            m.fds()
        ));
    }
    Ok((m, fds))
}

/// The old tern's side: a thread answering successors on PATH. The control thread polls
/// [`Server::successor_ready`] and, when it says so, stops accepting and calls
/// [`Server::hand_over`]. Dropping it (a drain) closes PATH and the copies of the sockets.
pub struct Server {
    ready: mpsc::Receiver<u32>,
    confirm: mpsc::Sender<()>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(control: ControlSocket, listeners: Listeners) -> io::Result<Server> {
        let (wake, wake_rx) = UnixStream::pair()?;
        let (ready_tx, ready) = mpsc::channel();
        let (confirm, confirm_rx) = mpsc::channel();
        info!(
            "upgrade: a tern started with --upgrade-socket {} takes over from this one",
            control.path.display()
        );
        let thread = std::thread::Builder::new()
            .name("tern-upgrade".into())
            .spawn(move || serve(control, listeners, wake_rx, ready_tx, confirm_rx))?;
        Ok(Server {
            ready,
            confirm,
            wake,
            thread: Some(thread),
        })
    }

    /// The pid of a successor whose workers all accept, once.
    pub fn successor_ready(&self) -> Option<u32> {
        self.ready.try_recv().ok()
    }

    /// Call once this process no longer accepts: its copies of the sockets are closed and the
    /// successor gets `done` with PATH.
    pub fn hand_over(mut self) {
        let _ = self.confirm.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.wake.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How one successor's attempt ended, short of `ready`.
enum Abort {
    /// This process is stopping.
    Stop,
    /// The successor failed or misbehaved: this process keeps serving.
    Failed(String),
}

fn serve(
    mut control: ControlSocket,
    listeners: Listeners,
    wake: UnixStream,
    ready: mpsc::Sender<u32>,
    confirm: mpsc::Receiver<()>,
) {
    loop {
        match readable([control.sock.as_fd(), wake.as_fd()], None) {
            Ok([_, true]) => return,
            Ok(_) => {}
            Err(e) => {
                warn!("upgrade: cannot wait for a successor: {e}; no upgrade is possible");
                return;
            }
        }
        let conn = match control.sock.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn!("upgrade: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let pid = match offer(&conn, &listeners, &wake) {
            Ok(pid) => pid,
            Err(Abort::Stop) => return,
            Err(Abort::Failed(why)) => {
                warn!("upgrade: {why}; still serving");
                continue;
            }
        };
        if ready.send(pid).is_err() || confirm.recv().is_err() {
            // The control thread is stopping (or gone) instead: the successor sees the
            // connection close without `done`.
            return;
        }
        // This process no longer accepts: the sockets live on in the successor.
        drop(listeners);
        match send(&conn, &Message::Done, &[control.sock.as_fd()]) {
            Ok(()) => {
                // PATH is the successor's now: not removed when this process exits.
                control.file = None;
                info!(
                    "upgrade: handed {} over to pid {pid}",
                    control.path.display()
                );
            }
            Err(e) => warn!(
                "upgrade: cannot hand {} over to pid {pid}: {e}",
                control.path.display()
            ),
        }
        return;
    }
}

/// Hands the sockets to the successor on `conn` and waits for its `ready`: its pid.
fn offer(conn: &Socket, listeners: &Listeners, wake: &UnixStream) -> Result<u32, Abort> {
    let failed = |m: String| Abort::Failed(m);
    let (peer_pid, uid) = fdpass::peer(conn.as_fd()).map_err(|e| failed(e.to_string()))?;
    if !fdpass::trusted(uid) {
        return Err(failed(format!(
            "refused pid {peer_pid} of uid {uid}: not this user or root"
        )));
    }
    let io = |e: io::Error| failed(format!("pid {peer_pid}: {e}"));
    conn.set_read_timeout(Some(STEP)).map_err(io)?;
    conn.set_write_timeout(Some(STEP)).map_err(io)?;
    let mut buf = vec![0u8; wire::MAX_LEN];
    let (n, _) = fdpass::recv(conn.as_fd(), &mut buf, 0).map_err(io)?;
    let pid = match wire::decode(&buf[..n]) {
        Ok(Message::Hello { pid }) => pid,
        Ok(m) => return Err(failed(format!("pid {peer_pid} began with {m:?}"))),
        Err(e) => {
            let _ = send(conn, &Message::Refused(e.to_string()), &[]);
            return Err(failed(format!("pid {peer_pid}: {e}")));
        }
    };
    send(
        conn,
        &Message::Hello {
            pid: std::process::id(),
        },
        &[],
    )
    .map_err(io)?;
    let all: Vec<_> = listeners.sockets().collect();
    for chunk in all.chunks(wire::MAX_FDS) {
        let entries = chunk
            .iter()
            .map(|&(addr, shared, _)| wire::Entry { addr, shared })
            .collect();
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|&(_, _, fd)| fd).collect();
        send(conn, &Message::Sockets(entries), &fds).map_err(io)?;
    }
    send(conn, &Message::End { count: all.len() }, &[]).map_err(io)?;
    info!(
        "upgrade: pid {pid} took copies of the {} listening sockets; serving until it is ready",
        all.len()
    );
    match readable([conn.as_fd(), wake.as_fd()], Some(READY_WAIT)) {
        Ok([_, true]) => return Err(Abort::Stop),
        Ok([true, _]) => {}
        Ok(_) => {
            return Err(failed(format!(
                "pid {pid} was not ready within {}s",
                READY_WAIT.as_secs()
            )))
        }
        Err(e) => return Err(io(e)),
    }
    match receive(conn) {
        Ok((Message::Ready, _)) => Ok(pid),
        Ok((m, _)) => Err(failed(format!("pid {pid} sent {m:?} instead of ready"))),
        Err(e) => Err(failed(format!("pid {pid} {e} before it was ready"))),
    }
}
