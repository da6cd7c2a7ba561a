//! The TLS record layer after the handshake, sans-IO and in place.
//!
//! rustls does the handshake; then tern takes the traffic secrets (rustls' kernel-connection
//! API, the same hand-over kTLS uses) and protects records itself with aws-lc-rs AEADs:
//! - received records are decrypted where they lie in the read buffer, so plaintext goes to the
//!   backend without another copy or allocation;
//! - outgoing records are built straight into the write buffer (one copy, then sealed in place);
//! - the two directions are independent objects, so the client→backend and backend→client
//!   loops never contend for one TLS state;
//! - after the handshake a connection holds two AEAD keys and sequence numbers, not rustls'
//!   buffers: what makes idle connections cheap.
//!
//! Formats: TLS 1.3 (RFC 8446 §5.2: nonce = iv ⊕ seq, AAD = record header, inner content type
//! and zero padding inside the ciphertext); TLS 1.2 AES-GCM (RFC 5288: 8-byte explicit nonce,
//! AAD = seq ‖ type ‖ version ‖ length) and ChaCha20-Poly1305 (RFC 7905: nonce = iv ⊕ seq).

use std::fmt;
use std::ops::Range;

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use rustls::ConnectionTrafficSecrets;

use super::traffic::NextKeys;

pub const HEADER_LEN: usize = 5;
/// Largest plaintext fragment a record may carry (2^14).
pub const MAX_FRAGMENT: usize = 16384;
const TAG_LEN: usize = 16;
const EXPLICIT_NONCE_LEN: usize = 8;

/// TLS content types tern deals with after the handshake.
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Construction {
    /// TLS 1.3, any AEAD.
    Tls13,
    /// TLS 1.2 AES-GCM: explicit nonce on the wire.
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305: implicit nonce.
    Tls12Chacha,
}

/// Why a record could not be protected or accepted; each maps to the alert to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Authentication failed (tampering, wrong key, truncation).
    BadRecordMac,
    /// Too long, or an inner plaintext over 2^14 bytes.
    Overflow,
    /// A record that cannot appear here (unknown type, plaintext after keys, no content type).
    Unexpected(&'static str),
    /// A message that cannot be parsed (e.g. a KeyUpdate of the wrong length).
    Decode(&'static str),
    /// A message that parses but carries a value out of range (e.g. a KeyUpdate request).
    Illegal(&'static str),
    /// The sequence number space is used up; the connection must end.
    Exhausted,
    /// The output buffer cannot hold even one record.
    NoRoom,
}

impl RecordError {
    /// The TLS alert description this error is reported with.
    pub fn alert(&self) -> u8 {
        match self {
            RecordError::BadRecordMac => 20,
            RecordError::Overflow => 22,
            RecordError::Unexpected(_) => 10,
            RecordError::Decode(_) => 50,
            RecordError::Illegal(_) => 47,
            RecordError::Exhausted | RecordError::NoRoom => 80,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadRecordMac => f.write_str("record failed authentication"),
            RecordError::Overflow => f.write_str("record too long"),
            RecordError::Unexpected(what) => write!(f, "unexpected record: {what}"),
            RecordError::Decode(what) => write!(f, "malformed message: {what}"),
            RecordError::Illegal(what) => write!(f, "illegal value: {what}"),
            RecordError::Exhausted => f.write_str("record sequence numbers exhausted"),
            RecordError::NoRoom => f.write_str("no room for a record"),
        }
    }
}

impl std::error::Error for RecordError {}

/// One direction's key, IV and sequence number.
struct DirectionKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl DirectionKeys {
    fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<DirectionKeys, RecordError> {
        let alg = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { .. } => &AES_128_GCM,
            ConnectionTrafficSecrets::Aes256Gcm { .. } => &AES_256_GCM,
            ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => &CHACHA20_POLY1305,
            _ => return Err(RecordError::Unexpected("cipher suite")),
        };
        let keys =
            NextKeys::from_rustls(secrets).ok_or(RecordError::Unexpected("key or iv length"))?;
        DirectionKeys::with(alg, &keys, seq)
    }

    /// The keys after a TLS 1.3 key update (same AEAD; the sequence starts again at 0).
    fn updated(&self, next: &NextKeys) -> Result<DirectionKeys, RecordError> {
        DirectionKeys::with(self.key.algorithm(), next, 0)
    }

    fn with(
        alg: &'static Algorithm,
        keys: &NextKeys,
        seq: u64,
    ) -> Result<DirectionKeys, RecordError> {
        let key = UnboundKey::new(alg, keys.key()).map_err(|_| RecordError::Unexpected("key"))?;
        Ok(DirectionKeys {
            key: LessSafeKey::new(key),
            iv: *keys.iv(),
            seq,
        })
    }

    /// The AEAD's key length (what a key update derives).
    fn key_len(&self) -> usize {
        self.key.algorithm().key_len()
    }

    /// Takes the current sequence number and advances it; refuses to wrap.
    fn next_seq(&mut self) -> Result<u64, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::Exhausted)?;
        Ok(seq)
    }
}

