//! The configuration file (TOML): listeners, certificates, backend pools and routes. Every
//! refusal names the file and the line, e.g. `tern.toml:12: route pool 'api' is not defined`.
//!
//! ```toml
//! listen = ["0.0.0.0:443", "[::]:443"]
//!
//! [[cert]]
//! cert = "certs/example.pem"      # relative paths are relative to this file
//! key = "certs/example.key"       # or: pem = "certs/example-both.pem" (or a directory of them)
//! # names = ["example.com"]       # default: the certificate's DNS names
//! # ocsp = "certs/example.ocsp"   # default: <cert file>.ocsp when it exists
//!
//! [[pool]]
//! name = "web"
//! backends = ["10.0.0.1:8080", "10.0.0.2:8080"]
//! balance = "least-conn"          # round-robin (default) | least-conn | ip-hash
//! health_check = "/healthz"       # optional: GET it every health_interval (default 5s)
//!
//! [[route]]
//! host = "example.com"            # exact, *.wildcard, or omitted for any host
//! path = "/"                      # path prefix, default "/"
//! pool = "web"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{parse_listen, resolve, ConfigError, Topology};
use crate::backend::pool::{Balance, HealthCheck, PoolSpec};
use crate::route::{HostMatch, Route};
use crate::tls::certs::{self, CertSpec, CertStore};
use crate::tls::{self as tlsmod};
use crate::util::duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    cert: Vec<Spanned<CertEntry>>,
    #[serde(default)]
    pool: Vec<Spanned<PoolEntry>>,
    #[serde(default)]
    route: Vec<Spanned<RouteEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    pem: Option<Spanned<PathBuf>>,
    names: Option<Vec<Spanned<String>>>,
    /// An OCSP response (DER) to staple for this certificate.
    ocsp: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolEntry {
    name: Spanned<String>,
    backends: Vec<Spanned<String>>,
    balance: Option<Spanned<String>>,
    health_check: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    host: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    pool: Spanned<String>,
}

/// Where in the file, for messages.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn err<T>(&self, at: usize, msg: impl std::fmt::Display) -> Result<T, ConfigError> {
        Err(ConfigError(format!(
            "{}:{}: {msg}",
            self.path.display(),
            self.line(at)
        )))
    }

    /// Paths in the file are relative to the file's directory.
    fn relative(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Topology, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read --config {}: {e}", path.display())))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Topology, ConfigError> {
    let src = Source { path, text };
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| src.line(s.start));
        ConfigError(format!("{}:{line}: {}", path.display(), e.message().trim()))
    })?;
    if file.listen.is_empty() {
        return src.err(0, "listen is required, e.g. listen = [\"0.0.0.0:443\"]");
    }
    let listen = file
        .listen
        .iter()
        .map(|l| parse_listen(l.get_ref()).or_else(|e| src.err(l.span().start, e.0)))
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let (certs, files, also_watched) = load_certs(&src, &file.cert)?;
    let (pools, names) = pools(&src, &file.pool)?;
    let routes = routes(&src, &file.route, &names)?;
    Ok(Topology {
        listen,
        certs,
        pools,
        routes,
        files,
        also_watched,
    })
}

