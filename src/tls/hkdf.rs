//! HKDF for the TLS 1.3 key schedule that keys its HMAC once per secret.
//!
//! rustls' aws-lc-rs provider expands through aws-lc's `HKDF_expand`, which runs
//! `HMAC_Init_ex` with the secret on every call: two SHA-256 compressions for the pads
//! before any data, and a full handshake expands about 30 times (traffic secrets, keys, IVs,
//! finished keys, tickets), most of them from a handful of secrets. Here an expander keys an
//! `hmac::Key` once (aws-lc precomputes the padded states) and each expand starts from a copy
//! of it (`HMAC_CTX_copy`, a memcpy). The construction is RFC 5869's, byte for byte; the unit
//! tests check it against the RFC's vectors and against aws-lc's own HKDF.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::crypto::tls13::{Hkdf, HkdfExpander, OkmBlock, OutputLengthError};
use rustls::crypto::{aws_lc_rs::cipher_suite, CryptoProvider};
use rustls::{CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};

/// HKDF over one HMAC algorithm, keyed once per secret.
pub struct KeyedHkdf(hmac::Algorithm, &'static LazyLock<ZeroSecret>);

pub static HKDF_SHA256: KeyedHkdf = KeyedHkdf(hmac::HMAC_SHA256, &ZERO_SHA256);
pub static HKDF_SHA384: KeyedHkdf = KeyedHkdf(hmac::HMAC_SHA384, &ZERO_SHA384);

/// The TLS 1.3 early secret of every handshake without a PSK, HKDF-Extract(0, 0) (RFC 8446
/// §7.1), keyed, and the "derived" secret expanded from it: constants of the hash, computed
/// once instead of in each full handshake (eight SHA-256 compressions: the extract's two keys
/// and its HMAC, then the expand). Read-only after it is built.
struct ZeroSecret {
    key: hmac::Key,
    /// HKDF-Expand-Label's info for Derive-Secret(early, "derived", ""), whole.
    derived_info: Vec<u8>,
    derived: OkmBlock,
}

static ZERO_SHA256: LazyLock<ZeroSecret> = LazyLock::new(|| ZeroSecret::new(hmac::HMAC_SHA256));
static ZERO_SHA384: LazyLock<ZeroSecret> = LazyLock::new(|| ZeroSecret::new(hmac::HMAC_SHA384));

impl ZeroSecret {
    fn new(alg: hmac::Algorithm) -> ZeroSecret {
        let len = alg.digest_algorithm().output_len();
        let zeroes = [0u8; OkmBlock::MAX_LEN];
        let prk = hmac::sign(&hmac::Key::new(alg, &zeroes[..len]), &zeroes[..len]);
        let expander = Expander::new(alg, prk.as_ref(), None);
        let empty_hash = aws_lc_rs::digest::digest(alg.digest_algorithm(), &[]);
        let label = b"tls13 derived";
        let mut derived_info = (len as u16).to_be_bytes().to_vec();
        derived_info.push(label.len() as u8);
        derived_info.extend_from_slice(label);
        derived_info.push(len as u8);
        derived_info.extend_from_slice(empty_hash.as_ref());
        let derived = expander.expand_block(&[&derived_info]);
        ZeroSecret {
            key: expander.key,
            derived_info,
            derived,
        }
    }
}

/// Whether `parts` joined are `whole`, without joining them.
fn joined_is(parts: &[&[u8]], whole: &[u8]) -> bool {
    let mut rest = whole;
    for part in parts {
        match rest.strip_prefix(*part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

impl KeyedHkdf {
    fn len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }

    /// HKDF-Extract: PRK = HMAC(salt, ikm), with a zero salt of hash length by default.
    fn extract(&self, salt: Option<&[u8]>, ikm: &[u8]) -> Box<dyn HkdfExpander> {
        let zeroes = [0u8; OkmBlock::MAX_LEN];
        let salt = salt.unwrap_or(&zeroes[..self.len()]);
        let prk = hmac::sign(&hmac::Key::new(self.0, salt), ikm);
        Box::new(Expander::new(self.0, prk.as_ref(), None))
    }
}

impl Hkdf for KeyedHkdf {
    fn extract_from_zero_ikm(&self, salt: Option<&[u8]>) -> Box<dyn HkdfExpander> {
        if salt.is_none() {
            // The early secret of a handshake without a PSK: a constant (see `ZeroSecret`).
            let zero: &'static ZeroSecret = self.1;
            return Box::new(Expander {
                key: zero.key.clone(),
                len: self.len(),
                zero: Some(zero),
            });
        }
        let zeroes = [0u8; OkmBlock::MAX_LEN];
        self.extract(salt, &zeroes[..self.len()])
    }

    fn extract_from_secret(&self, salt: Option<&[u8]>, secret: &[u8]) -> Box<dyn HkdfExpander> {
        self.extract(salt, secret)
    }

    fn expander_for_okm(&self, okm: &OkmBlock) -> Box<dyn HkdfExpander> {
        Box::new(Expander::new(self.0, okm.as_ref(), None))
    }

    fn hmac_sign(&self, key: &OkmBlock, message: &[u8]) -> rustls::crypto::hmac::Tag {
        let tag = hmac::sign(&hmac::Key::new(self.0, key.as_ref()), message);
        rustls::crypto::hmac::Tag::new(tag.as_ref())
    }

    // Not a FIPS-validated path, whatever aws-lc was built as.
    fn fips(&self) -> bool {
        false
    }
}

/// A PRK, keyed into HMAC once.
struct Expander {
    key: hmac::Key,
    len: usize,
    /// This is the early secret without a PSK, whose "derived" secret is known.
    zero: Option<&'static ZeroSecret>,
}

impl Expander {
    fn new(alg: hmac::Algorithm, prk: &[u8], zero: Option<&'static ZeroSecret>) -> Expander {
        Expander {
            key: hmac::Key::new(alg, prk),
            len: alg.digest_algorithm().output_len(),
            zero,
        }
    }
}

impl HkdfExpander for Expander {
    /// HKDF-Expand: T(i) = HMAC(PRK, T(i-1) || info || i), output the first `output.len()`
    /// bytes of T(1) || T(2) || ...
    fn expand_slice(&self, info: &[&[u8]], output: &mut [u8]) -> Result<(), OutputLengthError> {
        if output.len() > 255 * self.len {
            return Err(OutputLengthError);
        }
        let mut prev: Option<hmac::Tag> = None;
        for (i, chunk) in output.chunks_mut(self.len).enumerate() {
            let mut ctx = hmac::Context::with_key(&self.key);
            if let Some(t) = &prev {
                ctx.update(t.as_ref());
            }
            for part in info {
                ctx.update(part);
            }
            ctx.update(&[i as u8 + 1]);
            let t = ctx.sign();
            chunk.copy_from_slice(&t.as_ref()[..chunk.len()]);
            prev = Some(t);
        }
        Ok(())
    }

    fn expand_block(&self, info: &[&[u8]]) -> OkmBlock {
        if let Some(zero) = self.zero {
            if joined_is(info, &zero.derived_info) {
                return zero.derived.clone();
            }
        }
        let mut buf = [0u8; OkmBlock::MAX_LEN];
        let out = &mut buf[..self.len];
        self.expand_slice(info, out)
            .expect("one block is within HKDF's output limit");
        OkmBlock::new(out)
    }

    fn hash_len(&self) -> usize {
        self.len
    }
}

/// `base`'s suite with the keyed HKDF in place of the provider's.
fn keyed(base: SupportedCipherSuite) -> Tls13CipherSuite {
    let SupportedCipherSuite::Tls13(s) = base else {
        unreachable!("only TLS 1.3 suites are re-keyed");
    };
    let hkdf: &'static KeyedHkdf = match s.common.hash_provider.output_len() {
        48 => &HKDF_SHA384,
        _ => &HKDF_SHA256,
    };
    Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: s.common.suite,
            hash_provider: s.common.hash_provider,
            confidentiality_limit: s.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: s.aead_alg,
        quic: s.quic,
    }
}

static AES_128_GCM: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| keyed(cipher_suite::TLS13_AES_128_GCM_SHA256));
static AES_256_GCM: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| keyed(cipher_suite::TLS13_AES_256_GCM_SHA384));
static CHACHA20: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| keyed(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256));

