//! Turns parsed arguments into a checked [`Config`]: addresses resolved, certificate and key
//! loaded and matched, CPUs chosen. Every refusal is one line naming the flag or file; the
//! caller prints it and exits with code 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{MaxConns, Mode, RunArgs, Toggle, Tuning};
use crate::proxy::Settings;
use crate::tls::certs::{self, PemFile};
use crate::tls::tickets::MasterSecret;
use crate::tls::{self, TlsSettings};
use crate::util::cpus;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub backends: Vec<SocketAddr>,
    pub tls: Arc<TlsSettings>,
    pub mode: Mode,
    /// The CPU of each worker (its length is the worker count).
    pub cpus: Vec<usize>,
    pub max_conns: MaxConns,
    pub settings: Settings,
    pub drain_timeout: Duration,
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
    /// Validates a normal run's arguments, loading the certificate and key.
    pub fn from_args(args: &RunArgs) -> Result<Config, ConfigError> {
        if args.listen.is_empty() {
            return Err(ConfigError(
                "--listen is required, e.g. --listen 0.0.0.0:443".into(),
            ));
        }
        if args.backend.is_empty() {
            return Err(ConfigError(
                "--backend is required, e.g. --backend 127.0.0.1:8080".into(),
            ));
        }
        let key = match (&args.cert, &args.key, &args.pem) {
            (Some(c), Some(k), None) => certs::load(
                PemFile {
                    label: "--cert",
                    path: c,
                },
                PemFile {
                    label: "--key",
                    path: k,
                },
                &tls::provider(),
            )?,
            (None, None, Some(p)) => {
                let f = PemFile {
                    label: "--pem",
                    path: p,
                };
                certs::load(f, f, &tls::provider())?
            }
            _ => {
                return Err(ConfigError(
                    "a certificate is required: --cert FILE --key FILE, or --pem FILE".into(),
                ))
            }
        };
        let backends = args
            .backend
            .iter()
            .map(|b| resolve("--backend", b))
            .collect::<Result<Vec<_>, _>>()?;
        Config::build(&args.listen, backends, key, &args.tuning)
    }

    /// The part shared with `tern demo`, which brings its own key and backend.
    pub fn build(
        listen: &[String],
        backends: Vec<SocketAddr>,
        key: Arc<tls::CertifiedKey>,
        t: &Tuning,
    ) -> Result<Config, ConfigError> {
        if t.mode == Mode::Http {
            return Err(ConfigError(
                "--mode http: http mode is not built yet; use --mode tcp".into(),
            ));
        }
        let listen = listen
            .iter()
            .map(|l| parse_listen(l))
            .collect::<Result<Vec<_>, _>>()?;
        let allowed = cpus::allowed()
            .map_err(|e| ConfigError(format!("cannot read this process's CPU set: {e}")))?;
        let cpus = cpus::plan(
            &allowed,
            t.cores.as_ref().map(|c| c.0.as_slice()),
            t.workers,
        )?;
        for (flag, d) in [
            ("--handshake-timeout", t.handshake_timeout),
            ("--connect-timeout", t.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{flag}: must be more than 0")));
            }
        }
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
            (Toggle::On, None) => Some(MasterSecret::random()?),
            (Toggle::On, Some(path)) => {
                let what = format!("--ticket-key-file {}", path.display());
                let bytes = std::fs::read(path)
                    .map_err(|e| ConfigError(format!("cannot read {what}: {e}")))?;
                Some(
                    MasterSecret::from_bytes(bytes)
                        .map_err(|e| ConfigError(format!("{what} {e}")))?,
                )
            }
        };
        Ok(Config {
            listen,
            backends,
            tls: Arc::new(TlsSettings {
                key,
                alpn,
                tickets: tickets.map(Arc::new),
            }),
            mode: t.mode,
            cpus,
            max_conns: t.max_conns,
            settings: Settings {
                handshake_timeout: t.handshake_timeout,
                idle_timeout: (!t.idle_timeout.is_zero()).then_some(t.idle_timeout),
                connect_timeout: t.connect_timeout,
                ..Settings::default()
            },
            drain_timeout: t.drain_timeout,
        })
    }
}

