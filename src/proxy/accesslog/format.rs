//! Access log lines, as text or JSON (`--log-format`).
//!
//! Text, http mode (space separated, quoted where spaces may occur; the last two are the time
//! until the backend's response head, `-` when none came, and the whole request's time):
//! `2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com "GET example.com /path" 200 5120 backend=10.0.0.1:8080 0.95ms 1.52ms`
//!
//! Text, tcp mode (one line per connection; `up` is client to backend, `down` the other way):
//! `2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com alpn=h2 TLSv1.3 TLS13_AES_128_GCM_SHA256 resumed=no backend=10.0.0.1:8080 up=310 down=5120 1520.00ms "closed by both sides"`
//!
//! JSON: one object per line with the same fields, named (`time`, `client`, `sni`, ...),
//! `null` where the text form has `-`; strings escaped per RFC 8259.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ConnEntry, Entry};

/// How log lines are written (the access log, and tern's own log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn request(out: &mut String, format: LogFormat, e: &Entry<'_>, now: SystemTime) {
    match format {
        LogFormat::Text => request_text(out, e, now),
        LogFormat::Json => {
            let mut o = Json::start(out, now);
            o.str("client", &e.client.to_string());
            o.opt_str("sni", e.sni);
            o.str("method", e.method);
            o.opt_str("host", e.host);
            o.str("path", e.path);
            o.num("status", e.status as u64);
            o.num("bytes", e.bytes_out);
            o.opt_str("backend", e.backend.map(|b| b.to_string()).as_deref());
            o.ms("backend_ms", e.backend_time);
            o.ms("duration_ms", Some(e.duration));
            o.end();
        }
    }
}

pub fn connection(out: &mut String, format: LogFormat, e: &ConnEntry<'_>, now: SystemTime) {
    let alpn = e.alpn.map(String::from_utf8_lossy);
    match format {
        LogFormat::Text => {
            push_timestamp(out, now);
            let _ = writeln!(
                out,
                " {} sni={} alpn={} {} {} resumed={} backend={} up={} down={} {:.2}ms \"{}\"",
                e.client,
                e.sni.unwrap_or("-"),
                Escaped(alpn.as_deref().unwrap_or("-")),
                e.version,
                if e.cipher.is_empty() { "-" } else { e.cipher },
                if e.resumed { "yes" } else { "no" },
                e.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
                e.bytes_to_backend,
                e.bytes_to_client,
                e.duration.as_secs_f64() * 1000.0,
                Escaped(e.end)
            );
        }
        LogFormat::Json => {
            let mut o = Json::start(out, now);
            o.str("client", &e.client.to_string());
            o.opt_str("sni", e.sni);
            o.opt_str("alpn", alpn.as_deref());
            o.opt_str("tls", (e.version != "-").then_some(e.version));
            o.opt_str("cipher", (!e.cipher.is_empty()).then_some(e.cipher));
            o.bool("resumed", e.resumed);
            o.opt_str("backend", e.backend.map(|b| b.to_string()).as_deref());
            o.num("bytes_to_backend", e.bytes_to_backend);
            o.num("bytes_to_client", e.bytes_to_client);
            o.ms("duration_ms", Some(e.duration));
            o.str("end", e.end);
            o.end();
        }
    }
}

fn request_text(out: &mut String, e: &Entry<'_>, now: SystemTime) {
    push_timestamp(out, now);
    let _ = writeln!(
        out,
        " {} sni={} \"{} {} {}\" {} {} backend={} {} {:.2}ms",
        e.client,
        e.sni.unwrap_or("-"),
        Escaped(e.method),
        e.host.unwrap_or("-"),
        Escaped(e.path),
        e.status,
        e.bytes_out,
        e.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
        Millis(e.backend_time),
        e.duration.as_secs_f64() * 1000.0
    );
}

/// A JSON object written field by field into a line.
struct Json<'a> {
    out: &'a mut String,
}

impl<'a> Json<'a> {
    fn start(out: &'a mut String, now: SystemTime) -> Json<'a> {
        out.push_str("{\"time\":\"");
        push_timestamp(out, now);
        out.push('"');
        Json { out }
    }

    fn key(&mut self, k: &str) {
        let _ = write!(self.out, ",\"{k}\":");
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_string(self.out, v);
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => {
                self.key(k);
                self.out.push_str("null");
            }
        }
    }

    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
    }

    fn ms(&mut self, k: &str, v: Option<Duration>) {
        self.key(k);
        match v {
            Some(d) => {
                let _ = write!(self.out, "{:.3}", d.as_secs_f64() * 1000.0);
            }
            None => self.out.push_str("null"),
        }
    }

    fn end(self) {
        self.out.push_str("}\n");
    }
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control characters escaped.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A duration in milliseconds, or `-`.
struct Millis(Option<Duration>);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{:.2}ms", d.as_secs_f64() * 1000.0),
            None => f.write_str("-"),
        }
    }
}

