//! `tern demo`: the whole terminator on an embedded default, for a newcomer's first minute. A
//! self-signed certificate for localhost is made in memory, a small HTTP backend starts inside
//! the process on a loopback port, and tern serves it through the real worker path.

mod backend;

use std::net::SocketAddr;

use crate::backend::pool::{Balance, PoolSpec};
use crate::cli::DemoArgs;
use crate::config::{parse_all_listen, Config, Topology};
use crate::control::{self, RunError};
use crate::route::{HostMatch, Route};
use crate::tls::{self, certs};

pub fn run(args: &DemoArgs) -> Result<(), RunError> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| RunError::Runtime(format!("demo: cannot make a certificate: {e}")))?;
    let key = certs::from_der(
        vec![generated.cert.der().clone()],
        tls::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into()),
        &tls::provider(),
    )
    .map_err(RunError::Runtime)?;
    // Only the public certificate is written out, so curl can verify the demo without -k.
    let ca_path = std::env::temp_dir().join(format!("tern-demo-{}.crt", std::process::id()));
    let ca_written = std::fs::write(&ca_path, generated.cert.pem()).is_ok();

    let backend = backend::start()
        .map_err(|e| RunError::Runtime(format!("demo: cannot start the demo backend: {e}")))?;
    let listen = parse_all_listen(&args.listen).map_err(|e| RunError::Config(e.0))?;
    let topology = Topology {
        policies: vec![Default::default(); listen.len()],
        listen,
        certs: certs::CertStore::single(key),
        pools: vec![PoolSpec {
            name: "demo".into(),
            backends: vec![crate::backend::addr::BackendAddr::Tcp(backend)],
            balance: Balance::RoundRobin,
            health: None,
            tls: None,
            proxy_protocol: None,
        }],
        routes: vec![Route {
            host: HostMatch::Any,
            path_prefix: "/".into(),
            pool: 0,
            client_cert_required: false,
        }],
        // Made in memory: nothing on disk to watch.
        files: Vec::new(),
        also_watched: Vec::new(),
    };
    let mut cfg = Config::build(topology, &args.tuning).map_err(|e| RunError::Config(e.0))?;
    // The demo's backend thread starts before tern would confine itself (so Landlock would not
    // cover it), and the demo removes its CA file at exit, which a sandbox forbids: a local
    // try-out runs unconfined.
    cfg.sandbox = false;
    // The demo's certificate and backend live in memory: there is nothing to read again.
    let mut reload =
        |_: &crate::generation::Generation| Err("tern demo has nothing to reload".to_string());
    let result = control::run(cfg, &mut reload, |bound: &[SocketAddr]| {
        for addr in bound {
            println!("tern demo: https://{addr} -> demo backend http://{backend}");
            if ca_written && addr.ip().is_loopback() {
                println!(
                    "try:  curl --cacert {} https://localhost:{}/",
                    ca_path.display(),
                    addr.port()
                );
            }
            println!("  or: curl -k https://{addr}/");
        }
        println!("stop with Ctrl-C");
    });
    let _ = std::fs::remove_file(&ca_path);
    result
}
