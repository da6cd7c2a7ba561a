//! CRC-32C (Castagnoli, RFC 4960 appendix B), the checksum of the PP2_TYPE_CRC32C TLV. A
//! byte-wise table is plenty: a header is checked once per connection and is a few hundred
//! bytes at most.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// A running checksum: `Crc32c::new()`, `update` with each piece, then `finish`.
#[derive(Clone, Copy)]
pub struct Crc32c(u32);

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(!0)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn finish(self) -> u32 {
        !self.0
    }
}

/// The checksum of a whole PROXY v2 header whose checksum TLV value (4 bytes) starts at
/// `value_at`: computed as if those 4 bytes were zero, as the spec requires of both sides.
pub fn of_header(header: &[u8], value_at: usize) -> u32 {
    let mut c = Crc32c::new();
    c.update(&header[..value_at]);
    c.update(&[0; 4]);
    c.update(&header[value_at + 4..]);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(bytes: &[u8]) -> u32 {
        let mut c = Crc32c::new();
        c.update(bytes);
        c.finish()
    }

    #[test]
    fn known_vectors() {
        // The standard check value, and the iSCSI vectors of RFC 3720 appendix B.4.
        assert_eq!(crc(b"123456789"), 0xe306_9283);
        assert_eq!(crc(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc(&inc), 0x46dd_794e);
    }

    #[test]
    fn pieces_equal_whole() {
        let mut c = Crc32c::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), crc(b"123456789"));
        assert_eq!(of_header(b"ab\xff\xff\xff\xffcd", 2), crc(b"ab\0\0\0\0cd"));
    }
}
