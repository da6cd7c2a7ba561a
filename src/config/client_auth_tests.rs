//! Client-certificate settings from flags and the config file: what loads, and the one-line
//! refusals (flag or file:line) for what does not.

use std::path::Path;

use super::*;

fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
    crate::cli::parse_from(std::iter::once("tern").chain(args.iter().copied()))
}

/// A self-signed server certificate `<name>.crt`/`.key` and a client CA `ca.pem` in `dir`.
fn files(dir: &Path, name: &str) -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let ca_path = dir.join("ca.pem");
    if !ca_path.exists() {
        std::fs::write(&ca_path, ca.pem()).unwrap();
    }
    (
        c.display().to_string(),
        k.display().to_string(),
        ca_path.display().to_string(),
    )
}

#[test]
fn flags_without_a_client_ca_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, ca) = files(dir.path(), "a.test");
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--cert",
        &c,
        "--key",
        &k,
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        Config::from_args(&parse(&args).unwrap().run)
    };
    let e = run(&["--client-auth", "optional"]).unwrap_err().0;
    assert!(
        e.starts_with("--client-auth optional") && e.contains("--client-ca"),
        "{e}"
    );
    let e = run(&["--client-crl", "x.crl"]).unwrap_err().0;
    assert!(
        e.starts_with("--client-crl x.crl") && e.contains("--client-ca"),
        "{e}"
    );
    let e = run(&["--client-ca", "missing.pem"]).unwrap_err().0;
    assert!(e.starts_with("cannot read --client-ca missing.pem"), "{e}");
    let e = run(&["--client-ca", &ca, "--client-crl", &c])
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("--client-crl ") && e.contains("no X509 CRL"),
        "{e}"
    );
    assert!(parse(&["--client-auth", "maybe"]).is_err());
    let cfg = run(&["--client-ca", &ca, "--client-auth", "on"]).unwrap();
    let auths = cfg.generation.tls.certs.client_auths();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].mode, crate::tls::ClientAuthMode::Required);
}

#[test]
fn config_file_settings_per_certificate() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), "a.test");
    files(dir.path(), "b.test");
    files(dir.path(), "c.test");
    let text = r#"
listen = ["127.0.0.1:0"]

[[cert]]
cert = "a.test.crt"
key = "a.test.key"
client_ca = "ca.pem"
client_auth = "optional"

[[cert]]
cert = "b.test.crt"
key = "b.test.key"
client_ca = "ca.pem"
client_auth = "optional"

[[cert]]
cert = "c.test.crt"
key = "c.test.key"
client_auth = "none"

[[pool]]
name = "web"
backends = ["127.0.0.1:1"]

[[route]]
pool = "web"

[[route]]
path = "/admin"
pool = "web"
client_auth = "required"
"#;
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, text).unwrap();
    // The flags' CA is the default; c.test opts out.
    let (_, _, ca) = files(dir.path(), "x");
    let flags = ClientAuth::load(
        &Named::new("--client-ca", &ca),
        &[],
        ClientAuthMode::Required,
        &crate::tls::provider(),
    )
    .unwrap();
    let t = file::load_with(&path, Some(&Arc::new(flags))).unwrap();
    let store = &t.certs;
    assert_eq!(store.client_auths().len(), 1, "a and b share one setting");
    assert_eq!(store.client_auths()[0].mode, ClientAuthMode::Optional);
    let index = |n: &str| store.client_auth_index(store.group_for(Some(n)));
    assert_eq!(index("a.test"), 1);
    assert_eq!(index("b.test"), 1);
    assert_eq!(index("c.test"), 0);
    let routes = Routes::new(t.routes);
    assert!(
        routes
            .pick_route(None, b"/admin/x")
            .unwrap()
            .client_cert_required
    );
    assert!(!routes.pick_route(None, b"/").unwrap().client_cert_required);
}

#[test]
fn config_file_refusals_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), "a.test");
    let check = |cert_extra: &str, route_extra: &str, line: usize, needle: &str| {
        let body = format!(
            "listen = [\"127.0.0.1:0\"]\n[[cert]]\ncert = \"a.test.crt\"\nkey = \"a.test.key\"\n\
             {cert_extra}[[pool]]\nname = \"w\"\nbackends = [\"127.0.0.1:1\"]\n\
             [[route]]\npool = \"w\"\n{route_extra}"
        );
        let path = dir.path().join("t.toml");
        std::fs::write(&path, body).unwrap();
        let e = file::load(&path).unwrap_err().0;
        let want = format!("{}:{line}: ", path.display());
        assert!(
            (e.starts_with(&want) || e.starts_with(&format!("cannot read {want}")))
                && e.contains(needle),
            "{e}\nwanted {want}...{needle}"
        );
        assert!(!e.contains('\n'), "{e}");
    };
    check("client_auth = \"required\"\n", "", 5, "needs client_ca");
    check(
        "client_crl = \"x.crl\"\n",
        "",
        5,
        "client_crl needs client_ca",
    );
    check(
        "client_ca = \"ca.pem\"\nclient_auth = \"sometimes\"\n",
        "",
        6,
        "'sometimes' must be required or optional",
    );
    check("client_ca = \"nope.pem\"\n", "", 5, "client_ca");
    check(
        "client_ca = \"ca.pem\"\nclient_crl = [\"ca.pem\"]\n",
        "",
        6,
        "no X509 CRL",
    );
    check(
        "",
        "client_auth = \"required\"\n",
        10,
        "no certificate asks clients",
    );
    check(
        "client_ca = \"ca.pem\"\n",
        "client_auth = \"maybe\"\n",
        11,
        "'maybe' must be required or optional",
    );
    check(
        "client_ca = \"ca.pem\"\nclient_auth = \"none\"\n",
        "",
        5,
        "remove one of them",
    );
}
