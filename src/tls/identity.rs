//! The client's identity after a handshake with client authentication: read once per
//! handshake from the leaf certificate rustls verified, in the forms a backend and an access log
//! want — the subject as an RFC 4514 string, the SHA-256 fingerprint of the leaf's DER, its
//! common name, and its URI and DNS subject alternative names.
//!
//! The subject string is all printable ASCII: on top of RFC 4514's own escapes, every byte
//! outside `0x21..=0x7e` (control characters, DEL, the bytes of non-ASCII UTF-8, and a space
//! at either end) is written as `\XX`, which RFC 4514 §2.4 allows for any character. So it can
//! go into an HTTP header or a log line as it is, and an RFC 4514 parser reads the same name
//! back.

use std::fmt::Write;

use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// What the connection's handshake established about a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientCert {
    /// The server did not ask for one (no client CA configured for this certificate).
    #[default]
    NotRequested,
    /// Asked for (`optional`), and the client sent none.
    Absent,
    /// The client sent one and it verified against the configured CA (and CRLs). There is no
    /// "presented but unverified" state: rustls refuses such a handshake.
    Verified(Box<ClientIdentity>),
}

impl ClientCert {
    pub fn verified(&self) -> Option<&ClientIdentity> {
        match self {
            ClientCert::Verified(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// RFC 4514, most significant RDN last (`CN=alice,O=Example,C=DE`), as nginx's
    /// `$ssl_client_s_dn`; printable ASCII only (see the module notes). Empty if the
    /// certificate could not be parsed (it still verified: webpki is the judge).
    pub subject: String,
    /// SHA-256 of the leaf certificate's DER.
    pub fingerprint_sha256: [u8; 32],
    /// The (first) common name, as written in the certificate (not escaped: quote it when
    /// logging).
    pub cn: Option<String>,
    /// URI subject alternative names (SPIFFE IDs, for example).
    pub uris: Vec<String>,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
}

impl ClientIdentity {
    /// Reads the identity of a verified leaf certificate (DER).
    pub fn from_der(leaf: &[u8]) -> ClientIdentity {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
        let mut fingerprint_sha256 = [0u8; 32];
        fingerprint_sha256.copy_from_slice(digest.as_ref());
        let mut id = ClientIdentity {
            subject: String::new(),
            fingerprint_sha256,
            cn: None,
            uris: Vec::new(),
            dns: Vec::new(),
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
            return id;
        };
        id.subject = rfc4514(cert.subject());
        id.cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| value_text(cn.attr_value()));
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => id.uris.push(u.to_string()),
                    GeneralName::DNSName(d) => id.dns.push(d.to_string()),
                    _ => {}
                }
            }
        }
        id
    }

    /// The fingerprint as 64 lower-case hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint_sha256)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Short names RFC 4514 §3 defines, and the few more OpenSSL prints by name (so the string
/// matches what nginx and HAProxy hand their backends).
fn short_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "2.5.4.5" => "serialNumber",
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GN",
        "2.5.4.12" => "title",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// A name as an RFC 4514 string: RDNs last to first, separated by `,`; the attributes of a
/// multi-valued RDN by `+`.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(atv, &mut out);
        }
    }
    out
}

fn attribute(atv: &AttributeTypeAndValue<'_>, out: &mut String) {
    let dotted = atv.attr_type().to_id_string();
    let value = atv.attr_value();
    match (short_name(&dotted), value_text(value)) {
        (Some(short), Some(text)) => {
            out.push_str(short);
            out.push('=');
            escape_value(&text, out);
        }
        // RFC 4514 §2.4: a type without a short name, or a value that is not a string, is
        // `#` and the hex of the value's BER encoding.
        (short, _) => {
            out.push_str(short.unwrap_or(&dotted));
            out.push('=');
            out.push('#');
            out.push_str(&hex(&der_of(value)));
        }
    }
}

/// The text of a string-typed attribute value; `None` for other types (or broken encodings).
fn value_text(v: &Any<'_>) -> Option<String> {
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_string),
        // T.61 in practice carries Latin-1 (as OpenSSL reads it).
        Tag::TeletexString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString if data.len() % 4 == 0 => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// The DER of a value, rebuilt from its header and content (universal tags are below 31, so
/// one identifier byte).
fn der_of(v: &Any<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.data.len() + 6);
    let class = match v.class() {
        Class::Universal => 0x00,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed = if v.header.constructed() { 0x20 } else { 0 };
    out.push(class | constructed | (v.tag().0.min(30) as u8));
    let len = v.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(v.data);
    out
}

/// RFC 4514 §2.4 escaping, plus `\XX` for every byte that is not printable ASCII (and for a
/// space at either end, where `\ ` would leave a space a header parser trims).
fn escape_value(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b' ' if i == 0 || i == last => out.push_str("\\20"),
            b'#' if i == 0 => out.push_str("\\#"),
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: rcgen::DistinguishedName, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_fingerprint_cn_and_sans() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::CommonName, "alice");
        let der = cert_with(
            dn,
            vec![
                rcgen::SanType::URI("spiffe://example.org/alice".try_into().unwrap()),
                rcgen::SanType::DnsName("alice.example.org".try_into().unwrap()),
            ],
        );
        let id = ClientIdentity::from_der(&der);
        assert_eq!(id.subject, "CN=alice,O=Example\\, Inc.,C=DE");
        assert_eq!(id.cn.as_deref(), Some("alice"));
        assert_eq!(id.uris, ["spiffe://example.org/alice"]);
        assert_eq!(id.dns, ["alice.example.org"]);
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        assert_eq!(&id.fingerprint_sha256[..], want.as_ref());
        let hex = id.fingerprint_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn control_characters_and_non_ascii_are_escaped() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "x\r\nX-Evil: 1\0 ");
        dn.push(rcgen::DnType::OrganizationName, " Zürich#;\"\\");
        let id = ClientIdentity::from_der(&cert_with(dn, vec![]));
        assert_eq!(
            id.subject,
            "O=\\20Z\\C3\\BCrich#\\;\\\"\\\\,CN=x\\0D\\0AX-Evil: 1\\00\\20"
        );
        assert!(id.subject.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(
            id.cn.as_deref(),
            Some("x\r\nX-Evil: 1\0 "),
            "the CN itself is raw"
        );
    }

    #[test]
    fn leading_hash_and_unknown_types() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "#1");
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
            rcgen::DnValue::PrintableString("ab".try_into().unwrap()),
        );
        let id = ClientIdentity::from_der(&cert_with(dn, vec![]));
        // PrintableString "ab": tag 0x13, length 2.
        assert_eq!(id.subject, "1.3.6.1.4.1.99999.1=#13026162,CN=\\#1");
    }

    #[test]
    fn an_unparsable_certificate_still_has_its_fingerprint() {
        let id = ClientIdentity::from_der(b"not a certificate");
        assert_eq!(id.subject, "");
        assert_eq!(id.cn, None);
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"not a certificate");
        assert_eq!(&id.fingerprint_sha256[..], want.as_ref());
    }
}
