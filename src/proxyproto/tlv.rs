//! The TLVs (type-length-value) after a v2 address block: the ones tern reads or sends are
//! kept, others are skipped. Every length is checked against what encloses it, and a
//! registered TLV that appears twice is refused rather than letting one copy win silently.

use super::Error;

pub const PP2_TYPE_ALPN: u8 = 0x01;
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_CRC32C: u8 = 0x03;
pub const PP2_TYPE_NOOP: u8 = 0x04;
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
pub const PP2_TYPE_NETNS: u8 = 0x30;

/// PP2_CLIENT_SSL: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// PP2_CLIENT_CERT_CONN: the client presented a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// PP2_CLIENT_CERT_SESS: the client presented a certificate at least once in the TLS session.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// The spec caps PP2_TYPE_UNIQUE_ID at 128 bytes.
pub const MAX_UNIQUE_ID: usize = 128;

/// The TLVs of a v2 header that tern knows. Strings are UTF-8 (the spec says US-ASCII or
/// UTF-8 for every one of them), ALPN and the unique ID are opaque bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// PP2_TYPE_ALPN: the negotiated application protocol, e.g. `h2`.
    pub alpn: Option<Vec<u8>>,
    /// PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI).
    pub authority: Option<String>,
    /// PP2_TYPE_UNIQUE_ID: an opaque connection ID of at most 128 bytes.
    pub unique_id: Option<Vec<u8>>,
    /// PP2_TYPE_SSL and its sub-TLVs.
    pub ssl: Option<Ssl>,
    /// PP2_TYPE_NETNS: the name of the network namespace.
    pub netns: Option<String>,
    /// Parsing: the header carried a PP2_TYPE_CRC32C checksum, and it matched. Encoding: add
    /// one.
    pub crc32c: bool,
}

/// PP2_TYPE_SSL: how the client spoke TLS to the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssl {
    /// PP2_CLIENT_* bits.
    pub client: u8,
    /// 0 when the client presented a certificate and it was verified, non-zero otherwise.
    pub verify: u32,
    /// PP2_SUBTYPE_SSL_VERSION, e.g. `TLSv1.3`.
    pub version: Option<String>,
    /// PP2_SUBTYPE_SSL_CN: the common name of the client certificate's subject.
    pub cn: Option<String>,
    /// PP2_SUBTYPE_SSL_CIPHER, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher: Option<String>,
    /// PP2_SUBTYPE_SSL_SIG_ALG: the algorithm that signed the proxy's own certificate.
    pub sig_alg: Option<String>,
    /// PP2_SUBTYPE_SSL_KEY_ALG: the key algorithm of the proxy's own certificate.
    pub key_alg: Option<String>,
}

impl Ssl {
    /// What tern sends for a client connection it terminated: PP2_CLIENT_SSL with the
    /// protocol version and cipher suite, and `verify` non-zero (no verified certificate yet;
    /// see `with_verified_client`). The spec asks for non-zero here; HAProxy sends 0 when the
    /// client presented no certificate, so receivers should look at the CERT bits first.
    pub fn terminated(version: &str, cipher: &str) -> Ssl {
        Ssl {
            client: PP2_CLIENT_SSL,
            verify: 1,
            version: Some(version.to_owned()),
            cipher: Some(cipher.to_owned()),
            ..Ssl::default()
        }
    }

    /// The client presented a certificate on this connection and it was verified: sets
    /// PP2_CLIENT_CERT_CONN and PP2_CLIENT_CERT_SESS (a certificate seen on this connection
    /// was also seen in its session, as HAProxy reports it), `verify` 0, and the subject's
    /// common name when it has one.
    pub fn with_verified_client(mut self, cn: Option<&str>) -> Ssl {
        self.client |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
        self.verify = 0;
        self.cn = cn.map(str::to_owned);
        self
    }

    pub fn is_tls(&self) -> bool {
        self.client & PP2_CLIENT_SSL != 0
    }

    /// The client presented a certificate on this connection and the proxy verified it.
    pub fn client_verified(&self) -> bool {
        self.client & PP2_CLIENT_CERT_CONN != 0 && self.verify == 0
    }
}

