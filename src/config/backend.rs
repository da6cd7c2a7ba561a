//! The backend hop's settings, from flags or a `[[pool]]`: TLS towards the backends (roots,
//! name, client certificate, ALPN, insecure) and the PROXY protocol version. Both sources go
//! through [`tls_spec`], so a refusal reads the same, naming the flag or the file and line.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::addr;
use crate::backend::pool::BackendTls;
use crate::proxyproto::Version;
use crate::tls::client::{self, ClientTlsSettings, Verify};
use crate::tls::{certs, provider};

/// What was asked for, before anything is read. `label(key)` names a setting in messages
/// (`--backend-ca`, or `tern.toml:12: ca`).
pub struct TlsAsk<'a> {
    pub ca: Option<PathBuf>,
    pub sni: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub alpn: Option<Vec<String>>,
    pub insecure: bool,
    pub label: &'a dyn Fn(&str) -> String,
}

/// Builds a pool's backend TLS; `backends` as written (`HOST:PORT`, `unix:/path`), for their
/// names. Pushes
/// every file read onto `files` (the sandbox keeps them readable for reloads).
pub fn tls_spec(
    ask: TlsAsk<'_>,
    backends: &[String],
    files: &mut Vec<PathBuf>,
) -> Result<BackendTls, String> {
    let l = ask.label;
    let (verify, roots_from) = match (&ask.ca, ask.insecure) {
        (Some(_), true) => {
            return Err(format!(
                "{}: cannot be given with {} (nothing is checked against it)",
                l("ca"),
                l("insecure")
            ))
        }
        (None, true) => (Verify::Insecure, "nowhere (insecure)".to_string()),
        (Some(path), false) => {
            let roots = client::roots_from_pem(&l("ca"), path)?;
            files.push(path.clone());
            (
                Verify::Roots(Arc::new(roots)),
                format!("{} {}", l("ca"), path.display()),
            )
        }
        (None, false) => {
            let roots = client::system_roots()?;
            files.extend(client::system_root_files());
            (Verify::Roots(Arc::new(roots)), "the system's roots".into())
        }
    };
    let client_cert = match (&ask.cert, &ask.key) {
        (Some(c), Some(k)) => {
            let (cl, kl) = (l("cert"), l("key"));
            let cert = certs::PemFile {
                label: &cl,
                path: c,
            };
            let key = certs::PemFile {
                label: &kl,
                path: k,
            };
            let loaded = certs::load(cert, key, &provider())?;
            files.push(c.clone());
            files.push(k.clone());
            Some(loaded)
        }
        (None, None) => None,
        (Some(_), None) => return Err(format!("{}: needs {} too", l("cert"), l("key"))),
        (None, Some(_)) => return Err(format!("{}: needs {} too", l("key"), l("cert"))),
    };
    let alpn = match &ask.alpn {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|p| {
                    if p.is_empty() || p.len() > 255 {
                        Err(format!("{}: '{p}' must be 1 to 255 bytes long", l("alpn")))
                    } else {
                        Ok(p.as_bytes().to_vec())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    if let Some(name) = &ask.sni {
        client::check_name(name).map_err(|e| format!("{}: {e}", l("sni")))?;
    }
    let names = backends
        .iter()
        .map(|b| match &ask.sni {
            Some(name) => Ok(name.clone()),
            // A socket path names no server: without a name there is nothing to check the
            // backend's certificate against, and a certificate nobody checks is no protection.
            None if addr::parse_unix(b).is_some() => Err(format!(
                "backend {b}: TLS over a Unix socket needs the name the backend's certificate \
                 is for; give {}",
                l("sni")
            )),
            None => {
                let host = host_of(b);
                client::check_name(host)
                    .map(|_| host.to_string())
                    .map_err(|e| format!("backend {b}: {e}; give {} to name it", l("sni")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let settings = ClientTlsSettings {
        verify,
        roots_from,
        client_cert,
        alpn,
    };
    // Built once here, so that a worker is never handed settings it cannot build.
    client::ClientTls::new(&settings, false).map_err(|e| format!("{}: {e}", l("tls")))?;
    Ok(BackendTls { settings, names })
}

/// The host of `HOST:PORT` as written (`[::1]:80` → `::1`).
pub fn host_of(backend: &str) -> &str {
    let host = backend.rsplit_once(':').map_or(backend, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `v1` or `v2`.
pub fn proxy_version(s: &str) -> Result<Version, String> {
    match s {
        "v1" | "1" => Ok(Version::V1),
        "v2" | "2" => Ok(Version::V2),
        other => Err(format!("'{other}' is not v1 or v2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_written() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("api.internal:443"), "api.internal");
    }

    #[test]
    fn proxy_versions() {
        assert_eq!(proxy_version("v1"), Ok(Version::V1));
        assert_eq!(proxy_version("v2"), Ok(Version::V2));
        assert!(proxy_version("v3").is_err());
    }
}
