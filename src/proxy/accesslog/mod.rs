//! The access log: one line per request in http mode, one per connection in tcp mode, written
//! by each worker through its own buffer. Requests only append to memory; a few times a second
//! the worker hands what it gathered to its own writer thread, which does the (blocking)
//! write, so neither a slow disk nor a pipe that is not read stalls the data path, whichever
//! I/O driver runs. If the writer falls far behind, lines are dropped and counted rather than
//! memory growing without bound. The line formats (text and JSON) are in [`format`].

pub mod format;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use crate::backend::addr::BackendAddr;
use crate::http::Method;
pub use format::LogFormat;

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
    pub backend: Option<&'a BackendAddr>,
    /// From the request's head to the backend's response head.
    pub backend_time: Option<Duration>,
    pub duration: Duration,
}

/// One tcp-mode connection, for its line at the end.
pub struct ConnEntry<'a> {
    pub client: SocketAddr,
    pub sni: Option<&'a str>,
    pub alpn: Option<&'a [u8]>,
    /// `TLSv1.3`, or `-` when the handshake did not complete.
    pub version: &'a str,
    pub cipher: &'a str,
    pub resumed: bool,
    pub backend: Option<&'a BackendAddr>,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub duration: Duration,
    /// How it ended, in words (`closed by both sides`, `handshake failed: ...`).
    pub end: &'a str,
}

/// Where lines go: a file opened (for appending) at start-up, or standard output.
#[derive(Debug)]
pub enum Target {
    File(std::fs::File),
    Stdout,
}

pub struct AccessLog {
    format: LogFormat,
    buf: RefCell<String>,
    dropped: Cell<u64>,
    /// To the writer thread; taken by `finish`.
    tx: RefCell<Option<SyncSender<Vec<u8>>>>,
    writer: Cell<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts this worker's log writer (a thread) and its flush task on the current runtime.
    pub fn start(
        target: &Target,
        format: LogFormat,
        worker: usize,
    ) -> std::io::Result<Rc<AccessLog>> {
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
            format,
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

    /// An http-mode request.
    pub fn record(&self, e: &Entry<'_>) {
        if let Some(mut buf) = self.room() {
            format::request(&mut buf, self.format, e, SystemTime::now());
        }
    }

    /// A tcp-mode connection.
    pub fn record_conn(&self, e: &ConnEntry<'_>) {
        if let Some(mut buf) = self.room() {
            format::connection(&mut buf, self.format, e, SystemTime::now());
        }
    }

    /// The buffer, unless it is full (then the line is counted as dropped).
    fn room(&self) -> Option<std::cell::RefMut<'_, String>> {
        let buf = self.buf.borrow_mut();
        if buf.len() > MAX_BUFFERED {
            self.dropped.set(self.dropped.get() + 1);
            return None;
        }
        Some(buf)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