/// iv ⊕ seq, with seq as a big-endian number in the last 8 bytes.
fn nonce_for(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

fn construction(version: Version, secrets: &ConnectionTrafficSecrets) -> Construction {
    match (version, secrets) {
        (Version::Tls13, _) => Construction::Tls13,
        (Version::Tls12, ConnectionTrafficSecrets::Chacha20Poly1305 { .. }) => {
            Construction::Tls12Chacha
        }
        (Version::Tls12, _) => Construction::Tls12Gcm,
    }
}

fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Protects outgoing records.
pub struct Sealer {
    keys: DirectionKeys,
    how: Construction,
    /// Records after which the key must be replaced (the AEAD's confidentiality limit).
    limit: u64,
}

impl Sealer {
    pub fn new(
        version: Version,
        seq: u64,
        secrets: &ConnectionTrafficSecrets,
        limit: u64,
    ) -> Result<Sealer, RecordError> {
        Ok(Sealer {
            keys: DirectionKeys::new(seq, secrets)?,
            how: construction(version, secrets),
            limit,
        })
    }

    /// Wire bytes added to each record's payload.
    pub fn overhead(&self) -> usize {
        HEADER_LEN
            + TAG_LEN
            + match self.how {
                Construction::Tls13 => 1,
                Construction::Tls12Gcm => EXPLICIT_NONCE_LEN,
                Construction::Tls12Chacha => 0,
            }
    }

    /// Whether the key is close enough to its limit that it must be replaced (TLS 1.3 key
    /// update) or the connection ended (TLS 1.2) before more records are sealed.
    pub fn near_limit(&self) -> bool {
        self.keys.seq >= self.limit.saturating_sub(1024)
    }

    /// Switches to the keys of a TLS 1.3 key update, under the same AEAD; sequence numbers
    /// restart.
    pub fn rekey(&mut self, keys: &NextKeys) -> Result<(), RecordError> {
        self.keys = self.keys.updated(keys)?;
        Ok(())
    }

    /// Bytes of key a key update derives for this direction's AEAD.
    pub fn key_len(&self) -> usize {
        self.keys.key_len()
    }

    /// Seals one record of type `typ` carrying `payload` into the front of `out`; returns its
    /// length on the wire.
    pub fn seal(&mut self, typ: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, RecordError> {
        let p = payload.len();
        if p > MAX_FRAGMENT {
            return Err(RecordError::Overflow);
        }
        let total = p + self.overhead();
        if out.len() < total {
            return Err(RecordError::NoRoom);
        }
        let body_len = total - HEADER_LEN;
        let outer = if self.how == Construction::Tls13 {
            APPLICATION_DATA
        } else {
            typ
        };
        let header = [outer, 3, 3, (body_len >> 8) as u8, body_len as u8];
        let seq = self.keys.next_seq()?;
        let nonce = nonce_for(&self.keys.iv, seq);
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        let body = &mut rest[..body_len];
        let (sealed, aad) = match self.how {
            Construction::Tls13 => {
                copy_in_pieces(&mut body[..p], payload);
                body[p] = typ;
                (0..p + 1, AadBytes::Tls13(header))
            }
            Construction::Tls12Gcm => {
                body[..EXPLICIT_NONCE_LEN].copy_from_slice(&nonce[4..]);
                copy_in_pieces(
                    &mut body[EXPLICIT_NONCE_LEN..EXPLICIT_NONCE_LEN + p],
                    payload,
                );
                let aad = tls12_aad(seq, typ, [3, 3], p);
                (
                    EXPLICIT_NONCE_LEN..EXPLICIT_NONCE_LEN + p,
                    AadBytes::Tls12(aad),
                )
            }
            Construction::Tls12Chacha => {
                copy_in_pieces(&mut body[..p], payload);
                (0..p, AadBytes::Tls12(tls12_aad(seq, typ, [3, 3], p)))
            }
        };
        let tag = self
            .keys
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aad.aad(),
                &mut body[sealed.clone()],
            )
            .map_err(|_| RecordError::Exhausted)?;
        body[sealed.end..].copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Seals as much of `data` as fits into `out` as application-data records of at most
    /// `MAX_FRAGMENT` bytes each. Returns (bytes of `data` taken, bytes written to `out`).
    pub fn seal_data(
        &mut self,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize), RecordError> {
        let (mut taken, mut written) = (0, 0);
        while taken < data.len() {
            let room = out.len() - written;
            if room <= self.overhead() {
                break;
            }
            let n = (data.len() - taken)
                .min(MAX_FRAGMENT)
                .min(room - self.overhead());
            written += self.seal(
                APPLICATION_DATA,
                &data[taken..taken + n],
                &mut out[written..],
            )?;
            taken += n;
        }
        if taken == 0 && !data.is_empty() {
            return Err(RecordError::NoRoom);
        }
        Ok((taken, written))
    }
}

/// Copies `src` into `dst` (of the same length) in pieces of 2 KiB, below glibc's threshold
/// for `rep movsb` (2,112 bytes by default on x86-64).
///
/// Why not one `copy_from_slice`: a record's payload is copied into the output buffer and then
/// sealed in place, so AES-GCM reads the copy at once. On AMD Zen 3 a 16 KiB memcpy goes
/// through `rep movsb`, and the seal that follows it ran at half speed or worse (2026-12-02,
/// EPYC 7xx3 guest: seal alone 9.9 µs per 16 KiB record, after one 16 KiB memcpy 23.4 µs,
/// after 2 KiB pieces 10.8 µs), as if the copied lines were not in the core's cache; glibc's
/// vector loop for smaller copies leaves them there. On CPUs without the effect the pieces cost
/// the same as one copy. Used wherever ciphertext or plaintext is copied and then run through
/// AES-GCM in place.
pub fn copy_in_pieces(dst: &mut [u8], src: &[u8]) {
    const PIECE: usize = 2048;
    for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
        d.copy_from_slice(s);
    }
}

/// The additional data of one record: the header itself (1.3) or the 1.2 pseudo-header.
enum AadBytes {
    Tls13([u8; 5]),
    Tls12([u8; 13]),
}

impl AadBytes {
    fn aad(&self) -> Aad<&[u8]> {
        match self {
            AadBytes::Tls13(h) => Aad::from(&h[..]),
            AadBytes::Tls12(a) => Aad::from(&a[..]),
        }
    }
}

/// A record decrypted in place by [`Opener::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its content type (the inner type for TLS 1.3).
    pub typ: u8,
    /// Where its plaintext now lies in the buffer given to `open`.
    pub plain: Range<usize>,
    /// How many bytes of the buffer the record took.
    pub len: usize,
}

