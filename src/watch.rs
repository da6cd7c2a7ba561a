//! `--watch`: a small thread that asks the control thread for a reload when a file of the
//! generation in service changes (configuration file, certificates, keys, OCSP responses,
//! ticket-key file, `--pem` directories).
//!
//! It watches the *directories* holding those files, never the files: deploy tools replace a
//! file rather than write into it (certbot points `live/x/fullchain.pem` at a new file in
//! `archive/`, Kubernetes swaps a `..data` symlink with a rename, editors write a temporary file
//! and rename it over), and a watch on the old file would see none of that. Each path's symlink
//! chain is resolved and the directories along it are watched too, so an in-place rewrite of a
//! target behind a symlink is seen as well. Only events naming a file of interest count.
//!
//! Events are debounced: a reload is asked for once they have been quiet for [`QUIET`] (at most
//! [`LONGEST`] after the first), so a certificate and then its key make one reload. The thread
//! never touches a worker: it sends the changed paths on a channel the control thread polls
//! (the SIGHUP path), and waits for the files of the generation then in service to re-arm.
//!
//! inotify is used through libc directly (four calls and an event parser, tested below): the
//! loop has to wait on the inotify descriptor and a wake-up socket at once, with a deadline,
//! which is a `poll` either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::util::poll::readable;

/// How long the files must be quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(300);
/// The longest a reload waits after the first event, however busy the files are.
pub const LONGEST: Duration = Duration::from_secs(2);

/// The events that mean a file in a watched directory was written, replaced, appeared or went.
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_ATTRIB;

/// Symlinks followed along one path before giving up (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// The control thread's end: poll [`Watcher::changed`] and call [`Watcher::rearm`] after each
/// reload. Dropping it stops the thread.
/// The files to watch now, and who to tell once they are watched.
type Rearm = (Vec<PathBuf>, mpsc::Sender<()>);

pub struct Watcher {
    requests: mpsc::Receiver<Vec<PathBuf>>,
    rearm: mpsc::Sender<Rearm>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// Watches in place, their thread not started yet (so it can be started after the sandbox).
pub struct Prepared {
    inotify: Inotify,
    watches: Watches,
}

impl Watcher {
    /// Watches the directories for `files` (a generation's
    /// [`files`](crate::generation::Generation::files)); [`Prepared::start`] then starts the
    /// thread. Fails only when inotify itself cannot be had; a directory that cannot be
    /// watched is a warning naming it.
    pub fn arm(files: &[PathBuf]) -> io::Result<Prepared> {
        let inotify = Inotify::new()?;
        let mut watches = Watches::default();
        watches.arm(&inotify, plan(files));
        info!(
            files = files.len(),
            directories = watches.dirs(),
            "--watch: reloading when these files change"
        );
        Ok(Prepared { inotify, watches })
    }

    /// Both steps at once.
    pub fn start(files: &[PathBuf]) -> io::Result<Watcher> {
        Self::arm(files)?.start()
    }

    /// The files that changed since the last call, when a reload is due.
    pub fn changed(&self) -> Option<Vec<PathBuf>> {
        let mut all: Vec<PathBuf> = self.requests.try_iter().flatten().collect();
        all.dedup();
        (!all.is_empty()).then_some(all)
    }

