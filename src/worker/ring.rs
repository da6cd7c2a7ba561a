//! The worker's runtime: an io_uring ring from the best set-up the kernel takes, restricted to
//! the operations tern submits (`--uring-restrict`, src/sys/uring_restrict.rs), or monoio's
//! epoll driver.
//!
//! A restricted ring is created disabled (`IORING_SETUP_R_DISABLED`), given its allow-list and
//! enabled between `build()` and the first `block_on`: monoio submits nothing before that, and
//! the vendored monoio hands out the ring's descriptor for it (vendor/monoio/TERN-PATCH.md).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Once;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};
use tracing::warn;

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

/// A ring from the first set-up the kernel takes, with its name and whether it is restricted.
/// `restrict`: each set-up is first tried disabled, restricted and enabled; when the kernel
/// refuses that, the same set-up without restrictions (warned once per process; the report
/// line of each worker says why). Must run on the worker's thread: with SINGLE_ISSUER, the
/// thread that enables the ring is its only submitter.
pub fn uring(restrict: bool) -> io::Result<(UringRuntime, &'static str, Restriction)> {
    uring_with(restrict, uring_restrict::restrict_and_enable)
}

/// [`uring`] with the step that restricts and enables a disabled ring passed in (tests stand
/// in a refusing kernel).
fn uring_with(
    restrict: bool,
    restrict_and_enable: fn(RawFd) -> io::Result<()>,
) -> io::Result<(UringRuntime, &'static str, Restriction)> {
    let mut last = io::Error::other("no io_uring set-up tried");
    for (name, setup) in URING_SETUPS {
        let mut refused = None;
        if restrict {
            match build(setup, true) {
                Ok(rt) => match restrict_and_enable(rt.as_raw_fd()) {
                    Ok(()) => return Ok((rt, name, Restriction::Restricted)),
                    // The disabled ring is dropped (nothing was submitted to it).
                    Err(e) => refused = Some(cause(&e)),
                },
                // Either the set-up's own flags or R_DISABLED: the next build tells which.
                Err(e) => refused = Some(cause(&e)),
            }
        }
        match build(setup, false) {
            Ok(rt) => {
                let state = match refused {
                    None => Restriction::Off,
                    Some(why) => {
                        warn_once(&why);
                        Restriction::Refused(why)
                    }
                };
                return Ok((rt, name, state));
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
        let Ok((mut rt, _, state)) = uring(true) else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
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
        fn refuse(_: RawFd) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        let Ok(plain) = uring(false) else {
            eprintln!("io_uring unavailable here; skipped");
            return;
        };
        let (mut rt, setup, state) = uring_with(true, refuse).unwrap();
        assert_eq!(setup, plain.1, "the same set-up as without restrictions");
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
}
