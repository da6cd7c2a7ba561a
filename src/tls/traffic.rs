//! A TLS 1.3 connection's application traffic secrets after the handshake, and the key
//! updates derived from them (RFC 8446 §7.2 and §7.3): what a server connection keeps for its
//! whole life instead of rustls' `KernelConnection`, whose inline state (576 bytes, most of
//! it QUIC fields a TCP connection never uses) and boxed key schedule (224 bytes) every idle
//! connection used to hold. Pure: secrets in, keys out.

use aws_lc_rs::hmac;
use rustls::ConnectionTrafficSecrets;
use zeroize::Zeroize;

/// Longest hash of a TLS 1.3 suite (SHA-384).
const MAX_HASH: usize = 48;
const IV_LEN: usize = 12;
const MAX_KEY: usize = 32;

/// One traffic secret, wiped when dropped. Its length says the suite's hash: 32 bytes for
/// SHA-256, 48 for SHA-384.
#[derive(Clone)]
pub struct Secret {
    bytes: [u8; MAX_HASH],
    len: u8,
}

impl Secret {
    /// `None` for a length no TLS 1.3 suite has.
    pub fn new(bytes: &[u8]) -> Option<Secret> {
        if bytes.len() != 32 && bytes.len() != 48 {
            return None;
        }
        let mut s = Secret {
            bytes: [0; MAX_HASH],
            len: bytes.len() as u8,
        };
        s.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(s)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn hmac(&self) -> hmac::Algorithm {
        match self.len {
            48 => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA256,
        }
    }

    /// HKDF-Expand-Label(self, label, "", len) (RFC 8446 §7.1) for `len` at most the hash's
    /// length, which is every label used here: HKDF-Expand is then one HMAC, T(1).
    fn expand_label(&self, label: &[u8], out: &mut [u8]) {
        debug_assert!(out.len() <= self.len as usize && label.len() <= 12);
        let mut info = [0u8; 2 + 1 + 6 + 12 + 1 + 1];
        let n = 2 + 1 + 6 + label.len();
        info[..2].copy_from_slice(&(out.len() as u16).to_be_bytes());
        info[2] = (6 + label.len()) as u8;
        info[3..9].copy_from_slice(b"tls13 ");
        info[9..n].copy_from_slice(label);
        // An empty context, then HKDF-Expand's block counter.
        info[n] = 0;
        info[n + 1] = 1;
        let key = hmac::Key::new(self.hmac(), self.as_bytes());
        let tag = hmac::sign(&key, &info[..n + 2]);
        out.copy_from_slice(&tag.as_ref()[..out.len()]);
    }

    /// application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", len).
    fn next(&self) -> Secret {
        let mut next = Secret {
            bytes: [0; MAX_HASH],
            len: self.len,
        };
        let len = self.len as usize;
        self.expand_label(b"traffic upd", &mut next.bytes[..len]);
        next
    }

    /// The record key (`key_len` bytes) and IV this secret gives (RFC 8446 §7.3).
    fn keys(&self, key_len: usize) -> NextKeys {
        let mut keys = NextKeys {
            key: [0; MAX_KEY],
            key_len,
            iv: [0; IV_LEN],
        };
        self.expand_label(b"key", &mut keys.key[..key_len]);
        self.expand_label(b"iv", &mut keys.iv);
        keys
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// A record key and IV to switch a direction to, wiped when dropped.
pub struct NextKeys {
    key: [u8; MAX_KEY],
    key_len: usize,
    iv: [u8; IV_LEN],
}

impl NextKeys {
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }

    /// The same, from what rustls hands out (a connection's first keys, and the key updates
    /// of connections that keep rustls' schedule).
    pub fn from_rustls(s: &ConnectionTrafficSecrets) -> Option<NextKeys> {
        let (key, iv) = match s {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
            _ => return None,
        };
        let (key, iv) = (key.as_ref(), iv.as_ref());
        if key.len() > MAX_KEY || iv.len() != IV_LEN {
            return None;
        }
        let mut keys = NextKeys {
            key: [0; MAX_KEY],
            key_len: key.len(),
            iv: [0; IV_LEN],
        };
        keys.key[..key.len()].copy_from_slice(key);
        keys.iv.copy_from_slice(iv);
        Some(keys)
    }
}

impl Drop for NextKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// Both directions' current secrets of a server connection: received (the client's) and sent
/// (the server's).
pub struct TrafficSecrets {
    rx: Secret,
    tx: Secret,
}

impl TrafficSecrets {
    /// `None` unless both are of one hash.
    pub fn new(rx: Secret, tx: Secret) -> Option<TrafficSecrets> {
        (rx.len == tx.len).then_some(TrafficSecrets { rx, tx })
    }

    /// Moves one direction to its next secret; returns the record key (`key_len` bytes, the
    /// AEAD's) and IV it gives, whose sequence numbers start again at 0.
    pub fn update(&mut self, tx: bool, key_len: usize) -> NextKeys {
        let s = if tx { &mut self.tx } else { &mut self.rx };
        *s = s.next();
        s.keys(key_len.min(MAX_KEY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8448 §3 (a simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the server's
    /// application traffic secret and the key and IV it gives.
    #[test]
    fn keys_from_a_secret_match_rfc_8448() {
        let secret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
        let keys = Secret::new(&secret).unwrap().keys(16);
        assert_eq!(keys.key(), hex("9f02283b6c9c07efc26bb9f2ac92e356"));
        assert_eq!(&keys.iv()[..], hex("cf782b88dd83549aadf1e984"));
    }

    /// The update label's arithmetic, against an independent HKDF (aws-lc's own).
    #[test]
    fn the_next_secret_is_hkdf_expand_label_traffic_upd() {
        for (len, alg) in [
            (32, aws_lc_rs::hkdf::HKDF_SHA256),
            (48, aws_lc_rs::hkdf::HKDF_SHA384),
        ] {
            let secret: Vec<u8> = (0..len as u8).collect();
            let next = Secret::new(&secret).unwrap().next();
            let label = b"tls13 traffic upd";
            let info = [
                &(len as u16).to_be_bytes()[..],
                &[label.len() as u8],
                label,
                &[0],
            ];
            let prk = aws_lc_rs::hkdf::Prk::new_less_safe(alg, &secret);
            let mut want = vec![0u8; len];
            prk.expand(&info, Len(len))
                .unwrap()
                .fill(&mut want)
                .unwrap();
            assert_eq!(next.as_bytes(), want);
        }
    }

    #[test]
    fn secrets_of_no_tls13_hash_or_of_two_hashes_are_refused() {
        assert!(Secret::new(&[0; 31]).is_none());
        assert!(TrafficSecrets::new(
            Secret::new(&[1; 32]).unwrap(),
            Secret::new(&[1; 48]).unwrap()
        )
        .is_none());
    }

    struct Len(usize);
    impl aws_lc_rs::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