/// `HOST:PORT`, `[v6]:PORT`, or `:PORT` / `*:PORT` for every IPv4 address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let full = match text.strip_prefix('*').unwrap_or(text) {
        t if t.starts_with(':') => format!("0.0.0.0{t}"),
        t => t.to_string(),
    };
    resolve("--listen", &full).map_err(|e| ConfigError(e.0.replace(&full, text)))
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
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(std::iter::once("tern").chain(args.iter().copied()))
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:8443").unwrap().to_string(),
            "127.0.0.1:8443"
        );
        assert_eq!(parse_listen(":443").unwrap().to_string(), "0.0.0.0:443");
        assert_eq!(parse_listen("*:443").unwrap().to_string(), "0.0.0.0:443");
        assert_eq!(
            parse_listen("[::1]:8443").unwrap().to_string(),
            "[::1]:8443"
        );
        let e = parse_listen("127.0.0.1").unwrap_err().0;
        assert!(e.starts_with("--listen 127.0.0.1:"), "{e}");
        let e = parse_listen("localhost:99999").unwrap_err().0;
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn backend_must_have_a_port() {
        let e = resolve("--backend", "example").unwrap_err().0;
        assert!(e.starts_with("--backend example"), "{e}");
        assert!(resolve("--backend", "127.0.0.1:8080").is_ok());
    }

    #[test]
    fn required_flags_are_named() {
        let cli = parse(&["--backend", "127.0.0.1:1", "--pem", "x.pem"]).unwrap();
        assert!(Config::from_args(&cli.run)
            .unwrap_err()
            .0
            .contains("--listen"));
        let cli = parse(&["--listen", "127.0.0.1:0", "--pem", "x.pem"]).unwrap();
        assert!(Config::from_args(&cli.run)
            .unwrap_err()
            .0
            .contains("--backend"));
        let cli = parse(&["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"]).unwrap();
        assert!(Config::from_args(&cli.run)
            .unwrap_err()
            .0
            .contains("--cert"));
        let cli = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--pem",
            "/nonexistent/x.pem",
        ])
        .unwrap();
        let e = Config::from_args(&cli.run).unwrap_err().0;
        assert!(e.contains("--pem /nonexistent/x.pem"), "{e}");
    }

    #[test]
    fn clap_refuses_bad_values() {
        assert!(parse(&["--cert", "c.pem"]).is_err(), "--cert needs --key");
        assert!(parse(&["--pem", "p", "--cert", "c", "--key", "k"]).is_err());
        assert!(parse(&["--workers", "two"]).is_err());
        assert!(parse(&["--cores", "3-1"]).is_err());
        assert!(parse(&["--max-conns", "0"]).is_err());
        assert!(parse(&["--idle-timeout", "soon"]).is_err());
        assert!(parse(&["--mode", "udp"]).is_err());
        assert!(parse(&["-v", "-q"]).is_err());
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        let t = &cli.run.tuning;
        assert_eq!(t.mode, Mode::Tcp);
        assert_eq!(t.max_conns, MaxConns::Auto);
        assert_eq!(t.handshake_timeout, Duration::from_secs(10));
        assert_eq!(t.idle_timeout, Duration::from_secs(300));
        assert_eq!(t.connect_timeout, Duration::from_secs(5));
        assert_eq!(t.drain_timeout, Duration::from_secs(30));
        assert_eq!(t.tickets, Toggle::On);
        assert_eq!(t.verbosity(), 1);
        let cli = parse(&["--cores", "0-1,3", "--max-conns", "100", "-vv"]).unwrap();
        assert_eq!(cli.run.tuning.cores.as_ref().unwrap().0, vec![0, 1, 3]);
        assert_eq!(cli.run.tuning.max_conns, MaxConns::Limit(100));
        assert_eq!(cli.run.tuning.verbosity(), 3);
    }

    fn key() -> Arc<tls::CertifiedKey> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        certs::from_der(
            vec![ck.cert.der().clone()],
            tls::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
            &tls::provider(),
        )
        .unwrap()
    }

    #[test]
    fn build_checks_tuning() {
        let listen = vec!["127.0.0.1:0".to_string()];
        let tuning = |args: &[&str]| parse(args).unwrap().run.tuning;
        let e = Config::build(&listen, vec![], key(), &tuning(&["--mode", "http"])).unwrap_err();
        assert!(e.0.starts_with("--mode http"), "{e}");
        let e = Config::build(&listen, vec![], key(), &tuning(&["--cores", "4000"])).unwrap_err();
        assert!(e.0.contains("--cores") && e.0.contains("4000"), "{e}");
        let e = Config::build(&listen, vec![], key(), &tuning(&["--connect-timeout", "0"]))
            .unwrap_err();
        assert!(e.0.starts_with("--connect-timeout"), "{e}");
        let cfg = Config::build(
            &listen,
            vec![],
            key(),
            &tuning(&[
                "--workers",
                "3",
                "--idle-timeout",
                "0",
                "--alpn",
                "h2,http/1.1",
                "--tickets",
                "off",
            ]),
        )
        .unwrap();
        assert_eq!(cfg.cpus.len(), 3);
        assert_eq!(cfg.settings.idle_timeout, None);
        assert_eq!(cfg.tls.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(cfg.tls.tickets.is_none());
        let e = Config::build(
            &listen,
            vec![],
            key(),
            &tuning(&["--ticket-key-file", "/nonexistent/k"]),
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("cannot read --ticket-key-file /nonexistent/k"),
            "{e}"
        );
    }
}
