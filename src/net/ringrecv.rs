//! Multishot receive (`--uring-recv multishot`): one armed receive per socket direction that
//! takes a buffer from the worker's provided-buffer ring only when bytes arrive, instead of a
//! readiness wait plus one read submission per chunk into a pool buffer. The ring is
//! registered by the worker (src/worker/ring.rs); the receive itself is the vendored monoio's
//! (`monoio::buf_ring`, vendor/monoio/TERN-PATCH.md).

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
