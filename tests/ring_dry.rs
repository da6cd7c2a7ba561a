//! The multishot receive ring run dry, end to end: when every buffer of a worker's receive ring
//! (64 × 32 KiB) is held by connections whose peers do not read, the kernel ends the other
//! connections' receives with `ENOBUFS`; those read once the single way, arm again, and lose
//! no byte. Counted in `tern_uring_recv_ring_empty_total`.
//!
//! Stalled uploads (a backend that does not read yet) and stalled downloads (clients that do
//! not read yet) hold the ring; echo connections keep moving bytes meanwhile, through the dry
//! fallback. Once the counter moves, everything is released and every byte checked in order.
//! Then, with the ring free again, the echo connections move more bytes without one more dry
//! read: the fallback armed the receive again rather than staying on single reads.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::scrape::{metrics_addr, scrape, sum};
use common::*;
use rustls::version::TLS13;
use socket2::{Domain, Socket, Type};

/// Bound on every blocking step here (stalled peers wait for the release this long at most).
const LONG: Duration = Duration::from_secs(120);
const UPLOADS: u8 = 32;
const DOWNLOADS: u8 = 16;
const ECHOES: u8 = 4;
/// Per stalled connection: well past what the sockets' buffers take, so that each stalled
/// connection fills its queue of ring buffers (QUEUE_LIMIT 4, plus the one being written).
const BULK: usize = 3 << 20;
const COUNTER: &str = "tern_uring_recv_ring_empty_total";

/// Byte `i` of `common::pattern(_, seed)`.
fn pattern_at(i: usize, seed: u8) -> u8 {
    (i as u32)
        .wrapping_mul(2654435761)
        .rotate_left(seed as u32 % 31) as u8
        ^ seed
}

fn pattern_range(from: usize, len: usize, seed: u8) -> Vec<u8> {
    (from..from + len).map(|i| pattern_at(i, seed)).collect()
}

/// Waits until `flag` is set; false after `LONG`.
fn wait_flag(flag: &AtomicBool) -> bool {
    let deadline = Instant::now() + LONG;
    while !flag.load(SeqCst) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Reads to EOF, checking every byte against the pattern: how many arrived, and where the
/// first wrong one was.
fn read_checked(r: &mut impl Read, seed: u8) -> std::io::Result<(usize, Option<usize>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut at, mut wrong) = (0, None);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((at, wrong));
        }
        if wrong.is_none() {
            wrong = (0..n)
                .find(|&k| buf[k] != pattern_at(at + k, seed))
                .map(|k| at + k);
        }
        at += n;
    }
}

/// What an upload's backend saw: (seed, bytes, first wrong byte).
type Upload = (u8, usize, Option<usize>);

/// The backend. The first two bytes name the connection: `U seed` reads nothing until
/// `release`, then checks the upload to EOF; `D seed` sends `BULK` bytes of pattern and FIN;
/// `H _` reads to EOF, then answers on `release`; `E _` echoes. Small receive buffers (inherited from the listener) make tern's writes block
/// early.
fn backend(release: Arc<AtomicBool>, uploads: mpsc::Sender<Upload>) -> SocketAddr {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(256).unwrap();
    let listener: TcpListener = s.into();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (release, uploads) = (release.clone(), uploads.clone());
            thread::spawn(move || serve(conn, &release, &uploads));
        }
    });
    addr
}

