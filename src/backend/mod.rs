//! The backend hop: where a backend is (a TCP address or a Unix socket path: `addr`), pools of
//! backends per worker, balancing, passive and active health, the connection to a backend
//! (plain or TLS: `conn`) and the PROXY protocol header sent on it (`proxy_out`). Used by the connection loops in `proxy`; knows nothing of HTTP framing or of
//! the client side's TLS beyond the session facts a PROXY header carries.

pub mod addr;
pub mod conn;
pub mod health;
pub mod pool;
pub mod proxy_out;