/// aws-lc-rs' default provider with its TLS 1.3 suites using [`KeyedHkdf`]; same suites,
/// same order, same everything else.
pub fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    for s in p.cipher_suites.iter_mut() {
        let replacement: Option<&'static Tls13CipherSuite> = match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(&AES_128_GCM),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(&AES_256_GCM),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(&CHACHA20),
            _ => None,
        };
        if let Some(r) = replacement {
            *s = SupportedCipherSuite::Tls13(r);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hkdf;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn matches_rfc_5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let e = HKDF_SHA256.extract_from_secret(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        e.expand_slice(&[&info], &mut okm).unwrap();
        let want = hex(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        );
        assert_eq!(okm.to_vec(), want);
    }

    #[test]
    fn matches_rfc_5869_test_case_3_zero_salt_and_info() {
        let ikm = [0x0bu8; 22];
        let e = HKDF_SHA256.extract_from_secret(None, &ikm);
        let mut okm = [0u8; 42];
        e.expand_slice(&[], &mut okm).unwrap();
        let want = hex(
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        );
        assert_eq!(okm.to_vec(), want);
    }

    /// Against aws-lc's HKDF for both hashes, several lengths (one block, several blocks, a
    /// partial last block) and split info, as rustls' key schedule calls it.
    #[test]
    fn agrees_with_aws_lc_hkdf() {
        for (ours, theirs) in [
            (&HKDF_SHA256, hkdf::HKDF_SHA256),
            (&HKDF_SHA384, hkdf::HKDF_SHA384),
        ] {
            let salt = [7u8; 48];
            let secret = b"a shared secret of some length";
            let info: [&[u8]; 3] = [b"\x00\x20", b"\x0dtls13 c hs traffic", b"\x20abc"];
            let prk = hkdf::Salt::new(theirs, &salt).extract(secret);
            let e = ours.extract_from_secret(Some(&salt), secret);
            for len in [12, 16, 32, 48, 100, 255] {
                struct L(usize);
                impl hkdf::KeyType for L {
                    fn len(&self) -> usize {
                        self.0
                    }
                }
                let mut want = vec![0u8; len];
                prk.expand(&info, L(len)).unwrap().fill(&mut want).unwrap();
                let mut got = vec![0u8; len];
                e.expand_slice(&info, &mut got).unwrap();
                assert_eq!(got, want, "length {len}");
            }
            assert!(e
                .expand_slice(&info, &mut vec![0u8; 255 * ours.len() + 1])
                .is_err());
        }
    }

    /// The precomputed early secret and its "derived" secret are RFC 8448 §3's (a full
    /// handshake), and they are what the same extract and expand give without the shortcut.
    #[test]
    fn zero_early_secret_is_rfc_8448_s() {
        let e = HKDF_SHA256.extract_from_zero_ikm(None);
        // As rustls' hkdf_expand_label splits it.
        let empty = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &[]);
        let info: [&[u8]; 6] = [
            b"\x00\x20",
            b"\x0d",
            b"tls13 ",
            b"derived",
            b"\x20",
            empty.as_ref(),
        ];
        let derived = e.expand_block(&info);
        let want = hex("6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba");
        assert_eq!(derived.as_ref(), &want[..]);
        let early = hex("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a");
        let mut other = [0u8; 32];
        e.expand_slice(&[b"other"], &mut other).unwrap();
        let plain = HKDF_SHA256.expander_for_okm(&OkmBlock::new(&early));
        let mut want_other = [0u8; 32];
        plain.expand_slice(&[b"other"], &mut want_other).unwrap();
        assert_eq!(other, want_other);
        assert_eq!(plain.expand_block(&info).as_ref(), &want[..]);
        for (ours, alg) in [
            (&HKDF_SHA256, hmac::HMAC_SHA256),
            (&HKDF_SHA384, hmac::HMAC_SHA384),
        ] {
            let n = ours.len();
            let prk = hmac::sign(&hmac::Key::new(alg, &[0u8; 48][..n]), &[0u8; 48][..n]);
            let fresh = ours.expander_for_okm(&OkmBlock::new(prk.as_ref()));
            let zero = ours.extract_from_zero_ikm(None);
            let info = [&ours.1.derived_info[..]];
            assert_eq!(
                zero.expand_block(&info).as_ref(),
                fresh.expand_block(&info).as_ref()
            );
        }
        assert!(joined_is(&[b"ab", b"", b"c"], b"abc"));
        assert!(!joined_is(&[b"ab"], b"abc") && !joined_is(&[b"abcd"], b"abc"));
    }

    #[test]
    fn keeps_the_default_suites_in_order_with_the_keyed_hkdf() {
        let ours = provider();
        let theirs = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ours), names(&theirs));
        let keyed = ours
            .cipher_suites
            .iter()
            .filter_map(|s| match s {
                SupportedCipherSuite::Tls13(t) => Some(t),
                _ => None,
            })
            .filter(|t| {
                [&HKDF_SHA256, &HKDF_SHA384]
                    .iter()
                    .any(|k| std::ptr::addr_eq(t.hkdf_provider, *k))
            })
            .count();
        assert_eq!(keyed, 3);
    }
}
