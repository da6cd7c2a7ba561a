//! Client certificates (mTLS): the CA a client certificate must chain to, the revocation lists
//! that refuse some, and whether a certificate is required or only asked for — as HAProxy's
//! `ca-file` / `crl-file` / `verify required|optional` and nginx's `ssl_client_certificate` /
//! `ssl_crl` / `ssl_verify_client on|optional`.
//!
//! Loaded (and checked) on the control thread with everything else a reload replaces, so
//! SIGHUP reads the CA and CRL files again. The verifier is immutable and shared by every
//! worker's server config.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Whether a handshake without a client certificate goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuthMode {
    /// No certificate, no connection (TLS 1.3 `certificate_required`).
    Required,
    /// Asked for; a client without one is let through (and marked so), one with a bad one is
    /// still refused.
    Optional,
}

impl ClientAuthMode {
    /// `required` (nginx's `on` too) or `optional`.
    pub fn parse(s: &str) -> Result<ClientAuthMode, String> {
        match s {
            "required" | "on" => Ok(ClientAuthMode::Required),
            "optional" => Ok(ClientAuthMode::Optional),
            other => Err(format!("'{other}' must be required or optional")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuthMode::Required => "required",
            ClientAuthMode::Optional => "optional",
        }
    }
}

/// A file named by a flag or config key, for messages (`--client-ca ca.pem`,
/// `tern.toml:7: client_ca ca.pem`).
#[derive(Debug, Clone)]
pub struct Named {
    pub label: String,
    pub path: PathBuf,
}

impl Named {
    pub fn new(label: impl Into<String>, path: impl Into<PathBuf>) -> Named {
        Named {
            label: label.into(),
            path: path.into(),
        }
    }

    fn shown(&self) -> String {
        format!("{} {}", self.label, self.path.display())
    }
}

/// One client-authentication setting: immutable, shared by the certificates that use it.
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    verifier: Arc<dyn ClientCertVerifier>,
    /// SHA-256 over the mode, the CA certificates and the CRLs: two settings with the same
    /// context are the same setting. Session tickets and the TLS 1.2 session cache are kept
    /// apart per context, so a session set up under one CA (or before a CRL update) never
    /// resumes under another — resumption does not verify the certificate again.
    context: [u8; 32],
    /// How the user knows it, for messages.
    pub source: String,
    /// CA certificates and CRLs loaded (for the start-up report).
    pub cas: usize,
    pub crls: usize,
    /// The CA and CRL files it was read from (the sandbox lets a reload read them again).
    pub files: Vec<PathBuf>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("mode", &self.mode)
            .field("source", &self.source)
            .field("cas", &self.cas)
            .field("crls", &self.crls)
            .finish()
    }
}

impl ClientAuth {
    /// Reads the CA file (PEM, one or more certificates) and the CRL files (PEM or DER), and
    /// builds the verifier. Errors are one line naming the flag (or config line) and the file.
    pub fn load(
        ca: &Named,
        crls: &[Named],
        mode: ClientAuthMode,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ClientAuth, String> {
        let pem =
            std::fs::read(&ca.path).map_err(|e| format!("cannot read {}: {e}", ca.shown()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", ca.shown()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no CERTIFICATE block", ca.shown()));
        }
        let mut lists = Vec::new();
        for crl in crls {
            lists.extend(read_crls(crl)?);
        }
        let mut auth = ClientAuth::from_der(certs, lists, mode, ca.shown(), provider)?;
        auth.files = std::iter::once(&ca.path)
            .chain(crls.iter().map(|c| &c.path))
            .cloned()
            .collect();
        tracing::info!(
            "client certificates {}: {} ({} CA certificate(s), {} revocation list(s))",
            mode.name(),
            auth.source,
            auth.cas,
            auth.crls
        );
        Ok(auth)
    }

    /// The setting for these CA certificates and revocation lists; `source` names them in
    /// messages.
    pub fn from_der(
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        mode: ClientAuthMode,
        source: String,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ClientAuth, String> {
        let mut roots = RootCertStore::empty();
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(b"tern client auth v1");
        context.update(mode.name().as_bytes());
        for (i, c) in cas.iter().enumerate() {
            roots
                .add(c.clone())
                .map_err(|e| format!("{source}: certificate {}: {e}", i + 1))?;
            context.update(&(c.len() as u64).to_be_bytes());
            context.update(c);
        }
        for der in &crls {
            context.update(b"crl");
            context.update(&(der.len() as u64).to_be_bytes());
            context.update(der);
        }
        let count = crls.len();
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(crls)
                // As OpenSSL (nginx, HAProxy) does: a CRL past its nextUpdate refuses the
                // certificates it covers, rather than be trusted forever.
                .enforce_revocation_expiration();
        if mode == ClientAuthMode::Optional {
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder.build().map_err(|e| format!("{source}: {e}"))?;
        let digest = context.finish();
        let mut ctx = [0u8; 32];
        ctx.copy_from_slice(digest.as_ref());
        Ok(ClientAuth {
            mode,
            verifier,
            context: ctx,
            source,
            cas: cas.len(),
            crls: count,
            files: Vec::new(),
        })
    }

    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    pub fn context(&self) -> &[u8; 32] {
        &self.context
    }
}

/// Two settings are the same when they trust the same CAs, refuse the same certificates and
/// have the same mode (however they were named).
impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context
    }
}

