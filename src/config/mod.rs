//! Turns parsed arguments (and the configuration file, if any) into a checked [`Config`]:
//! addresses resolved, certificates and keys loaded and matched, pools and routes linked,
//! CPUs chosen. Every refusal is one line naming the flag, or the file and line; the caller
//! prints it and exits with code 2.

pub mod backend;
pub mod file;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::addr::{self, BackendAddr};
use crate::backend::pool::{HealthCheck, KeepAlive, PoolSpec};
use crate::cli::{CertArg, ClientCertArgs, MaxConns, Mode, RunArgs, Toggle, Tuning};
use crate::frontdoor::{acl, per_ip, Acl, FrontSettings, ListenerPolicy, PrefixSet};
use crate::generation::Generation;
use crate::http::{ForwardPolicy, Limits};
use crate::proxy::accesslog::Target as AccessLogTarget;
use crate::proxy::{HttpSettings, Settings};
use crate::route::{HostMatch, Route, Routes};
use crate::tls::certs::{self, CertSpec, CertStore};
use crate::tls::client::Verify;
use crate::tls::client_auth::Named;
use crate::tls::policy::Policy;
use crate::tls::tickets::MasterSecret;
use crate::tls::{self, TlsSettings};
use crate::tls::{ClientAuth, ClientAuthMode};
use crate::util::cpus;

/// What is served where: from the command line (one listener set, one certificate, one pool)
/// or from a configuration file.
#[derive(Debug)]
pub struct Topology {
    pub listen: Vec<SocketAddr>,
    /// What each listener checks before the handshake, one per `listen` address.
    pub policies: Vec<ListenerPolicy>,
    pub certs: CertStore,
    pub pools: Vec<PoolSpec>,
    pub routes: Vec<Route>,
    /// The files read to build it (the config file, certificates, keys, OCSP responses), for
    /// the sandbox.
    pub files: Vec<PathBuf>,
    /// Looked at but not (all) read: `--pem` directories, and the `<cert>.ocsp` files looked
    /// for beside certificates, present or not. With `files`, what `--watch` watches.
    pub also_watched: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// What a reload replaces (certificates, TLS settings, pools, routes).
    pub generation: Arc<Generation>,
    pub mode: Mode,
    /// The CPU of each worker (its length is the worker count).
    pub cpus: Vec<usize>,
    pub max_conns: MaxConns,
    pub settings: Settings,
    /// PROXY header timeout, handshake admission, per-client share.
    pub front: FrontSettings,
    pub drain_timeout: Duration,
    /// `--drain-delay`: accepting goes on this long after /healthz turns 503 on SIGTERM.
    pub drain_delay: Duration,
    pub access_log: Option<Arc<AccessLogTarget>>,
    pub log_format: crate::proxy::accesslog::LogFormat,
    /// Who to become after binding (`--user`).
    pub user: Option<crate::privileges::User>,
    /// Where to serve metrics and the health endpoints (`--metrics`).
    pub metrics: Option<SocketAddr>,
    /// Reload by itself when a file of the generation changes (`--watch`).
    pub watch: bool,
    /// Where to hand listeners to a successor, and to look for a predecessor
    /// (`--upgrade-socket`).
    pub upgrade_socket: Option<PathBuf>,
    /// Confine the process after start-up (`--sandbox`).
    pub sandbox: bool,
    /// Limit each worker's io_uring ring to the operations tern submits (`--uring-restrict`).
    pub uring_restrict: bool,
    /// Every file read at start-up (config, certificates, keys, OCSP responses, ticket key):
    /// a reload reads them again, so the sandbox keeps them readable.
    pub files_read: Vec<PathBuf>,
    /// Files written by path (the access log), which the sandbox keeps writable.
    pub files_written: Vec<PathBuf>,
}

/// A refusal to start, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError(s)
    }
}

impl Config {
    /// Validates a normal run's arguments, loading certificates and the configuration file.
    pub fn from_args(args: &RunArgs) -> Result<Config, ConfigError> {
        Config::build(Self::topology(args)?, &args.tuning)
    }

    /// Reads again everything a reload replaces — the configuration file, certificates and
    /// keys, the ticket-key file — and checks it as at start-up. `current` is the generation in
    /// service: the ticket secret carries over from it unless the key file now holds another.
    pub fn reload(args: &RunArgs, current: &Generation) -> Result<Generation, ConfigError> {
        generation(Self::topology(args)?, &args.tuning, Some(current))
    }

