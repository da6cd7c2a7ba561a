//! Multishot receive (`--uring-recv multishot`): one armed receive per socket direction that
//! takes a buffer from the worker's provided-buffer ring only when bytes arrive, instead of a
//! readiness wait plus one read submission per chunk into a pool buffer. The ring is
//! registered by the worker (src/worker/ring.rs); the receive itself is the vendored monoio's
//! (`monoio::buf_ring`, vendor/monoio/TERN-PATCH.md).

/// The buffer group of every worker's receive ring (one ring per worker, so one group).
pub const GROUP: u16 = 0;

/// `--uring-recv`: how the tcp-mode pump reads from the client and a plain backend on an
/// io_uring worker (http mode's request loop and TLS backends read the single way).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UringRecv {
    /// A readiness wait while quiet, then one read per chunk into a pool buffer.
    Single,
    /// One multishot receive per connection into the worker's provided-buffer ring (the
    /// default: fewer submissions per byte, and an idle connection holds no buffer).
    #[default]
    Multishot,
}
