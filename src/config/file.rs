//! The configuration file (TOML): listeners, certificates, backend pools and routes. Every
//! refusal names the file and the line, e.g. `tern.toml:12: route pool 'api' is not defined`.
//!
//! ```toml
//! listen = ["0.0.0.0:443", "[::]:443"]
//!
//! [[listener]]                    # a listener with front-door settings (beside or instead of listen)
//! addr = "10.0.0.1:8443"
//! accept_proxy = true             # a PROXY v1/v2 header comes first (from an L4 balancer)
//! proxy_from = ["10.0.0.0/24"]    # who may send it (default: anyone; only with accept_proxy)
//! allow = ["192.0.2.0/24"]        # only these clients (default: all not denied)
//! deny = ["192.0.2.128/25"]       # never these (wins over allow)
//!
//! [[cert]]
//! cert = "certs/example.pem"      # relative paths are relative to this file
//! key = "certs/example.key"       # or: pem = "certs/example-both.pem" (or a directory of them)
//! # names = ["example.com"]       # default: the certificate's DNS names
//! # ocsp = "certs/example.ocsp"   # default: <cert file>.ocsp when it exists
//! # client_ca = "clients-ca.pem"  # ask clients for a certificate from this CA (mTLS)
//! # client_auth = "required"      # or "optional"; "none" opts out of --client-ca
//! # client_crl = "clients.crl"    # or a list; revoked client certificates are refused
//!
//! [[pool]]
//! name = "web"
//! backends = ["10.0.0.1:8080", "10.0.0.2:8080"]  # or "unix:/run/app.sock" (absolute path)
//! balance = "least-conn"          # round-robin (default) | least-conn | ip-hash
//! health_check = "/healthz"       # optional: GET it every health_interval (default 5s)
//! tls = true                      # optional: connect over TLS, checked against the system's roots
//! ca = "certs/internal-ca.pem"    #   or this bundle; sni = "api.internal" (default: each host)
//! # cert = "..." key = "..."      #   client certificate; alpn = ["http/1.1"]; insecure = false
//! proxy_protocol = "v2"           # optional: a PROXY header (v1 or v2) on each connection
//!
//! [[route]]
//! host = "example.com"            # exact, *.wildcard, or omitted for any host
//! path = "/"                      # path prefix, default "/"
//! pool = "web"
//! # client_auth = "required"      # only for clients with a verified certificate (else 403)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{backend, backend_addr, listener_policy, parse_listen, ConfigError, Topology};
use crate::backend::pool::{BackendTls, Balance, HealthCheck, PoolSpec};
use crate::route::{HostMatch, Route};
use crate::tls::certs::{self, CertSpec, CertStore};
use crate::tls::client_auth::Named;
use crate::tls::{self as tlsmod, ClientAuth, ClientAuthMode};
use crate::util::duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    listener: Vec<Spanned<ListenerEntry>>,
    #[serde(default)]
    cert: Vec<Spanned<CertEntry>>,
    #[serde(default)]
    pool: Vec<Spanned<PoolEntry>>,
    #[serde(default)]
    route: Vec<Spanned<RouteEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerEntry {
    addr: Spanned<String>,
    #[serde(default)]
    accept_proxy: bool,
    #[serde(default)]
    proxy_from: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
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
    /// Client certificates (mTLS): the CA they must chain to, whether one is required, and
    /// revocation lists.
    client_ca: Option<Spanned<PathBuf>>,
    client_auth: Option<Spanned<String>>,
    client_crl: Option<Spanned<Paths>>,
}