impl Eq for ClientAuth {}

/// The lists in one CRL file: PEM (one or more `X509 CRL` blocks) or DER, each checked here so
/// a bad one is refused naming its file. One past its nextUpdate is loaded with a warning: it
/// refuses every certificate it covers until a fresh one is reloaded.
fn read_crls(crl: &Named) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes =
        std::fs::read(&crl.path).map_err(|e| format!("cannot read {}: {e}", crl.shown()))?;
    let lists: Vec<CertificateRevocationListDer<'static>> = if looks_like_pem(&bytes) {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", crl.shown()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if lists.is_empty() {
        return Err(format!("{} holds no X509 CRL block", crl.shown()));
    }
    for (i, l) in lists.iter().enumerate() {
        webpki::OwnedCertRevocationList::from_der(l).map_err(|e| {
            let which = if lists.len() > 1 {
                format!(" (list {})", i + 1)
            } else {
                String::new()
            };
            format!(
                "{}{which}: not a certificate revocation list: {e:?}",
                crl.shown()
            )
        })?;
        if let Some(at) = expired_at(l) {
            tracing::warn!(
                "{}: the revocation list expired at {at} (nextUpdate): the client \
                 certificates it covers are refused until a fresh one is loaded",
                crl.shown()
            );
        }
    }
    Ok(lists)
}

/// The nextUpdate of a CRL, when it is in the past.
fn expired_at(der: &[u8]) -> Option<String> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let next = crl.next_update()?;
    let now = x509_parser::time::ASN1Time::now();
    (next < now).then(|| next.to_string())
}

/// PEM, possibly after some text (openssl's `-text` output puts it first); DER otherwise.
fn looks_like_pem(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"-----BEGIN").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    fn crl(
        issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ) -> rcgen::CertificateRevocationList {
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap()
    }

    #[test]
    fn loads_pem_and_der_lists_and_tells_settings_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let ca_pem = write(dir.path(), "ca.pem", ca.pem().as_bytes());
        let list = crl(&ca);
        let pem = write(dir.path(), "l.pem", list.pem().unwrap().as_bytes());
        let der = write(dir.path(), "l.der", list.der());
        let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let load = |crls: &[&PathBuf], mode| {
            let crls: Vec<Named> = crls
                .iter()
                .map(|c| Named::new("--client-crl", *c))
                .collect();
            ClientAuth::load(&Named::new("--client-ca", &ca_pem), &crls, mode, &p).unwrap()
        };
        let a = load(&[&pem], ClientAuthMode::Required);
        assert_eq!((a.cas, a.crls), (1, 1));
        assert!(
            a == load(&[&der], ClientAuthMode::Required),
            "same list, PEM or DER"
        );
        assert!(a != load(&[], ClientAuthMode::Required), "another list");
        assert!(a != load(&[&pem], ClientAuthMode::Optional), "another mode");
    }

    #[test]
    fn bad_files_are_one_line_naming_flag_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca = ca();
        let good = write(dir.path(), "ca.pem", ca.pem().as_bytes());
        let empty = write(dir.path(), "empty.pem", b"nothing here\n");
        let junk = write(dir.path(), "junk.crl", b"\x30\x03\x02\x01\x01");
        let missing = dir.path().join("missing.pem");
        let load = |ca: &PathBuf, crls: &[&PathBuf]| {
            let crls: Vec<Named> = crls
                .iter()
                .map(|c| Named::new("--client-crl", *c))
                .collect();
            ClientAuth::load(
                &Named::new("--client-ca", ca),
                &crls,
                ClientAuthMode::Required,
                &p,
            )
            .unwrap_err()
        };
        let e = load(&missing, &[]);
        assert!(
            e.starts_with("cannot read --client-ca ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = load(&empty, &[]);
        assert!(
            e.contains("--client-ca") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = load(&good, &[&junk]);
        assert!(
            e.starts_with("--client-crl ") && e.contains("junk.crl"),
            "{e}"
        );
        let e = load(&good, &[&good]);
        assert!(
            e.contains("--client-crl") && e.contains("no X509 CRL"),
            "{e}"
        );
        let e = load(&good, &[&empty]);
        assert!(
            e.contains("empty.pem: not a certificate revocation list"),
            "{e}"
        );
        for e in [load(&missing, &[]), load(&good, &[&junk])] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn modes_parse_with_nginx_spelling() {
        assert_eq!(ClientAuthMode::parse("on"), Ok(ClientAuthMode::Required));
        assert_eq!(
            ClientAuthMode::parse("optional"),
            Ok(ClientAuthMode::Optional)
        );
        assert!(ClientAuthMode::parse("optional_no_ca").is_err());
    }
}
