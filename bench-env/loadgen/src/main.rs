//! tern-loadgen: the load generator of tern's bench-env.
//!
//! `run`      closed-loop (or fixed-rate) HTTPS load: full or resumed handshakes (`--reqs-per-conn 1`),
//!            keep-alive requests, bulk downloads/uploads; measures rate, latency and the CPU time
//!            of the server's process tree (`--watch-pid`).
//! `idle`     opens N TLS connections, one request each, holds them, and reports the growth of the
//!            server tree's resident memory per connection.
//! `flood`    full-handshake flood: canned ClientHellos, each connection reset once the server's
//!            first flight arrives (the server does a full handshake's crypto, the client none).
//! `treestat` prints the CPU time and RSS of a process tree (run.sh uses it around wrk).
//!
//! Every mode prints one JSON line on stdout; progress and errors go to stderr.

mod driver;
mod flood;
mod http;
mod procstat;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tern-loadgen",
    version,
    about = "HTTPS load generator for tern's bench-env"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive requests for a fixed time (closed loop, or open loop with --rate).
    Run(RunArgs),
    /// Open and hold idle TLS connections; report server RSS per connection.
    Idle(IdleArgs),
    /// Flood the server with full handshakes that cost the client nothing: send a canned
    /// ClientHello, wait for the server's first flight, reset.
    Flood(FloodArgs),
    /// Print CPU seconds and RSS of the process tree rooted at PID, as JSON.
    Treestat { pid: u32 },
    /// Write N self-signed ECDSA certificates (host<i>.example, one PEM file each: chain and
    /// key) into DIR, for measuring start-up and reload with many certificates.
    Gencerts { dir: std::path::PathBuf, n: usize },
}

#[derive(Args, Clone)]
pub struct TlsArgs {
    /// Address of the TLS server.
    #[arg(long)]
    pub target: SocketAddr,
    /// Server name sent in SNI and Host.
    #[arg(long, default_value = "localhost")]
    pub sni: String,
    /// TLS version to offer: 1.3 or 1.2.
    #[arg(long, default_value = "1.3")]
    pub tls: String,
    /// Key-exchange group offered (only this one): x25519, p256, p384, x25519mlkem768.
    #[arg(long, default_value = "x25519")]
    pub group: String,
    /// Cipher offered (only this one): aes128, aes256, chacha20, any.
    #[arg(long, default_value = "aes128")]
    pub cipher: String,
    /// Keep and offer session tickets (TLS 1.3) / sessions (TLS 1.2), shared by all connections.
    #[arg(long)]
    pub resume: bool,
    /// Plain HTTP over TCP, no TLS (the plaintext reference rows: a forwarder without TLS).
    #[arg(long)]
    pub plain: bool,
    /// Check the server's handshake signature (costs client CPU; the chain is never checked).
    #[arg(long)]
    pub verify_sig: bool,
    /// ALPN protocols to offer, comma-separated (none by default).
    #[arg(long)]
    pub alpn: Option<String>,
    /// Load-generator threads (one io_uring runtime each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin the threads to, e.g. `1` or `2-3` (default: not pinned).
    #[arg(long)]
    pub cpus: Option<String>,
    /// PID whose process tree's CPU time / RSS is measured (the terminator).
    #[arg(long)]
    pub watch_pid: Option<u32>,
    /// PID of the backend, whose process tree's CPU time is reported too (to tell how much of
    /// the machine the run left to others).
    #[arg(long)]
    pub watch_backend: Option<u32>,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Seconds any one connect+handshake or request may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Free-form label copied into the JSON output.
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Connections in flight.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Requests per connection before it is closed and a new one opened; 0 = keep-alive for the
    /// whole run. 1 = a new handshake per request (sent with `Connection: close`).
    #[arg(long, default_value_t = 0)]
    pub reqs_per_conn: u64,
    /// Total requests per second (open loop, latency measured from each request's intended
    /// start); 0 = closed loop, as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request body bytes (sent with Content-Length).
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
}

#[derive(Args, Clone)]
pub struct FloodArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Seconds of flood before counting.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds counted.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Hold each ClientHello until the next multiple of this many ms since the start, so that
    /// the hellos of all connections made in between arrive together (0: send at once).
    #[arg(long, default_value_t = 0)]
    pub hello_every_ms: u64,
}

#[derive(Args, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Least seconds to wait after the last connection is up before reading the RSS.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Seconds the server's RSS must hold still (within 1 % of its growth) before it is read:
    /// allocators give memory back a while after the burst of handshakes, some in steps.
    #[arg(long, default_value_t = 3.0)]
    pub still: f64,
    /// Most seconds to wait for the RSS to hold still.
    #[arg(long, default_value_t = 20.0)]
    pub settle_max: f64,
    /// Most seconds to spend opening connections.
    #[arg(long, default_value_t = 120.0)]
    pub max_setup: f64,
    /// Seconds to keep holding the connections after reporting.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run(a) => driver::run(a),
        Cmd::Idle(a) => driver::idle(a),
        Cmd::Gencerts { dir, n } => gencerts(&dir, n),
        Cmd::Flood(a) => flood::run(a),
        Cmd::Treestat { pid } => procstat::tree(pid)
            .map(|t| {
                println!(
                    "{}",
                    serde_json::json!({
                        "pid": pid,
                        "cpu_s": t.cpu_ticks as f64 / procstat::clk_tck(),
                        "rss_kb": t.rss_kb,
                        "procs": t.procs,
                    })
                );
                true
            })
            .map_err(|e| format!("treestat {pid}: {e}")),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tern-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// `gencerts`: many distinct certificates, made in parallel (a few seconds for 10,000).
fn gencerts(dir: &std::path::Path, n: usize) -> Result<bool, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<(), String> {
                    for i in (t..n).step_by(threads) {
                        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
                        let name = format!("host{i}.example");
                        let cert = rcgen::CertificateParams::new(vec![name.clone()])
                            .and_then(|p| p.self_signed(&key))
                            .map_err(|e| e.to_string())?;
                        let path = dir.join(format!("{i:05}.pem"));
                        std::fs::write(&path, format!("{}{}", cert.pem(), key.serialize_pem()))
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("generator panicked".into()))
        })
    })?;
    println!(
        "{}",
        serde_json::json!({ "dir": dir.display().to_string(), "certs": n })
    );
    Ok(true)
}
