//! Takes a server handshake's TLS 1.3 application traffic secrets as rustls derives them, so
//! that the established connection can do its own key updates ([`super::traffic`]) and drop
//! rustls' key schedule at once.
//!
//! rustls hands traffic secrets out only through its key-log hook (the one behind
//! SSLKEYLOGFILE). tern's hook writes nothing anywhere: it keeps the two secrets only for a
//! handshake that asked for them, on the worker thread running it (rustls calls the hook from
//! inside the handshake step, on that thread), and the handshake takes them when it finishes
//! or wipes them when it fails. Per worker, nothing shared: a short list (one entry per
//! handshake in progress that has read its ClientHello), not a map.

use std::cell::RefCell;

use rustls::KeyLog;

use super::traffic::{Secret, TrafficSecrets};

const CLIENT_TRAFFIC: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_TRAFFIC: &str = "SERVER_TRAFFIC_SECRET_0";

struct Slot {
    client_random: [u8; 32],
    rx: Option<Secret>,
    tx: Option<Secret>,
}

thread_local! {
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// The key-log hook of every server config (see the module comment).
#[derive(Debug)]
pub struct Capture;

impl KeyLog for Capture {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        SLOTS.with_borrow_mut(|slots| {
            let Some(slot) = slots.iter_mut().find(|s| s.client_random == client_random) else {
                return; // a handshake that did not ask (the warm-up's, a test's)
            };
            let to = match label {
                CLIENT_TRAFFIC => &mut slot.rx,
                SERVER_TRAFFIC => &mut slot.tx,
                _ => return,
            };
            *to = Secret::new(secret);
        });
    }

    /// Only the two traffic secrets: rustls derives the others without calling the hook.
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_TRAFFIC || label == SERVER_TRAFFIC
    }
}

/// One handshake's claim on its secrets; its slot goes when it is dropped, taken or not.
pub struct Watch {
    client_random: [u8; 32],
}

impl Watch {
    /// Starts keeping what rustls logs for the handshake whose ClientHello has this random.
    /// Two handshakes with one random (a replayed ClientHello) share nothing: the second gets
    /// no watch, and its connection keeps rustls' key schedule instead.
    pub fn new(client_random: [u8; 32]) -> Option<Watch> {
        SLOTS.with_borrow_mut(|slots| {
            if slots.iter().any(|s| s.client_random == client_random) {
                return None;
            }
            slots.push(Slot {
                client_random,
                rx: None,
                tx: None,
            });
            Some(Watch { client_random })
        })
    }

    /// The secrets, once the handshake has derived both (`None` otherwise).
    pub fn take(self) -> Option<TrafficSecrets> {
        let slot = self.remove()?;
        TrafficSecrets::new(slot.rx?, slot.tx?)
    }

    /// Takes this handshake's slot off the list (`None` once taken). `try_with`: a watch
    /// dropped while the thread itself ends has no list left.
    fn remove(&self) -> Option<Slot> {
        SLOTS
            .try_with(|s| {
                let mut slots = s.borrow_mut();
                let at = slots
                    .iter()
                    .position(|s| s.client_random == self.client_random)?;
                Some(slots.swap_remove(at))
            })
            .ok()
            .flatten()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Already gone when taken; a failed handshake's secrets are wiped here (`Secret`'s
        // drop).
        drop(self.remove());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> usize {
        SLOTS.with_borrow(Vec::len)
    }

    #[test]
    fn secrets_are_kept_only_for_a_watched_handshake_and_only_until_it_ends() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        Capture.log(CLIENT_TRAFFIC, &a, &[7; 32]); // not watched: dropped
        assert_eq!(slots(), 0);
        let wa = Watch::new(a).unwrap();
        assert!(Watch::new(a).is_none(), "one random, one watch");
        let wb = Watch::new(b).unwrap();
        Capture.log(CLIENT_TRAFFIC, &a, &[7; 32]);
        Capture.log("EXPORTER_SECRET", &a, &[8; 32]);
        Capture.log(SERVER_TRAFFIC, &a, &[9; 32]);
        Capture.log(CLIENT_TRAFFIC, &b, &[7; 32]);
        assert_eq!(slots(), 2);
        assert!(wa.take().is_some());
        // Only half its secrets: nothing usable, and the slot is gone all the same.
        assert!(wb.take().is_none());
        assert_eq!(slots(), 0);
        // A failed handshake's watch, dropped, leaves nothing behind.
        let wc = Watch::new(a).unwrap();
        Capture.log(SERVER_TRAFFIC, &a, &[9; 32]);
        drop(wc);
        assert_eq!(slots(), 0);
    }

    #[test]
    fn only_the_traffic_secrets_are_asked_for() {
        assert!(Capture.will_log(CLIENT_TRAFFIC) && Capture.will_log(SERVER_TRAFFIC));
        assert!(!Capture.will_log("CLIENT_HANDSHAKE_TRAFFIC_SECRET"));
        assert!(!Capture.will_log("EXPORTER_SECRET"));
    }
}
