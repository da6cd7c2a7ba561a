//! The access log (http mode): one line per request, written by each worker through its own
//! buffer. Requests only append to memory; a few times a second the worker hands what it
//! gathered to its own writer thread, which does the (blocking) write, so neither a slow disk
//! nor a pipe that is not read stalls the data path, whichever I/O driver runs. If the writer
//! falls far behind, lines are dropped and counted rather than memory growing without bound.
//!
//! Line format (space separated, quoted where spaces may occur; the last two are the time
//! until the backend's response head, `-` when none came, and the whole request's time):
//! `2026-11-24T05:00:00.123Z 203.0.113.7:51234 sni=example.com "GET example.com /path" 200 5120 backend=10.0.0.1:8080 0.95ms 1.52ms`

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::Method;

/// Buffered lines past which new ones are dropped until the writer catches up.
const MAX_BUFFERED: usize = 4 << 20;
/// Batches handed over but not yet written, past which the worker keeps (then drops) lines.
const BATCHES_IN_FLIGHT: usize = 4;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub struct Entry<'a> {
    pub client: SocketAddr,
    pub sni: Option<&'a str>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// 0 when the exchange was cut before a status was sent.
    pub status: u16,
    pub bytes_out: u64,
    pub backend: Option<SocketAddr>,
    /// From the request's head to the backend's response head.
    pub backend_time: Option<Duration>,
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
    /// To the writer thread; taken by `finish`.
    tx: RefCell<Option<SyncSender<Vec<u8>>>>,
    writer: Cell<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts this worker's log writer (a thread) and its flush task on the current runtime.
    pub fn start(target: &Target, worker: usize) -> std::io::Result<Rc<AccessLog>> {
        let mut file = match target {
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
        let (tx, rx) = sync_channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
        let writer = std::thread::Builder::new()
            .name(format!("tern-log{worker}"))
            .spawn(move || {
                // Ends when the worker's flush task (the sender) is gone.
                for batch in rx {
                    // O_APPEND for a file; plain write for a pipe or terminal.
                    if let Err(e) = file.write_all(&batch) {
                        tracing::warn!("access log write failed: {e}");
                    }
                }
            })?;
        let log = Rc::new(AccessLog {
            buf: RefCell::new(String::with_capacity(64 * 1024)),
            dropped: Cell::new(0),
            tx: RefCell::new(Some(tx)),
            writer: Cell::new(Some(writer)),
        });
        monoio::spawn(flusher(log.clone()));
        Ok(log)
    }

    /// What has gathered since the last hand-over, with a note of lines dropped.
    fn take(&self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut *self.buf.borrow_mut()).into_bytes();
        let dropped = self.dropped.replace(0);
        if dropped > 0 {
            let note =
                format!("# tern: {dropped} access log lines dropped (the log could not keep up)\n");
            bytes.extend_from_slice(note.as_bytes());
        }
        bytes
    }

    /// The worker is done: the rest goes to the writer, which is waited for.
    pub fn finish(&self) {
        if let Some(tx) = self.tx.borrow_mut().take() {
            let _ = tx.send(self.take());
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
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

async fn flusher(log: Rc<AccessLog>) {
    loop {
        monoio::time::sleep(FLUSH_EVERY).await;
        if log.buf.borrow().is_empty() && log.dropped.get() == 0 {
            continue;
        }
        let bytes = log.take();
        let sent = match &*log.tx.borrow() {
            None => return,
            Some(tx) => tx.try_send(bytes),
        };
        // The writer is behind: the lines wait for the next round (record() caps them).
        if let Err(TrySendError::Full(bytes)) = sent {
            let mut buf = log.buf.borrow_mut();
            let newer = std::mem::replace(&mut *buf, String::from_utf8(bytes).unwrap_or_default());
            buf.push_str(&newer);
        }
    }
}

pub fn method_name(m: Method) -> &'static str {
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

/// The method and target words of a request line that did not parse (for logging a refused
/// head): bounded in length, `-` where missing. Escaped when the line is written.
pub fn request_line_words(head: &[u8]) -> (Cow<'_, str>, Cow<'_, str>) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let mut word = |max: usize| {
        let w = words.next().unwrap_or_default();
        let w = &w[..w.len().min(max)];
        if w.is_empty() {
            Cow::Borrowed("-")
        } else {
            String::from_utf8_lossy(w)
        }
    };
    let method = word(32);
    (method, word(256))
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
                method: "GET",
                host: Some("example.com"),
                path: "/a b\"\n",
                status: 200,
                bytes_out: 5120,
                backend: Some("10.0.0.1:8080".parse().unwrap()),
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
        format_entry(
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
    fn words_of_a_refused_request_line() {
        assert_eq!(
            request_line_words(b"GET /x HTTP/1.1\r\nHost: a\r\n"),
            ("GET".into(), "/x".into())
        );
        assert_eq!(request_line_words(b"GET"), ("GET".into(), "-".into()));
        assert_eq!(request_line_words(b""), ("-".into(), "-".into()));
        let long = [b'a'; 600];
        let (m, p) = request_line_words(&long);
        assert_eq!((m.len(), p.as_ref()), (32, "-"));
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
