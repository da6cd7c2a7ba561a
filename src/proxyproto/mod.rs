//! The PROXY protocol, versions 1 and 2 (haproxy.org's proxy-protocol.txt): the header a
//! balancer puts in front of a connection to say whom it relays. Sans-IO like `http`: bytes
//! in, a header or a reason out; `io` is the one async piece, reading a header off an
//! accepted socket without taking any byte after it.
//!
//! | file | holds |
//! |---|---|
//! | `v1` | the text line: strict parser, `encode_v1` |
//! | `v2` | the binary header: signature, command, family, address block; `encode_v2`, `encode_v2_local` |
//! | `tlv` | v2 TLVs (ALPN, AUTHORITY, UNIQUE_ID, SSL and its sub-TLVs, NETNS, CRC32C) both ways |
//! | `crc32c` | the checksum of PP2_TYPE_CRC32C |
//! | `io` | `read_header`: peek, parse, consume exactly the header, all within a timeout |
//! | `fuzzing` | the fuzz target's body, shared with a stable test over its corpus |
//!
//! Receiving (`--accept-proxy`): `io::read_header(&stream, timeout, max)` right after
//! accept, before the TLS handshake; `Ok(None)` is a LOCAL header (use the socket's
//! addresses), `Ok(Some(h))` with `h.addrs` the client's addresses when the header carries
//! TCP ones. Sending (`--proxy-protocol`): `encode_v1` or `encode_v2` into the buffer that
//! goes to the backend before any other byte.

pub mod fuzzing;
pub mod io;

pub mod tlv;

mod crc32c;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;

pub use tlv::{Ssl, Tlvs, TooLong};
pub use v1::{encode_v1, MAX_LINE as V1_MAX_LINE};
pub use v2::{encode_v2, encode_v2_local, SIGNATURE as V2_SIGNATURE};

/// The default bound on a v2 header's total length (its 16 fixed bytes, addresses and
/// TLVs). Real headers are well under 1 KiB (HAProxy's with every SSL TLV is ~200 bytes);
/// the format allows 64 KiB, which nobody needs to hold per connection.
pub const DEFAULT_MAX_HEADER: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// v2 LOCAL: the balancer's own connection (a health check); use the socket's addresses.
    Local,
    /// A relayed connection (every v1 header, v2 PROXY).
    Proxy,
}

/// The relayed connection's endpoints: the client (`src`) and the address it connected to
/// (`dst`). A v2 AF_INET6 header carrying v4-mapped addresses gives them as they are
/// (`::ffff:a.b.c.d`); `IpAddr::to_canonical` turns them back into IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// `None` for LOCAL, v1 UNKNOWN, v2 AF_UNSPEC and AF_UNIX: use the socket's own.
    pub addrs: Option<Addrs>,
    /// Always empty for v1, LOCAL and AF_UNSPEC.
    pub tlvs: Tlvs,
}

// A header is parsed once per connection and moved once or twice: boxing it would cost an
// allocation to save copying a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far may start a valid header; the header is at least `at_least` bytes
    /// long (exact once a v2 header's length field has been seen).
    Incomplete { at_least: usize },
    /// A valid header: the first `len` bytes; what follows belongs to the connection.
    Header { len: usize, header: Header },
}

/// Why a header was refused, short enough for a log line.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Neither `PROXY ` nor the v2 signature.
    NotProxy,
    /// A v1 line that breaks the grammar; says how.
    V1(&'static str),
    /// No CRLF within a v1 line's 107 bytes.
    V1TooLong,
    /// A v2 version other than 2.
    Version(u8),
    /// A v2 command other than LOCAL or PROXY.
    Command(u8),
    /// A v2 family/transport byte outside the spec.
    Family(u8),
    /// UDP or unix datagrams: tern relays stream connections only.
    Datagram,
    /// A v2 address block shorter than its family needs.
    AddressLength { family: u8, len: usize },
    /// A v2 header longer than the configured bound.
    TooLarge { len: usize, max: usize },
    /// A TLV or SSL sub-TLV that is malformed; says how.
    Tlv(&'static str),
    /// The PP2_TYPE_CRC32C checksum does not match the header.
    Checksum,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProxy => f.write_str("not a PROXY protocol header"),
            Error::V1(why) => write!(f, "PROXY v1: {why}"),
            Error::V1TooLong => f.write_str("PROXY v1: no CRLF within 107 bytes"),
            Error::Version(v) => write!(f, "PROXY v2: version {v}, not 2"),
            Error::Command(c) => write!(f, "PROXY v2: unknown command {c:#x}"),
            Error::Family(b) => write!(f, "PROXY v2: unknown family/transport {b:#04x}"),
            Error::Datagram => f.write_str("PROXY v2: a datagram transport, not a stream"),
            Error::AddressLength { family, len } => {
                write!(
                    f,
                    "PROXY v2: {len} address bytes, too few for family {family:#04x}"
                )
            }
            Error::TooLarge { len, max } => {
                write!(
                    f,
                    "PROXY v2: a {len}-byte header, over the {max}-byte limit"
                )
            }
            Error::Tlv(why) => write!(f, "PROXY v2: {why}"),
            Error::Checksum => f.write_str("PROXY v2: CRC32C checksum mismatch"),
        }
    }
}

impl std::error::Error for Error {}

/// `parse_with(buf, DEFAULT_MAX_HEADER)`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    parse_with(buf, DEFAULT_MAX_HEADER)
}

/// Parses the PROXY header (either version) at the start of `buf`. `max` bounds a v2
/// header's total length; a v1 line has the spec's own bound of 107 bytes. Bytes after the
/// header do not change the answer, and neither does cutting `buf` anywhere inside a valid
/// header (that is `Incomplete`); anything else wrong is an `Error`, as early as it shows.
pub fn parse_with(buf: &[u8], max: usize) -> Result<Parsed, Error> {
    match buf.first() {
        // The shortest header of either version (`PROXY UNKNOWN\r\n`) is 15 bytes.
        None => Ok(Parsed::Incomplete { at_least: 15 }),
        Some(b'P') => v1::parse(buf),
        Some(b'\r') => v2::parse(buf, max),
        Some(_) => Err(Error::NotProxy),
    }
}
