//! Stateless session tickets that every worker can open without sharing any state.
//!
//! Each worker builds its own ticketer from one immutable master secret. The key for a time
//! window is derived from the master secret and the window number (HKDF-SHA256), so every
//! worker — and every machine given the same `--ticket-key-file` — computes the same keys on its
//! own: a ticket issued by one worker resumes on any other, with no lock and no shared cache.
//! Tickets from the current and the previous window are accepted; older ones are refused, so a
//! ticket lives between one and two windows.
//!
//! Trade-off: keys can be re-derived while the master secret exists, so ticket forward secrecy
//! is bounded by the master secret's life (the process, or the key file's rotation), as with
//! nginx's `ssl_session_ticket_key`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use zeroize::Zeroizing;

/// Seconds per key window; tickets are valid for one to two windows.
pub const WINDOW_SECS: u64 = 6 * 3600;
const HEADER: usize = 4 + NONCE_LEN;

/// The secret every worker's ticketer derives its keys from.
pub struct MasterSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

/// Compared in constant time: a reload checks whether the key file still holds the same secret.
impl PartialEq for MasterSecret {
    fn eq(&self, other: &MasterSecret) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl MasterSecret {
    /// A fresh random secret (tickets then resume on this process only).
    pub fn random() -> Result<MasterSecret, String> {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "cannot get random bytes for the ticket key".to_string())?;
        Ok(MasterSecret(bytes))
    }

    /// A secret shared by several machines (at least 32 bytes, e.g. from /dev/urandom).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<MasterSecret, String> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < 32 {
            return Err(format!(
                "holds {} bytes; at least 32 are needed",
                bytes.len()
            ));
        }
        Ok(MasterSecret(bytes))
    }

    fn key(&self, window: u32, context: &[u8]) -> LessSafeKey {
        let prk = Salt::new(HKDF_SHA256, b"tern session ticket key v1").extract(&self.0);
        let window = window.to_be_bytes();
        // Without a context the info is the window alone, as before contexts existed.
        let info = [&window[..], context];
        let mut key = Zeroizing::new([0u8; 32]);
        // HKDF-Expand to 32 bytes with SHA-256 cannot fail (the limit is 255 * 32 bytes).
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("hkdf length in range");
        okm.fill(&mut key[..]).expect("hkdf length in range");
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key[..]).expect("32-byte AES key"))
    }
}

/// One worker's ticketer. Its key cache is behind a mutex only because rustls needs `Sync`;
/// only its own worker ever takes it, so the lock is never contended across cores.
#[derive(Debug)]
pub struct Ticketer {
    master: Arc<MasterSecret>,
    /// Bound into every key: tickets issued under one context never open under another
    /// (client authentication settings, see `client_auth`). Empty for none.
    context: Vec<u8>,
    cache: Mutex<Vec<(u32, KeyHandle)>>,
    rng: SystemRandom,
}

struct KeyHandle(LessSafeKey);

impl std::fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Ticketer {
    pub fn new(master: Arc<MasterSecret>) -> Ticketer {
        Self::with_context(master, &[])
    }

    /// A ticketer whose keys are also derived from `context`: another context (or none)
    /// derives other keys, so its tickets are refused here and a full handshake follows.
    pub fn with_context(master: Arc<MasterSecret>, context: &[u8]) -> Ticketer {
        Ticketer {
            master,
            context: context.to_vec(),
            cache: Mutex::new(Vec::new()),
            rng: SystemRandom::new(),
        }
    }

    fn window_now() -> u32 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (secs / WINDOW_SECS) as u32
    }

    /// Runs `f` with the key of `window`, deriving it once and keeping the two newest.
    fn with_key<R>(&self, window: u32, f: impl FnOnce(&LessSafeKey) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = cache.iter().find(|(w, _)| *w == window) {
            return f(&k.0);
        }
        cache.push((window, KeyHandle(self.master.key(window, &self.context))));
        cache.sort_by_key(|(w, _)| std::cmp::Reverse(*w));
        cache.truncate(2);
        let k = cache.iter().find(|(w, _)| *w == window).map(|(_, k)| &k.0);
        // Just inserted; it survives truncation unless two newer windows exist, in which
        // case derive it for this one call.
        match k {
            Some(k) => f(k),
            None => f(&self.master.key(window, &self.context)),
        }
    }

    fn seal(&self, window: u32, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&window.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        let header: [u8; HEADER] = out[..HEADER].try_into().ok()?;
        self.with_key(window, |key| {
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut body,
            )
        })
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, now: u32, ticket: &[u8]) -> Option<Vec<u8>> {
        let header: [u8; HEADER] = ticket.get(..HEADER)?.try_into().ok()?;
        let window = u32::from_be_bytes(header[..4].try_into().ok()?);
        if window != now && Some(window) != now.checked_sub(1) {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&header[4..]).ok()?;
        let mut body = ticket[HEADER..].to_vec();
        let len = self
            .with_key(window, |key| {
                key.open_in_place(nonce, Aad::from(&header), &mut body)
                    .map(|p| p.len())
            })
            .ok()?;
        body.truncate(len);
        Some(body)
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        WINDOW_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(Self::window_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(Self::window_now(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> Arc<MasterSecret> {
        Arc::new(MasterSecret::from_bytes(vec![7u8; 32]).unwrap())
    }

    #[test]
    fn another_ticketer_with_the_same_secret_opens_the_ticket() {
        let (a, b) = (Ticketer::new(master()), Ticketer::new(master()));
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        let other = Ticketer::new(Arc::new(MasterSecret::random().unwrap()));
        assert!(other.decrypt(&t).is_none());
    }

    #[test]
    fn tickets_do_not_cross_contexts() {
        let plain = Ticketer::new(master());
        let a = Ticketer::with_context(master(), &[1; 32]);
        let a2 = Ticketer::with_context(master(), &[1; 32]);
        let b = Ticketer::with_context(master(), &[2; 32]);
        let t = a.encrypt(b"state").unwrap();
        assert_eq!(
            a2.decrypt(&t).unwrap(),
            b"state",
            "same context, another worker"
        );
        assert!(b.decrypt(&t).is_none());
        assert!(plain.decrypt(&t).is_none());
        assert!(a.decrypt(&plain.encrypt(b"state").unwrap()).is_none());
    }

    #[test]
    fn previous_window_accepted_older_refused() {
        let t = Ticketer::new(master());
        let ticket = t.seal(100, b"x").unwrap();
        assert_eq!(t.open(100, &ticket).unwrap(), b"x");
        assert_eq!(t.open(101, &ticket).unwrap(), b"x");
        assert!(t.open(102, &ticket).is_none());
        assert!(t.open(99, &ticket).is_none(), "a ticket from the future");
    }

    #[test]
    fn tampered_or_truncated_tickets_are_refused() {
        let t = Ticketer::new(master());
        let ticket = t.encrypt(b"state").unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(t.decrypt(&bad).is_none(), "flip at {i} accepted");
        }
        for n in 0..ticket.len() {
            assert!(t.decrypt(&ticket[..n]).is_none());
        }
    }

    #[test]
    fn short_key_files_are_refused() {
        assert!(MasterSecret::from_bytes(vec![1; 31]).is_err());
    }
}