fn serve(mut s: TcpStream, release: &AtomicBool, uploads: &mpsc::Sender<Upload>) {
    s.set_read_timeout(Some(LONG)).unwrap();
    s.set_write_timeout(Some(LONG)).unwrap();
    let mut head = [0u8; 2];
    if s.read_exact(&mut head).is_err() {
        return;
    }
    let seed = head[1];
    match head[0] {
        b'U' => {
            wait_flag(release);
            let got = read_checked(&mut s, seed).unwrap_or((0, Some(0)));
            let _ = uploads.send((seed, got.0, got.1));
        }
        b'H' => {
            // Half-closed: the client's close_notify came through as FIN; answer on release.
            let _ = std::io::copy(&mut s, &mut std::io::sink());
            wait_flag(release);
            let _ = s.write_all(b"bye");
        }
        b'D' => {
            for at in (0..BULK).step_by(64 * 1024) {
                let n = (BULK - at).min(64 * 1024);
                if s.write_all(&pattern_range(at, n, seed)).is_err() {
                    return;
                }
            }
            let _ = s.shutdown(Shutdown::Write);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
            return;
        }
        _ => {
            if !echo_until_eof(&mut s) {
                return;
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// A TLS client whose socket has a small receive buffer (so a client not reading holds tern
/// back early), with `LONG` timeouts.
fn client(addr: SocketAddr, certs: &Certs) -> TlsStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.connect_timeout(&addr.into(), WAIT).unwrap();
    let tls = tls_over(s.into(), &certs.client(&[&TLS13]), "localhost").unwrap();
    tls.sock.set_read_timeout(Some(LONG)).unwrap();
    tls.sock.set_write_timeout(Some(LONG)).unwrap();
    tls
}

/// One echo round trip of `len` bytes of pattern from `at`.
fn echo(s: &mut TlsStream, at: usize, len: usize, seed: u8) {
    let data = pattern_range(at, len, seed);
    s.write_all(&data).unwrap();
    s.flush().unwrap();
    let mut back = vec![0u8; len];
    s.read_exact(&mut back).unwrap();
    assert!(back == data, "echo {seed} differs at {at}");
}

fn close(mut s: TlsStream) -> Vec<u8> {
    s.conn.send_close_notify();
    s.flush().unwrap();
    read_to_end(&mut s).unwrap()
}

/// tern with one multishot worker and metrics, or None (and a note) where the kernel or the
/// driver has no multishot receive.
fn start_multishot(certs: &Certs, back: SocketAddr) -> Option<(Tern, SocketAddr, SocketAddr)> {
    let args = tern_args(
        certs,
        back,
        &["--uring-recv", "multishot", "--metrics", "127.0.0.1:0"],
    );
    let tern = Tern::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let log = tern.log_text();
    if !log.contains("recv=multishot") {
        eprintln!("no multishot receive here (kernel or driver); skipped\n{log}");
        return None;
    }
    let metrics = metrics_addr(&tern);
    let addr = tern.addr();
    Some((tern, metrics, addr))
}

#[test]
fn a_dry_ring_falls_back_to_single_reads_loses_nothing_and_arms_again() {
    let certs = Certs::new();
    let release = Arc::new(AtomicBool::new(false));
    let (up_tx, up_rx) = mpsc::channel();
    let back = backend(release.clone(), up_tx);
    let Some((tern, metrics, addr)) = start_multishot(&certs, back) else {
        return;
    };
    let certs = Arc::new(certs);

    let uploads: Vec<_> = (0..UPLOADS)
        .map(|seed| {
            let certs = certs.clone();
            thread::spawn(move || {
                let mut s = client(addr, &certs);
                s.write_all(&[b'U', seed]).unwrap();
                for at in (0..BULK).step_by(16 * 1024) {
                    s.write_all(&pattern_range(at, (BULK - at).min(16 * 1024), seed))
                        .unwrap();
                }
                s.flush().unwrap();
                let rest = close(s);
                assert!(rest.is_empty(), "upload {seed}: {} bytes back", rest.len());
            })
        })
        .collect();
    let downloads: Vec<_> = (0..DOWNLOADS)
        .map(|i| {
            let (certs, release) = (certs.clone(), release.clone());
            let seed = 100 + i;
            thread::spawn(move || {
                let mut s = client(addr, &certs);
                s.write_all(&[b'D', seed]).unwrap();
                s.flush().unwrap();
                assert!(wait_flag(&release), "never released");
                let got = read_checked(&mut s, seed).unwrap();
                assert_eq!(got, (BULK, None), "download {seed}: (bytes, first wrong)");
                s.conn.send_close_notify();
                s.flush().unwrap();
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let echoes: Vec<_> = (0..ECHOES)
        .map(|i| {
            let (certs, stop) = (certs.clone(), stop.clone());
            let seed = 200 + i;
            thread::spawn(move || {
                let mut s = client(addr, &certs);
                s.write_all(&[b'E', seed]).unwrap();
                let (mut at, deadline) = (0, Instant::now() + LONG);
                while !stop.load(SeqCst) && Instant::now() < deadline {
                    echo(&mut s, at, 24 * 1024, seed);
                    at += 24 * 1024;
                }
                (s, at)
            })
        })
        .collect();

    // The stalled connections hold the whole ring: the echoes' receives find it empty.
    let deadline = Instant::now() + LONG;
    let dry = loop {
        let n = sum(&scrape(metrics), COUNTER, &[]);
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(50));
    };
    release.store(true, SeqCst);
    stop.store(true, SeqCst);
    assert!(dry > 0, "the ring never ran dry\n{}", tern.log_text());
    eprintln!("{COUNTER} {dry} when released");

    // Everything drains, every byte in order.
    for u in uploads {
        u.join().expect("upload client");
    }
    let mut seen: Vec<Upload> = (0..UPLOADS)
        .map(|_| up_rx.recv_timeout(LONG).expect("an upload's result"))
        .collect();
    seen.sort();
    let want: Vec<Upload> = (0..UPLOADS).map(|seed| (seed, BULK, None)).collect();
    assert_eq!(
        seen, want,
        "uploads as the backend saw them: (seed, bytes, first wrong)"
    );
    for d in downloads {
        d.join().expect("download client");
    }
    let mut echoes: Vec<(TlsStream, usize, u8)> = echoes
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let (s, at) = e.join().expect("echo client");
            (s, at, 200 + i as u8)
        })
        .collect();

    // The ring is free again. A round each first takes any dry read still due (a receive
    // that ended just before the release), then no more may happen.
    for (s, at, seed) in &mut echoes {
        echo(s, *at, 24 * 1024, *seed);
        *at += 24 * 1024;
    }
    let before = sum(&scrape(metrics), COUNTER, &[]);
    for (s, at, seed) in &mut echoes {
        for _ in 0..16 {
            echo(s, *at, 64 * 1024, *seed);
            *at += 64 * 1024;
        }
    }
    let after = sum(&scrape(metrics), COUNTER, &[]);
    assert_eq!(
        before, after,
        "dry reads with the ring free: the receives were not armed again"
    );
    for (s, _, _) in echoes {
        assert!(close(s).is_empty());
    }
}

/// A client direction that has ended (close_notify) calls its receive off: bytes a client
/// sends after its close_notify, which nothing reads (as with single reads, they wait in the
/// socket), must not sit in ring buffers for as long as the backend takes to answer. Held,
/// `HALF_CLOSED` connections' would take the whole ring and send the echoes the single way.
#[test]
fn bytes_after_close_notify_hold_no_ring_buffers() {
    const HALF_CLOSED: u8 = 24;
    let certs = Certs::new();
    let release = Arc::new(AtomicBool::new(false));
    let (up_tx, _up_rx) = mpsc::channel();
    let back = backend(release.clone(), up_tx);
    let Some((_tern, metrics, addr)) = start_multishot(&certs, back) else {
        return;
    };
    let certs = Arc::new(certs);
    let (sent_tx, sent_rx) = mpsc::channel();
    let halves: Vec<_> = (0..HALF_CLOSED)
        .map(|seed| {
            let (certs, release, sent) = (certs.clone(), release.clone(), sent_tx.clone());
            thread::spawn(move || {
                let mut s = client(addr, &certs);
                s.write_all(&[b'H', seed]).unwrap();
                s.conn.send_close_notify();
                s.flush().unwrap();
                // Five ring buffers' worth, past the close_notify, on the raw socket.
                let _ = s.sock.write_all(&[0x17; 5 * 32 * 1024]);
                let _ = sent.send(());
                wait_flag(&release);
                // The backend's answer (tern may reset after it: unread bytes at close).
                let mut back = Vec::new();
                let _ = s.read_to_end(&mut back);
            })
        })
        .collect();
    for _ in 0..HALF_CLOSED {
        sent_rx
            .recv_timeout(LONG)
            .expect("a half-closed client wrote");
    }
    let mut echoes: Vec<TlsStream> = (0..ECHOES)
        .map(|i| {
            let mut s = client(addr, &certs);
            s.write_all(&[b'E', 200 + i]).unwrap();
            s
        })
        .collect();
    for (i, s) in echoes.iter_mut().enumerate() {
        for round in 0..8 {
            echo(s, round * 64 * 1024, 64 * 1024, 200 + i as u8);
        }
    }
    let dry = sum(&scrape(metrics), COUNTER, &[]);
    release.store(true, SeqCst);
    for h in halves {
        h.join().expect("half-closed client");
    }
    assert_eq!(dry, 0, "half-closed connections held the ring");
    for s in echoes {
        assert!(close(s).is_empty());
    }
}