/// The certificates, the files they were read from, and what else `--watch` watches for them
/// (directories of PEM files, `<cert>.ocsp` files looked for).
fn load_certs(
    src: &Source<'_>,
    entries: &[Spanned<CertEntry>],
) -> Result<(CertStore, Vec<PathBuf>, Vec<PathBuf>), ConfigError> {
    let mut dirs = Vec::new();
    if entries.is_empty() {
        return src.err(0, "at least one [[cert]] is required");
    }
    let label =
        |s: &Spanned<PathBuf>| format!("{}:{}:", src.path.display(), src.line(s.span().start));
    let mut specs = Vec::new();
    for entry in entries {
        let at = entry.span().start;
        let e = entry.get_ref();
        let names = match &e.names {
            Some(list) => Some(
                list.iter()
                    .map(|n| HostMatch::parse(n.get_ref()).or_else(|m| src.err(n.span().start, m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let ocsp = e
            .ocsp
            .as_ref()
            .map(|o| (format!("{} ocsp", label(o)), src.relative(o.get_ref())));
        let pairs: Vec<(Spanned<PathBuf>, PathBuf, PathBuf)> = match (&e.cert, &e.key, &e.pem) {
            (Some(c), Some(k), None) => {
                vec![(
                    c.clone(),
                    src.relative(c.get_ref()),
                    src.relative(k.get_ref()),
                )]
            }
            // A directory of PEM files, as with --pem DIR.
            (None, None, Some(p)) if src.relative(p.get_ref()).is_dir() => {
                if e.names.is_some() || e.ocsp.is_some() {
                    return src.err(
                        at,
                        "names and ocsp cannot be given for a directory of certificates",
                    );
                }
                let dir = src.relative(p.get_ref());
                dirs.push(dir.clone());
                certs::pem_files_in(&label(p), &dir)
                    .map_err(ConfigError)?
                    .into_iter()
                    .map(|f| (p.clone(), f.clone(), f))
                    .collect()
            }
            (None, None, Some(p)) => {
                let path = src.relative(p.get_ref());
                vec![(p.clone(), path.clone(), path)]
            }
            _ => return src.err(at, "a [[cert]] needs cert and key, or pem"),
        };
        let key_label = match &e.key {
            Some(k) => label(k),
            None => String::new(),
        };
        for (spanned, cert, key) in pairs {
            let cert_label = label(&spanned);
            let key_label = if key_label.is_empty() {
                cert_label.clone()
            } else {
                key_label.clone()
            };
            let mut spec = CertSpec::files((cert_label, cert), (key_label, key));
            spec.names = names.clone();
            spec.ocsp = ocsp.clone();
            specs.push(spec);
        }
    }
    let loaded = certs::load_all(&specs, &tlsmod::provider()).map_err(ConfigError)?;
    Ok((
        CertStore::new(loaded).map_err(ConfigError)?,
        super::spec_files(&specs),
        [dirs, super::ocsp_beside(&specs)].concat(),
    ))
}

fn pools(
    src: &Source<'_>,
    entries: &[Spanned<PoolEntry>],
) -> Result<(Vec<PoolSpec>, HashMap<String, usize>), ConfigError> {
    if entries.is_empty() {
        return src.err(0, "at least one [[pool]] is required");
    }
    let mut specs = Vec::new();
    let mut names = HashMap::new();
    for entry in entries {
        let p = entry.get_ref();
        let name = p.name.get_ref().clone();
        if names.insert(name.clone(), specs.len()).is_some() {
            return src.err(
                p.name.span().start,
                format!("pool '{name}' is defined twice"),
            );
        }
        if p.backends.is_empty() {
            return src.err(entry.span().start, format!("pool '{name}' has no backends"));
        }
        let backends = p
            .backends
            .iter()
            .map(|b| resolve("backend", b.get_ref()).or_else(|e| src.err(b.span().start, e.0)))
            .collect::<Result<Vec<_>, _>>()?;
        let balance = match &p.balance {
            None => Balance::RoundRobin,
            Some(b) => b
                .get_ref()
                .parse()
                .or_else(|e: String| src.err(b.span().start, e))?,
        };
        let interval = match &p.health_interval {
            None => Duration::from_secs(5),
            Some(d) => duration::parse(d.get_ref())
                .or_else(|e| src.err(d.span().start, format!("health_interval: {e}")))?,
        };
        let health = match &p.health_check {
            None => None,
            Some(path) if path.get_ref().starts_with('/') => Some(HealthCheck {
                path: path.get_ref().clone(),
                interval: interval.max(Duration::from_millis(100)),
            }),
            Some(path) => {
                return src.err(
                    path.span().start,
                    "health_check must be a path starting with /",
                )
            }
        };
        specs.push(PoolSpec {
            name,
            backends,
            balance,
            health,
        });
    }
    Ok((specs, names))
}

fn routes(
    src: &Source<'_>,
    entries: &[Spanned<RouteEntry>],
    pools: &HashMap<String, usize>,
) -> Result<Vec<Route>, ConfigError> {
    if entries.is_empty() {
        // One pool and no routes: everything goes to it.
        if pools.len() == 1 {
            return Ok(vec![Route {
                host: HostMatch::Any,
                path_prefix: "/".into(),
                pool: 0,
            }]);
        }
        return src.err(
            0,
            "with several pools, [[route]] entries must say which serves what",
        );
    }
    entries
        .iter()
        .map(|entry| {
            let r = entry.get_ref();
            let pool = *pools.get(r.pool.get_ref()).ok_or_else(|| {
                ConfigError(format!(
                    "{}:{}: route pool '{}' is not defined",
                    src.path.display(),
                    src.line(r.pool.span().start),
                    r.pool.get_ref()
                ))
            })?;
            let host = match &r.host {
                None => HostMatch::Any,
                Some(h) => HostMatch::parse(h.get_ref()).or_else(|e| src.err(h.span().start, e))?,
            };
            let path_prefix = match &r.path {
                None => "/".to_string(),
                Some(p) if p.get_ref().starts_with('/') => p.get_ref().clone(),
                Some(p) => return src.err(p.span().start, "route path must start with /"),
            };
            Ok(Route {
                host,
                path_prefix,
                pool,
            })
        })
        .collect()
}

/// A one-line summary for `tern check`.
pub fn summary(t: &Topology) -> String {
    format!(
        "{} listener(s), {} certificate(s), {} pool(s), {} route(s)",
        t.listen.len(),
        t.certs.len(),
        t.pools.len(),
        t.routes.len()
    )
}
