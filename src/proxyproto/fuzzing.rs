//! The body of the `proxy_header` fuzz target (`fuzz/`), kept in the library so that a plain
//! test runs it over the stored corpus on stable Rust (`tests/fuzz_corpus.rs`).

use super::{encode_v1, encode_v2, encode_v2_local, parse, parse_with, Command, Parsed, Version};

/// Parsing never panics, and what it says is consistent: a header's length lies within the
/// input and the bytes after it change nothing; every shorter prefix is `Incomplete` and
/// asks for no more than the header's length; and a header encoded again from what was
/// parsed (v1, v2 with its TLVs and checksum, LOCAL) parses back to the same thing.
pub fn proxy_header(data: &[u8]) {
    let (len, header) = match parse(data) {
        Err(_) => return,
        Ok(Parsed::Incomplete { at_least }) => {
            assert!(
                at_least > data.len(),
                "incomplete, yet asks for no more bytes"
            );
            return;
        }
        Ok(Parsed::Header { len, header }) => (len, header),
    };
    assert!((15..=data.len()).contains(&len));
    let alone = parse(&data[..len]);
    assert_eq!(
        alone,
        Ok(Parsed::Header {
            len,
            header: header.clone()
        })
    );
    let step = (len / 64).max(1);
    for cut in (0..len).step_by(step).chain([len - 1]) {
        match parse(&data[..cut]) {
            Ok(Parsed::Incomplete { at_least }) => {
                assert!(
                    at_least > cut && at_least <= len,
                    "prefix of {cut}: {at_least}"
                )
            }
            other => panic!("prefix of {cut} bytes: {other:?}"),
        }
    }

    let mut out = Vec::new();
    match (header.version, header.command, header.addrs) {
        (Version::V2, Command::Local, _) => encode_v2_local(&mut out),
        (Version::V1, _, Some(a)) => encode_v1(a.src, a.dst, &mut out),
        (Version::V2, _, Some(a)) => {
            // What was parsed fits: re-encoding drops unknown TLVs and keeps the family.
            let done = encode_v2(a.src, a.dst, &header.tlvs, &mut out);
            assert_eq!(done, Ok(()));
            assert!(out.len() <= len);
            // The two versions agree on addresses.
            let mut line = Vec::new();
            encode_v1(a.src, a.dst, &mut line);
            match parse(&line) {
                Ok(Parsed::Header { header: h, .. }) => assert_eq!(h.addrs, Some(a)),
                other => panic!("v1 line for {a:?}: {other:?}"),
            }
        }
        // UNKNOWN, AF_UNSPEC, AF_UNIX: nothing of the relayed connection to encode.
        (_, _, None) => {
            if header.version == Version::V1 {
                assert_eq!(header.tlvs, Default::default());
            }
            return;
        }
    }
    let again = parse_with(&out, usize::MAX);
    assert_eq!(
        again,
        Ok(Parsed::Header {
            len: out.len(),
            header
        })
    );
}