    fn topology(args: &RunArgs) -> Result<Topology, ConfigError> {
        let client_auth = client_auth_from_flags(&args.client_cert)?;
        let mut t = match &args.config {
            Some(path) => {
                let mut t = file::load_with(path, client_auth.as_ref())?;
                t.files.insert(0, path.clone());
                t
            }
            None => Self::topology_from_flags(args, client_auth.clone())?,
        };
        // Read again at each reload, even when every [[cert]] has its own setting.
        if let Some(a) = &client_auth {
            t.files.extend(a.files.iter().cloned());
        }
        Ok(t)
    }

    fn topology_from_flags(
        args: &RunArgs,
        client_auth: Option<Arc<ClientAuth>>,
    ) -> Result<Topology, ConfigError> {
        if args.listen.is_empty() {
            return Err(ConfigError(
                "--listen is required, e.g. --listen 0.0.0.0:443 (or give --config FILE)".into(),
            ));
        }
        if args.backend.is_empty() {
            return Err(ConfigError(
                "--backend is required, e.g. --backend 127.0.0.1:8080".into(),
            ));
        }
        let mut also_watched = Vec::new();
        let mut specs = cert_specs(args, &mut also_watched)?;
        for spec in &mut specs {
            spec.client_auth = client_auth.clone();
        }
        if specs.is_empty() {
            return Err(ConfigError(
                "a certificate is required: --cert FILE --key FILE, or --pem FILE".into(),
            ));
        }
        let entries = certs::load_all(&specs, &tls::provider())?;
        let mut files = spec_files(&specs);
        let tls = match args.backend_tls {
            false => None,
            true => {
                let label = |k: &str| match k {
                    "tls" => "--backend-tls".to_string(),
                    k => format!("--backend-{k}"),
                };
                let ask = backend::TlsAsk {
                    ca: args.backend_ca.clone(),
                    sni: args.backend_sni.clone(),
                    cert: args.backend_cert.clone(),
                    key: args.backend_key.clone(),
                    alpn: args.backend_alpn.clone(),
                    insecure: args.backend_insecure,
                    label: &label,
                };
                Some(backend::tls_spec(ask, &args.backend, &mut files)?)
            }
        };
        let backends = args
            .backend
            .iter()
            .map(|b| backend_addr("--backend", b))
            .collect::<Result<Vec<_>, _>>()?;
        let health = match &args.health_check {
            None => None,
            Some(p) if p.starts_with('/') => Some(HealthCheck {
                path: p.clone(),
                interval: args.health_interval.max(Duration::from_millis(100)),
            }),
            Some(p) => {
                return Err(ConfigError(format!(
                    "--health-check {p}: must be a path starting with /"
                )))
            }
        };
        let listen = parse_all_listen(&args.listen)?;
        let policy = listener_policy(
            args.accept_proxy,
            &args.proxy_from,
            &args.allow,
            &args.deny,
            &|flag| format!("--{flag}"),
        )?;
        Ok(Topology {
            policies: vec![policy; listen.len()],
            listen,
            certs: CertStore::new(entries)?,
            pools: vec![PoolSpec {
                name: "default".into(),
                backends,
                balance: args.balance,
                health,
                tls,
                proxy_protocol: args.proxy_protocol,
            }],
            routes: vec![Route {
                host: HostMatch::Any,
                path_prefix: "/".into(),
                pool: 0,
                client_cert_required: false,
            }],
            files,
            also_watched: [also_watched, ocsp_beside(&specs)].concat(),
        })
    }