/// Accepts incoming records.
pub struct Opener {
    keys: DirectionKeys,
    how: Construction,
    limit: u64,
}

impl Opener {
    pub fn new(
        version: Version,
        seq: u64,
        secrets: &ConnectionTrafficSecrets,
        limit: u64,
    ) -> Result<Opener, RecordError> {
        Ok(Opener {
            keys: DirectionKeys::new(seq, secrets)?,
            how: construction(version, secrets),
            limit,
        })
    }

    /// Switches to the keys of a TLS 1.3 key update, under the same AEAD.
    pub fn rekey(&mut self, keys: &NextKeys) -> Result<(), RecordError> {
        self.keys = self.keys.updated(keys)?;
        Ok(())
    }

    /// Bytes of key a key update derives for this direction's AEAD.
    pub fn key_len(&self) -> usize {
        self.keys.key_len()
    }

    /// The length of the whole record at the front of `buf`, once its header is there.
    pub fn record_len(buf: &[u8]) -> Option<usize> {
        let h = buf.get(..HEADER_LEN)?;
        Some(HEADER_LEN + u16::from_be_bytes([h[3], h[4]]) as usize)
    }

    /// Decrypts the record at the front of `buf` in place. `Ok(None)`: it is not all there yet.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Option<Opened>, RecordError> {
        let Some(len) = Self::record_len(buf) else {
            return Ok(None);
        };
        let body_len = len - HEADER_LEN;
        let typ = buf[0];
        let max_body = match self.how {
            Construction::Tls13 => MAX_FRAGMENT + 256,
            _ => MAX_FRAGMENT + 2048,
        };
        if body_len > max_body {
            return Err(RecordError::Overflow);
        }
        if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&typ) {
            return Err(RecordError::Unexpected("unknown content type"));
        }
        if self.how == Construction::Tls13 && typ != APPLICATION_DATA {
            // After the handshake every TLS 1.3 record is protected application_data outside.
            return Err(RecordError::Unexpected(
                "unprotected record after the handshake",
            ));
        }
        if buf[1] != 3 {
            return Err(RecordError::Unexpected("record version"));
        }
        if buf.len() < len {
            return Ok(None);
        }
        if self.keys.seq >= self.limit {
            return Err(RecordError::Exhausted);
        }
        let version = [buf[1], buf[2]];
        let header: [u8; 5] = [buf[0], buf[1], buf[2], buf[3], buf[4]];
        let seq = self.keys.next_seq()?;
        let record = &mut buf[HEADER_LEN..len];
        let (nonce, aad, body_start) = match self.how {
            Construction::Tls13 => (
                nonce_for(&self.keys.iv, seq),
                AadBytes::Tls13(header),
                HEADER_LEN,
            ),
            Construction::Tls12Gcm => {
                if body_len < EXPLICIT_NONCE_LEN + TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&self.keys.iv[..4]);
                nonce[4..].copy_from_slice(&record[..EXPLICIT_NONCE_LEN]);
                let plain_len = body_len - EXPLICIT_NONCE_LEN - TAG_LEN;
                (
                    nonce,
                    AadBytes::Tls12(tls12_aad(seq, typ, version, plain_len)),
                    HEADER_LEN + EXPLICIT_NONCE_LEN,
                )
            }
            Construction::Tls12Chacha => {
                if body_len < TAG_LEN {
                    return Err(RecordError::BadRecordMac);
                }
                let plain_len = body_len - TAG_LEN;
                (
                    nonce_for(&self.keys.iv, seq),
                    AadBytes::Tls12(tls12_aad(seq, typ, version, plain_len)),
                    HEADER_LEN,
                )
            }
        };
        let sealed = &mut record[body_start - HEADER_LEN..];
        if sealed.len() < TAG_LEN {
            return Err(RecordError::BadRecordMac);
        }
        let plain_len = self
            .keys
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad.aad(), sealed)
            .map_err(|_| RecordError::BadRecordMac)?
            .len();
        let mut plain = body_start..body_start + plain_len;
        let mut typ = typ;
        if self.how == Construction::Tls13 {
            // RFC 8446 §5.4: TLSInnerPlaintext (content, type byte and padding) is at most
            // 2^14 + 1 bytes; padding does not buy room past that.
            if plain.len() > MAX_FRAGMENT + 1 {
                return Err(RecordError::Overflow);
            }
            // Strip the zero padding; the last non-zero byte is the real content type.
            let inner = &buf[plain.clone()];
            let Some(at) = inner.iter().rposition(|&b| b != 0) else {
                return Err(RecordError::Unexpected("no inner content type"));
            };
            typ = inner[at];
            plain.end = plain.start + at;
            if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&typ) || typ == CHANGE_CIPHER_SPEC
            {
                return Err(RecordError::Unexpected("inner content type"));
            }
        }
        if plain.len() > MAX_FRAGMENT {
            return Err(RecordError::Overflow);
        }
        Ok(Some(Opened { typ, plain, len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn secrets(chacha: bool) -> ConnectionTrafficSecrets {
        let key = AeadKey::from([7u8; 32]);
        let iv = Iv::from([9u8; 12]);
        if chacha {
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv }
        } else {
            ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        }
    }

    fn pair(version: Version, chacha: bool) -> (Sealer, Opener) {
        let s = secrets(chacha);
        (
            Sealer::new(version, 0, &s, u64::MAX).unwrap(),
            Opener::new(version, 0, &s, u64::MAX).unwrap(),
        )
    }

    #[test]
    fn round_trips_in_every_construction() {
        for (version, chacha) in [
            (Version::Tls13, false),
            (Version::Tls13, true),
            (Version::Tls12, false),
            (Version::Tls12, true),
        ] {
            let (mut s, mut o) = pair(version, chacha);
            for len in [0usize, 1, 1000, MAX_FRAGMENT] {
                let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut wire = vec![0u8; len + 64];
                let n = s.seal(APPLICATION_DATA, &msg, &mut wire).unwrap();
                assert_eq!(n, len + s.overhead());
                // Incomplete until the last byte is there.
                assert_eq!(o.open(&mut wire[..n - 1].to_vec()).unwrap(), None);
                let opened = o.open(&mut wire[..n]).unwrap().unwrap();
                assert_eq!((opened.typ, opened.len), (APPLICATION_DATA, n));
                assert_eq!(&wire[opened.plain], &msg[..], "{version:?} {chacha} {len}");
            }
        }
    }

    #[test]
    fn replayed_or_reordered_records_fail() {
        let (mut s, mut o) = pair(Version::Tls13, false);
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        let na = s.seal(APPLICATION_DATA, b"first", &mut a).unwrap();
        let nb = s.seal(APPLICATION_DATA, b"second", &mut b).unwrap();
        assert_eq!(o.open(&mut b[..nb]), Err(RecordError::BadRecordMac));
        let _ = na;
    }

    #[test]
    fn tls13_padding_is_stripped_and_all_zero_refused() {
        let s = secrets(false);
        let mut o = Opener::new(Version::Tls13, 0, &s, u64::MAX).unwrap();
        // Build a padded record by hand: "hi" ‖ type ‖ 5 zeros.
        let mut inner = b"hi".to_vec();
        inner.push(APPLICATION_DATA);
        inner.extend([0u8; 5]);
        let body_len = inner.len() + TAG_LEN;
        let header = [APPLICATION_DATA, 3, 3, 0, body_len as u8];
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_for(&[9u8; 12], 0)),
                Aad::from(&header[..]),
                &mut inner,
            )
            .unwrap();
        let mut wire = header.to_vec();
        wire.extend(&inner);
        wire.extend(tag.as_ref());
        let opened = o.open(&mut wire).unwrap().unwrap();
        assert_eq!(&wire[opened.plain], b"hi");

        let mut zeros = vec![0u8; 4];
        let header = [APPLICATION_DATA, 3, 3, 0, (4 + TAG_LEN) as u8];
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_for(&[9u8; 12], 1)),
                Aad::from(&header[..]),
                &mut zeros,
            )
            .unwrap();
        let mut wire = header.to_vec();
        wire.extend(&zeros);
        wire.extend(tag.as_ref());
        assert!(matches!(o.open(&mut wire), Err(RecordError::Unexpected(_))));
    }

    /// A TLS 1.3 record around `inner` (content ‖ type ‖ padding) as a client would seal it.
    fn tls13_record(inner: &[u8], seq: u64) -> Vec<u8> {
        let mut body = inner.to_vec();
        let len = (body.len() + TAG_LEN) as u16;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_for(&[9u8; 12], seq)),
                Aad::from(&header[..]),
                &mut body,
            )
            .unwrap();
        [&header[..], &body, tag.as_ref()].concat()
    }

    #[test]
    fn tls13_inner_plaintext_over_2_14_plus_1_is_an_overflow_even_as_padding() {
        let s = secrets(false);
        let mut o = Opener::new(Version::Tls13, 0, &s, u64::MAX).unwrap();
        // 2^14 - 1 bytes of data, the type and one byte of padding: 2^14 + 1, the most allowed.
        let mut inner = vec![b'x'; MAX_FRAGMENT - 1];
        inner.extend([APPLICATION_DATA, 0]);
        let opened = o.open(&mut tls13_record(&inner, 0)).unwrap().unwrap();
        assert_eq!(opened.plain.len(), MAX_FRAGMENT - 1);
        // 2^14 - 8 bytes of data, the type and 9 bytes of padding: one byte too many
        // (tlsfuzzer's test-tls13-record-layer-limits), though the data alone would fit.
        let mut inner = vec![b'x'; MAX_FRAGMENT - 8];
        inner.push(APPLICATION_DATA);
        inner.extend([0u8; 9]);
        let err = o.open(&mut tls13_record(&inner, 1)).unwrap_err();
        assert_eq!((err.clone(), err.alert()), (RecordError::Overflow, 22));
    }

    #[test]
    fn limits_are_kept() {
        let s = secrets(false);
        let mut sealer = Sealer::new(Version::Tls13, u64::MAX, &s, u64::MAX).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            sealer.seal(APPLICATION_DATA, b"x", &mut out),
            Err(RecordError::Exhausted)
        );
        let sealer = Sealer::new(Version::Tls13, 10, &s, 1000).unwrap();
        assert!(sealer.near_limit());
        let sealer = Sealer::new(Version::Tls13, 10, &s, 1 << 30).unwrap();
        assert!(!sealer.near_limit());
        let mut sealer = Sealer::new(Version::Tls13, 0, &s, u64::MAX).unwrap();
        assert_eq!(
            sealer.seal(
                APPLICATION_DATA,
                &[0u8; MAX_FRAGMENT + 1],
                &mut [0u8; 20000]
            ),
            Err(RecordError::Overflow)
        );
        assert_eq!(
            sealer.seal(APPLICATION_DATA, b"abc", &mut [0u8; 10]),
            Err(RecordError::NoRoom)
        );
        let mut o = Opener::new(Version::Tls13, 5, &s, 5).unwrap();
        let mut wire = [
            APPLICATION_DATA,
            3,
            3,
            0,
            17,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(o.open(&mut wire), Err(RecordError::Exhausted));
    }

    #[test]
    fn seal_data_splits_into_records_and_stops_when_full() {
        let (mut s, mut o) = pair(Version::Tls12, false);
        let data = vec![1u8; 40_000];
        let mut out = vec![0u8; 20_000];
        let (taken, written) = s.seal_data(&data, &mut out).unwrap();
        assert_eq!(taken, 20_000 - 2 * s.overhead());
        let mut at = 0;
        let mut got = 0;
        while at < written {
            let r = o.open(&mut out[at..written]).unwrap().unwrap();
            got += r.plain.len();
            at += r.len;
        }
        assert_eq!((got, at), (taken, written));
    }
}
