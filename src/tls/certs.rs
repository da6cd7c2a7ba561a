//! Certificate chains and private keys from PEM, checked at start-up so a bad file is one clear
//! line naming it, never a failed handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

pub use super::store::{CertEntry, CertStore};
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

/// One certificate to load: its chain and key files, how the user named them, and optionally
/// an OCSP response to staple and names that replace the certificate's own.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub cert: (String, PathBuf),
    pub key: (String, PathBuf),
    /// An OCSP response file given for it.
    pub ocsp: Option<(String, PathBuf)>,
    /// Without an explicit one, staple `<cert file>.ocsp` when that file exists (HAProxy's
    /// convention, so a directory of certificates brings its responses along).
    pub ocsp_beside: bool,
    pub names: Option<Vec<HostMatch>>,
    /// The label of this certificate in messages.
    pub source: String,
    /// The client certificates its handshakes ask for (mTLS).
    pub client_auth: Option<Arc<super::client_auth::ClientAuth>>,
}

impl CertSpec {
    /// A certificate from `--cert`/`--key` or one combined PEM file.
    pub fn files(cert: (String, PathBuf), key: (String, PathBuf)) -> CertSpec {
        let source = format!("{} {}", cert.0, cert.1.display());
        CertSpec {
            cert,
            key,
            ocsp: None,
            ocsp_beside: true,
            names: None,
            source,
            client_auth: None,
        }
    }
}

/// Loads many certificates, spread over the CPUs (10,000 certificates load in seconds, not
/// minutes); the result keeps the order of `specs`. The first failure, in order, is returned.
pub fn load_all(specs: &[CertSpec], provider: &CryptoProvider) -> Result<Vec<CertEntry>, String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(specs.len().div_ceil(64))
        .max(1);
    let chunk = specs.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<CertEntry>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| load_spec(s, provider)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("certificate loader panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(specs.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn load_spec(spec: &CertSpec, provider: &CryptoProvider) -> Result<CertEntry, String> {
    let file = |(label, path): &(String, PathBuf)| (label.clone(), path.clone());
    let (cl, cp) = file(&spec.cert);
    let (kl, kp) = file(&spec.key);
    let mut key = load(
        PemFile {
            label: &cl,
            path: &cp,
        },
        PemFile {
            label: &kl,
            path: &kp,
        },
        provider,
    )?;
    let ocsp = match &spec.ocsp {
        Some((label, path)) => Some(read_ocsp(label, path)?),
        None if spec.ocsp_beside => {
            let mut beside = cp.clone().into_os_string();
            beside.push(".ocsp");
            let beside = PathBuf::from(beside);
            match beside.exists() {
                true => Some(read_ocsp("OCSP response", &beside)?),
                false => None,
            }
        }
        None => None,
    };
    if let Some(ocsp) = ocsp {
        let mut ck = (*key).clone();
        ck.ocsp = Some(ocsp);
        key = Arc::new(ck);
    }
    let names = match &spec.names {
        Some(n) => n.clone(),
        None => names(&key),
    };
    Ok(CertEntry {
        key,
        names,
        source: spec.source.clone(),
        client_auth: spec.client_auth.clone(),
    })
}

/// An OCSP response (DER) to staple. Only its outer shape is checked — a DER `OCSPResponse`
/// whose status is `successful` — since the client verifies the rest.
pub fn read_ocsp(label: &str, path: &Path) -> Result<Vec<u8>, String> {
    let der =
        std::fs::read(path).map_err(|e| format!("cannot read {label} {}: {e}", path.display()))?;
    match ocsp_status(&der) {
        Some(0) => Ok(der),
        Some(s) => Err(format!(
            "{label} {}: the OCSP response status is {s}, not successful (0)",
            path.display()
        )),
        None => Err(format!(
            "{label} {}: not a DER OCSP response",
            path.display()
        )),
    }
}

/// `OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, ... }`: the status, if `der` has
/// that shape and its outer length is exact.
fn ocsp_status(der: &[u8]) -> Option<u8> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, body) = der_len(rest)?;
    if body.len() != len {
        return None;
    }
    match body {
        [0x0a, 0x01, status, ..] => Some(*status),
        _ => None,
    }
}

/// A DER definite length and what follows it.
fn der_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = b.split_first()?;
    if first < 0x80 {
        return Some((first as usize, rest));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 || rest.len() < n {
        return None;
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    Some((len, &rest[n..]))
}

/// The `*.pem` files of a directory, sorted by name (so the default, the first, is stable).
pub fn pem_files_in(label: &str, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {label} {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in read {
        let path = entry
            .map_err(|e| format!("cannot read {label} {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|x| x == "pem") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{label} {}: no *.pem file in this directory",
            dir.display()
        ));
    }
    Ok(files)
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
        .map_err(|e| bad_pem(file, &e))?;
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
        e => bad_pem(file, &e),
    })
}

/// A PEM refusal without the file's content. rustls-pki-types puts a malformed BEGIN line
/// into its error whole, and a key stored with escaped newlines (`-----BEGIN PRIVATE
/// KEY-----\nMIIE...`, as from JSON or an environment variable) is one such line: its
/// message would print the key. The file may be a key (or a `--pem` holding one), so only
/// the kind of fault is said.
fn bad_pem(file: PemFile<'_>, e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let what = match e {
        Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line",
        Error::IllegalSectionStart { .. } => {
            "a BEGIN line is malformed (expected -----BEGIN <LABEL>----- alone on its line)"
        }
        Error::Base64Decode(_) => "a block is not valid base64",
        Error::SectionTooLarge => "a block is too large",
        _ => "unreadable",
    };
    format!("{} {}: bad PEM: {what}", file.label, file.path.display())
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
        let ec = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.example".into()])
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        let ck = from_der(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ec.serialize_der().into()),
            &provider(),
        )
        .unwrap();
        assert_eq!(summary(&ck).unwrap().key_type, "ecdsa");
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

    #[test]
    fn a_malformed_key_file_is_refused_without_printing_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = key.serialize_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let c = write(dir.path(), "c.pem", &cert.pem());
        let f = |label, path| PemFile { label, path };
        // Newlines escaped as in JSON: one line that starts like a BEGIN line.
        let escaped = write(dir.path(), "escaped.pem", &pem.replace('\n', "\\n"));
        // A BEGIN line with no END.
        let cut = write(dir.path(), "cut.pem", &pem[..pem.len() / 2]);
        // The combined form, key first and malformed, read for the chain.
        let both = write(
            dir.path(),
            "both.pem",
            &format!("{}{}", pem.replace('\n', "\\n"), cert.pem()),
        );
        for (cert_file, key_file) in [
            (f("--cert", &c), f("--key", &escaped)),
            (f("--cert", &c), f("--key", &cut)),
            (f("--pem", &both), f("--pem", &both)),
        ] {
            let e = load(cert_file, key_file, &provider()).unwrap_err();
            assert!(e.contains("bad PEM") || e.contains("no private key"), "{e}");
            // Neither the base64 text nor its bytes (pki-types prints lines as byte lists).
            assert!(!e.contains(&body[..16]), "{e}");
            let first_bytes = format!("{:?}", &body.as_bytes()[..8]);
            assert!(!e.contains(&first_bytes[1..first_bytes.len() - 1]), "{e}");
            assert!(e.len() < 200, "{e}");
        }
    }
}
