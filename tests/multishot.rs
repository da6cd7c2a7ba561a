//! The vendored monoio's multishot receive into a provided-buffer ring
//! (vendor/monoio/src/buf_ring.rs, TERN-PATCH.md), on a real io_uring runtime over a connected
//! Unix socket pair: the peer end is a plain std socket this thread writes to.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream as StdUnix;
use std::time::Duration;

use monoio::buf_ring::{self, MultishotRecv, RingBuf};
use monoio::io::AsyncReadRent;
use monoio::net::UnixStream;
use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};

const GROUP: u16 = 7;
/// Every wait on the kernel in these tests gives up after this long.
const BOUND: Duration = Duration::from_secs(10);

fn uring() -> Option<Runtime<TimeDriver<IoUringDriver>>> {
    match RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}); skipped");
            None
        }
    }
}

/// A runtime with `entries` buffers of `len` bytes in [`GROUP`], or `None` (skip) where the
/// kernel has no buffer rings (before 5.19).
fn runtime(entries: u16, len: usize) -> Option<Runtime<TimeDriver<IoUringDriver>>> {
    let rt = uring()?;
    match rt.register_buf_ring(GROUP, entries, len) {
        Ok(()) => Some(rt),
        Err(e) => {
            eprintln!("buffer rings unavailable here ({e}); skipped");
            None
        }
    }
}

fn pair() -> (UnixStream, StdUnix) {
    let (ours, peer) = StdUnix::pair().unwrap();
    (UnixStream::from_std(ours).unwrap(), peer)
}

async fn next(rx: &mut MultishotRecv) -> io::Result<RingBuf> {
    monoio::time::timeout(BOUND, rx.next())
        .await
        .expect("no completion in time")
}