/// One TLV: its type, where its value starts in the slice it was read from, and the value.
struct Item<'a> {
    kind: u8,
    at: usize,
    value: &'a [u8],
}

/// The TLVs of `bytes`, each bounds-checked: `short` is the error for bytes too few for a
/// type and length, `past` for a value running past the end.
fn items<'a>(
    bytes: &'a [u8],
    short: &'static str,
    past: &'static str,
) -> impl Iterator<Item = Result<Item<'a>, Error>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == bytes.len() {
            return None;
        }
        let Some(&[kind, hi, lo]) = bytes.get(at..at + 3) else {
            at = bytes.len();
            return Some(Err(Error::Tlv(short)));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let start = at + 3;
        let Some(value) = bytes.get(start..start + len) else {
            at = bytes.len();
            return Some(Err(Error::Tlv(past)));
        };
        at = start + len;
        Some(Ok(Item {
            kind,
            at: start,
            value,
        }))
    })
}

fn once<T>(slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::Tlv(what));
    }
    *slot = Some(value);
    Ok(())
}

fn text(value: &[u8], what: &'static str) -> Result<String, Error> {
    match std::str::from_utf8(value) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(Error::Tlv(what)),
    }
}

/// The TLVs in `bytes` (what follows the address block), and where the value of a checksum
/// TLV starts (relative to `bytes`) with the checksum it carries, for the caller to verify.
pub(super) fn parse(bytes: &[u8]) -> Result<(Tlvs, Option<(usize, u32)>), Error> {
    let mut tlvs = Tlvs::default();
    let mut crc = None;
    for item in items(bytes, "a TLV cut short", "a TLV past the end of the header") {
        let Item { kind, at, value } = item?;
        match kind {
            PP2_TYPE_ALPN => once(&mut tlvs.alpn, value.to_vec(), "two ALPN TLVs")?,
            PP2_TYPE_AUTHORITY => {
                let s = text(value, "AUTHORITY is not UTF-8")?;
                once(&mut tlvs.authority, s, "two AUTHORITY TLVs")?
            }
            PP2_TYPE_CRC32C => {
                let Ok(sum) = <[u8; 4]>::try_from(value) else {
                    return Err(Error::Tlv("a CRC32C TLV not 4 bytes long"));
                };
                once(&mut crc, (at, u32::from_be_bytes(sum)), "two CRC32C TLVs")?
            }
            PP2_TYPE_UNIQUE_ID => {
                if value.len() > MAX_UNIQUE_ID {
                    return Err(Error::Tlv("a UNIQUE_ID over 128 bytes"));
                }
                once(&mut tlvs.unique_id, value.to_vec(), "two UNIQUE_ID TLVs")?
            }
            PP2_TYPE_SSL => once(&mut tlvs.ssl, parse_ssl(value)?, "two SSL TLVs")?,
            PP2_TYPE_NETNS => {
                let s = text(value, "NETNS is not UTF-8")?;
                once(&mut tlvs.netns, s, "two NETNS TLVs")?
            }
            // NOOP is padding; unregistered and custom types are for others.
            _ => {}
        }
    }
    tlvs.crc32c = crc.is_some();
    Ok((tlvs, crc))
}