    /// Combines a topology with the tuning flags.
    pub fn build(topology: Topology, t: &Tuning) -> Result<Config, ConfigError> {
        let buf_size = Settings::default().buf_size;
        if t.max_header_bytes > buf_size as u64 || t.max_header_bytes < 1024 {
            return Err(ConfigError(format!(
                "--max-header-bytes: must be between 1KiB and {}KiB",
                buf_size / 1024
            )));
        }
        for (flag, d) in [
            ("--header-timeout", t.header_timeout),
            ("--body-timeout", t.body_timeout),
            ("--backend-timeout", t.backend_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{flag}: must be more than 0")));
            }
        }
        let access_log = match t.access_log.as_deref() {
            None => None,
            Some("-") => Some(Arc::new(AccessLogTarget::Stdout)),
            Some(path) => {
                // Opened once, here: a bad path is refused at start-up, and the workers write
                // through this descriptor even after --user dropped the rights to open it.
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| ConfigError(format!("cannot open --access-log {path}: {e}")))?;
                Some(Arc::new(AccessLogTarget::File(file)))
            }
        };
        let metrics = t
            .metrics
            .as_deref()
            .map(|m| parse_addr("--metrics", m))
            .transpose()?;
        let user = match &t.user {
            None => None,
            Some(name) => Some(crate::privileges::lookup(name)?),
        };
        let allowed = cpus::allowed()
            .map_err(|e| ConfigError(format!("cannot read this process's CPU set: {e}")))?;
        let cpus = cpus::plan(
            &allowed,
            t.cores.as_ref().map(|c| c.0.as_slice()),
            t.workers,
        )?;
        // Each worker enforces its own share; a worker with a share of 0 would refuse every
        // connection the kernel hands it while the others sit idle.
        if let MaxConns::Limit(n) = t.max_conns {
            if n < cpus.len() {
                return Err(ConfigError(format!(
                    "--max-conns {n}: below the {} workers; each worker needs a share of at least 1",
                    cpus.len()
                )));
            }
        }
        for (flag, d) in [
            ("--handshake-timeout", t.handshake_timeout),
            ("--connect-timeout", t.connect_timeout),
            ("--proxy-timeout", t.proxy_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{flag}: must be more than 0")));
            }
        }
        let front = FrontSettings {
            proxy_timeout: t.proxy_timeout,
            max_handshakes: t.max_handshakes,
            per_ip_share: t.max_conns_per_ip.map(|n| per_ip::share(n, cpus.len())),
        };
        let mut files_read = topology.files.clone();
        files_read.extend(t.ticket_key_file.iter().cloned());
        let files_written = match t.access_log.as_deref() {
            None | Some("-") => Vec::new(),
            Some(path) => vec![PathBuf::from(path)],
        };
        Ok(Config {
            generation: Arc::new(generation(topology, t, None)?),
            mode: t.mode,
            cpus,
            max_conns: t.max_conns,
            front,
            settings: Settings {
                handshake_timeout: t.handshake_timeout,
                idle_timeout: (!t.idle_timeout.is_zero()).then_some(t.idle_timeout),
                connect_timeout: t.connect_timeout,
                keepalive: KeepAlive {
                    max_idle: t.backend_keepalive,
                    idle_timeout: t.backend_idle_timeout,
                },
                http: HttpSettings {
                    enabled: t.mode == Mode::Http,
                    limits: Limits {
                        max_head: t.max_header_bytes as usize,
                        max_line: (t.max_header_bytes as usize).min(8 * 1024),
                        ..Limits::default()
                    },
                    max_body: t.max_body_bytes,
                    header_timeout: t.header_timeout,
                    body_timeout: t.body_timeout,
                    backend_timeout: t.backend_timeout,
                    forward: ForwardPolicy {
                        trust_client: t.trust_forwarded,
                        forwarded: t.forwarded,
                    },
                    cert_headers: t.forward_client_cert,
                },
                uring_recv: t.uring_recv,
                ..Settings::default()
            },
            drain_timeout: t.drain_timeout,
            drain_delay: t.drain_delay,
            access_log,
            log_format: t.log_format,
            user,
            metrics,
            watch: t.watch,
            upgrade_socket: t.upgrade_socket.clone(),
            sandbox: t.sandbox == Toggle::On,
            uring_restrict: t.uring_restrict == Toggle::On,
            files_read,
            files_written,
        })
    }
}

/// `--client-ca` with its `--client-auth` mode and `--client-crl` lists, read and checked
/// (again at each reload: a CRL file replaced on disk is picked up by SIGHUP).
pub fn client_auth_from_flags(
    args: &ClientCertArgs,
) -> Result<Option<Arc<ClientAuth>>, ConfigError> {
    let Some(ca) = &args.client_ca else {
        if let Some(mode) = args.client_auth {
            return Err(ConfigError(format!(
                "--client-auth {}: needs --client-ca FILE, the CA client certificates must \
                 chain to",
                mode.name()
            )));
        }
        if let Some(crl) = args.client_crl.first() {
            return Err(ConfigError(format!(
                "--client-crl {}: needs --client-ca FILE, the CA the list belongs to",
                crl.display()
            )));
        }
        return Ok(None);
    };
    let crls: Vec<Named> = args
        .client_crl
        .iter()
        .map(|p| Named::new("--client-crl", p))
        .collect();
    let auth = ClientAuth::load(
        &Named::new("--client-ca", ca),
        &crls,
        args.client_auth.unwrap_or(ClientAuthMode::Required),
        &tls::provider(),
    )?;
    Ok(Some(Arc::new(auth)))
}

/// The files certificates are read from (key, chain, a named OCSP response; `<cert>.ocsp`
/// lies beside its certificate; client CA and CRL files), for the sandbox.
fn spec_files(specs: &[CertSpec]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for s in specs {
        files.push(s.key.1.clone());
        if s.cert.1 != s.key.1 {
            files.push(s.cert.1.clone());
        }
        files.extend(s.ocsp.iter().map(|(_, p)| p.clone()));
        if let Some(a) = &s.client_auth {
            for f in &a.files {
                if !files.contains(f) {
                    files.push(f.clone());
                }
            }
        }
    }
    files
}