/// One path or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Paths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl Paths {
    fn list(&self) -> Vec<PathBuf> {
        match self {
            Paths::One(p) => vec![p.clone()],
            Paths::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolEntry {
    name: Spanned<String>,
    backends: Vec<Spanned<String>>,
    balance: Option<Spanned<String>>,
    health_check: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    ca: Option<Spanned<PathBuf>>,
    sni: Option<Spanned<String>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    alpn: Option<Spanned<Vec<String>>>,
    insecure: Option<Spanned<bool>>,
    proxy_protocol: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    host: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    pool: Spanned<String>,
    /// `"required"`: only for clients that presented a verified certificate.
    client_auth: Option<Spanned<String>>,
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
    load_with(path, None)
}

/// [`load`], with `--client-ca` (and its CRLs and mode) as the client authentication of every
/// `[[cert]]` that does not set its own.
pub fn load_with(
    path: &Path,
    default_auth: Option<&Arc<ClientAuth>>,
) -> Result<Topology, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read --config {}: {e}", path.display())))?;
    parse_with(path, &text, default_auth)
}

pub fn parse(path: &Path, text: &str) -> Result<Topology, ConfigError> {
    parse_with(path, text, None)
}

fn parse_with(
    path: &Path,
    text: &str,
    default_auth: Option<&Arc<ClientAuth>>,
) -> Result<Topology, ConfigError> {
    let src = Source { path, text };
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| src.line(s.start));
        ConfigError(format!("{}:{line}: {}", path.display(), e.message().trim()))
    })?;
    if file.listen.is_empty() && file.listener.is_empty() {
        return src.err(
            0,
            "listen is required, e.g. listen = [\"0.0.0.0:443\"] (or a [[listener]] with addr)",
        );
    }
    let mut listen = file
        .listen
        .iter()
        .map(|l| parse_listen(l.get_ref()).or_else(|e| src.err(l.span().start, e.0)))
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let mut policies = vec![Default::default(); listen.len()];
    for entry in &file.listener {
        let (addr, policy) = listener(&src, entry.get_ref())?;
        listen.push(addr);
        policies.push(policy);
    }
    let (certs, mut files, also_watched) = load_certs(&src, &file.cert, default_auth)?;
    let (pools, names) = pools(&src, &file.pool, &mut files)?;
    let routes = routes(&src, &file.route, &names, !certs.client_auths().is_empty())?;
    Ok(Topology {
        listen,
        policies,
        certs,
        pools,
        routes,
        files,
        also_watched,
    })
}

