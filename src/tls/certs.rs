//! Certificate chains and private keys from PEM, checked at start-up so a bad file is one clear
//! line naming it, never a failed handshake later.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::route::HostMatch;

/// A PEM file and the name the user knows it by (the flag or config key), for messages.
#[derive(Clone, Copy, Debug)]
pub struct PemFile<'a> {
    pub label: &'a str,
    pub path: &'a Path,
}

/// Loads a chain from `cert` and its key from `key` (the two may be the same file, as with
/// `--pem`), and checks that the key belongs to the first certificate.
pub fn load(
    cert: PemFile<'_>,
    key: PemFile<'_>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let cert_pem = read(cert)?;
    let chain = parse_chain(cert, &cert_pem)?;
    let key_der = if key.path == cert.path {
        parse_key(key, &cert_pem)?
    } else {
        parse_key(key, &read(key)?)?
    };
    from_der(chain, key_der, provider).map_err(|cause| {
        format!(
            "{} {} and {} {}: {cause}",
            cert.label,
            cert.path.display(),
            key.label,
            key.path.display()
        )
    })
}

/// Builds a certified key from DER (used by `tern demo`, whose certificate never touches disk).
pub fn from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    match CertifiedKey::from_der(chain, key, provider) {
        Ok(ck) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("the private key does not belong to the certificate".into())
        }
        Err(e) => Err(format!("unusable key: {e}")),
    }
}

/// The DNS names (and wildcards) in a certificate's subject alternative names.
pub fn names(key: &CertifiedKey) -> Vec<HostMatch> {
    let Some(leaf) = key.cert.first() else {
        return Vec::new();
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return Vec::new();
    };
    cert.valid_dns_names()
        .filter_map(|n| HostMatch::parse(n).ok())
        .collect()
}

/// What an operator wants to know of a loaded certificate (for metrics): the names it covers
/// (DNS and IP subject alternative names, or the subject CN when it has none), when it expires
/// (notAfter, Unix seconds) and its key type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub names: Vec<String>,
    pub not_after: i64,
    pub key_type: &'static str,
}

/// Reads the leaf certificate of `key`. A certificate that got this far was accepted by rustls,
/// so a parse failure here is unexpected; it is reported rather than guessed around.
pub fn summary(key: &CertifiedKey) -> Result<CertSummary, String> {
    use x509_parser::extensions::GeneralName;
    let leaf = key.cert.first().ok_or("empty certificate chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_string()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_string),
        );
    }
    let key_type = match key.key.algorithm() {
        rustls::SignatureAlgorithm::ECDSA => "ecdsa",
        rustls::SignatureAlgorithm::RSA => "rsa",
        rustls::SignatureAlgorithm::ED25519 => "ed25519",
        rustls::SignatureAlgorithm::ED448 => "ed448",
        _ => "other",
    };
    Ok(CertSummary {
        names,
        not_after: cert.validity().not_after.timestamp(),
        key_type,
    })
}

/// Certificates by server name, for SNI. Immutable and shared by every worker; lookups are
/// two hash probes. A name no certificate covers gets the first certificate (the default).
#[derive(Debug)]
pub struct CertStore {
    keys: Vec<Arc<CertifiedKey>>,
    exact: HashMap<String, usize>,
    /// `.example.com` → certificate, for `*.example.com`.
    wildcard: HashMap<String, usize>,
}

impl CertStore {
    /// `entries`: each certificate with the names it serves; on overlaps the first wins.
    pub fn new(entries: Vec<(Arc<CertifiedKey>, Vec<HostMatch>)>) -> CertStore {
        let mut store = CertStore {
            keys: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, (key, names)) in entries.into_iter().enumerate() {
            store.keys.push(key);
            for name in names {
                match name {
                    HostMatch::Exact(n) => {
                        store.exact.entry(n).or_insert(i);
                    }
                    HostMatch::Wildcard(suffix) => {
                        store.wildcard.entry(suffix).or_insert(i);
                    }
                    HostMatch::Any => {}
                }
            }
        }
        store
    }

    /// One certificate for every name.
    pub fn single(key: Arc<CertifiedKey>) -> CertStore {
        CertStore::new(vec![(key, Vec::new())])
    }

    /// The certificate for a (lower-case) server name.
    pub fn select(&self, name: Option<&str>) -> usize {
        let Some(name) = name else { return 0 };
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        name.find('.')
            .and_then(|dot| self.wildcard.get(&name[dot..]))
            .copied()
            .unwrap_or(0)
    }

