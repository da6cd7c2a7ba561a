//! The worker's runtime: an io_uring ring from the best set-up the kernel takes, restricted to
//! the operations tern submits (`--uring-restrict`, src/sys/uring_restrict.rs), or monoio's
//! epoll driver.
//!
//! A restricted ring is created disabled (`IORING_SETUP_R_DISABLED`), given its allow-list and
//! enabled between `build()` and the first `block_on`: monoio submits nothing before that, and
//! the vendored monoio hands out the ring's descriptor for it (vendor/monoio/TERN-PATCH.md).
//!
//! With `--uring-recv multishot` the ring also gets the worker's provided-buffer ring (the
//! buffers multishot receives fill, `net::ringrecv`), registered in the same gap: on the
//! disabled ring, before the restrictions forbid every register operation.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Once;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};
use tracing::warn;

use crate::net::ringrecv;
use crate::sys::uring_restrict;

/// Ring size: enough submission slots for bursts of accepts and I/O on many connections.
const ENTRIES: u32 = 4096;

/// io_uring set-ups from best to most compatible. A thread-per-core worker is the ring's only
/// submitter, so the kernel may defer completion work to the moment the worker asks for events
/// (DEFER_TASKRUN, Linux 6.1) instead of interrupting it; COOP_TASKRUN (5.19) is the next best.
/// Measured here with 50 keep-alive connections in tcp mode: requests per CPU-second of tern
/// went from ~50k (plain) to ~75k with either. Kernels that refuse a flag get the next set-up.
type UringSetup = (&'static str, fn(&mut io_uring::Builder));
const URING_SETUPS: [UringSetup; 3] = [
    ("defer-taskrun", |b| {
        b.setup_single_issuer().setup_defer_taskrun();
    }),
    ("coop-taskrun", |b| {
        b.setup_coop_taskrun();
    }),
    ("plain", |_| {}),
];

/// Whether a worker's ring runs with io_uring restrictions, as the start-up report says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    Restricted,
    /// `--uring-restrict off`.
    Off,
    /// Tried, and the kernel refused: why.
    Refused(String),
    /// The epoll driver has no ring.
    NotApplicable,
}

impl Restriction {
    pub fn is_restricted(&self) -> bool {
        *self == Restriction::Restricted
    }
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restriction::Restricted => f.write_str("restricted"),
            Restriction::Off => f.write_str("unrestricted (--uring-restrict off)"),
            Restriction::Refused(why) => write!(f, "unrestricted ({why})"),
            Restriction::NotApplicable => f.write_str("n/a (epoll)"),
        }
    }
}

/// Why the kernel refused, in a few words. R_DISABLED and the register opcodes arrived
/// together (5.10): an older kernel answers EINVAL to the set-up flag.
fn cause(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EINVAL) => "EINVAL: kernel before 5.10".into(),
        _ => e.to_string(),
    }
}

pub type UringRuntime = Runtime<TimeDriver<IoUringDriver>>;

/// The provided-buffer ring a worker wants for multishot receive: `entries` buffers of
/// `buf_len` bytes in group [`ringrecv::GROUP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvRing {
    pub entries: u16,
    pub buf_len: usize,
}

/// Whether a worker receives with multishot, as its start line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Multishot {
    On,
    /// `--uring-recv single`.
    Off,
    /// Asked for, and the kernel refused the buffer ring (before 5.19): why.
    Refused(String),
    /// The epoll driver has no ring.
    NotApplicable,
}

impl Multishot {
    pub fn is_on(&self) -> bool {
        *self == Multishot::On
    }
}

impl fmt::Display for Multishot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Multishot::On => f.write_str("multishot"),
            Multishot::Off => f.write_str("single"),
            Multishot::Refused(why) => write!(f, "single (multishot refused: {why})"),
            Multishot::NotApplicable => f.write_str("single (epoll)"),
        }
    }
}

/// A worker's ring and how it was set up.
pub struct Uring {
    pub rt: UringRuntime,
    /// The set-up's name (`URING_SETUPS`).
    pub setup: &'static str,
    pub restriction: Restriction,
    pub multishot: Multishot,
}

