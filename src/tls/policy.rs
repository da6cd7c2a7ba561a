//! TLS policy: which protocol versions, cipher suites and key-exchange groups tern offers.
//! The defaults are rustls's (TLS 1.3 and 1.2; ECDHE with AEAD only; X25519MLKEM768 first);
//! `--tls-min`, `--ciphers` and `--groups` can only narrow them, and a name rustls does not
//! know is refused with the list of names it does.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// The provider and versions one server config is built from.
#[derive(Debug, Clone)]
pub struct Policy {
    pub provider: Arc<CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            provider: Arc::new(super::hkdf::provider()),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }
}

/// Groups a user may name, with the names they go by (IANA, then common aliases).
const GROUPS: &[(&dyn SupportedKxGroup, &[&str])] = &[
    (kx_group::X25519MLKEM768, &["X25519MLKEM768"]),
    (kx_group::X25519, &["X25519"]),
    (kx_group::SECP256R1, &["secp256r1", "P-256", "prime256v1"]),
    (kx_group::SECP384R1, &["secp384r1", "P-384"]),
];

/// The IANA name of a suite (`TLS_AES_128_GCM_SHA256`); rustls calls TLS 1.3 ones `TLS13_...`.
fn iana_name(s: SupportedCipherSuite) -> String {
    let name = format!("{:?}", s.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

fn suite_matches(s: SupportedCipherSuite, wanted: &str) -> bool {
    let rustls_name = format!("{:?}", s.suite());
    wanted.eq_ignore_ascii_case(&rustls_name) || wanted.eq_ignore_ascii_case(&iana_name(s))
}

impl Policy {
    /// `min`: "1.2" or "1.3". `ciphers`, `groups`: names in order of preference; empty keeps
    /// the defaults. Errors are one line naming the flag.
    pub fn new(min: &str, ciphers: &[String], groups: &[String]) -> Result<Policy, String> {
        let mut provider = super::hkdf::provider();
        let tls12 = match min {
            "1.2" => true,
            "1.3" => false,
            other => return Err(format!("--tls-min {other}: must be 1.2 or 1.3")),
        };
        if !ciphers.is_empty() {
            let mut chosen = Vec::new();
            for want in ciphers {
                match provider
                    .cipher_suites
                    .iter()
                    .find(|s| suite_matches(**s, want))
                {
                    Some(s) if !chosen.contains(s) => chosen.push(*s),
                    Some(_) => {}
                    None => {
                        let known: Vec<String> = provider
                            .cipher_suites
                            .iter()
                            .map(|s| iana_name(*s))
                            .collect();
                        return Err(format!(
                            "--ciphers: '{want}' is not a cipher suite tern offers (one of {})",
                            known.join(", ")
                        ));
                    }
                }
            }
            provider.cipher_suites = chosen;
        }
        if !tls12 {
            provider
                .cipher_suites
                .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        }
        if !groups.is_empty() {
            let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
            for want in groups {
                let found = GROUPS
                    .iter()
                    .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(want)));
                match found {
                    Some((g, _)) if !chosen.iter().any(|c| c.name() == g.name()) => chosen.push(*g),
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> = GROUPS.iter().map(|(_, n)| n[0]).collect();
                        return Err(format!(
                            "--groups: '{want}' is not a group tern offers (one of {})",
                            known.join(", ")
                        ));
                    }
                }
            }
            provider.kx_groups = chosen;
        }
        let has13 = provider
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        let has12 = provider
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)));
        let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
        if has13 {
            versions.push(&rustls::version::TLS13);
        }
        if has12 && tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if versions.is_empty() {
            return Err("--ciphers: no cipher suite is left for TLS 1.3 (--tls-min 1.3)".into());
        }
        // TLS 1.2 needs a classical group: X25519MLKEM768 is TLS 1.3 only.
        let tls12_on = versions.contains(&&rustls::version::TLS12);
        let classical = provider
            .kx_groups
            .iter()
            .any(|g| g.name() != kx_group::X25519MLKEM768.name());
        if tls12_on && !classical {
            return Err(
                "--groups: TLS 1.2 needs X25519, P-256 or P-384 as well (or --tls-min 1.3)".into(),
            );
        }
        Ok(Policy {
            provider: Arc::new(provider),
            versions,
        })
    }

    /// The names offered, for the start-up report: (versions, suites, groups).
    pub fn describe(&self) -> (Vec<&'static str>, Vec<String>, Vec<String>) {
        let versions = self
            .versions
            .iter()
            .map(|v| match v.version {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                _ => "TLSv1.2",
            })
            .collect();
        let suites = self
            .provider
            .cipher_suites
            .iter()
            .map(|s| iana_name(*s))
            .collect();
        let groups = self
            .provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        (versions, suites, groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Policy) -> (Vec<&'static str>, Vec<String>, Vec<String>) {
        p.describe()
    }

    #[test]
    fn defaults_are_tls13_and_12_with_aead_ecdhe_and_pq_first() {
        let p = Policy::new("1.2", &[], &[]).unwrap();
        let (v, s, g) = names(&p);
        assert_eq!(v, ["TLSv1.3", "TLSv1.2"]);
        assert!(s
            .iter()
            .all(|s| s.contains("GCM") || s.contains("CHACHA20")));
        assert!(s
            .iter()
            .filter(|s| !s.starts_with("TLS_AES") && !s.starts_with("TLS_CHACHA"))
            .all(|s| s.starts_with("TLS_ECDHE_")));
        assert_eq!(g[0], "X25519MLKEM768");
    }

    #[test]
    fn narrowing_by_version_suite_and_group() {
        let p = Policy::new("1.3", &[], &[]).unwrap();
        assert_eq!(names(&p).0, ["TLSv1.3"]);
        assert!(names(&p).1.iter().all(|s| !s.contains("ECDHE")));

        let ciphers = vec![
            "TLS_AES_128_GCM_SHA256".to_string(),
            "tls_ecdhe_ecdsa_with_aes_128_gcm_sha256".to_string(),
        ];
        let p = Policy::new("1.2", &ciphers, &["X25519".into(), "P-256".into()]).unwrap();
        let (v, s, g) = names(&p);
        assert_eq!(v, ["TLSv1.3", "TLSv1.2"]);
        assert_eq!(
            s,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert_eq!(g, ["X25519", "secp256r1"]);

        // Only TLS 1.2 suites named: TLS 1.3 is off.
        let p = Policy::new(
            "1.2",
            &["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into()],
            &[],
        )
        .unwrap();
        assert_eq!(names(&p).0, ["TLSv1.2"]);
    }

    #[test]
    fn unknown_and_impossible_choices_are_refused_naming_the_flag() {
        let e = Policy::new("1.1", &[], &[]).unwrap_err();
        assert!(e.starts_with("--tls-min 1.1"), "{e}");
        let e = Policy::new("1.2", &["RC4-MD5".into()], &[]).unwrap_err();
        assert!(
            e.starts_with("--ciphers: 'RC4-MD5'") && e.contains("TLS_AES_128_GCM_SHA256"),
            "{e}"
        );
        let e = Policy::new("1.2", &[], &["ffdhe2048".into()]).unwrap_err();
        assert!(
            e.starts_with("--groups: 'ffdhe2048'") && e.contains("X25519"),
            "{e}"
        );
        let e = Policy::new(
            "1.3",
            &["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into()],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("TLS 1.3"), "{e}");
        let e = Policy::new(
            "1.2",
            &["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into()],
            &["X25519MLKEM768".into()],
        )
        .unwrap_err();
        assert!(e.starts_with("--groups"), "{e}");
    }
}