    pub fn key(&self, index: usize) -> &Arc<CertifiedKey> {
        &self.keys[index]
    }

    /// Every certificate, the default first.
    pub fn keys(&self) -> &[Arc<CertifiedKey>] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

// The file may hold a private key: keep it in a buffer that is wiped on drop.
fn read(file: PemFile<'_>) -> Result<Zeroizing<Vec<u8>>, String> {
    std::fs::read(file.path)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read {} {}: {e}", file.label, file.path.display()))
}

fn parse_chain(file: PemFile<'_>, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} {}: bad PEM: {e}", file.label, file.path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} {} holds no CERTIFICATE block",
            file.label,
            file.path.display()
        ));
    }
    Ok(chain)
}

fn parse_key(file: PemFile<'_>, pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::Error;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        Error::NoItemsFound => format!(
            "{} {} holds no private key (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
            file.label,
            file.path.display()
        ),
        e => format!("{} {}: bad PEM: {e}", file.label, file.path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        p
    }

    #[test]
    fn loads_separate_and_combined_pem_for_each_key_type() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let c = write(dir.path(), "c.pem", &cert.pem());
            let k = write(dir.path(), "k.pem", &key.serialize_pem());
            let both = write(
                dir.path(),
                "both.pem",
                &format!("{}{}", cert.pem(), key.serialize_pem()),
            );
            let ck = load(
                PemFile {
                    label: "--cert",
                    path: &c,
                },
                PemFile {
                    label: "--key",
                    path: &k,
                },
                &provider(),
            )
            .unwrap();
            assert_eq!(ck.cert.len(), 1);
            let pem = PemFile {
                label: "--pem",
                path: &both,
            };
            load(pem, pem, &provider()).unwrap();
        }
    }

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        from_der(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &provider(),
        )
        .unwrap()
    }

    #[test]
    fn sni_picks_the_certificate_that_names_the_host() {
        let a = key_for(&["a.example", "www.a.example"]);
        let b = key_for(&["*.b.example", "b.example"]);
        assert_eq!(
            names(&b),
            vec![
                HostMatch::Wildcard(".b.example".into()),
                HostMatch::Exact("b.example".into())
            ]
        );
        let store = CertStore::new(vec![(a.clone(), names(&a)), (b.clone(), names(&b))]);
        assert_eq!(store.select(Some("a.example")), 0);
        assert_eq!(store.select(Some("www.a.example")), 0);
        assert_eq!(store.select(Some("b.example")), 1);
        assert_eq!(store.select(Some("shop.b.example")), 1);
        assert_eq!(
            store.select(Some("deep.shop.b.example")),
            0,
            "wildcards cover one label"
        );
        assert_eq!(
            store.select(Some("unknown.org")),
            0,
            "the first certificate is the default"
        );
        assert_eq!(store.select(None), 0);
        assert!(Arc::ptr_eq(store.key(1), &b));
    }

    #[test]
    fn summary_reads_names_expiry_and_key_type() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".into(), "127.0.0.1".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 4);
        let cert = params.self_signed(&key).unwrap();
        let ck = from_der(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &provider(),
        )
        .unwrap();
        let s = summary(&ck).unwrap();
        assert_eq!(s.names, ["a.example", "127.0.0.1"]);
        assert_eq!(s.not_after, 1_935_619_200, "2031-05-04T00:00:00Z");
        assert_eq!(s.key_type, "ed25519");
        assert_eq!(summary(&key_for(&["x.example"])).unwrap().key_type, "ecdsa");
    }

    #[test]
    fn errors_name_the_flag_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = write(dir.path(), "c.pem", &cert.pem());
        let k = write(dir.path(), "k.pem", &key.serialize_pem());
        let wrong = write(dir.path(), "wrong.pem", &other.serialize_pem());
        let junk = write(dir.path(), "junk.pem", "hello\n");
        let missing = dir.path().join("missing.pem");
        let f = |label, path| PemFile { label, path };

        let e = load(f("--cert", &missing), f("--key", &k), &provider()).unwrap_err();
        assert!(
            e.starts_with("cannot read --cert") && e.contains("missing.pem"),
            "{e}"
        );
        let e = load(f("--cert", &junk), f("--key", &k), &provider()).unwrap_err();
        assert!(e.contains("--cert") && e.contains("no CERTIFICATE"), "{e}");
        let e = load(f("--cert", &c), f("--key", &junk), &provider()).unwrap_err();
        assert!(e.contains("--key") && e.contains("no private key"), "{e}");
        let e = load(f("--cert", &c), f("--key", &wrong), &provider()).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
    }
}