/// Registers the buffer ring on a ring not yet running (disabled or not).
fn register_recv_ring(rt: &UringRuntime, recv: Option<RecvRing>) -> Multishot {
    let Some(r) = recv else {
        return Multishot::Off;
    };
    match rt.register_buf_ring(ringrecv::GROUP, r.entries, r.buf_len) {
        Ok(()) => Multishot::On,
        Err(e) => Multishot::Refused(match e.raw_os_error() {
            Some(libc::EINVAL) => "EINVAL: kernel before 5.19".into(),
            _ => e.to_string(),
        }),
    }
}

fn build(setup: fn(&mut io_uring::Builder), disabled: bool) -> io::Result<UringRuntime> {
    let mut b = io_uring::IoUring::builder();
    setup(&mut b);
    if disabled {
        b.setup_r_disabled();
    }
    RuntimeBuilder::<IoUringDriver>::new()
        .uring_builder(b)
        .with_entries(ENTRIES)
        .enable_timer()
        .build()
}

/// A ring from the first set-up the kernel takes, with its name, whether it is restricted
/// and whether it has the buffer ring `recv` asks for (`None`: `--uring-recv single`).
/// `restrict`: each set-up is first tried disabled, restricted and enabled; when the kernel
/// refuses that, the same set-up without restrictions (warned once per process; the report
/// line of each worker says why). A kernel refusing the buffer ring gets a ring without it
/// (the worker then reads as with `single`). Must run on the worker's thread: with
/// SINGLE_ISSUER, the thread that enables the ring is its only submitter.
pub fn uring(restrict: bool, recv: Option<RecvRing>) -> io::Result<Uring> {
    uring_with(restrict, recv, uring_restrict::restrict_and_enable)
}