    /// Watches the files of the generation now in service (call after every reload, whether it
    /// worked or not: a symlink may point elsewhere now, a new file may live in a new place).
    /// Returns once the new watches are in place (or after a second, should the thread lag),
    /// so a change made after the reload's log line is seen.
    pub fn rearm(&self, files: &[PathBuf]) {
        let (ack, acked) = mpsc::channel();
        if self.rearm.send((files.to_vec(), ack)).is_ok() {
            // A full socket buffer already holds a wake-up; nothing is lost.
            let _ = io::Write::write(&mut &self.wake, &[1]);
            let _ = acked.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl Prepared {
    pub fn start(self) -> io::Result<Watcher> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (req_tx, requests) = mpsc::channel();
        let (rearm, rearm_rx) = mpsc::channel();
        let Prepared { inotify, watches } = self;
        let thread = std::thread::Builder::new()
            .name("tern-watch".into())
            .spawn(move || run(inotify, watches, wake_rx, rearm_rx, req_tx))?;
        Ok(Watcher {
            requests,
            rearm,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The thread sees its end of the pair close and returns.
        let _ = self.wake.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    inotify: Inotify,
    mut watches: Watches,
    mut wake: UnixStream,
    rearm: mpsc::Receiver<Rearm>,
    requests: mpsc::Sender<Vec<PathBuf>>,
) {
    let mut pending = Debounce::default();
    // Between asking for a reload and being re-watches nothing is asked: the events of that
    // window are gathered and asked for afterwards, against the new watch set.
    let mut asked = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        let timeout = match pending.deadline() {
            Some(at) if !asked => Some(at.saturating_duration_since(now)),
            _ => None,
        };
        let [events, woken] = match readable([inotify.fd.as_fd(), wake.as_fd()], timeout) {
            Ok(r) => r,
            Err(e) => {
                warn!("--watch: poll failed, no longer watching: {e}");
                return;
            }
        };
        if woken {
            match wake.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            for (files, ack) in rearm.try_iter() {
                watches.arm(&inotify, plan(&files));
                asked = false;
                let _ = ack.send(());
            }
        }
        if events {
            loop {
                match inotify.read(&mut buf) {
                    Ok(n) => {
                        for ev in parse_events(&buf[..n]) {
                            if let Some(path) = watches.relevant(&ev) {
                                debug!(path = %path.display(), mask = ev.mask, "--watch: change");
                                pending.note(Instant::now(), path);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!("--watch: cannot read events, no longer watching: {e}");
                        return;
                    }
                }
            }
        }
        if !asked && pending.due(Instant::now()) {
            if requests.send(pending.take()).is_err() {
                return;
            }
            asked = true;
        }
    }
}

/// When to ask for a reload: [`QUIET`] after the last event, or [`LONGEST`] after the first.
#[derive(Default)]
struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
    changed: BTreeSet<PathBuf>,
}

impl Debounce {
    fn note(&mut self, now: Instant, path: PathBuf) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.changed.insert(path);
    }

    fn deadline(&self) -> Option<Instant> {
        Some((self.last? + QUIET).min(self.first? + LONGEST))
    }

    fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|at| now >= at)
    }

    fn take(&mut self) -> Vec<PathBuf> {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.changed).into_iter().collect()
    }
}

/// Which names in one directory matter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Interest {
    pub names: BTreeSet<OsString>,
    /// A `--pem` directory: any `*.pem` (and its `*.pem.ocsp`) appearing, changing or going.
    pub pem_dir: bool,
}

impl Interest {
    fn wants(&self, name: &OsStr) -> bool {
        let b = name.as_bytes();
        self.names.contains(name)
            || (self.pem_dir && (b.ends_with(b".pem") || b.ends_with(b".pem.ocsp")))
    }

    fn merge(&mut self, other: &Interest) {
        self.names.extend(other.names.iter().cloned());
        self.pem_dir |= other.pem_dir;
    }
}

/// The directories to watch for `files`, and the names in each that matter: each file's own
/// directory, the directories along its symlink chain (and their real locations), the
/// directories of symlinked directories on the way, and a `--pem` directory itself. A
/// directory that does not exist is watched from its nearest existing ancestor, for the name
/// that would bring it.
pub fn plan(files: &[PathBuf]) -> BTreeMap<PathBuf, Interest> {
    let mut out: BTreeMap<PathBuf, Interest> = BTreeMap::new();
    let mut add = |dir: &Path, name: &OsStr| {
        let (dir, name) = existing(dir, name);
        out.entry(dir).or_default().names.insert(name);
    };
    let mut pem_dirs = Vec::new();
    for file in files {
        if file.is_dir() {
            pem_dirs.push(file.clone());
            if let Ok(real) = file.canonicalize() {
                pem_dirs.push(real);
            }
        }
        let mut cur = file.clone();
        for _ in 0..MAX_LINKS {
            let (Some(dir), Some(name)) = (cur.parent(), cur.file_name()) else {
                break;
            };
            add(dir, name);
            if let Ok(real) = dir.canonicalize() {
                add(&real, name);
            }
            // A symlinked directory on the way (Kubernetes' `..data`) is swapped in its parent.
            for a in dir.ancestors() {
                if a.is_symlink() {
                    if let (Some(p), Some(n)) = (a.parent(), a.file_name()) {
                        add(p, n);
                    }
                }
            }
            match std::fs::read_link(&cur) {
                Ok(target) => cur = dir.join(target),
                Err(_) => break,
            }
        }
    }
    for dir in pem_dirs {
        out.entry(dir).or_default().pem_dir = true;
    }
    out
}

/// `dir`/`name`, or the nearest existing ancestor of `dir` and the name under it leading there.
fn existing(dir: &Path, name: &OsStr) -> (PathBuf, OsString) {
    let mut dir = dir.to_path_buf();
    let mut name = name.to_os_string();
    while !dir.is_dir() {
        match (dir.parent(), dir.file_name()) {
            (Some(p), Some(n)) => {
                name = n.to_os_string();
                dir = p.to_path_buf();
            }
            _ => break,
        }
    }
    (dir, name)
}

/// The watches in place: watch descriptor -> (a directory it was added for, what matters).
#[derive(Default)]
struct Watches {
    watches: HashMap<i32, (PathBuf, Interest)>,
}

impl Watches {
    fn dirs(&self) -> usize {
        self.watches.len()
    }

