//! sd_notify: tells the service manager (systemd `Type=notify`) when tern is ready, reloading
//! or stopping, over the unix datagram socket named by `$NOTIFY_SOCKET`. Without that variable
//! every call is a no-op, so tern behaves the same outside systemd.
//!
//! The socket is connected once, by [`connect`], before the process confines itself: Landlock
//! may forbid reaching a socket path (or an abstract name) afterwards, while a connected
//! socket keeps working. Every later message goes through that one socket.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

use tracing::{debug, warn};

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file, e.g. `/run/systemd/notify`.
    Path(std::path::PathBuf),
    /// An abstract socket, written `@name` (the `@` stands for the leading NUL byte).
    Abstract(Vec<u8>),
}

/// Reads a `$NOTIFY_SOCKET` value. systemd also knows `vsock:` addresses (for VMs); tern does
/// not run as a VM's init, so those are refused with a reason.
pub fn parse(value: &OsStr) -> Result<Target, String> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(Target::Path(value.into())),
        Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(bytes[1..].to_vec())),
        _ => Err(format!(
            "NOTIFY_SOCKET={}: not a socket path or @abstract name",
            value.to_string_lossy()
        )),
    }
}

impl Target {
    fn address(&self) -> io::Result<SocketAddr> {
        match self {
            Target::Path(p) => SocketAddr::from_pathname(p),
            Target::Abstract(name) => SocketAddr::from_abstract_name(name),
        }
    }
}

/// The connected socket, or None when there is no service manager to tell.
static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();

fn open() -> Option<UnixDatagram> {
    let value = std::env::var_os("NOTIFY_SOCKET")?;
    let target = match parse(&value) {
        Ok(t) => t,
        Err(e) => {
            warn!("{e}; not notifying the service manager");
            return None;
        }
    };
    let connected = UnixDatagram::unbound().and_then(|s| {
        s.connect_addr(&target.address()?)?;
        Ok(s)
    });
    match connected {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(
                "NOTIFY_SOCKET={}: cannot connect: {e}; not notifying the service manager",
                value.to_string_lossy()
            );
            None
        }
    }
}

/// Opens and connects the notification socket if `$NOTIFY_SOCKET` names one. Call before the
/// process confines itself; later calls (and the first message, if this was never called) do
/// nothing more.
pub fn connect() {
    SOCKET.get_or_init(open);
}

/// Sends one message (newline-separated `KEY=VALUE` assignments). Returns Ok(false) when there
/// is no service manager to tell.
pub fn send(message: &str) -> io::Result<bool> {
    match SOCKET.get_or_init(open) {
        None => Ok(false),
        Some(s) => s.send(message.as_bytes()).map(|_| true),
    }
}

/// Sends and logs a failure instead of returning it: a service manager that went away must
/// not stop tern from serving or draining.
fn tell(message: &str) {
    match send(message) {
        Ok(true) => debug!(message, "told the service manager"),
        Ok(false) => {}
        Err(e) => warn!("cannot notify the service manager ({message:?}): {e}"),
    }
}

/// Every worker accepts connections (`READY=1`); also ends a reload.
pub fn ready() {
    tell("READY=1");
}

/// A configuration reload has begun; [`ready`] ends it. systemd 253+ (`Type=notify-reload`)
/// wants the time the reload started alongside, on CLOCK_MONOTONIC.
pub fn reloading() {
    tell(&reloading_message(monotonic_usec()));
}

/// The drain has begun: no new connections; the process exits when open ones finish.
pub fn stopping() {
    tell("STOPPING=1");
}

/// A one-line status for `systemctl status` (newlines would end the assignment; they are
/// replaced).
pub fn status(text: &str) {
    tell(&status_message(text));
}

fn reloading_message(usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

fn status_message(text: &str) -> String {
    format!("STATUS={}", text.replace('\n', " "))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_and_abstract_names() {
        assert_eq!(
            parse(OsStr::new("/run/systemd/notify")),
            Ok(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse(OsStr::new("@tern/notify")),
            Ok(Target::Abstract(b"tern/notify".to_vec()))
        );
        for bad in ["", "@", "relative/sock", "vsock:2:1234"] {
            assert!(parse(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_have_the_fields_systemd_reads() {
        assert_eq!(
            reloading_message(1234567),
            "RELOADING=1\nMONOTONIC_USEC=1234567"
        );
        assert_eq!(status_message("a\nb"), "STATUS=a b");
        // The monotonic clock the reload stamp uses moves forward.
        let (a, b) = (monotonic_usec(), monotonic_usec());
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn abstract_and_path_targets_reach_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let name = format!("tern-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        for (target, rx) in [
            (Target::Path(path.clone()), &listener),
            (Target::Abstract(name.into_bytes()), &abs),
        ] {
            let s = UnixDatagram::unbound().unwrap();
            s.connect_addr(&target.address().unwrap()).unwrap();
            s.send(b"READY=1").unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1");
        }
    }
}
