//! Service-manager notification (systemd `Type=notify`) against the real binary: a test plays
//! systemd's part with a unix datagram socket named by `NOTIFY_SOCKET`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;
use rustls::version::TLS13;

/// A tern started without waiting for its log, so the notification is the only sign of
/// readiness the test uses; killed on drop.
struct Started {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_notifying(args: &[String], notify_socket: &str) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Started { child, lines }
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("no notification within the wait");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The address tern logged; it logs it before telling the service manager it is ready, so
/// once READY=1 has arrived the line is already in the pipe.
fn logged_address(t: &Started) -> std::net::SocketAddr {
    let mut seen = Vec::new();
    while let Ok(line) = t.lines.recv_timeout(WAIT) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        seen.push(line);
    }
    panic!("no listening line; log:\n{}", seen.join("\n"));
}

/// READY=1 once tern serves (a client right after it is served), RELOADING=1 then READY=1
/// around a reload, STOPPING=1 on SIGTERM, and nothing else in between.
fn ready_then_stopping(sock: &UnixDatagram, notify_socket: &str) {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let certs = Certs::new();
    let mut args = tern_args(&certs, echo_backend(), &[]);
    let at = args.iter().position(|a| a == "--workers").unwrap();
    args[at + 1] = "2".into();
    let mut tern = start_notifying(&args, notify_socket);
    assert_eq!(recv(sock), "READY=1");
    let addr = logged_address(&tern);
    let mut s = connect(addr, &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");

    // A reload is bracketed by RELOADING=1 (with the monotonic time systemd 253+ wants) and
    // READY=1.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tern.child.id() as i32, libc::SIGHUP) };
    let reloading = recv(sock);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading:?}");
    assert_eq!(recv(sock), "READY=1");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(tern.child.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(sock), "STOPPING=1");
    drop(s);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = tern.child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "tern did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn notifies_ready_after_it_serves_and_stopping_on_sigterm_via_a_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    ready_then_stopping(&sock, path.to_str().unwrap());
}

#[test]
fn notifies_through_an_abstract_socket_despite_the_sandbox() {
    // Landlock (ABI 6+) scopes abstract unix sockets: only the socket connected before the
    // confinement reaches one made outside it, as systemd's is.
    let name = format!("tern-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(&name).unwrap()).unwrap();
    ready_then_stopping(&sock, &format!("@{name}"));
}

#[test]
fn an_unreachable_notify_socket_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody-listens");
    let certs = Certs::new();
    let args = tern_args(&certs, echo_backend(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tern = Tern::start_with(&args, &[("NOTIFY_SOCKET", missing.to_str().unwrap())]);
    assert!(
        tern.log_text().contains("cannot connect"),
        "{}",
        tern.log_text()
    );
    let mut s = connect(tern.addr(), &certs.client(&[&TLS13])).unwrap();
    s.write_all(b"ping").unwrap();
    s.read_exact(&mut [0u8; 4]).unwrap();
}
