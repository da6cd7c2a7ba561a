//! Lingering close, as nginx's `lingering_close` and HAProxy do it: after tern answered with an
//! error and closed its sending side, it keeps reading and discarding what the client still
//! sends, for a bounded time and byte count, before it closes the socket. Closing with unread
//! bytes in the receive buffer makes the kernel send a reset, and a client that gets the reset
//! before it has read the answer throws the answer away (curl then reports status 000).

use std::time::{Duration, Instant};

use super::bufpool::BufPool;
use super::split::Half;

/// How long, and how much, a client may go on sending after the answer.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_BYTES: usize = 1 << 20;

/// Reads and discards until the client closes, fails, goes quiet past the deadline, or has
/// sent the byte limit. A buffer is taken from the pool only once bytes are waiting, so a
/// lingering connection holds none while it waits.
pub async fn drain(client: &mut Half, pool: &BufPool) {
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match monoio::time::timeout(left, client.readable()).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        // Readable: the read completes at once (data, EOF or an error).
        let (res, buf) = client.read(pool.get()).await;
        pool.put(buf);
        match res {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}
