//! Landlock: once tern has bound its listeners, loaded its keys and opened its logs, it gives
//! up the file system. What stays allowed:
//! - reading (files and listings) beneath the directory of every file it read at start-up —
//!   both the directory the path names and the one it resolves to — because a reload re-reads
//!   the same paths, and certbot (`live/` symlinks into `archive/`) and Kubernetes (a `..data`
//!   symlink swapped to a new directory) replace certificates by making new files there;
//! - reading the files name resolution reads ([`NAME_SERVICE_FILES`]: `/etc/hosts`,
//!   `/etc/resolv.conf`, ...), each file alone, not the directory: a reload resolves
//!   host-name backends again, and glibc (2.34+, where the files and dns modules are part of
//!   libc itself) needs only these;
//! - writing (not creating, truncating or removing) the log files it writes;
//! - nothing else: no other reads, no creating, renaming or removing anything, no device
//!   ioctls, and no `exec` at all — the execute right is handled and granted nowhere, so even
//!   readable binaries cannot be run. Abstract unix sockets and signals are scoped to tern's
//!   own domain (Landlock ABI 6+).
//!
//! Landlock restricts the calling thread and the threads it starts afterwards, so
//! [`confine`] must run before the workers are spawned. Network rules are left out on purpose:
//! a reload may add backends on new ports, and binding new listeners is the upgrade's business.
//! On a kernel without Landlock (before 5.13, or not enabled at boot) it changes nothing and
//! says so.

use std::fmt;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus,
    Scope, ABI,
};
use tracing::{info, warn};

/// The newest Landlock ABI tern's rules were written and tested against (Linux 6.15). A newer
/// kernel is asked for this set only, so a right added later cannot deny tern something it
/// needs without a test having seen it.
///
/// Connecting to a `unix:` backend's socket file needs no rule: up to ABI 8 Landlock has no
/// right for it. ABI 9 adds `AccessFs::ResolveUnix`, which, once handled, denies connecting
/// to any socket file no rule names: raising this past V8 means allowing it on each unix
/// backend's socket path (and on those a reload may add), or unix backends stop working
/// (`tests/unix_backend.rs` runs with the sandbox on and would show it).
const TESTED_ABI: ABI = ABI::V7;

/// What [`confine`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every right above is enforced; `abi` is the kernel's Landlock ABI version.
    Enforced { abi: i32 },
    /// An older kernel enforces part of it (e.g. before ABI 3 truncation, before 6 the scopes).
    Partial { abi: i32 },
    /// The kernel has no Landlock: nothing was restricted.
    Unsupported(String),
    /// Landlock is there but the rules could not be applied (the cause); nothing was restricted.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Enforced { abi } => write!(f, "Landlock ABI {abi}: fully enforced"),
            Outcome::Partial { abi } => {
                write!(f, "Landlock ABI {abi}: partly enforced (older kernel)")
            }
            Outcome::Unsupported(why) => write!(f, "Landlock unavailable ({why}): not confined"),
            Outcome::Failed(why) => write!(f, "Landlock failed ({why}): not confined"),
        }
    }
}

/// What glibc's resolver reads to turn a host name into addresses; each one that exists stays
/// readable (the file, and where a symlink such as systemd-resolved's `resolv.conf` leads).
pub const NAME_SERVICE_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// The rules, from the files tern reads and writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Directories beneath which files may be read and listed.
    pub read_dirs: Vec<PathBuf>,
    /// Single files that may be read (name resolution's).
    pub read_files: Vec<PathBuf>,
    /// Files that may be opened for writing.
    pub write_files: Vec<PathBuf>,
}

impl Plan {
    pub fn new(read_paths: &[PathBuf], write_paths: &[PathBuf]) -> Plan {
        let mut read_dirs = Vec::new();
        for p in read_paths {
            read_dirs.push(directory_of(p));
            // Where the path leads today (through symlinks), so a renewed file next to the
            // current target is readable too.
            if let Ok(real) = std::fs::canonicalize(p) {
                read_dirs.push(directory_of(&real));
            }
        }
        read_dirs.sort();
        read_dirs.dedup();
        let mut read_files = Vec::new();
        for f in NAME_SERVICE_FILES {
            let p = Path::new(f);
            if p.exists() {
                read_files.push(p.to_path_buf());
                if let Ok(real) = std::fs::canonicalize(p) {
                    read_files.push(real);
                }
            }
        }
        read_files.sort();
        read_files.dedup();
        let mut write_files = write_paths.to_vec();
        write_files.sort();
        write_files.dedup();
        Plan {
            read_dirs,
            read_files,
            write_files,
        }
    }
}

