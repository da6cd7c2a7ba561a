//! The handshake driver's input limits over real sockets: a ClientHello larger than one
//! pooled buffer is accepted (rustls takes handshake messages up to 64 KiB), one whose records
//! exceed the driver's bound is refused with a decode_error alert, and a refused client reads
//! that alert and a clean end of stream even while it is still sending.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

/// A rustls client's ClientHello message (handshake header and body), with one more,
/// unknown extension of `pad` bytes at the end of its extensions, lengths fixed up.
fn padded_hello(cfg: &Arc<rustls::ClientConfig>, pad: usize) -> Vec<u8> {
    let mut client =
        ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut record = Vec::new();
    client.write_tls(&mut record).unwrap();
    let mut msg = record[5..].to_vec();
    assert_eq!(msg[0], 1, "ClientHello");
    // Walk to the extensions: version, random, session id, suites, compression methods.
    let mut at = 4 + 2 + 32;
    at += 1 + msg[at] as usize;
    at += 2 + u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    at += 1 + msg[at] as usize;
    let exts_len = u16::from_be_bytes([msg[at], msg[at + 1]]) as usize + 4 + pad;
    msg[at..at + 2].copy_from_slice(&(exts_len as u16).to_be_bytes());
    msg.extend([0xfa, 0xfa]);
    msg.extend((pad as u16).to_be_bytes());
    msg.extend(std::iter::repeat_n(0u8, pad));
    let body = msg.len() - 4;
    msg[1..4].copy_from_slice(&(body as u32).to_be_bytes()[1..]);
    msg
}

/// `msg` as plaintext handshake records of at most `size` bytes each.
fn records(msg: &[u8], size: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for chunk in msg.chunks(size) {
        wire.extend([22, 3, 1]);
        wire.extend((chunk.len() as u16).to_be_bytes());
        wire.extend(chunk);
    }
    wire
}

fn tern() -> (Tern, Certs) {
    let certs = Certs::new();
    let backend = backend(|_| {});
    (start_tern(&certs, backend, &[]), certs)
}

fn connect(t: &Tern) -> TcpStream {
    let s = TcpStream::connect_timeout(&t.addr(), WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn a_client_hello_larger_than_one_buffer_is_answered() {
    let (t, certs) = tern();
    let cfg = certs.client(&[&rustls::version::TLS13]);
    // 40 KiB: more than one 32 KiB pooled buffer, within rustls' 64 KiB.
    let wire = records(&padded_hello(&cfg, 40 * 1024), 16384);
    let mut s = connect(&t);
    s.write_all(&wire).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 22, "a ServerHello record, got {head:?}");
}

#[test]
fn client_handshake_records_past_the_bound_get_an_alert_then_a_clean_close() {
    let (t, certs) = tern();
    let cfg = certs.client(&[&rustls::version::TLS13]);
    // A 60 KiB ClientHello in 1-byte records (6 bytes on the wire for each byte of message)
    // is 360 KiB of records: far past the 80 KiB the driver holds, though the message itself
    // is within rustls' 64 KiB limit. tern refuses with most of it unread: closing then
    // would reset the connection, and the client would read ECONNRESET instead of the alert
    // and the end of the stream.
    let wire = records(&padded_hello(&cfg, 60 * 1024), 1);
    assert!(wire.len() > 300 * 1024);
    let mut s = connect(&t);
    // All of it goes out (tern reads and drops what is past its bound), then the alert.
    s.write_all(&wire).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("a clean end of stream, not a reset");
    assert_eq!(got, [21, 3, 3, 0, 2, 2, 50], "fatal decode_error");
}