/// A path as logged: control characters, quotes, backslashes and spaces escaped, so a
/// request cannot forge or split log lines.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' | '\\' | ' ' => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `2026-11-24T05:00:00.123Z` (UTC), without a date library.
pub fn push_timestamp(out: &mut String, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::addr::BackendAddr;

    #[test]
    fn lines_are_formatted_and_escaped() {
        let mut out = String::new();
        let now = UNIX_EPOCH + Duration::from_millis(1_795_496_400_123);
        request_text(
            &mut out,
            &Entry {
                client: "203.0.113.7:51234".parse().unwrap(),
                sni: Some("example.com"),
                method: "GET",
                host: Some("example.com"),
                path: "/a b\"\n",
                status: 200,
                bytes_out: 5120,
                backend: Some(&BackendAddr::Tcp("10.0.0.1:8080".parse().unwrap())),
                backend_time: Some(Duration::from_micros(950)),
                duration: Duration::from_micros(1520),
            },
            now,
        );
        assert_eq!(
            out,
            "2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com \"GET example.com /a\\x20b\\x22\\x0a\" 200 5120 backend=10.0.0.1:8080 0.95ms 1.52ms\n"
        );
        // A refused head: the client's own method word, escaped; no backend, no response.
        out.clear();
        request_text(
            &mut out,
            &Entry {
                client: "203.0.113.7:51234".parse().unwrap(),
                sni: None,
                method: "G\"T",
                host: None,
                path: "-",
                status: 400,
                bytes_out: 0,
                backend: None,
                backend_time: None,
                duration: Duration::ZERO,
            },
            now,
        );
        assert!(
            out.ends_with(" sni=- \"G\\x22T - -\" 400 0 backend=- - 0.00ms\n"),
            "{out}"
        );
    }

    #[test]
    fn timestamps_across_dates() {
        for (secs, want) in [
            (0u64, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        ] {
            let mut s = String::new();
            push_timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(s, want);
        }
    }

    #[test]
    fn connection_lines_in_text_and_json() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_496_400_123);
        let backend = BackendAddr::Unix("/run/app.sock".into());
        let e = ConnEntry {
            client: "[2001:db8::7]:51234".parse().unwrap(),
            sni: Some("example.com"),
            alpn: Some(b"h2"),
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            resumed: true,
            backend: Some(&backend),
            bytes_to_backend: 310,
            bytes_to_client: 5120,
            duration: Duration::from_micros(1520),
            end: "client side failed (i/o: \"reset\")",
        };
        let mut out = String::new();
        connection(&mut out, LogFormat::Text, &e, now);
        assert_eq!(
            out,
            "2026-11-24T05:00:00.123Z [2001:db8::7]:51234 sni=example.com alpn=h2 TLSv1.3 \
             TLS13_AES_128_GCM_SHA256 resumed=yes backend=unix:/run/app.sock up=310 down=5120 1.52ms \
             \"client\\x20side\\x20failed\\x20(i/o:\\x20\\x22reset\\x22)\"\n"
        );
        out.clear();
        connection(&mut out, LogFormat::Json, &e, now);
        assert_eq!(
            out,
            "{\"time\":\"2026-11-24T05:00:00.123Z\",\"client\":\"[2001:db8::7]:51234\",\
             \"sni\":\"example.com\",\"alpn\":\"h2\",\"tls\":\"TLSv1.3\",\
             \"cipher\":\"TLS13_AES_128_GCM_SHA256\",\"resumed\":true,\
             \"backend\":\"unix:/run/app.sock\",\"bytes_to_backend\":310,\"bytes_to_client\":5120,\
             \"duration_ms\":1.520,\"end\":\"client side failed (i/o: \\\"reset\\\")\"}\n"
        );
        // A failed handshake: nothing negotiated.
        out.clear();
        let failed = ConnEntry {
            sni: None,
            alpn: None,
            version: "-",
            cipher: "",
            resumed: false,
            backend: None,
            bytes_to_backend: 0,
            bytes_to_client: 0,
            end: "handshake timed out",
            ..e
        };
        connection(&mut out, LogFormat::Json, &failed, now);
        assert!(out.contains("\"sni\":null,\"alpn\":null,\"tls\":null,\"cipher\":null,\"resumed\":false,\"backend\":null"), "{out}");
    }

    #[test]
    fn request_lines_in_json_escape_what_the_client_sent() {
        let now = UNIX_EPOCH;
        let mut out = String::new();
        request(
            &mut out,
            LogFormat::Json,
            &Entry {
                client: "203.0.113.7:1".parse().unwrap(),
                sni: None,
                method: "GET",
                host: Some("h"),
                path: "/a\"\\\n\u{1}\u{7f}é",
                status: 200,
                bytes_out: 3,
                backend: None,
                backend_time: None,
                duration: Duration::from_millis(2),
            },
            now,
        );
        assert_eq!(
            out,
            "{\"time\":\"1970-01-01T00:00:00.000Z\",\"client\":\"203.0.113.7:1\",\"sni\":null,\
             \"method\":\"GET\",\"host\":\"h\",\"path\":\"/a\\\"\\\\\\n\\u0001\\u007fé\",\
             \"status\":200,\"bytes\":3,\"backend\":null,\"backend_ms\":null,\"duration_ms\":2.000}\n"
        );
    }
}