/// Waits (bounded) until every buffer of the group is back in the ring.
async fn all_back(entries: u16) {
    let waited = monoio::time::timeout(BOUND, async {
        while buf_ring::available(GROUP) != Some(entries) {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "buffers not back: {:?} of {entries}",
        buf_ring::available(GROUP)
    );
}

#[test]
fn many_reads_over_one_arm() {
    let Some(mut rt) = runtime(4, 256) else {
        return;
    };
    rt.block_on(async {
        let (ours, mut peer) = pair();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        for i in 0..200u32 {
            let msg = format!("message {i}");
            peer.write_all(msg.as_bytes()).unwrap();
            let buf = next(&mut rx).await.unwrap();
            assert_eq!(&buf[..], msg.as_bytes());
            // Held while the next one arrives would need a second buffer; dropped, it is back.
            drop(buf);
            assert_eq!(rx.available(), 4);
        }
        assert_eq!(rx.arms(), 1, "one submission served every read");
    });
}

#[test]
fn ring_running_dry_ends_the_receive_and_it_rearms_after_release() {
    let Some(mut rt) = runtime(4, 64) else { return };
    rt.block_on(async {
        let (ours, mut peer) = pair();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        let mut held = Vec::new();
        for i in 0..4u8 {
            peer.write_all(&[i; 10]).unwrap();
            let buf = next(&mut rx).await.unwrap();
            assert_eq!(&buf[..], &[i; 10]);
            held.push(buf);
        }
        assert_eq!(rx.available(), 0);
        peer.write_all(b"fifth").unwrap();
        let e = next(&mut rx).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "{e}");
        // Held buffers still hold their bytes.
        assert_eq!(&held[3][..], &[3; 10]);
        drop(held);
        assert_eq!(rx.available(), 4);
        // The bytes stayed in the socket: the re-armed receive gets them.
        let buf = next(&mut rx).await.unwrap();
        assert_eq!(&buf[..], b"fifth");
        assert_eq!(rx.arms(), 2);
    });
}

#[test]
fn cancel_while_armed_loses_no_bytes() {
    let Some(mut rt) = runtime(8, 32) else { return };
    rt.block_on(async {
        let (mut ours, mut peer) = pair();
        let sent: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        peer.write_all(&sent[..10]).unwrap();
        let mut got = next(&mut rx).await.unwrap().to_vec();
        // Completed (in a ring buffer, queued on the stream) before the cancel is asked for.
        peer.write_all(&sent[10..20]).unwrap();
        let waited = monoio::time::timeout(BOUND, async {
            while rx.queued() == 0 {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the second write never completed");
        // Bytes the kernel may or may not have received into buffers when the cancel lands.
        peer.write_all(&sent[20..]).unwrap();
        drop(peer);
        rx.cancel();
        let queued = next(&mut rx).await.unwrap();
        assert_eq!(
            &queued[..],
            &sent[10..20],
            "a completed receive outlives the cancel"
        );
        got.extend_from_slice(&queued);
        drop(queued);
        loop {
            match next(&mut rx).await {
                Ok(buf) if buf.is_empty() => break, // EOF raced the cancel
                Ok(buf) => got.extend_from_slice(&buf),
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // Cancelled for good.
        if let Err(e) = next(&mut rx).await {
            assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
        }
        drop(rx);
        // Whatever the receive did not take is still in the socket, in order.
        let mut buf = vec![0u8; 512];
        loop {
            let (res, b) = monoio::time::timeout(BOUND, ours.read(buf))
                .await
                .expect("read in time");
            buf = b;
            match res.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, sent);
        all_back(8).await;
    });
}

#[test]
fn eof_after_the_bytes_and_again_after() {
    let Some(mut rt) = runtime(4, 64) else { return };
    rt.block_on(async {
        let (ours, mut peer) = pair();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        peer.write_all(b"last words").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        loop {
            let buf = next(&mut rx).await.unwrap();
            if buf.is_empty() {
                assert_eq!(buf.buffer_id(), None, "EOF holds no buffer");
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"last words");
        assert!(next(&mut rx).await.unwrap().is_empty(), "EOF is sticky");
        assert_eq!(rx.available(), 4);
    });
}

#[test]
fn an_idle_armed_receive_holds_no_buffer_and_a_dropped_one_gives_back_its_queue() {
    let Some(mut rt) = runtime(4, 64) else { return };
    rt.block_on(async {
        let (ours, mut peer) = pair();
        let (ours2, mut peer2) = pair();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        let rx2 = ours2.recv_multishot(GROUP).unwrap();
        // Both armed and submitted (a round trip on the first proves the ring ran).
        peer.write_all(b"a").unwrap();
        assert_eq!(&next(&mut rx).await.unwrap()[..], b"a");
        assert_eq!(
            buf_ring::available(GROUP),
            Some(4),
            "idle arms hold nothing"
        );
        // Bytes arrive for the second, which is dropped without taking them: its buffers
        // come back (queued ones at once, in-flight ones when the cancel completes).
        peer2.write_all(b"never taken").unwrap();
        peer.write_all(b"b").unwrap();
        assert_eq!(&next(&mut rx).await.unwrap()[..], b"b");
        drop(rx2);
        all_back(4).await;
        // The first still works.
        peer.write_all(b"c").unwrap();
        assert_eq!(&next(&mut rx).await.unwrap()[..], b"c");
        let mut rest = Vec::new();
        peer2.set_nonblocking(true).unwrap();
        let _ = peer2.read_to_end(&mut rest);
    });
}

/// Writes 16-byte chunks while nobody takes the completions, with or without a queue limit
/// of 2, then takes everything: what came through, and how many receives were armed.
fn unread_completions(limit: Option<usize>) -> Option<(Vec<u8>, Vec<u8>, u64)> {
    let mut rt = runtime(16, 16)?;
    Some(rt.block_on(async {
        let (ours, mut peer) = pair();
        let mut rx = ours.recv_multishot(GROUP).unwrap();
        if let Some(l) = limit {
            rx.set_queue_limit(l);
        }
        let sent: Vec<u8> = (0..160u8).collect();
        // Two completions queue up untaken (the limit, if any, is reached).
        for (i, chunk) in sent[..32].chunks(16).enumerate() {
            peer.write_all(chunk).unwrap();
            let waited = monoio::time::timeout(BOUND, async {
                while rx.queued() <= i {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            assert!(waited.is_ok(), "completion {i} never queued");
        }
        peer.write_all(&sent[32..]).unwrap();
        drop(peer);
        let mut got = Vec::new();
        loop {
            let buf = next(&mut rx).await.unwrap();
            if buf.is_empty() {
                break;
            }
            got.extend_from_slice(&buf);
        }
        all_back(16).await;
        (got, sent, rx.arms())
    }))
}

#[test]
fn a_queue_limit_pauses_an_unread_receive_and_next_arms_it_again() {
    let Some((got, sent, arms)) = unread_completions(Some(2)) else {
        return;
    };
    assert_eq!(got, sent, "every byte, in order, across the pause");
    assert!(
        arms >= 2,
        "paused at the limit and armed again ({arms} arms)"
    );
    let (got, sent, arms) = unread_completions(None).unwrap();
    assert_eq!(got, sent);
    assert_eq!(arms, 1, "without a limit the one receive took everything");
}

#[test]
fn unknown_group_and_duplicate_registration_are_refused() {
    let Some(mut rt) = runtime(4, 64) else { return };
    let dup = rt.register_buf_ring(GROUP, 4, 64).unwrap_err();
    assert_eq!(dup.kind(), io::ErrorKind::AlreadyExists);
    let odd = rt.register_buf_ring(GROUP + 1, 3, 64).unwrap_err();
    assert_eq!(odd.kind(), io::ErrorKind::InvalidInput);
    rt.block_on(async {
        let (ours, _peer) = pair();
        let e = ours.recv_multishot(GROUP + 1).err().expect("no such group");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // Registering from inside the runtime works too (on an unrestricted ring).
        buf_ring::register(GROUP + 2, 2, 16).unwrap();
        assert_eq!(buf_ring::available(GROUP + 2), Some(2));
    });
}

#[test]
fn the_epoll_driver_says_unsupported() {
    let mut rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async {
        let (ours, _peer) = pair();
        let e = ours.recv_multishot(GROUP).err().expect("unsupported");
        assert!(buf_ring::is_unsupported(&e), "{e}");
        assert!(buf_ring::is_unsupported(
            &buf_ring::register(GROUP, 4, 64).unwrap_err()
        ));
        assert_eq!(buf_ring::available(GROUP), None);
    });
}
