//! Waiting for any of a few descriptors to become readable, with an optional deadline: the
//! control-plane threads (`--watch`, the upgrade socket) wait on their work and on a wake-up
//! socket at once.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Waits until one of `fds` is readable (or closed, or in error), or `timeout` passes; says
/// which are. All false means the time ran out.
pub fn readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    // Rounded up, so a deadline is never polled for as 0 ms over and over.
    let ms = timeout.map_or(-1, |t| {
        t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    loop {
        // SAFETY: `polled` is a valid array of N pollfd for the length given; the descriptors
        // are borrowed for the call.
        let rc = unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(polled.map(|p| p.revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn says_which_is_readable_or_none_at_the_deadline() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (c, _d) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = Some(Duration::from_millis(1));
        assert_eq!(readable([a.as_fd(), c.as_fd()], t).unwrap(), [false, false]);
        b.write_all(b"x").unwrap();
        assert_eq!(
            readable([a.as_fd(), c.as_fd()], None).unwrap(),
            [true, false]
        );
        drop(_d);
        assert_eq!(readable([c.as_fd()], None).unwrap(), [true]);
    }
}
