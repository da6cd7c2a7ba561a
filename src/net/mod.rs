//! Socket and buffer primitives shared by the per-connection loops (`proxy`) and the backend
//! hop (`backend`): the worker's pool of I/O buffers, the read/write halves of one socket, and
//! the stream (TCP or Unix) beneath them. Nothing here knows of TLS or HTTP.

pub mod bufpool;
pub mod ringrecv;
pub mod split;
pub mod stream;