fn parse_ssl(value: &[u8]) -> Result<Ssl, Error> {
    let Some((&client, rest)) = value.split_first() else {
        return Err(Error::Tlv("an SSL TLV shorter than 5 bytes"));
    };
    let Some((verify, subs)) = rest.split_first_chunk::<4>() else {
        return Err(Error::Tlv("an SSL TLV shorter than 5 bytes"));
    };
    let mut ssl = Ssl {
        client,
        verify: u32::from_be_bytes(*verify),
        ..Ssl::default()
    };
    for item in items(
        subs,
        "an SSL sub-TLV cut short",
        "an SSL sub-TLV past its SSL TLV",
    ) {
        let Item { kind, value, .. } = item?;
        let (slot, what, dup) = match kind {
            PP2_SUBTYPE_SSL_VERSION => (
                &mut ssl.version,
                "SSL_VERSION is not UTF-8",
                "two SSL_VERSION sub-TLVs",
            ),
            PP2_SUBTYPE_SSL_CN => (&mut ssl.cn, "SSL_CN is not UTF-8", "two SSL_CN sub-TLVs"),
            PP2_SUBTYPE_SSL_CIPHER => (
                &mut ssl.cipher,
                "SSL_CIPHER is not UTF-8",
                "two SSL_CIPHER sub-TLVs",
            ),
            PP2_SUBTYPE_SSL_SIG_ALG => (
                &mut ssl.sig_alg,
                "SSL_SIG_ALG is not UTF-8",
                "two SSL_SIG_ALG sub-TLVs",
            ),
            PP2_SUBTYPE_SSL_KEY_ALG => (
                &mut ssl.key_alg,
                "SSL_KEY_ALG is not UTF-8",
                "two SSL_KEY_ALG sub-TLVs",
            ),
            // Newer sub-types (HAProxy 2.9 sends the key exchange group, 0x26, and the
            // signature scheme, 0x27) and unregistered ones.
            _ => continue,
        };
        once(slot, text(value, what)?, dup)?;
    }
    Ok(ssl)
}

/// The value is too long for a TLV's 16-bit length, or the spec's cap on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong(pub &'static str);

fn put(out: &mut Vec<u8>, kind: u8, value: &[u8], what: &'static str) -> Result<(), TooLong> {
    let len = u16::try_from(value.len()).map_err(|_| TooLong(what))?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Appends the TLVs to `out`; with `tlvs.crc32c`, a zeroed checksum TLV comes first and the
/// offset of its value in `out` is returned, for the caller to fill in once the header is
/// whole. On error `out` may hold part of the TLVs: the caller truncates it.
pub(super) fn write(tlvs: &Tlvs, out: &mut Vec<u8>) -> Result<Option<usize>, TooLong> {
    let crc_at = tlvs.crc32c.then(|| out.len() + 3);
    if tlvs.crc32c {
        put(out, PP2_TYPE_CRC32C, &[0; 4], "CRC32C")?;
    }
    if let Some(v) = &tlvs.alpn {
        put(out, PP2_TYPE_ALPN, v, "ALPN")?;
    }
    if let Some(v) = &tlvs.authority {
        put(out, PP2_TYPE_AUTHORITY, v.as_bytes(), "AUTHORITY")?;
    }
    if let Some(v) = &tlvs.unique_id {
        if v.len() > MAX_UNIQUE_ID {
            return Err(TooLong("UNIQUE_ID (128 bytes at most)"));
        }
        put(out, PP2_TYPE_UNIQUE_ID, v, "UNIQUE_ID")?;
    }
    if let Some(ssl) = &tlvs.ssl {
        let start = out.len();
        out.extend_from_slice(&[PP2_TYPE_SSL, 0, 0, ssl.client]);
        out.extend_from_slice(&ssl.verify.to_be_bytes());
        // HAProxy's order, so that the same facts give the same bytes.
        let subs = [
            (PP2_SUBTYPE_SSL_VERSION, &ssl.version),
            (PP2_SUBTYPE_SSL_CN, &ssl.cn),
            (PP2_SUBTYPE_SSL_KEY_ALG, &ssl.key_alg),
            (PP2_SUBTYPE_SSL_SIG_ALG, &ssl.sig_alg),
            (PP2_SUBTYPE_SSL_CIPHER, &ssl.cipher),
        ];
        for (kind, v) in subs {
            if let Some(v) = v {
                put(out, kind, v.as_bytes(), "an SSL sub-TLV")?;
            }
        }
        let len = u16::try_from(out.len() - start - 3).map_err(|_| TooLong("SSL"))?;
        out[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
    }
    if let Some(v) = &tlvs.netns {
        put(out, PP2_TYPE_NETNS, v.as_bytes(), "NETNS")?;
    }
    Ok(crc_at)
}