/// The directory holding `p` (`.` for a bare file name).
fn directory_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Confines this thread and every thread it starts from now on; logs what the kernel allowed.
pub fn confine(read_paths: &[PathBuf], write_paths: &[PathBuf]) -> Outcome {
    let plan = Plan::new(read_paths, write_paths);
    let outcome = match restrict(&plan) {
        Ok(status) => outcome_of(&status),
        Err(e) => Outcome::Failed(e),
    };
    let show = |v: &[PathBuf]| {
        if v.is_empty() {
            return "(none)".to_string();
        }
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &outcome {
        Outcome::Enforced { .. } | Outcome::Partial { .. } => info!(
            reads_beneath = %show(&plan.read_dirs),
            reads = %show(&plan.read_files),
            writes = %show(&plan.write_files),
            "sandbox: {outcome}; no exec, nothing else on the file system"
        ),
        Outcome::Unsupported(_) => info!("sandbox: {outcome}"),
        Outcome::Failed(_) => warn!("sandbox: {outcome}"),
    }
    outcome
}

fn restrict(plan: &Plan) -> Result<RestrictionStatus, String> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let mut rules = Vec::new();
    for dir in &plan.read_dirs {
        let fd = PathFd::new(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        rules.push(PathBeneath::new(fd, read));
    }
    for file in &plan.read_files {
        // Best effort: a file that vanished since the plan only loses its rule.
        if let Ok(fd) = PathFd::new(file) {
            rules.push(PathBeneath::new(fd, AccessFs::ReadFile));
        }
    }
    for file in &plan.write_files {
        let fd = PathFd::new(file).map_err(|e| format!("{}: {e}", file.display()))?;
        rules.push(PathBeneath::new(fd, AccessFs::WriteFile));
    }
    let run = || -> Result<RestrictionStatus, RulesetError> {
        Ruleset::default()
            // Best effort: an older kernel enforces what it knows and says so in the status.
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(TESTED_ABI))?
            .scope(Scope::from_all(TESTED_ABI))?
            .create()?
            .add_rules(rules.into_iter().map(Ok::<_, RulesetError>))?
            .restrict_self()
    };
    run().map_err(|e| e.to_string())
}

fn outcome_of(status: &RestrictionStatus) -> Outcome {
    let abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        LandlockStatus::NotEnabled => {
            return Outcome::Unsupported("built into the kernel but not enabled at boot".into())
        }
        LandlockStatus::NotImplemented => {
            return Outcome::Unsupported("not built into this kernel".into())
        }
    };
    match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Enforced { abi },
        RulesetStatus::PartiallyEnforced => Outcome::Partial { abi },
        RulesetStatus::NotEnforced => {
            Outcome::Unsupported(format!("ABI {abi} enforces none of it"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beneath_the_named_and_the_resolved_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (live, archive) = (dir.path().join("live"), dir.path().join("archive"));
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::write(archive.join("cert1.pem"), "x").unwrap();
        std::os::unix::fs::symlink("../archive/cert1.pem", live.join("cert.pem")).unwrap();
        let log = dir.path().join("access.log");
        let plan = Plan::new(
            &[
                live.join("cert.pem"),
                live.join("cert.pem"),
                "bare.pem".into(),
            ],
            std::slice::from_ref(&log),
        );
        let real_archive = std::fs::canonicalize(&archive).unwrap();
        let mut want = vec![PathBuf::from("."), live.clone(), real_archive];
        want.sort();
        assert_eq!(plan.read_dirs, want);
        assert_eq!(plan.write_files, vec![log]);
        // Name resolution's files, alone (not /etc), wherever they exist.
        if Path::new("/etc/hosts").exists() {
            assert!(plan.read_files.contains(&PathBuf::from("/etc/hosts")));
        }
        assert!(!plan.read_dirs.contains(&PathBuf::from("/etc")));
    }

    #[test]
    fn outcomes_say_what_happened() {
        assert_eq!(
            Outcome::Enforced { abi: 7 }.to_string(),
            "Landlock ABI 7: fully enforced"
        );
        assert!(Outcome::Unsupported("x".into())
            .to_string()
            .contains("not confined"));
    }
}
