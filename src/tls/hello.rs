//! A look at the client's first flight before rustls takes it: the server name it asks for and
//! whether it tries to resume, so that handshake admission can tell a cheap resumption from a
//! full handshake before any crypto is spent. Pure, over bytes; the handshake still belongs to
//! rustls, which checks everything this skips.

/// What the first flight says, once it is all here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The `server_name` extension's host name, lower-case (`None` when absent).
    pub sni: Option<String>,
    /// Offers a TLS 1.3 pre-shared key or a non-empty TLS 1.2 session ticket.
    pub resumption: bool,
    /// The ClientHello's random, which names the handshake to rustls' key-log hook
    /// (`tls::capture`).
    pub random: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// More bytes are needed to see the whole ClientHello.
    Incomplete,
    /// Not a ClientHello (rustls will say what is wrong with it).
    NotHello,
    Hello(Hello),
}

use std::borrow::Cow;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_SESSION_TICKET: u16 = 35;
const EXT_PRE_SHARED_KEY: u16 = 41;
/// A ClientHello larger than this is not looked at (rustls bounds it too).
const MAX_HELLO: usize = 1 << 17;

/// Looks at the records at the front of `buf`: the ClientHello may span several handshake
/// records (fragmentation is legal), which are joined here.
pub fn peek(buf: &[u8]) -> Peek {
    // Borrowed while the message is in one record (as from every common client); copied
    // only to join a fragmented one.
    let mut msg: Cow<[u8]> = Cow::Borrowed(&[]);
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + 5) else {
            return Peek::Incomplete;
        };
        if header[0] != HANDSHAKE || header[1] != 3 {
            return Peek::NotHello;
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let Some(fragment) = buf.get(at + 5..at + 5 + len) else {
            return Peek::Incomplete;
        };
        if msg.is_empty() {
            msg = Cow::Borrowed(fragment);
        } else {
            msg.to_mut().extend_from_slice(fragment);
        }
        at += 5 + len;
        if msg.len() >= 4 {
            if msg[0] != CLIENT_HELLO {
                return Peek::NotHello;
            }
            let body = u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
            if body > MAX_HELLO {
                return Peek::NotHello;
            }
            if msg.len() >= 4 + body {
                return match parse_body(&msg[4..4 + body]) {
                    Some(h) => Peek::Hello(h),
                    None => Peek::NotHello,
                };
            }
        }
        if len == 0 && msg.is_empty() {
            // An empty handshake record is illegal; leave it to rustls.
            return Peek::NotHello;
        }
    }
}

/// A cursor over length-prefixed TLS vectors.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

fn parse_body(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    let mut hello = Hello {
        random: r.take(32)?.try_into().ok()?,
        ..Hello::default()
    };
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(hello); // no extensions (old clients)
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let data = exts.vec16()?;
        match typ {
            EXT_SERVER_NAME => hello.sni = server_name(data),
            EXT_PRE_SHARED_KEY => hello.resumption = true,
            EXT_SESSION_TICKET if !data.is_empty() => hello.resumption = true,
            _ => {}
        }
    }
    Some(hello)
}

/// The first host_name entry of a server_name extension, if it is a plausible DNS name.
fn server_name(data: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            let name = std::str::from_utf8(name).ok()?;
            // One trailing dot (the root) is allowed; every label must be 1-63 bytes.
            let name = name.strip_suffix('.').unwrap_or(name);
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            return ok.then(|| name.to_ascii_lowercase());
        }
    }
    None
}

