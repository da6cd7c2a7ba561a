//! Multishot receive (`--uring-recv multishot`): one armed receive per socket direction that
//! takes a buffer from the worker's provided-buffer ring only when bytes arrive, instead of a
//! readiness wait plus one read submission per chunk into a pool buffer. The ring is
//! registered by the worker (src/worker/ring.rs); the receive itself is the vendored monoio's
//! (`monoio::buf_ring`, vendor/monoio/TERN-PATCH.md).

use crate::net::bufpool::PoolBuf;
use crate::tls::record::{copy_in_pieces, Opener, HEADER_LEN};

/// The buffer group of every worker's receive ring (one ring per worker, so one group).
pub const GROUP: u16 = 0;

/// `--uring-recv`: how an io_uring worker reads. With `multishot`: the client's records in
/// tcp mode (the pump, also an http-mode upgrade's tunnel) and in http mode (the request
/// loop's TLS reader, src/proxy/tlsio/ring.rs), and a plain backend's bytes in tcp mode. Read
/// the single way whatever the flag: http mode's backend responses, and a TLS backend's
/// records (its own layer); and everything on the epoll driver.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UringRecv {
    /// A readiness wait while quiet, then one read per chunk into a pool buffer.
    Single,
    /// One multishot receive per connection into the worker's provided-buffer ring (the
    /// default: fewer submissions per byte, and an idle connection holds no buffer).
    #[default]
    Multishot,
}

/// Copies from the front of `from` into the pooled buffer `b` (a partial record at its front)
/// until the record there is whole, `from` is used up, or `b` is full (a record longer than
/// any allowed: opening its header then fails). Returns the bytes taken. Both multishot
/// readers (the tcp pump's and http mode's) complete a record cut at a ring buffer's end so.
pub fn complete_record(b: &mut PoolBuf, from: &[u8]) -> usize {
    let mut taken = 0;
    loop {
        let have = b.len();
        let want = match Opener::record_len(b.filled()) {
            Some(len) => len.saturating_sub(have),
            None => HEADER_LEN - have,
        };
        let n = want.min(from.len() - taken).min(b.space().len() - have);
        if n == 0 {
            return taken;
        }
        // Opened in place next: see copy_in_pieces for why not one memcpy.
        copy_in_pieces(&mut b.space()[have..have + n], &from[taken..taken + n]);
        b.set_filled(have + n);
        taken += n;
    }
}