/// The `<cert file>.ocsp` files `tls::certs` staples when they exist, for the certificates
/// given no OCSP response (so `--watch` sees one appear).
fn ocsp_beside(specs: &[CertSpec]) -> Vec<PathBuf> {
    specs
        .iter()
        .filter(|s| s.ocsp.is_none() && s.ocsp_beside)
        .map(|s| {
            let mut beside = s.cert.1.clone().into_os_string();
            beside.push(".ocsp");
            beside.into()
        })
        .collect()
}

/// The certificates the flags name, in the order given: `--cert`/`--key` pairs by position,
/// `--pem` files and directories, each `--ocsp` attached to the certificate before it. The
/// `--pem` directories go to `dirs`.
fn cert_specs(args: &RunArgs, dirs: &mut Vec<PathBuf>) -> Result<Vec<CertSpec>, ConfigError> {
    if args.cert.len() != args.key.len() {
        return Err(ConfigError(format!(
            "--cert and --key come in pairs: {} --cert and {} --key given",
            args.cert.len(),
            args.key.len()
        )));
    }
    // Parsed without order information (a Cli built directly): certificates, then PEM files.
    let order: Vec<CertArg> = if args.cert_order.is_empty() {
        (0..args.cert.len())
            .map(CertArg::Cert)
            .chain((0..args.pem.len()).map(CertArg::Pem))
            .chain((0..args.ocsp.len()).map(CertArg::Ocsp))
            .collect()
    } else {
        args.cert_order.clone()
    };
    let mut specs: Vec<CertSpec> = Vec::new();
    // Whether the last certificate came from a directory (an --ocsp cannot follow one).
    let mut from_dir = false;
    for arg in order {
        match arg {
            CertArg::Cert(i) => {
                specs.push(CertSpec::files(
                    ("--cert".into(), args.cert[i].clone()),
                    ("--key".into(), args.key[i].clone()),
                ));
                from_dir = false;
            }
            CertArg::Pem(i) => {
                let path = &args.pem[i];
                from_dir = path.is_dir();
                let files = match from_dir {
                    true => {
                        dirs.push(path.clone());
                        certs::pem_files_in("--pem", path)?
                    }
                    false => vec![path.clone()],
                };
                for f in files {
                    specs.push(CertSpec::files(
                        ("--pem".into(), f.clone()),
                        ("--pem".into(), f),
                    ));
                }
            }
            CertArg::Ocsp(i) => {
                let path = &args.ocsp[i];
                let shown = format!("--ocsp {}", path.display());
                let Some(last) = specs.last_mut() else {
                    return Err(ConfigError(format!(
                        "{shown}: must follow the --cert or --pem it belongs to"
                    )));
                };
                if from_dir {
                    return Err(ConfigError(format!(
                        "{shown}: follows a --pem directory; put each response beside its \
                         certificate as <file>.ocsp instead"
                    )));
                }
                if last.ocsp.is_some() {
                    return Err(ConfigError(format!(
                        "{shown}: {} already has an --ocsp",
                        last.source
                    )));
                }
                last.ocsp = Some(("--ocsp".into(), path.clone()));
            }
        }
    }
    Ok(specs)
}

/// Absolute (against the working directory, as the files were opened), sorted, each once: the
/// same set of files always gives the same list.
fn normalise(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let set: std::collections::BTreeSet<PathBuf> = files
        .into_iter()
        .map(|f| std::path::absolute(&f).unwrap_or(f))
        .collect();
    set.into_iter().collect()
}

