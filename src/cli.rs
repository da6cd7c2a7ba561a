//! The command line (clap derive). Parsing only: turning these raw values into a checked
//! [`Config`](crate::config::Config) is `config`'s job, so every refusal is one line naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::backend::pool::Balance;
use crate::http::CertHeaders;
use crate::net::ringrecv::UringRecv;
use crate::tls::ClientAuthMode;
use crate::util::{cpus, duration, size};

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "A thread-per-core TLS termination proxy for Linux (io_uring).",
    long_about = "A thread-per-core TLS termination proxy for Linux (io_uring).\n\n\
        tern accepts TLS 1.3/1.2 connections, decrypts them on one pinned worker per CPU, and \
        forwards the plaintext to your backends.\n\nTry it: tern demo",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve https://127.0.0.1:8443 with a generated certificate and a built-in HTTP backend.
    Demo(Box<DemoArgs>),
    /// Check a configuration file (and the certificates it names), then exit: 0 when it is
    /// good, 2 with the file, line and cause when not.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The configuration file to check.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The client-certificate flags the run uses (their files are checked too, and a route
    /// with client_auth = "required" may rely on --client-ca).
    #[command(flatten)]
    pub client_cert: ClientCertArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Listeners, certificates, backend pools and routes from a TOML file (instead of
    /// --listen, --cert/--key/--pem and --backend).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "cert", "key", "pem", "ocsp", "backend", "balance", "health_check", "backend_tls", "backend_ca", "backend_sni", "backend_cert", "backend_key", "backend_alpn", "backend_insecure", "proxy_protocol", "accept_proxy", "proxy_from", "allow", "deny"])]
    pub config: Option<PathBuf>,
    /// Address to accept TLS on, e.g. 0.0.0.0:443 or [::]:443 (repeatable; :443 means all IPv4).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Certificate chain (PEM), leaf first; repeatable, each paired with the --key given in the
    /// same position. Chosen by the client's server name (SNI); the first certificate given
    /// (--cert or --pem) is the default.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Vec<PathBuf>,
    /// Private key for the --cert in the same position (PEM: PKCS#8, RSA or EC; ECDSA, RSA
    /// and Ed25519 keys).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Vec<PathBuf>,
    /// One PEM file holding a chain and its key (as hitch and HAProxy take it), or a directory
    /// whose *.pem files are each one; repeatable.
    #[arg(long, value_name = "FILE|DIR")]
    pub pem: Vec<PathBuf>,
    /// OCSP response (DER) to staple for the certificate given just before it; without it,
    /// `<certificate file>.ocsp` is stapled when it exists.
    #[arg(long, value_name = "FILE")]
    pub ocsp: Vec<PathBuf>,
    /// The order --cert, --pem and --ocsp were given in (filled by [`parse`]).
    #[arg(skip)]
    pub cert_order: Vec<CertArg>,
    /// Backend to forward to, HOST:PORT or unix:/absolute/path of a Unix socket (repeatable:
    /// balanced per worker, next on failure).
    #[arg(long, value_name = "HOST:PORT|unix:PATH")]
    pub backend: Vec<String>,
    /// How the backends share connections (requests in http mode).
    #[arg(long, value_name = "HOW", default_value = "round-robin", value_parser = parse_balance, hide_possible_values = false)]
    pub balance: Balance,
    /// Check each backend with GET PATH every --health-check-interval; a backend that does not
    /// answer 2xx/3xx is left out until it does [default: passive checks only].
    #[arg(long, value_name = "PATH")]
    pub health_check: Option<String>,
    /// Time between active health checks.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    pub health_interval: Duration,
    /// Connect to the backends over TLS, checking their certificates against the system's
    /// roots (or --backend-ca) for the backend's name; a backend that fails the check is never
    /// sent a byte of the client's.
    #[arg(long)]
    pub backend_tls: bool,
    /// CA certificates (PEM) to check backends against, instead of the system's roots.
    #[arg(long, value_name = "FILE", requires = "backend_tls")]
    pub backend_ca: Option<PathBuf>,
    /// Name to ask the backends for (SNI) and check their certificates against [default: each
    /// backend's host as written; an IP address is checked against the certificate's IP
    /// addresses and sends no SNI].
    #[arg(long, value_name = "NAME", requires = "backend_tls")]
    pub backend_sni: Option<String>,
    /// Client certificate chain (PEM) tern shows backends that ask for one.
    #[arg(long, value_name = "FILE", requires_all = ["backend_tls", "backend_key"])]
    pub backend_cert: Option<PathBuf>,
    /// Private key (PEM) of --backend-cert.
    #[arg(long, value_name = "FILE", requires_all = ["backend_tls", "backend_cert"])]
    pub backend_key: Option<PathBuf>,
    /// ALPN protocols to offer the backends [default: http/1.1 in http mode, none in tcp mode].
    #[arg(
        long,
        value_name = "PROTO,...",
        value_delimiter = ',',
        requires = "backend_tls"
    )]
    pub backend_alpn: Option<Vec<String>>,
    /// Check nothing about the backends' certificates (tests only: anyone between tern and the
    /// backends can read and change the traffic). Logged loudly at start and at each reload.
    #[arg(long, requires = "backend_tls", conflicts_with = "backend_ca")]
    pub backend_insecure: bool,
    /// Send each backend connection a PROXY protocol header first (v1 text, or v2 binary with
    /// the client's ALPN, server name and TLS version and cipher); health checks send LOCAL.
    #[arg(long, value_name = "v1|v2", value_parser = crate::config::backend::proxy_version)]
    pub proxy_protocol: Option<crate::proxyproto::Version>,
    #[command(flatten)]
    pub client_cert: ClientCertArgs,
    /// Expect a PROXY protocol header (v1 or v2) from an L4 balancer before the TLS bytes on
    /// every --listen address; its client address is then the client's address everywhere.
    #[arg(long)]
    pub accept_proxy: bool,
    /// With --accept-proxy: only these peers may send PROXY headers, e.g. 10.0.0.0/24
    /// (repeatable) [default: any peer, which lets anyone who can connect claim any address].
    #[arg(long, value_name = "CIDR")]
    pub proxy_from: Vec<String>,
    /// Let in only clients in this prefix, e.g. 192.0.2.0/24 or 2001:db8::/32 (repeatable)
    /// [default: every address not denied].
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Refuse clients in this prefix (repeatable); wins over --allow.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// Client certificates (mTLS), for a run and for `tern check`.
#[derive(Args, Debug, Default)]
pub struct ClientCertArgs {
    /// Ask clients for a certificate that chains to a CA in FILE (PEM) and refuse those
    /// without one (mTLS); with --config, for every [[cert]] without a client_ca of its own.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// required: no client certificate, no connection. optional: ask, but let clients without
    /// one through (http mode tells the backend X-Client-Verify: NONE) [default: required].
    #[arg(long, value_name = "MODE", value_parser = parse_client_auth)]
    pub client_auth: Option<ClientAuthMode>,
    /// Certificate revocation list (PEM or DER) for --client-ca: revoked client certificates
    /// are refused; repeatable. Read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub client_crl: Vec<PathBuf>,
}