/// A `[[listener]]`: its address and its checks.
fn listener(
    src: &Source<'_>,
    l: &ListenerEntry,
) -> Result<(SocketAddr, crate::frontdoor::ListenerPolicy), ConfigError> {
    let addr = parse_listen(l.addr.get_ref()).or_else(|e| src.err(l.addr.span().start, e.0))?;
    // Each list is checked item by item so that a refusal names the item's own line.
    let lists = [
        ("proxy_from", &l.proxy_from),
        ("allow", &l.allow),
        ("deny", &l.deny),
    ];
    for (key, items) in lists {
        for item in items {
            if let Err(e) = crate::frontdoor::Cidr::parse(item.get_ref().trim()) {
                return src.err(item.span().start, format!("{key}: {e}"));
            }
        }
    }
    if !l.accept_proxy {
        if let Some(first) = l.proxy_from.first() {
            return src.err(
                first.span().start,
                "proxy_from only means something with accept_proxy = true",
            );
        }
    }
    let strings = |v: &[Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
    let at = src.line(l.addr.span().start);
    let name = |key: &str| format!("{}:{at}: {}", src.path.display(), key.replace('-', "_"));
    let policy = listener_policy(
        l.accept_proxy,
        &strings(&l.proxy_from),
        &strings(&l.allow),
        &strings(&l.deny),
        &name,
    )?;
    Ok((addr, policy))
}

/// The certificates, the files they were read from (client CAs and CRLs included), and what
/// else `--watch` watches for them (directories of PEM files, `<cert>.ocsp` files looked for).
fn load_certs(
    src: &Source<'_>,
    entries: &[Spanned<CertEntry>],
    default_auth: Option<&Arc<ClientAuth>>,
) -> Result<(CertStore, Vec<PathBuf>, Vec<PathBuf>), ConfigError> {
    let mut dirs = Vec::new();
    if entries.is_empty() {
        return src.err(0, "at least one [[cert]] is required");
    }
    let label =
        |s: &Spanned<PathBuf>| format!("{}:{}:", src.path.display(), src.line(s.span().start));
    let mut specs = Vec::new();
    // Certificates naming the same CA, CRLs and mode share one loaded setting.
    let mut auths: HashMap<(PathBuf, Vec<PathBuf>, ClientAuthMode), Arc<ClientAuth>> =
        HashMap::new();
    for entry in entries {
        let at = entry.span().start;
        let e = entry.get_ref();
        let client_auth = cert_client_auth(src, e, default_auth, &mut auths)?;
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
            spec.client_auth = client_auth.clone();
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

/// A pool's backend TLS (`tls = true` and its settings), and the files it read.
fn pool_tls(
    src: &Source<'_>,
    at: usize,
    p: &PoolEntry,
    files: &mut Vec<PathBuf>,
) -> Result<Option<BackendTls>, ConfigError> {
    let on = p.tls.as_ref().is_some_and(|t| *t.get_ref());
    let given = [
        ("ca", p.ca.as_ref().map(|x| x.span().start)),
        ("sni", p.sni.as_ref().map(|x| x.span().start)),
        ("cert", p.cert.as_ref().map(|x| x.span().start)),
        ("key", p.key.as_ref().map(|x| x.span().start)),
        ("alpn", p.alpn.as_ref().map(|x| x.span().start)),
        ("insecure", p.insecure.as_ref().map(|x| x.span().start)),
    ];
    if !on {
        if let Some((k, Some(at))) = given.iter().find(|(_, a)| a.is_some()) {
            return src.err(*at, format!("{k} is for backend TLS: add tls = true"));
        }
        return Ok(None);
    }
    // Each setting is named with the line it is on.
    let line_of = |k: &str| {
        let at = given
            .iter()
            .find(|(n, _)| *n == k)
            .and_then(|(_, a)| *a)
            .unwrap_or(at);
        format!("{}:{}: {k}", src.path.display(), src.line(at))
    };
    let ask = backend::TlsAsk {
        ca: p.ca.as_ref().map(|c| src.relative(c.get_ref())),
        sni: p.sni.as_ref().map(|s| s.get_ref().clone()),
        cert: p.cert.as_ref().map(|c| src.relative(c.get_ref())),
        key: p.key.as_ref().map(|k| src.relative(k.get_ref())),
        alpn: p.alpn.as_ref().map(|a| a.get_ref().clone()),
        insecure: p.insecure.as_ref().is_some_and(|i| *i.get_ref()),
        label: &line_of,
    };
    let written: Vec<String> = p.backends.iter().map(|b| b.get_ref().clone()).collect();
    backend::tls_spec(ask, &written, files)
        .map(Some)
        .map_err(ConfigError)
}

/// The client authentication of one `[[cert]]`: its own (`client_ca`, with `client_auth`
/// and `client_crl`), none (`client_auth = "none"`), or else the command line's.
fn cert_client_auth(
    src: &Source<'_>,
    e: &CertEntry,
    default_auth: Option<&Arc<ClientAuth>>,
    loaded: &mut HashMap<(PathBuf, Vec<PathBuf>, ClientAuthMode), Arc<ClientAuth>>,
) -> Result<Option<Arc<ClientAuth>>, ConfigError> {
    let line = |at: usize| format!("{}:{}:", src.path.display(), src.line(at));
    let mode = match &e.client_auth {
        None => None,
        Some(m) if matches!(m.get_ref().as_str(), "none" | "off") => {
            if let Some(ca) = &e.client_ca {
                return src.err(
                    ca.span().start,
                    "client_ca with client_auth = \"none\": remove one of them",
                );
            }
            if let Some(crl) = &e.client_crl {
                return src.err(crl.span().start, "client_crl with client_auth = \"none\"");
            }
            return Ok(None);
        }
        Some(m) => Some(
            ClientAuthMode::parse(m.get_ref())
                .map_err(|why| format!("client_auth: {why} (or none)"))
                .or_else(|why| src.err(m.span().start, why))?,
        ),
    };
    let Some(ca) = &e.client_ca else {
        if let Some(m) = &e.client_auth {
            return src.err(
                m.span().start,
                "client_auth needs client_ca (the CA client certificates must chain to) in \
                 the same [[cert]]",
            );
        }
        if let Some(crl) = &e.client_crl {
            return src.err(
                crl.span().start,
                "client_crl needs client_ca in the same [[cert]]",
            );
        }
        return Ok(default_auth.cloned());
    };
    let mode = mode.unwrap_or(ClientAuthMode::Required);
    let ca_path = src.relative(ca.get_ref());
    let crl_paths: Vec<PathBuf> = e
        .client_crl
        .as_ref()
        .map(|c| c.get_ref().list().iter().map(|p| src.relative(p)).collect())
        .unwrap_or_default();
    let key = (ca_path.clone(), crl_paths.clone(), mode);
    if let Some(a) = loaded.get(&key) {
        return Ok(Some(a.clone()));
    }
    let crl_line = e.client_crl.as_ref().map(|c| line(c.span().start));
    let crls: Vec<Named> = crl_paths
        .iter()
        .map(|p| {
            Named::new(
                format!("{} client_crl", crl_line.as_deref().unwrap_or("")),
                p,
            )
        })
        .collect();
    let auth = ClientAuth::load(
        &Named::new(format!("{} client_ca", line(ca.span().start)), ca_path),
        &crls,
        mode,
        &tlsmod::provider(),
    )
    .map_err(ConfigError)?;
    let auth = Arc::new(auth);
    loaded.insert(key, auth.clone());
    Ok(Some(auth))
}

fn pools(
    src: &Source<'_>,
    entries: &[Spanned<PoolEntry>],
    files: &mut Vec<PathBuf>,
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
            .map(|b| backend_addr("backend", b.get_ref()).or_else(|e| src.err(b.span().start, e.0)))
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
        let tls = pool_tls(src, entry.span().start, p, files)?;
        let proxy_protocol = match &p.proxy_protocol {
            None => None,
            Some(v) => Some(
                backend::proxy_version(v.get_ref())
                    .or_else(|e| src.err(v.span().start, format!("proxy_protocol: {e}")))?,
            ),
        };
        specs.push(PoolSpec {
            name,
            backends,
            balance,
            health,
            tls,
            proxy_protocol,
        });
    }
    Ok((specs, names))
}

fn routes(
    src: &Source<'_>,
    entries: &[Spanned<RouteEntry>],
    pools: &HashMap<String, usize>,
    any_client_auth: bool,
) -> Result<Vec<Route>, ConfigError> {
    if entries.is_empty() {
        // One pool and no routes: everything goes to it.
        if pools.len() == 1 {
            return Ok(vec![Route {
                host: HostMatch::Any,
                path_prefix: "/".into(),
                pool: 0,
                client_cert_required: false,
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
            let client_cert_required = match &r.client_auth {
                None => false,
                Some(m) => match m.get_ref().as_str() {
                    "required" | "on" if !any_client_auth => {
                        return src.err(
                            m.span().start,
                            "route client_auth = \"required\", but no certificate asks clients \
                             for one (--client-ca, or client_ca in a [[cert]])",
                        )
                    }
                    "required" | "on" => true,
                    "optional" => false,
                    other => {
                        return src.err(
                            m.span().start,
                            format!("route client_auth: '{other}' must be required or optional"),
                        )
                    }
                },
            };
            Ok(Route {
                host,
                path_prefix,
                pool,
                client_cert_required,
            })
        })
        .collect()
}

/// A one-line summary for `tern check`.
pub fn summary(t: &Topology) -> String {
    let mut s = format!(
        "{} listener(s), {} certificate(s), {} pool(s), {} route(s)",
        t.listen.len(),
        t.certs.len(),
        t.pools.len(),
        t.routes.len()
    );
    let asking = t
        .certs
        .entries()
        .iter()
        .filter(|e| e.client_auth.is_some())
        .count();
    if asking > 0 {
        s.push_str(&format!(
            ", {asking} asking for client certificates ({} client CA setting(s))",
            t.certs.client_auths().len()
        ));
    }
    s
}
