//! Least privilege: the Landlock confinement (in a child process, so the test runner itself
//! stays free), and the real binary confined, with and without dropping root.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{read_response, TestBackend};
use common::*;
use rustls::version::TLS13;
use tern::sys::landlock::{confine, Outcome};

/// Set in the child process `confine_allows_its_files_only_and_never_exec` starts.
const CHILD: &str = "TERN_SANDBOX_CHILD_DIR";

/// Whether the running kernel has Landlock (the ABI version query succeeds).
fn kernel_has_landlock() -> bool {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with a null attribute only asks the version.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        ) > 0
    }
}

/// `tern_args` with `n` workers instead of one.
fn with_workers(mut args: Vec<String>, n: usize) -> Vec<String> {
    let at = args.iter().position(|a| a == "--workers").unwrap();
    args[at + 1] = n.to_string();
    args
}

fn denied(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
}

/// The files of a certbot-style layout: `live/site.pem` links into `archive/`, where a renewal
/// puts its next file.
struct Layout {
    live_cert: PathBuf,
    renewed: PathBuf,
    config: PathBuf,
    log: PathBuf,
    other_secret: PathBuf,
}

fn layout(root: &Path) -> Layout {
    for d in ["etc/live", "etc/archive", "log", "elsewhere"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/archive/site1.pem"), "current").unwrap();
    std::fs::write(root.join("etc/archive/site2.pem"), "renewed").unwrap();
    std::os::unix::fs::symlink("../archive/site1.pem", root.join("etc/live/site.pem")).unwrap();
    std::fs::write(root.join("etc/tern.toml"), "listen = []").unwrap();
    std::fs::write(root.join("log/access.log"), "").unwrap();
    std::fs::write(root.join("elsewhere/other.key"), "not tern's").unwrap();
    Layout {
        live_cert: root.join("etc/live/site.pem"),
        renewed: root.join("etc/archive/site2.pem"),
        config: root.join("etc/tern.toml"),
        log: root.join("log/access.log"),
        other_secret: root.join("elsewhere/other.key"),
    }
}

/// Runs in the child: confine, then try what tern may and may not do.
fn child(root: &Path) {
    let l = layout(root);
    match confine(
        &[l.live_cert.clone(), l.config.clone()],
        std::slice::from_ref(&l.log),
    ) {
        Outcome::Unsupported(why) => {
            println!("CHILD UNSUPPORTED {why}");
            return;
        }
        Outcome::Failed(why) => panic!("confine failed: {why}"),
        Outcome::Enforced { .. } | Outcome::Partial { .. } => {}
    }
    // What a reload reads: the named files, a renewal beside the link's target, the listing.
    assert_eq!(std::fs::read_to_string(&l.live_cert).unwrap(), "current");
    assert_eq!(std::fs::read_to_string(&l.renewed).unwrap(), "renewed");
    assert!(std::fs::read_to_string(&l.config).is_ok());
    assert!(std::fs::read_dir(l.live_cert.parent().unwrap()).is_ok());
    // The log is writable (appending), nothing else is.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&l.log)
        .unwrap();
    log.write_all(b"a line\n").unwrap();
    assert!(denied(std::fs::read(&l.other_secret)), "read outside");
    assert!(denied(std::fs::read("/etc/passwd")), "read /etc/passwd");
    assert!(
        denied(std::fs::write(root.join("log/new.log"), "x")),
        "create a file"
    );
    assert!(
        denied(std::fs::OpenOptions::new().append(true).open(&l.config)),
        "write a file only read"
    );
    assert!(denied(std::fs::remove_file(&l.live_cert)), "unlink");
    // No exec at all, not even of a binary any user may run.
    assert!(denied(Command::new("/bin/true").status()), "exec /bin/true");
    println!("CHILD CONFINED");
}

#[test]
fn confine_allows_its_files_only_and_never_exec() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "confine_allows_its_files_only_and_never_exec",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    if kernel_has_landlock() {
        assert!(text.contains("CHILD CONFINED"), "{text}");
    } else {
        assert!(text.contains("CHILD UNSUPPORTED"), "{text}");
    }
    // Outside the child nothing changed: this process still reads anything.
    assert!(std::fs::read(dir.path().join("elsewhere/other.key")).is_ok());
}

/// `NoNewPrivs` of every thread of `pid` (Landlock sets it on the thread it confines, and
/// threads started afterwards inherit it, so all 1 means every thread is confined).
fn no_new_privs_per_thread(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("NoNewPrivs:"))
            .unwrap();
        out.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    out
}

fn field(pid: i32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap()
        .trim()
        .to_string()
}

fn http_get(tern: &Tern, certs: &Certs, path: &str) -> u16 {
    let mut c = std::io::BufReader::new(connect(tern.addr(), &certs.client(&[&TLS13])).unwrap());
    c.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut c, false).unwrap().status
}