fn parse_client_auth(s: &str) -> Result<ClientAuthMode, String> {
    ClientAuthMode::parse(s)
}

/// One certificate argument, by its kind and its index among the arguments of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertArg {
    Cert(usize),
    Pem(usize),
    Ocsp(usize),
}

/// Parses the command line, keeping the relative order of certificate arguments (which one
/// is the default, which certificate an --ocsp belongs to).
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let mut order: Vec<(usize, CertArg)> = Vec::new();
    for (id, make) in [
        ("cert", CertArg::Cert as fn(usize) -> CertArg),
        ("pem", CertArg::Pem),
        ("ocsp", CertArg::Ocsp),
    ] {
        if let Some(indices) = matches.indices_of(id) {
            order.extend(indices.enumerate().map(|(n, at)| (at, make(n))));
        }
    }
    order.sort_by_key(|(at, _)| *at);
    cli.run.cert_order = order.into_iter().map(|(_, a)| a).collect();
    Ok(cli)
}

fn parse_balance(s: &str) -> Result<Balance, String> {
    s.parse()
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address the demo serves on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: Vec<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// Flags shared by a normal run and `tern demo`.
#[derive(Args, Debug)]
pub struct Tuning {
    /// tcp: decrypt and pump bytes unchanged. http: HTTP/1.1-aware (forwarding headers,
    /// routing by Host and path, kept-alive backends, errors answered with a status).
    #[arg(long, value_enum, default_value_t = Mode::Tcp)]
    pub mode: Mode,
    /// Worker threads, each pinned to one CPU [default: one per CPU this process may run on].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// CPUs to pin workers to, e.g. 0,2-5 [default: every CPU this process may run on].
    #[arg(long, value_name = "LIST", value_parser = parse_cores)]
    pub cores: Option<CpuList>,
    /// Most connections open at once, shared out over the workers; past it a new connection
    /// is closed at once. auto = (open-file limit - 64) / 2.
    #[arg(long, value_name = "N", default_value = "auto", value_parser = parse_max_conns)]
    pub max_conns: MaxConns,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse)]
    pub handshake_timeout: Duration,
    /// Time a balancer has to send the whole PROXY header (--accept-proxy listeners).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = duration::parse)]
    pub proxy_timeout: Duration,
    /// Full TLS handshakes in flight per worker at most (resumptions may use as many again);
    /// past it new connections wait in the kernel's accept queue. 0 = unbounded.
    #[arg(long, value_name = "N", default_value_t = crate::frontdoor::DEFAULT_MAX_HANDSHAKES)]
    pub max_handshakes: usize,
    /// Connections one client (IPv4 address, IPv6 /64) may hold open, enforced per worker:
    /// each worker allows N/workers (rounded up) [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_ip: Option<u32>,
    /// Close a connection after this long without a byte either way (0 = never).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration::parse)]
    pub idle_timeout: Duration,
    /// Time to connect to a backend before trying the next.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    pub connect_timeout: Duration,
    /// On SIGTERM/SIGINT, time open connections get to finish before tern exits.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    pub drain_timeout: Duration,
    /// On SIGTERM/SIGINT, keep accepting this long after /healthz turns 503, so a balancer
    /// checking it takes tern out before its listeners close (0 = close at once).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration::parse)]
    pub drain_delay: Duration,
    /// ALPN protocols to offer, most preferred first, e.g. http/1.1 [default: none].
    #[arg(long, value_name = "PROTO,...", value_delimiter = ',')]
    pub alpn: Vec<String>,
    /// Lowest TLS version accepted: 1.2 or 1.3.
    #[arg(long, value_name = "VERSION", default_value = "1.2")]
    pub tls_min: String,
    /// Cipher suites to offer, most preferred first (IANA names, e.g.
    /// TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) [default: all AEAD].
    #[arg(long, value_name = "SUITE,...", value_delimiter = ',')]
    pub ciphers: Vec<String>,
    /// Key-exchange groups, most preferred first (X25519MLKEM768, X25519, P-256, P-384)
    /// [default: all four, post-quantum hybrid first].
    #[arg(long, value_name = "GROUP,...", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Refuse a server name (SNI) no certificate covers with an unrecognized_name alert,
    /// instead of answering with the default certificate.
    #[arg(long)]
    pub strict_sni: bool,
    /// TLS session resumption (stateless tickets, and a TLS 1.2 session cache per worker).
    #[arg(long, value_enum, default_value_t = Toggle::On)]
    pub tickets: Toggle,
    /// Secret (32+ bytes) to derive ticket keys from, so several tern machines resume each
    /// other's sessions [default: random per process].
    #[arg(long, value_name = "FILE")]
    pub ticket_key_file: Option<PathBuf>,
    /// http mode: keep X-Forwarded-For/-Proto, Forwarded and X-Real-IP sent by clients (and
    /// append to them) instead of dropping them; only behind another proxy you trust.
    #[arg(long)]
    pub trust_forwarded: bool,
    /// http mode: also send RFC 7239 `Forwarded: for=...;proto=https`.
    #[arg(long)]
    pub forwarded: bool,
    /// http mode with client certificates: the identity headers the backend gets, a list of
    /// x-client (X-Client-Verify, X-Client-Subject, X-Client-Fingerprint), xfcc (Envoy's
    /// X-Forwarded-Client-Cert) or none. Clients' own copies are always removed.
    #[arg(long, value_name = "LIST", default_value = "x-client", value_parser = CertHeaders::parse)]
    pub forward_client_cert: CertHeaders,
    /// http mode: largest request head (431 past it; at most 32KiB).
    #[arg(long, value_name = "SIZE", default_value = "32KiB", value_parser = size::parse)]
    pub max_header_bytes: u64,
    /// http mode: largest request body (413 past it) [default: unlimited].
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub max_body_bytes: Option<u64>,
    /// http mode: time a client has to send a whole request head once it began (408 after).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse)]
    pub header_timeout: Duration,
    /// http mode: longest wait for the next bytes of a request body (408 after, or the
    /// connection closed once the response has begun).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    pub body_timeout: Duration,
    /// http mode: time a backend has to start its response (504 after).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    pub backend_timeout: Duration,
    /// http mode: idle kept-alive connections per backend and worker.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub backend_keepalive: usize,
    /// http mode: how long an idle kept-alive backend connection is kept.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    pub backend_idle_timeout: Duration,
    /// One line per request (http mode) or per connection (tcp mode) to FILE (appended), or
    /// - for standard output [default: off].
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<String>,
    /// Format of the access log and of tern's own log lines: text, or json (one object per
    /// line, for log shippers).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = crate::proxy::accesslog::LogFormat::Text)]
    pub log_format: crate::proxy::accesslog::LogFormat,
    /// Serve Prometheus metrics (/metrics), /healthz and /readyz over plain HTTP on ADDR, e.g.
    /// 127.0.0.1:9100. Keep it on loopback or a private address: it has no authentication.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Reload by itself (as on SIGHUP) when a certificate, key, OCSP response, ticket-key or
    /// configuration file changes: their directories are watched with inotify, so renames
    /// over a file and symlink swaps (certbot's live/, Kubernetes' ..data) are seen. A reload
    /// runs once the files have been quiet for 300 ms.
    #[arg(long)]
    pub watch: bool,
    /// Unix socket for zero-downtime binary upgrades: a tern started with it hands its
    /// listening sockets to the next tern started with the same PATH, which takes over
    /// without dropping a connection; the old one then drains and exits.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Run as this user once listeners are bound and keys loaded (when started as root).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// After start-up, confine the process (Landlock): read only beneath the directories of
    /// the certificate, key, client CA/CRL, config and ticket-key files, write only the access
    /// log, never exec.
    #[arg(long, value_enum, default_value_t = Toggle::On)]
    pub sandbox: Toggle,
    /// Limit each worker's io_uring ring to the operations tern submits (accept, connect,
    /// recv, send, poll, cancel, close, read, timeout): anything else, opening a file for one,
    /// fails in the kernel. A kernel without io_uring restrictions (before 5.10) gets
    /// unrestricted rings, said in each worker's start line.
    #[arg(long, value_enum, default_value_t = Toggle::On)]
    pub uring_restrict: Toggle,
    /// How tcp mode receives from clients and plain backends on io_uring: single = a readiness
    /// wait, then one read per chunk into a pooled buffer; multishot = one armed receive per
    /// socket into the worker's provided-buffer ring (Linux 6.0; holds no buffer while idle),
    /// the default. Where the kernel refuses the buffer ring, and on epoll, workers read as
    /// with single.
    #[arg(long, value_enum, default_value_t = UringRecv::Multishot)]
    pub uring_recv: UringRecv,
    /// More log output (-v debug: one line per connection error, -vv trace).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    On,
    Off,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxConns {
    Auto,
    Limit(usize),
}

fn parse_cores(s: &str) -> Result<CpuList, String> {
    cpus::parse_list(s).map(CpuList)
}

fn parse_max_conns(s: &str) -> Result<MaxConns, String> {
    if s == "auto" {
        return Ok(MaxConns::Auto);
    }
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or auto)".into()),
        Ok(n) => Ok(MaxConns::Limit(n)),
        Err(_) => Err(format!("'{s}' is not a number (or auto)")),
    }
}

impl Tuning {
    /// Log level from -v/-q: 0 warn, 1 info (default), 2 debug, 3+ trace.
    pub fn verbosity(&self) -> u8 {
        if self.quiet {
            0
        } else {
            1 + self.verbose
        }
    }
}

/// Folds a clap error into the one line tern prints: the message and what it names (a missing
/// flag is on clap's second line), without the usage block and tips.
pub fn one_line_error(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "bad arguments (try --help)".into()
    } else {
        line.into()
    }
}
