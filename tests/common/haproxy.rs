//! HAProxy (Debian's package) as the L4 balancer in front of tern: skipped when missing,
//! started in the foreground on a free loopback port, killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// Whether `haproxy` can run; when not, the caller prints SKIPPED and returns.
pub fn available() -> bool {
    let ok = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: haproxy is not installed (apt-get install haproxy); .ci/run installs it"
        );
    }
    ok
}

/// A running HAProxy whose frontend listens on `addr`.
pub struct HaProxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy with `rest` (backend sections) after a `mode tcp` defaults section and
    /// a frontend `f` bound to a free port whose default backend is `t`; returns once it
    /// accepts.
    pub fn start(defaults: &str, rest: &str) -> HaProxy {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("haproxy.cfg");
        std::fs::write(
            &conf,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  \
                 timeout server 30s\n{defaults}\
                 frontend f\n  bind {addr}\n  default_backend t\n{rest}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut h = HaProxy {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited: {status}");
            }
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
