//! io_uring restrictions (Linux 5.10): a ring created disabled (`IORING_SETUP_R_DISABLED`)
//! can be given an allow-list of operations before it is enabled; afterwards any other
//! operation completes with EACCES, and no `io_uring_register` call is allowed at all. A tern
//! worker's ring then cannot open, rename, unlink or splice files, whatever a bug makes it
//! submit — io_uring operations bypass seccomp, so this is the only filter that applies to them.
//!
//! The list is what monoio 0.2.4 submits for the I/O tern does, found by tracing the kernel's
//! `io_uring_submit_req` events over the tcp, http, lifecycle and routing end-to-end tests:
//! accept, connect, recv, send, poll_add (readiness waits), async_cancel (timeouts, drops),
//! close (monoio closes sockets through the ring) and read (the eventfd monoio wakes the
//! ring with), all without SQE flags. Timeout is added for kernels without EXT_ARG (before
//! 5.11), where monoio waits with a timeout operation instead of an argument.
//!
//! With `--uring-recv multishot` one SQE flag is allowed too: `IOSQE_BUFFER_SELECT`, which a
//! multishot receive needs to take its buffers from the worker's provided-buffer ring. The
//! ring is registered (`IORING_REGISTER_PBUF_RING`) while the ring is still disabled, before
//! the restrictions take effect, so no register operation needs to be allowed.
//!
//! Applied by each worker (src/worker/ring.rs, `--uring-restrict`): monoio 0.2.4 builds the
//! ring inside `RuntimeBuilder::build()` and keeps it private, so tern builds with a vendored
//! monoio whose `Runtime` and `TimeDriver` implement `AsRawFd` (vendor/monoio/TERN-PATCH.md).
//! monoio submits nothing before the first `block_on`, so the worker builds the ring with
//! `setup_r_disabled()` and calls [`restrict_and_enable`] on `rt.as_raw_fd()` in between; when
//! the kernel refuses, it builds the same set-up unrestricted. The whole end-to-end suite runs
//! on restricted rings (DEFER_TASKRUN included): an operation missing here fails with EACCES.

use std::io;
use std::os::fd::RawFd;

use io_uring::opcode;
use io_uring::register::Restriction;

