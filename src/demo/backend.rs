//! The demo's built-in HTTP/1.1 backend: answers every request with a short page showing what
//! arrived, so a newcomer sees the request tern forwarded. Blocking std I/O on its own threads;
//! it is a demo peer, not part of the data path.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_CONNECTIONS: usize = 256;
const MAX_HEAD: usize = 16 * 1024;

pub fn start() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let live = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("tern-demo-backend".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    continue; // dropped: closed
                }
                live.fetch_add(1, Ordering::Relaxed);
                let live = live.clone();
                let spawned = std::thread::Builder::new().spawn(move || {
                    let _ = serve(stream);
                    live.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    // The closure (and its counter decrement) never ran.
                    tracing::warn!("demo backend: cannot start a thread");
                }
            }
        })?;
    Ok(addr)
}

fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut rd = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
            let before = head.len();
            rd.by_ref()
                .take((MAX_HEAD - before) as u64)
                .read_until(b'\n', &mut head)?;
            if head.len() == before {
                return Ok(()); // closed (or head too large)
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            out.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let mut body_len = 0u64;
        let mut close = req.version == Some(0);
        let mut page = format!(
            "Hello from the tern demo backend.\n\nYou reached it through tern with:\n  {} {} HTTP/1.{}\n",
            req.method.unwrap_or("?"),
            req.path.unwrap_or("?"),
            req.version.unwrap_or(1)
        );
        for h in req.headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            page.push_str(&format!("  {}: {}\n", h.name, value));
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = value.trim().parse().unwrap_or(0);
            }
            if h.name.eq_ignore_ascii_case("connection") {
                close |= value.eq_ignore_ascii_case("close");
            }
        }
        io::copy(&mut rd.by_ref().take(body_len), &mut io::sink())?;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{}",
            page.len(),
            if close { "Connection: close\r\n" } else { "" },
            page
        );
        out.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}
