//! Test certificates on disk: a CA, leaves it signs (any key type, any names), OCSP responses
//! made with `openssl ocsp`, and an `openssl s_client` runner, for the certificate tests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::WAIT;

pub const EC: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;
pub const RSA: &rcgen::SignatureAlgorithm = &rcgen::PKCS_RSA_SHA256;

pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub der: CertificateDer<'static>,
    pub dir: tempfile::TempDir,
}

/// A leaf written to disk: its combined PEM (chain + key) and its parts.
pub struct Leaf {
    pub pem: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tern test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), issuer.key().serialize_pem()).unwrap();
        Ca {
            der: issuer.der().clone(),
            issuer,
            dir,
        }
    }

    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf with common name `cn` for `names`, written as `<dir>/<cn>.pem` (chain + key) and
    /// `<cn>.crt` / `<cn>.key`.
    pub fn leaf(
        &self,
        dir: &Path,
        cn: &str,
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Leaf {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = format!("{}{}", cert.pem(), self.issuer.pem());
        let write = |name: String, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        Leaf {
            pem: write(
                format!("{cn}.pem"),
                &format!("{chain}{}", key.serialize_pem()),
            ),
            cert: write(format!("{cn}.crt"), &chain),
            key: write(format!("{cn}.key"), &key.serialize_pem()),
            der: cert.der().clone(),
        }
    }

    pub fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// An OCSP response for `leaf` signed by this CA (status "unknown": the index is empty,
    /// which is still a successful, stapleable response), written to `out`.
    pub fn ocsp_response(&self, leaf: &Leaf, out: &Path) {
        let d = self.dir.path();
        let index = d.join("index.txt");
        std::fs::write(&index, "").unwrap();
        let req = d.join("req.der");
        run_openssl(&[
            "ocsp",
            "-issuer",
            s(&self.pem_path()),
            "-cert",
            s(&leaf.cert),
            "-no_nonce",
            "-reqout",
            s(&req),
        ]);
        run_openssl(&[
            "ocsp",
            "-index",
            s(&index),
            "-rsigner",
            s(&self.pem_path()),
            "-rkey",
            s(&d.join("ca.key")),
            "-CA",
            s(&self.pem_path()),
            "-reqin",
            s(&req),
            "-respout",
            s(out),
            "-ndays",
            "1",
        ]);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl s_client -connect ADDR ARGS` with no input; everything it printed (stdout and
/// stderr), bounded by the test wait.
pub fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (apt install openssl)");
    drop(child.stdin.take());
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl s_client {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// The common name of the certificate `s_client` was shown (its `subject=` line).
pub fn subject_cn(s_client_output: &str) -> Option<String> {
    let line = s_client_output
        .lines()
        .find(|l| l.starts_with("subject="))?;
    let cn = line.split("CN").nth(1)?;
    Some(cn.trim_start_matches([' ', '=']).trim().to_string())
}
