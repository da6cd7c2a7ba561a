//! One server-side TLS session, sans-IO: ciphertext in, plaintext out and back. The proxy's I/O
//! loops own the sockets and buffers; everything rustls does for a connection goes through here.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// Why a TLS session failed; the rustls cause is kept whole so it reaches the log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer broke the protocol, sent an alert, or offered nothing we accept.
    Protocol(rustls::Error),
    /// Bytes that cannot be TLS records at all (e.g. plaintext HTTP on the TLS port).
    Framing(io::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "tls: {e}"),
            TlsError::Framing(e) => write!(f, "tls framing: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// What [`ServerSession::read_plain`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Plain {
    /// This many bytes of plaintext were copied out.
    Data(usize),
    /// Nothing decrypted is waiting; feed more ciphertext.
    Empty,
    /// The peer sent close_notify and everything before it has been read.
    Closed,
}

/// Negotiated parameters, for logs.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub version: &'static str,
    pub suite: String,
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
}

pub struct ServerSession {
    conn: ServerConnection,
}

impl ServerSession {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Self, TlsError> {
        ServerConnection::new(config.clone())
            .map(|conn| ServerSession { conn })
            .map_err(TlsError::Protocol)
    }

    /// Hands ciphertext to the session and processes every complete record. Returns how many
    /// bytes were taken; it stops early once decrypted plaintext is waiting, so the caller can
    /// drain it with [`read_plain`](Self::read_plain) and call again with the rest. Bytes after
    /// the peer's close_notify are counted as taken and ignored.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        let mut rest = data;
        while !rest.is_empty() {
            match self.conn.read_tls(&mut rest) {
                Ok(0) => return Ok(data.len()),
                Ok(_) => {}
                // Only "received plaintext buffer full": the caller drains, then feeds again.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(TlsError::Framing(e)),
            }
            let state = self
                .conn
                .process_new_packets()
                .map_err(TlsError::Protocol)?;
            if state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        Ok(data.len() - rest.len())
    }

    /// Copies decrypted application data into `out`.
    pub fn read_plain(&mut self, out: &mut [u8]) -> Plain {
        match self.conn.reader().read(out) {
            Ok(0) if !out.is_empty() => Plain::Closed,
            Ok(n) => Plain::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Plain::Empty,
            // UnexpectedEof only follows an EOF we signalled, which we never do.
            Err(_) => Plain::Closed,
        }
    }

    /// Encrypts application data; returns how much was taken (less than all once the
    /// session's outgoing buffer is at its limit: write the pending records out, then retry).
    pub fn write_plain(&mut self, data: &[u8]) -> usize {
        // The writer only fails once the connection is closed for writing; nothing is taken.
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Whether records (handshake, alerts, data) wait to be sent to the peer.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Moves every pending record into `out`.
    pub fn write_tls_into(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues close_notify; the caller then writes the pending records out.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            version: match self.conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                Some(_) => "other",
                None => "none",
            },
            suite: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            sni: self.conn.server_name().map(str::to_owned),
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}