/// [`uring`] with the step that restricts and enables a disabled ring passed in (tests stand
/// in a refusing kernel).
fn uring_with(
    restrict: bool,
    recv: Option<RecvRing>,
    restrict_and_enable: fn(RawFd, bool) -> io::Result<()>,
) -> io::Result<Uring> {
    let mut last = io::Error::other("no io_uring set-up tried");
    for (name, setup) in URING_SETUPS {
        let mut refused = None;
        if restrict {
            match build(setup, true) {
                Ok(rt) => {
                    let multishot = register_recv_ring(&rt, recv);
                    // The one SQE flag multishot receive sets is allowed only when it is on.
                    match restrict_and_enable(rt.as_raw_fd(), multishot.is_on()) {
                        Ok(()) => {
                            return Ok(Uring {
                                rt,
                                setup: name,
                                restriction: Restriction::Restricted,
                                multishot,
                            })
                        }
                        // The disabled ring is dropped (nothing was submitted to it).
                        Err(e) => refused = Some(cause(&e)),
                    }
                }
                // Either the set-up's own flags or R_DISABLED: the next build tells which.
                Err(e) => refused = Some(cause(&e)),
            }
        }
        match build(setup, false) {
            Ok(rt) => {
                let restriction = match refused {
                    None => Restriction::Off,
                    Some(why) => {
                        warn_once(&why);
                        Restriction::Refused(why)
                    }
                };
                let multishot = register_recv_ring(&rt, recv);
                return Ok(Uring {
                    rt,
                    setup: name,
                    restriction,
                    multishot,
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn warn_once(why: &str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        warn!(
            "io_uring restrictions refused ({why}): workers run unrestricted rings \
             (--uring-restrict off silences this)"
        )
    });
}

pub type LegacyRuntime = Runtime<TimeDriver<LegacyDriver>>;

/// monoio's epoll driver, when io_uring is unavailable.
pub fn legacy() -> io::Result<LegacyRuntime> {
    RuntimeBuilder::<LegacyDriver>::new()
        .with_entries(ENTRIES)
        .enable_timer()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_words() {
        assert_eq!(Restriction::Restricted.to_string(), "restricted");
        assert_eq!(Restriction::NotApplicable.to_string(), "n/a (epoll)");
        let old = io::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(
            Restriction::Refused(cause(&old)).to_string(),
            "unrestricted (EINVAL: kernel before 5.10)"
        );
        assert_eq!(
            Restriction::Off.to_string(),
            "unrestricted (--uring-restrict off)"
        );
    }

    /// On this thread, as a worker would: a restricted ring serves a timer (the timeout path
    /// monoio uses) and refuses an operation off the list.
    #[test]
    fn a_restricted_runtime_runs_and_refuses_files() {
        let Ok(Uring {
            mut rt,
            restriction: state,
            multishot,
            ..
        }) = uring(true, None)
        else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
        assert_eq!(multishot, Multishot::Off);
        if let Restriction::Refused(why) = &state {
            eprintln!("restrictions refused here ({why}); skipped");
            return;
        }
        assert_eq!(state, Restriction::Restricted);
        let opened = rt.block_on(async {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            // monoio opens files through the ring (OpenAt), which is not on the list.
            monoio::fs::File::open("/proc/self/status").await
        });
        let e = opened.expect_err("open must be refused on a restricted ring");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    }

    /// A kernel that refuses restrictions (as one before 5.10 would) gets the same set-up
    /// unrestricted, which serves and opens files as before.
    #[test]
    fn a_refusal_falls_back_to_an_unrestricted_ring() {
        fn refuse(_: RawFd, _: bool) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        let Ok(plain) = uring(false, None) else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
        let Uring {
            mut rt,
            setup,
            restriction: state,
            ..
        } = uring_with(true, None, refuse).unwrap();
        assert_eq!(
            setup, plain.setup,
            "the same set-up as without restrictions"
        );
        drop(plain);
        assert_eq!(
            state,
            Restriction::Refused("EINVAL: kernel before 5.10".into())
        );
        let opened = rt.block_on(async {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            monoio::fs::File::open("/proc/self/status").await
        });
        assert!(opened.is_ok(), "{:?}", opened.err());
    }

    const RING: RecvRing = RecvRing {
        entries: 8,
        buf_len: 4096,
    };

    /// A multishot receive on `rt` over a Unix socket pair: what it gets for "ping".
    fn multishot_ping(rt: &mut UringRuntime) -> io::Result<Vec<u8>> {
        use std::io::Write;
        rt.block_on(async {
            let (ours, mut peer) = std::os::unix::net::UnixStream::pair()?;
            let ours = monoio::net::UnixStream::from_std(ours)?;
            let mut rx = ours.recv_multishot(ringrecv::GROUP)?;
            peer.write_all(b"ping")?;
            let got = monoio::time::timeout(std::time::Duration::from_secs(10), rx.next())
                .await
                .map_err(|_| io::Error::other("no completion in time"))??;
            Ok(got.to_vec())
        })
    }

    /// The worker's set-up with multishot on: the buffer ring is registered on the disabled
    /// ring, the restrictions let its receives through, and they get the bytes.
    #[test]
    fn a_restricted_runtime_receives_multishot() {
        let Ok(Uring {
            mut rt,
            restriction,
            multishot,
            ..
        }) = uring(true, Some(RING))
        else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
        if restriction != Restriction::Restricted || !multishot.is_on() {
            eprintln!(
                "restricted multishot unavailable here ({restriction}, {multishot}); skipped"
            );
            return;
        }
        assert_eq!(multishot_ping(&mut rt).unwrap(), b"ping");
        // And nothing else loosened: files are still refused.
        let opened = rt.block_on(monoio::fs::File::open("/proc/self/status"));
        assert_eq!(
            opened.err().and_then(|e| e.raw_os_error()),
            Some(libc::EACCES)
        );
    }

    /// Without the flag in the allow-list a multishot receive is refused: the flag is what
    /// makes the test above pass.
    #[test]
    fn restrictions_without_buffer_select_refuse_multishot() {
        fn without_flag(fd: RawFd, _: bool) -> io::Result<()> {
            uring_restrict::restrict_and_enable(fd, false)
        }
        let Ok(Uring {
            mut rt,
            restriction,
            multishot,
            ..
        }) = uring_with(true, Some(RING), without_flag)
        else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
        if restriction != Restriction::Restricted || !multishot.is_on() {
            eprintln!("restricted multishot unavailable here; skipped");
            return;
        }
        let e = multishot_ping(&mut rt).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    }

    #[test]
    fn multishot_report_words() {
        assert_eq!(Multishot::On.to_string(), "multishot");
        assert_eq!(Multishot::Off.to_string(), "single");
        assert_eq!(Multishot::NotApplicable.to_string(), "single (epoll)");
        assert_eq!(
            Multishot::Refused("EINVAL: kernel before 5.19".into()).to_string(),
            "single (multishot refused: EINVAL: kernel before 5.19)"
        );
    }
}
