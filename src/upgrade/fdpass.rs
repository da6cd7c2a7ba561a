//! Descriptors over a Unix socket: `sendmsg`/`recvmsg` with `SCM_RIGHTS`, and the peer's
//! credentials. Safe wrappers over libc; received descriptors are close-on-exec from the
//! moment they exist (`MSG_CMSG_CLOEXEC`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Control-message space for `n` descriptors.
fn space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `bytes` as one message with `fds` attached.
pub fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = vec![0u64; space(fds.len()).div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space(fds.len()) as _;
        // SAFETY: msg_control points at a zeroed, aligned buffer of CMSG_SPACE(fds) bytes, so
        // the first header and its data fit; the data is written as unaligned RawFds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            let data = libc::CMSG_DATA(cmsg) as *mut RawFd;
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: msg describes live buffers (bytes, control) for the duration of the call;
        // the descriptors in it are borrowed, so they stay open while the kernel copies them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return match n as usize == bytes.len() {
                true => Ok(()),
                false => Err(io::Error::new(io::ErrorKind::WriteZero, "short send")),
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message into `buf`, with up to `max_fds` descriptors: (length, descriptors).
/// Length 0 is the peer closing. A message or descriptor list cut short is an error (the
/// descriptors that did arrive are closed).
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = vec![0u64; space(max_fds.max(1)).div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;
    let n = loop {
        // SAFETY: msg describes live, writable buffers (buf, control) of the lengths given.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: after recvmsg the kernel has filled msg_control with msg_controllen bytes of
    // well-formed control messages; CMSG_FIRSTHDR/NXTHDR walk exactly those. Each SCM_RIGHTS
    // entry is a new descriptor installed in this process, owned by nothing else yet.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("more descriptors than expected"));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::other("message too long"));
    }
    Ok((n, fds))
}

/// The pid and uid of the process at the other end of a Unix socket (as of its connect or
/// listen).
pub fn peer(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    // SAFETY: an all-zero ucred is valid; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writing for the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

/// Whether a peer with this uid may take or give listening sockets: the same user, or root.
pub fn trusted(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    fn pair() -> (Socket, Socket) {
        Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap()
    }

    #[test]
    fn descriptors_arrive_working_and_close_on_exec() {
        let (a, b) = pair();
        let (mut r1, w1) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut r2, w2) = std::os::unix::net::UnixStream::pair().unwrap();
        send(a.as_fd(), b"two", &[w1.as_fd(), w2.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = recv(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            // SAFETY: reading the flags of a descriptor we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0);
        }
        let mut s1 = std::os::unix::net::UnixStream::from(fds.into_iter().next().unwrap());
        s1.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        r1.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        drop((w2, &mut r2));
    }

    #[test]
    fn messages_keep_their_boundaries_and_eof_is_zero() {
        let (a, b) = pair();
        send(a.as_fd(), b"first", &[]).unwrap();
        send(a.as_fd(), b"second", &[]).unwrap();
        drop(a);
        let mut buf = [0u8; 64];
        assert_eq!(recv(b.as_fd(), &mut buf, 0).unwrap().0, 5);
        assert_eq!(recv(b.as_fd(), &mut buf, 0).unwrap().0, 6);
        assert_eq!(recv(b.as_fd(), &mut buf, 0).unwrap().0, 0);
    }

    #[test]
    fn too_many_descriptors_or_bytes_are_errors() {
        let (a, b) = pair();
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        send(a.as_fd(), b"m", &[x.as_fd(), y.as_fd(), x.as_fd()]).unwrap();
        let mut buf = [0u8; 8];
        assert!(recv(b.as_fd(), &mut buf, 1).is_err());
        send(a.as_fd(), b"much too long", &[]).unwrap();
        assert!(recv(b.as_fd(), &mut buf, 0).is_err());
    }

    #[test]
    fn the_peer_is_this_process() {
        let (a, _b) = pair();
        let (pid, uid) = peer(a.as_fd()).unwrap();
        assert_eq!(pid as u32, std::process::id());
        assert!(trusted(uid));
    }
}
