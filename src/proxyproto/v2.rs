//! Version 2: a 16-byte binary prefix (signature, version and command, family and transport,
//! length), the address block, then TLVs.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::tlv::{self, TooLong};
use super::v1::to_v6;
use super::{crc32c, Addrs, Command, Error, Header, Parsed, Tlvs, Version};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version/command, family/transport and the 16-bit length.
pub const FIXED: usize = 16;

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const UNIX_STREAM: u8 = 0x31;
const UNSPEC: u8 = 0x00;

/// Parses a v2 header at the start of `buf` (which starts with CR); `max` bounds its total
/// length.
pub(super) fn parse(buf: &[u8], max: usize) -> Result<Parsed, Error> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        return Err(Error::NotProxy);
    }
    // Refuse what is already wrong in the fixed part before waiting for the rest of it.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(Error::Version(ver_cmd >> 4));
        }
        if ver_cmd & 0xf > CMD_PROXY {
            return Err(Error::Command(ver_cmd & 0xf));
        }
    }
    let local = buf.get(12) == Some(&(0x20 | CMD_LOCAL));
    if let Some(&fam) = buf.get(13) {
        // LOCAL: the spec says the family is ignored, so it is not checked.
        if !local {
            check_family(fam)?;
        }
    }
    let Some(len) = buf.get(14..16) else {
        return Ok(Parsed::Incomplete { at_least: FIXED });
    };
    let total = FIXED + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if total > max {
        return Err(Error::TooLarge { len: total, max });
    }
    let Some(header) = buf.get(..total) else {
        return Ok(Parsed::Incomplete { at_least: total });
    };
    let header = if local {
        // A balancer's own connection (a health check): the receiver "must use the real
        // connection endpoints and discard the protocol block", TLVs included.
        Header {
            version: Version::V2,
            command: Command::Local,
            addrs: None,
            tlvs: Tlvs::default(),
        }
    } else {
        proxied(header)?
    };
    Ok(Parsed::Header { len: total, header })
}

fn check_family(fam: u8) -> Result<(), Error> {
    match fam {
        UNSPEC | TCP4 | TCP6 | UNIX_STREAM => Ok(()),
        0x12 | 0x22 | 0x32 => Err(Error::Datagram),
        _ => Err(Error::Family(fam)),
    }
}

/// A whole PROXY-command header.
fn proxied(header: &[u8]) -> Result<Header, Error> {
    let fam = header[13];
    let block = &header[FIXED..];
    let need = match fam {
        TCP4 => 12,
        TCP6 => 36,
        UNIX_STREAM => 216,
        // UNSPEC: the length of any address in the block is unknown, and so is where TLVs
        // would start; the spec says to ignore the address information.
        _ => {
            return Ok(Header {
                version: Version::V2,
                command: Command::Proxy,
                addrs: None,
                tlvs: Tlvs::default(),
            })
        }
    };
    if block.len() < need {
        return Err(Error::AddressLength {
            family: fam,
            len: block.len(),
        });
    }
    let a = &block[..need];
    let addrs = match fam {
        TCP4 => {
            let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addrs {
                src: SocketAddr::V4(SocketAddrV4::new(ip(0), port(8))),
                dst: SocketAddr::V4(SocketAddrV4::new(ip(4), port(10))),
            })
        }
        TCP6 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[at..at + 16]);
                Ipv6Addr::from(o)
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some(Addrs {
                src: SocketAddr::V6(SocketAddrV6::new(ip(0), port(32), 0, 0)),
                dst: SocketAddr::V6(SocketAddrV6::new(ip(16), port(34), 0, 0)),
            })
        }
        // AF_UNIX paths are no socket addresses: the receiver uses its own, but the TLVs
        // still count.
        _ => None,
    };
    let (tlvs, crc) = tlv::parse(&block[need..])?;
    if let Some((at, sum)) = crc {
        if crc32c::of_header(header, FIXED + need + at) != sum {
            return Err(Error::Checksum);
        }
    }
    Ok(Header {
        version: Version::V2,
        command: Command::Proxy,
        addrs,
        tlvs,
    })
}

/// Appends a v2 PROXY header for a TCP connection from `src` to `dst`, with `tlvs`. Both
/// IPv4: AF_INET; otherwise AF_INET6 with any IPv4 address v4-mapped (the spec has one
/// family per header, and HAProxy does the same). Flow info and scope IDs are not carried.
/// On error (a TLV value too long for its 16-bit length, or the header for its own) `out` is
/// left as it was.
pub fn encode_v2(
    src: SocketAddr,
    dst: SocketAddr,
    tlvs: &Tlvs,
    out: &mut Vec<u8>,
) -> Result<(), TooLong> {
    let start = out.len();
    out.extend_from_slice(&SIGNATURE);
    out.push(0x20 | CMD_PROXY);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend_from_slice(&[TCP4, 0, 0]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let (s, d) = (to_v6(src), to_v6(dst));
            out.extend_from_slice(&[TCP6, 0, 0]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    let written = tlv::write(tlvs, out).and_then(|crc_at| {
        let len = u16::try_from(out.len() - start - FIXED).map_err(|_| TooLong("the header"))?;
        out[start + 14..start + 16].copy_from_slice(&len.to_be_bytes());
        if let Some(at) = crc_at {
            let sum = crc32c::of_header(&out[start..], at - start);
            out[at..at + 4].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    });
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Appends a v2 LOCAL header (no addresses, no TLVs): what a proxy sends on a connection of
/// its own, such as a health check, so the receiver uses the socket's endpoints.
pub fn encode_v2_local(out: &mut Vec<u8>) {
    out.extend_from_slice(&SIGNATURE);
    out.extend_from_slice(&[0x20 | CMD_LOCAL, UNSPEC, 0, 0]);
}
