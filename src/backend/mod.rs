//! The backend hop: pools of backends per worker, balancing, passive and active health. Used by
//! the connection loops in `proxy`; knows nothing of TLS towards clients or of HTTP framing.

pub mod health;
pub mod pool;