    /// Watches exactly the directories of `plan`: adds the new ones, removes those no longer
    /// needed. Two paths to one directory (a symlink and its target) share one watch.
    fn arm(&mut self, inotify: &Inotify, plan: BTreeMap<PathBuf, Interest>) {
        let mut next: HashMap<i32, (PathBuf, Interest)> = HashMap::new();
        for (dir, interest) in plan {
            match inotify.add_watch(&dir) {
                Ok(wd) => next
                    .entry(wd)
                    .or_insert_with(|| (dir.clone(), Interest::default()))
                    .1
                    .merge(&interest),
                Err(e) => warn!(
                    "--watch: cannot watch {}: {e}; changes there are not seen",
                    dir.display()
                ),
            }
        }
        for wd in self.watches.keys() {
            if !next.contains_key(wd) {
                inotify.rm_watch(*wd);
            }
        }
        self.watches = next;
    }

    /// The path an event is about, if it matters.
    fn relevant(&mut self, ev: &Event) -> Option<PathBuf> {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            // Events were lost: anything may have changed.
            return Some(PathBuf::from("(inotify queue overflow)"));
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            // The directory is gone (one we removed is no longer in the map).
            return self.watches.remove(&ev.wd).map(|(dir, _)| dir);
        }
        let (dir, interest) = self.watches.get(&ev.wd)?;
        (!ev.name.is_empty() && interest.wants(&ev.name)).then(|| dir.join(&ev.name))
    }
}

/// An inotify instance (non-blocking, close-on-exec).
struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and is owned by nothing else.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: the descriptor is ours and open, `c` is a NUL-terminated path for the call.
        let wd = unsafe {
            libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK | libc::IN_ONLYDIR)
        };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    fn rm_watch(&self, wd: i32) {
        // SAFETY: removing a watch descriptor from our own instance; a stale one is EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reading into a buffer we own, for its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// One inotify event: which watch, what happened, and the name in the directory (empty for
/// events about the directory itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub wd: i32,
    pub mask: u32,
    pub name: OsString,
}

/// `struct inotify_event` header: wd, mask, cookie, len (each 4 bytes, native order).
const HEADER: usize = 16;