/// The operations a worker's ring may carry.
pub const ALLOWED_OPS: &[(u8, &str)] = &[
    (opcode::Accept::CODE, "accept"),
    (opcode::Connect::CODE, "connect"),
    (opcode::Recv::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::PollAdd::CODE, "poll_add"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
    (opcode::Close::CODE, "close"),
    (opcode::Read::CODE, "read"),
    (opcode::Timeout::CODE, "timeout"),
];

/// `IOSQE_BUFFER_SELECT` (include/uapi/linux/io_uring.h: bit 5).
pub const SQE_BUFFER_SELECT: u8 = 1 << 5;

/// The restriction table for [`ALLOWED_OPS`], no register operations, and no SQE flags
/// (monoio sets none: no links, no fixed files, no forced async) except, with
/// `buffer_select`, the one a multishot receive into a provided-buffer ring sets.
pub fn restrictions(buffer_select: bool) -> Vec<Restriction> {
    let mut r: Vec<Restriction> = ALLOWED_OPS
        .iter()
        .map(|&(op, _)| Restriction::sqe_op(op))
        .collect();
    let flags = if buffer_select { SQE_BUFFER_SELECT } else { 0 };
    r.push(Restriction::sqe_flags_allowed(flags));
    r
}

/// `io_uring_register` opcodes (include/uapi/linux/io_uring.h), not exported by io-uring 0.6.
const IORING_REGISTER_RESTRICTIONS: libc::c_uint = 11;
const IORING_REGISTER_ENABLE_RINGS: libc::c_uint = 12;

/// Registers the allow-list on a ring created with `setup_r_disabled()`, then enables it
/// (`buffer_select`: see [`restrictions`]).
/// Takes the ring's descriptor because that is what a runtime can hand out. Must run on the
/// thread that will submit (with SINGLE_ISSUER the enabling task becomes the only submitter)
/// and before anything is submitted. Fails with EBADFD on a ring already enabled, EINVAL on a
/// kernel without restrictions (before 5.10), EBUSY if restrictions were registered already.
pub fn restrict_and_enable(ring_fd: RawFd, buffer_select: bool) -> io::Result<()> {
    let mut table = restrictions(buffer_select);
    // SAFETY: `Restriction` is a transparent wrapper of `struct io_uring_restriction`, so the
    // vector is the array the kernel reads, `table.len()` entries long; it outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_RESTRICTIONS,
            table.as_mut_ptr(),
            table.len() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ENABLE_RINGS takes no argument.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_ENABLE_RINGS,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{squeue, types, IoUring};
    use std::os::fd::AsRawFd;

    fn disabled_ring() -> Option<IoUring> {
        match IoUring::builder().setup_r_disabled().build(8) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); restriction test skipped");
                None
            }
        }
    }

    /// Submits one entry and returns its completion result.
    fn run(ring: &mut IoUring, entry: squeue::Entry) -> i32 {
        // SAFETY: every buffer an entry points to lives on the caller's stack until this
        // function has waited for the entry's completion.
        unsafe { ring.submission().push(&entry).unwrap() };
        ring.submit_and_wait(1).unwrap();
        ring.completion().next().unwrap().result()
    }

    #[test]
    fn allowed_operations_run_and_others_get_eacces() {
        let Some(mut ring) = disabled_ring() else {
            return;
        };
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        restrict_and_enable(ring.as_raw_fd(), false).unwrap();

        let msg = *b"ping";
        // SAFETY: writing 4 bytes from a local array to the pipe this test opened.
        assert_eq!(unsafe { libc::write(fds[1], msg.as_ptr().cast(), 4) }, 4);
        let mut buf = [0u8; 4];
        let read = opcode::Read::new(types::Fd(fds[0]), buf.as_mut_ptr(), 4).build();
        assert_eq!(run(&mut ring, read), 4);
        assert_eq!(&buf, b"ping");

        // Neither opening a file nor writing one is on the list.
        let path = c"/etc/passwd";
        let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).build();
        assert_eq!(run(&mut ring, open), -libc::EACCES);
        let write = opcode::Write::new(types::Fd(fds[1]), msg.as_ptr(), 4).build();
        assert_eq!(run(&mut ring, write), -libc::EACCES);
        // Nor is an allowed operation with an SQE flag (here a link); the data is there, so
        // were it allowed it would complete with 4.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::write(fds[1], msg.as_ptr().cast(), 4) }, 4);
        let linked = opcode::Read::new(types::Fd(fds[0]), buf.as_mut_ptr(), 4)
            .build()
            .flags(squeue::Flags::IO_LINK);
        assert_eq!(run(&mut ring, linked), -libc::EACCES);
        // Nor any register operation, so the list cannot be changed or files registered.
        let mut probe = io_uring::Probe::new();
        let e = ring.submitter().register_probe(&mut probe).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        // SAFETY: closing the pipe this test opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    /// A receive that takes its buffer from a buffer group (`IOSQE_BUFFER_SELECT`) on a pipe
    /// with bytes in it: its completion result.
    fn buffer_select_read(buffer_select: bool) -> Option<i32> {
        let mut ring = disabled_ring()?;
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        restrict_and_enable(ring.as_raw_fd(), buffer_select).unwrap();
        // SAFETY: writing 4 bytes from a literal to the pipe this test opened.
        assert_eq!(
            unsafe { libc::write(fds[1], b"ping".as_ptr().cast(), 4) },
            4
        );
        // No group 3 is registered: were the flag allowed, the read fails with ENOBUFS.
        let read = opcode::Read::new(types::Fd(fds[0]), std::ptr::null_mut(), 4)
            .buf_group(3)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT);
        let res = run(&mut ring, read);
        if buffer_select {
            // Other flags stay refused.
            let mut buf = [0u8; 4];
            let linked = opcode::Read::new(types::Fd(fds[0]), buf.as_mut_ptr(), 4)
                .build()
                .flags(squeue::Flags::IO_LINK);
            assert_eq!(run(&mut ring, linked), -libc::EACCES);
        }
        // SAFETY: closing the pipe this test opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        Some(res)
    }

    #[test]
    fn buffer_select_is_allowed_only_for_multishot_receive() {
        let Some(refused) = buffer_select_read(false) else {
            return;
        };
        assert_eq!(refused, -libc::EACCES);
        assert_eq!(buffer_select_read(true), Some(-libc::ENOBUFS));
    }

    #[test]
    fn an_enabled_ring_cannot_be_restricted_afterwards() {
        let Ok(ring) = IoUring::new(8) else { return };
        let e = restrict_and_enable(ring.as_raw_fd(), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADFD));
    }
}