/// The parts of a configuration a reload replaces, checked. `previous` is the generation in
/// service when this is a reload.
fn generation(
    topology: Topology,
    t: &Tuning,
    previous: Option<&Generation>,
) -> Result<Generation, ConfigError> {
    let mut alpn = Vec::new();
    for p in &t.alpn {
        if p.is_empty() || p.len() > 255 {
            return Err(ConfigError(format!(
                "--alpn: '{p}' must be 1 to 255 bytes long"
            )));
        }
        alpn.push(p.as_bytes().to_vec());
    }
    let tickets = match (t.tickets, &t.ticket_key_file) {
        (Toggle::Off, Some(_)) => {
            return Err(ConfigError(
                "--ticket-key-file: tickets are off (--tickets off)".into(),
            ))
        }
        (Toggle::Off, None) => None,
        // A random secret lives as long as the process: a reload keeps it, so sessions
        // resume across reloads and no full-handshake storm follows one.
        (Toggle::On, None) => match previous.and_then(|g| g.tls.tickets.clone()) {
            Some(kept) => Some(kept),
            None => Some(Arc::new(MasterSecret::random()?)),
        },
        (Toggle::On, Some(path)) => {
            let what = format!("--ticket-key-file {}", path.display());
            let bytes =
                std::fs::read(path).map_err(|e| ConfigError(format!("cannot read {what}: {e}")))?;
            let secret =
                MasterSecret::from_bytes(bytes).map_err(|e| ConfigError(format!("{what} {e}")))?;
            match previous.and_then(|g| g.tls.tickets.clone()) {
                Some(kept) if *kept == secret => Some(kept),
                _ => Some(Arc::new(secret)),
            }
        }
    };
    for p in topology.pools.iter() {
        if p.tls
            .as_ref()
            .is_some_and(|t| matches!(t.settings.verify, Verify::Insecure))
        {
            tracing::warn!(
                pool = %p.name,
                "INSECURE: backend certificates of pool '{}' are not checked \
                 (--backend-insecure / insecure = true); anyone between tern and its backends \
                 can read and change the traffic",
                p.name
            );
        }
    }
    let mut files = topology.files;
    files.extend(topology.also_watched);
    files.extend(t.ticket_key_file.clone());
    Ok(Generation {
        id: previous.map_or(1, |g| g.id + 1),
        listen: topology.listen,
        files: normalise(files),
        policies: topology.policies,
        tls: Arc::new(TlsSettings {
            certs: Arc::new(topology.certs),
            alpn,
            tickets,
            policy: Policy::new(&t.tls_min, &t.ciphers, &t.groups)?,
            strict_sni: t.strict_sni,
        }),
        pools: topology.pools.into(),
        routes: Arc::new(Routes::new(topology.routes)),
    })
}

/// A listener's checks from its settings; `name` turns a setting's name (`allow`,
/// `proxy-from`) into how the refusal names it (`--allow`, `tern.toml:4: allow`).
pub fn listener_policy<S: AsRef<str>>(
    accept_proxy: bool,
    proxy_from: &[S],
    allow: &[S],
    deny: &[S],
    name: &dyn Fn(&str) -> String,
) -> Result<ListenerPolicy, ConfigError> {
    if !proxy_from.is_empty() && !accept_proxy {
        return Err(ConfigError(format!(
            "{}: only means something with {}",
            name("proxy-from"),
            name("accept-proxy")
        )));
    }
    let proxy_from = acl::parse_list(&name("proxy-from"), proxy_from)?;
    Ok(ListenerPolicy {
        accept_proxy,
        proxy_from: (!proxy_from.is_empty()).then(|| PrefixSet::new(&proxy_from)),
        acl: Acl::new(
            &acl::parse_list(&name("allow"), allow)?,
            &acl::parse_list(&name("deny"), deny)?,
        ),
    })
}

pub fn parse_all_listen(list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter().map(|l| parse_listen(l)).collect()
}

/// `HOST:PORT`, `[v6]:PORT`, or `:PORT` / `*:PORT` for every IPv4 address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    parse_addr("--listen", text)
}

/// An address to bind for `flag`, in the forms of [`parse_listen`].
pub fn parse_addr(flag: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let full = match text.strip_prefix('*').unwrap_or(text) {
        t if t.starts_with(':') => format!("0.0.0.0{t}"),
        t => t.to_string(),
    };
    resolve(flag, &full).map_err(|e| ConfigError(e.0.replace(&full, text)))
}

/// A backend as written for `flag`: `unix:/absolute/path` (a Unix socket), else `HOST:PORT`
/// resolved as [`resolve`] does.
pub fn backend_addr(flag: &str, text: &str) -> Result<BackendAddr, ConfigError> {
    match addr::parse_unix(text) {
        Some(Ok(path)) => Ok(BackendAddr::Unix(path)),
        Some(Err(why)) => Err(ConfigError(format!("{flag} {text}: {why}"))),
        None => resolve(flag, text).map(BackendAddr::Tcp),
    }
}

/// Resolves `HOST:PORT` once, at start-up (the first address wins).
pub fn resolve(flag: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: String| ConfigError(format!("{flag} {text}: {why}"));
    if text
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        return Err(bad("expected HOST:PORT, e.g. 127.0.0.1:8080".into()));
    }
    text.to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

#[cfg(test)]
mod cert_flag_tests;
#[cfg(test)]
mod client_auth_tests;
#[cfg(test)]
mod front_tests;
#[cfg(test)]
mod tests;