#[test]
fn tern_runs_confined_on_every_thread_and_still_writes_its_access_log() {
    let certs = Certs::new();
    let b = TestBackend::start("A");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_s = log.display().to_string();
    let args = with_workers(
        tern_args(&certs, b.addr, &["--mode", "http", "--access-log", &log_s]),
        2,
    );
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    if kernel_has_landlock() {
        assert!(
            tern.log_text().contains("sandbox: Landlock ABI"),
            "{}",
            tern.log_text()
        );
    } else {
        assert!(tern.log_text().contains("Landlock unavailable"));
    }
    // Workers and the access-log writers alike started after the confinement.
    let nnp = no_new_privs_per_thread(tern.pid());
    assert!(nnp.len() >= 3 && nnp.iter().all(|v| v == "1"), "{nnp:?}");
    assert_eq!(http_get(&tern, &certs, "/n/10"), 200);
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("/n/10")
    {
        assert!(Instant::now() < deadline, "the access log stayed empty");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sandbox_off_leaves_the_process_as_it_was() {
    let certs = Certs::new();
    let tern = start_tern(&certs, echo_backend(), &["--sandbox", "off"]);
    assert!(!tern.log_text().contains("sandbox:"), "{}", tern.log_text());
    // Without --user only the sandbox sets no_new_privs, unless tern inherited it.
    if field(std::process::id() as i32, "NoNewPrivs:") == "0" {
        let nnp = no_new_privs_per_thread(tern.pid());
        assert!(nnp.iter().all(|v| v == "0"), "{nnp:?}");
    }
    echoes_ping(&tern, &certs);
}

#[test]
fn as_root_user_nobody_drops_to_its_uid_confined_and_serves() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: --user cannot be tested here (CI runs as root)");
        return;
    }
    let certs = Certs::new();
    let args = with_workers(tern_args(&certs, echo_backend(), &["--user", "nobody"]), 2);
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let nobody = tern::privileges::lookup("nobody").unwrap();
    let uids = field(tern.pid(), "Uid:");
    let want = format!("{0}\t{0}\t{0}\t{0}", nobody.uid);
    assert_eq!(uids, want, "real, effective, saved and fs uid");
    assert_eq!(field(tern.pid(), "Groups:"), "", "supplementary groups");
    assert_eq!(
        field(tern.pid(), "CapEff:"),
        "0000000000000000",
        "capabilities"
    );
    if kernel_has_landlock() {
        assert!(
            tern.log_text().contains("fully enforced") || tern.log_text().contains("partly"),
            "{}",
            tern.log_text()
        );
    }
    echoes_ping(&tern, &certs);
}

/// A config file naming `certs`' files; tern reads it with `--config`.
fn write_config(path: &Path, certs: &Certs, backend: std::net::SocketAddr) {
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"{}\"\nkey = \"{}\"\n[[pool]]\nname = \"b\"\nbackends = [\"{backend}\"]\n",
        certs.cert.display(),
        certs.key.display()
    );
    std::fs::write(path, text).unwrap();
}

/// The sandbox seen through tern itself: a reload re-reads the directories it started from,
/// but a config changed to name a certificate elsewhere cannot be read, and the reload is
/// refused while the old certificate serves on. Without the sandbox the same reload works.
#[test]
fn a_reload_may_read_only_where_tern_started_from() {
    if !kernel_has_landlock() {
        eprintln!("no Landlock in this kernel: nothing to observe");
        return;
    }
    for sandbox in ["on", "off"] {
        let (first, elsewhere) = (Certs::new(), Certs::new());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tern.toml");
        let backend = echo_backend();
        write_config(&config, &first, backend);
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--workers",
            "1",
            "--sandbox",
            sandbox,
        ];
        let tern = Tern::start(&args);
        write_config(&config, &elsewhere, backend);
        tern.signal(libc::SIGHUP);
        let verdict = if sandbox == "on" {
            "reload failed"
        } else {
            "reloaded"
        };
        assert!(tern.wait_log(verdict, WAIT), "{}", tern.log_text());
        let served = if sandbox == "on" { &first } else { &elsewhere };
        assert!(
            connect(tern.addr(), &served.client(&[&TLS13])).is_ok(),
            "--sandbox {sandbox}: serves the expected certificate"
        );
        if sandbox == "on" {
            let line = tern
                .log_text()
                .lines()
                .find(|l| l.contains("reload failed"))
                .unwrap()
                .to_string();
            assert!(line.contains("Permission denied"), "{line}");
        }
    }
}

/// A backend given by host name is resolved again by every reload; under the sandbox that
/// still works, because name resolution's own files (/etc/hosts, /etc/resolv.conf, ...) stay
/// readable, each file alone.
#[test]
fn a_reload_under_the_sandbox_resolves_host_names_again() {
    if !kernel_has_landlock() {
        eprintln!("no Landlock in this kernel: nothing to observe");
        return;
    }
    let certs = Certs::new();
    let backend = echo_backend();
    let by_name = format!("localhost:{}", backend.port());
    let mut args = tern_args(&certs, backend, &["--sandbox", "on"]);
    let at = args.iter().position(|a| a == "--backend").unwrap();
    args[at + 1] = by_name;
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        tern.wait_log("sandbox: Landlock", WAIT),
        "{}",
        tern.log_text()
    );
    tern.signal(libc::SIGHUP);
    assert!(tern.wait_log("reloaded", WAIT), "{}", tern.log_text());
    assert!(
        !tern.log_text().contains("reload failed"),
        "{}",
        tern.log_text()
    );
    echoes_ping(&tern, &certs);
}

/// One TLS connection through `tern` to the echo backend carries a ping there and back.
fn echoes_ping(tern: &Tern, certs: &Certs) {
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}
