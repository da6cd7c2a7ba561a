//! Socket options the connection loops need that monoio does not wrap.

use std::os::fd::RawFd;

/// Arms SO_LINGER with a zero timeout so that closing `fd` sends RST instead of FIN: how a
/// reset on one side is carried through to the other.
pub fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: fd is an open socket owned by the caller; the option value is a plain struct.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
