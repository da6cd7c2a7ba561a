//! The systemd units in deploy/: systemd itself checks them (`systemd-analyze verify`), and
//! the service's system-call filter, expanded by the installed systemd's own group lists,
//! still allows every call tern makes. Skipped where systemd-analyze is missing, except in CI,
//! whose .ci/run installs it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const UNITS: [&str; 2] = ["tern.service", "tern.socket"];

/// The system calls tern makes: traced (`strace -f -c`) over a start, http requests and a
/// drain on io_uring, plus those of the epoll fallback, the notify socket and the standard
/// library's process set-up. `setuid`/`setgroups` are left out on purpose: under systemd,
/// `User=` switches users and the unit denies them.
const TERN_CALLS: &[&str] = &[
    "access",
    "arch_prctl",
    "bind",
    "brk",
    "clone3",
    "close",
    "eventfd2",
    "execve",
    "fcntl",
    "futex",
    "geteuid",
    "getrandom",
    "getsockname",
    "gettid",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "listen",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "openat",
    "poll",
    "prctl",
    "pread64",
    "prlimit64",
    "read",
    "readlink",
    "restart_syscall",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigtimedwait",
    "sched_getaffinity",
    "sched_setaffinity",
    "set_robust_list",
    "set_tid_address",
    "setrlimit",
    "setsockopt",
    "shutdown",
    "sigaltstack",
    "socket",
    "statx",
    "sysinfo",
    "write",
    // epoll driver
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "accept4",
    "connect",
    "recvfrom",
    "sendto",
    "readv",
    "writev",
    "getsockopt",
    // sd_notify
    "sendmsg",
    "exit_group",
    // --watch (traced: a rename over a watched file)
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "getcwd",
    // --upgrade-socket (traced: an upgrade), the control-plane threads' wake-up pairs
    "recvmsg",
    "socketpair",
    "umask",
    "unlink",
    "getpid",
];

fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing in CI; .ci/run installs the systemd package"
        );
        eprintln!("systemd-analyze not installed: unit checks skipped");
    }
    found
}

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_accepts_the_units_without_a_warning() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        // verify checks that ExecStart's binary exists: point it at the one just built.
        let text = unit(name).replace("/usr/local/bin/tern", env!("CARGO_BIN_EXE_tern"));
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(UNITS.map(|u| format!("./{u}")))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys and unparsable values, but says so: silence is the pass.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// The calls a `SystemCallFilter=` group holds, nested groups expanded.
fn expand(group: &str, seen: &mut BTreeSet<String>) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    assert!(out.status.success(), "unknown group {group}");
    let mut calls = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            if seen.insert(item.to_string()) {
                calls.extend(expand(item, seen));
            }
        } else {
            calls.insert(item.to_string());
        }
    }
    calls
}

#[test]
fn the_system_call_filter_allows_every_call_tern_makes() {
    if !have_systemd_analyze() {
        return;
    }
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for line in unit("tern.service").lines() {
        let Some(list) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        let (deny, list) = match list.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, list),
        };
        for item in list.split_whitespace() {
            let calls = if item.starts_with('@') {
                expand(item, &mut BTreeSet::new())
            } else {
                BTreeSet::from([item.to_string()])
            };
            if deny { &mut denied } else { &mut allowed }.extend(calls);
        }
    }
    assert!(!allowed.is_empty(), "tern.service has no allow list");
    let missing: Vec<&str> = TERN_CALLS
        .iter()
        .copied()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "tern.service's SystemCallFilter denies {missing:?}"
    );
    // And the switch-user calls are denied, since User= makes them unnecessary.
    assert!(denied.contains("setuid") && denied.contains("setgroups"));
}
