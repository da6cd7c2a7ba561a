//! The access log (http mode): one line per request, written by each worker through its own
//! buffer. Requests only append to memory; a worker task writes the buffer out with io_uring a
//! few times a second, so a slow disk never stalls the data path. If the disk falls far
//! behind, lines are dropped and counted rather than memory growing without bound.
//!
//! Line format (space separated, quoted where spaces may occur):
//! `2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com "GET example.com /path" 200 5120 backend=10.0.0.1:8080 1.52ms`

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::Method;

/// Buffered lines past which new ones are dropped until the writer catches up.
const MAX_BUFFERED: usize = 4 << 20;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub struct Entry<'a> {
    pub client: SocketAddr,
    pub sni: Option<&'a str>,
    pub method: Method,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// 0 when the exchange was cut before a status was sent.
    pub status: u16,
    pub bytes_out: u64,
    pub backend: Option<SocketAddr>,
    pub duration: Duration,
}

/// Where lines go: a file opened (for appending) at start-up, or standard output.
#[derive(Debug)]
pub enum Target {
    File(std::fs::File),
    Stdout,
}

pub struct AccessLog {
    buf: RefCell<String>,
    dropped: Cell<u64>,
}

impl AccessLog {
    /// Starts this worker's log writer on the current runtime.
    pub fn start(target: &Target) -> std::io::Result<Rc<AccessLog>> {
        let file = match target {
            Target::File(file) => file.try_clone()?,
            Target::Stdout => {
                // A descriptor of our own for stdout, closed with the writer.
                // SAFETY: dup of fd 1; the new descriptor is owned by the File below.
                let fd = unsafe { libc::dup(1) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: fd is a fresh descriptor nobody else owns.
                unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) }
            }
        };
        let file = monoio::fs::File::from_std(file)?;
        let log = Rc::new(AccessLog {
            buf: RefCell::new(String::with_capacity(64 * 1024)),
            dropped: Cell::new(0),
        });
        monoio::spawn(writer(log.clone(), file));
        Ok(log)
    }

    pub fn record(&self, e: &Entry<'_>) {
        let mut buf = self.buf.borrow_mut();
        if buf.len() > MAX_BUFFERED {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        format_entry(&mut buf, e, SystemTime::now());
    }
}

async fn writer(log: Rc<AccessLog>, file: monoio::fs::File) {
    loop {
        monoio::time::sleep(FLUSH_EVERY).await;
        let text = std::mem::take(&mut *log.buf.borrow_mut());
        let dropped = log.dropped.replace(0);
        let mut bytes = text.into_bytes();
        if dropped > 0 {
            let note =
                format!("# tern: {dropped} access log lines dropped (the log could not keep up)\n");
            bytes.extend_from_slice(note.as_bytes());
        }
        if bytes.is_empty() {
            continue;
        }
        // Appending: the offset is ignored for a file opened with O_APPEND.
        let (res, _) = file.write_all_at(bytes, 0).await;
        if let Err(e) = res {
            tracing::warn!("access log write failed: {e}");
        }
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other => "OTHER",
    }
}

pub fn format_entry(out: &mut String, e: &Entry<'_>, now: SystemTime) {
    push_timestamp(out, now);
    let _ = writeln!(
        out,
        " {} sni={} \"{} {} {}\" {} {} backend={} {:.2}ms",
        e.client,
        e.sni.unwrap_or("-"),
        method_name(e.method),
        e.host.unwrap_or("-"),
        Escaped(e.path),
        e.status,
        e.bytes_out,
        e.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
        e.duration.as_secs_f64() * 1000.0
    );
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
fn push_timestamp(out: &mut String, now: SystemTime) {
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

    #[test]
    fn lines_are_formatted_and_escaped() {
        let mut out = String::new();
        let now = UNIX_EPOCH + Duration::from_millis(1_795_496_400_123);
        format_entry(
            &mut out,
            &Entry {
                client: "203.0.113.7:51234".parse().unwrap(),
                sni: Some("example.com"),
                method: Method::Get,
                host: Some("example.com"),
                path: "/a b\"\n",
                status: 200,
                bytes_out: 5120,
                backend: Some("10.0.0.1:8080".parse().unwrap()),
                duration: Duration::from_micros(1520),
            },
            now,
        );
        assert_eq!(
            out,
            "2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com \"GET example.com /a\\x20b\\x22\\x0a\" 200 5120 backend=10.0.0.1:8080 1.52ms\n"
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
}