/// The body of the `client_hello` fuzz target (`fuzz/`), in the library so that
/// `tests/fuzz_corpus.rs` runs it over the stored corpus on stable Rust. `peek` never panics,
/// and its verdict is final: more bytes after a decided input change nothing, and a prefix of
/// an undecided one is undecided too; a name it reports is a normalised DNS name.
pub fn fuzz_client_hello(data: &[u8]) {
    let verdict = peek(data);
    match &verdict {
        Peek::Incomplete => {
            for cut in [0, data.len() / 2, data.len().saturating_sub(1)] {
                assert_eq!(peek(&data[..cut]), Peek::Incomplete, "prefix of {cut}");
            }
        }
        Peek::NotHello | Peek::Hello(_) => {
            let mut more = data.to_vec();
            more.extend_from_slice(&[22, 3, 3, 0, 1, 0xff, 0, 0]);
            assert_eq!(peek(&more), verdict, "bytes after a decided input");
        }
    }
    if let Peek::Hello(Hello {
        sni: Some(name), ..
    }) = &verdict
    {
        assert!(!name.is_empty() && name.len() <= 253 && !name.ends_with('.'));
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight a real rustls client sends.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        roots.add(cert.der().clone()).unwrap();
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let mut c =
            rustls::ClientConnection::new(cfg, name.to_string().try_into().unwrap()).unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_from_a_real_client_hello() {
        let flight = client_hello("Shop.Example.com");
        // record header 5, handshake header 4, legacy_version 2: then the random.
        let random = flight[11..43].try_into().unwrap();
        assert_eq!(
            peek(&flight),
            Peek::Hello(Hello {
                sni: Some("shop.example.com".into()),
                resumption: false,
                random,
            })
        );
        for cut in [0, 3, 5, 40, flight.len() - 1] {
            assert_eq!(peek(&flight[..cut]), Peek::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn joins_a_hello_fragmented_over_records() {
        let flight = client_hello("a.example");
        let body = &flight[5..];
        let mut split = Vec::new();
        for part in body.chunks(7) {
            split.extend_from_slice(&[22, 3, 1, 0, part.len() as u8]);
            split.extend_from_slice(part);
        }
        assert_eq!(peek(&split), peek(&flight));
    }

    /// A hand-made ClientHello with the given extensions.
    fn hello_with(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (t, d) in exts {
            e.extend_from_slice(&t.to_be_bytes());
            e.extend_from_slice(&(d.len() as u16).to_be_bytes());
            e.extend_from_slice(d);
        }
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1, (msg.len() >> 8) as u8, msg.len() as u8];
        rec.extend_from_slice(&msg);
        rec
    }

    #[test]
    fn tells_a_resumption_attempt() {
        let h = |exts: &[(u16, Vec<u8>)]| match peek(&hello_with(exts)) {
            Peek::Hello(h) => h,
            other => panic!("{other:?}"),
        };
        assert!(h(&[(41, vec![0, 0])]).resumption, "TLS 1.3 PSK");
        assert!(h(&[(35, vec![1, 2, 3])]).resumption, "TLS 1.2 ticket");
        assert!(!h(&[(35, vec![])]).resumption, "empty ticket: asks for one");
        assert_eq!(h(&[]).sni, None);
        let sni = |name: &[u8]| {
            let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
            d.push(0);
            d.extend_from_slice(&(name.len() as u16).to_be_bytes());
            d.extend_from_slice(name);
            d
        };
        assert_eq!(h(&[(0, sni(b"x.test."))]).sni.as_deref(), Some("x.test"));
        assert_eq!(h(&[(0, sni(b"bad name"))]).sni, None);
        // Found by fuzzing: names of dots only, or with an empty label.
        for bad in [&b"..."[..], b".", b"x..", b"a..b", b".a"] {
            assert_eq!(
                h(&[(0, sni(bad))]).sni,
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotHello);
        assert_eq!(peek(&[23, 3, 3, 0, 1, 0]), Peek::NotHello);
        assert_eq!(
            peek(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Peek::NotHello,
            "ServerHello"
        );
        assert_eq!(peek(&[22, 3, 1, 0, 0]), Peek::NotHello, "empty record");
        // Extensions claiming more bytes than the message holds.
        let mut bad = hello_with(&[]);
        let n = bad.len();
        bad[n - 1] = 5;
        assert_eq!(peek(&bad), Peek::NotHello);
    }
}