/// Splits what `read` returned from an inotify descriptor into events. The kernel only ever
/// returns whole events; a truncated tail is dropped rather than misread.
pub fn parse_events(mut buf: &[u8]) -> Vec<Event> {
    let word = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = word(buf, 12) as usize;
        let Some(name) = buf.get(HEADER..HEADER + len) else {
            break;
        };
        // The name is NUL-padded to an alignment boundary.
        let name = &name[..memchr::memchr(0, name).unwrap_or(name.len())];
        out.push(Event {
            wd: word(buf, 0) as i32,
            mask: word(buf, 4),
            name: OsString::from_vec(name.to_vec()),
        });
        buf = &buf[HEADER + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn raw(wd: i32, mask: u32, name: &str, pad: usize) -> Vec<u8> {
        let mut name = name.as_bytes().to_vec();
        if !name.is_empty() {
            name.resize(name.len() + pad, 0);
        }
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        v.extend_from_slice(&name);
        v
    }

    #[test]
    fn events_are_split_and_names_unpadded() {
        let mut buf = raw(3, libc::IN_MOVED_TO, "site.pem", 8);
        buf.extend(raw(4, libc::IN_ATTRIB, "", 0));
        buf.extend(raw(5, libc::IN_CLOSE_WRITE, "k.key", 3));
        let evs = parse_events(&buf);
        assert_eq!(evs.len(), 3);
        assert_eq!((evs[0].wd, evs[0].mask), (3, libc::IN_MOVED_TO));
        assert_eq!(evs[0].name, "site.pem");
        assert_eq!(evs[1].name, "");
        assert_eq!(evs[2].name, "k.key");
        // A cut tail is dropped, not misread.
        assert_eq!(parse_events(&buf[..buf.len() - 2]).len(), 2);
        assert_eq!(parse_events(&buf[..10]).len(), 0);
        assert!(parse_events(&[]).is_empty());
    }

    #[test]
    fn debounce_waits_for_quiet_but_not_forever() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert!(d.deadline().is_none() && !d.due(t0));
        d.note(t0, "a".into());
        d.note(t0 + Duration::from_millis(100), "b".into());
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(400)));
        assert!(!d.due(t0 + Duration::from_millis(399)));
        assert!(d.due(t0 + Duration::from_millis(400)));
        // Events every 200 ms: the reload still comes LONGEST after the first.
        let mut t = t0;
        for _ in 0..20 {
            t += Duration::from_millis(200);
            d.note(t, "a".into());
        }
        assert_eq!(d.deadline(), Some(t0 + LONGEST));
        assert_eq!(d.take(), vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert!(d.deadline().is_none());
    }

    fn names(i: &Interest) -> Vec<&str> {
        i.names.iter().map(|n| n.to_str().unwrap()).collect()
    }

    #[test]
    fn the_plan_follows_certbot_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("archive")).unwrap();
        std::fs::create_dir_all(d.join("live")).unwrap();
        std::fs::write(d.join("archive/site1.pem"), "x").unwrap();
        symlink("../archive/site1.pem", d.join("live/site.pem")).unwrap();
        let plan = plan(&[d.join("live/site.pem")]);
        assert_eq!(names(&plan[&d.join("live")]), ["site.pem"]);
        // The target's directory, by the link's spelling and by its real path.
        assert_eq!(names(&plan[&d.join("live/../archive")]), ["site1.pem"]);
        assert_eq!(names(&plan[&d.join("archive")]), ["site1.pem"]);
    }

    #[test]
    fn the_plan_follows_a_kubernetes_data_swap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("..2026_a")).unwrap();
        std::fs::write(d.join("..2026_a/site.pem"), "x").unwrap();
        symlink("..2026_a", d.join("..data")).unwrap();
        symlink("..data/site.pem", d.join("site.pem")).unwrap();
        let plan = plan(&[d.join("site.pem")]);
        // The swap of ..data is a rename in d; a rewrite of the file happens in ..2026_a.
        assert_eq!(names(&plan[&d]), ["..data", "site.pem"]);
        assert_eq!(names(&plan[&d.join("..2026_a")]), ["site.pem"]);
    }

    #[test]
    fn the_plan_watches_pem_dirs_and_missing_files_from_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("certs")).unwrap();
        let plan = plan(&[d.join("certs"), d.join("gone/deeper/x.pem.ocsp")]);
        assert!(plan[&d.join("certs")].pem_dir);
        assert!(plan[&d.join("certs")].wants(OsStr::new("new.pem")));
        assert!(plan[&d.join("certs")].wants(OsStr::new("new.pem.ocsp")));
        assert!(!plan[&d.join("certs")].wants(OsStr::new(".new.pem.swp")));
        // The directory itself being replaced is seen from its parent.
        assert_eq!(names(&plan[&d]), ["certs", "gone"]);
    }

    /// The real thing: a rename over a watched file is reported once, after the quiet time;
    /// an unrelated file in the same directory is not.
    #[test]
    fn a_rename_over_a_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        let live = d.join("live.pem");
        std::fs::write(&live, "old").unwrap();
        let w = Watcher::start(std::slice::from_ref(&live)).unwrap();
        std::fs::write(d.join("unrelated.txt"), "x").unwrap();
        std::fs::write(d.join("live.pem.tmp"), "new").unwrap();
        std::fs::rename(d.join("live.pem.tmp"), &live).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            if let Some(c) = w.changed() {
                break c;
            }
            assert!(Instant::now() < deadline, "no change reported");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(got, vec![live.clone()]);
        // Nothing more is asked until it is re-watches; then a new change is seen again.
        w.rearm(std::slice::from_ref(&live));
        std::fs::write(&live, "rewritten").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.changed().is_none() {
            assert!(
                Instant::now() < deadline,
                "no change reported after re-arming"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
