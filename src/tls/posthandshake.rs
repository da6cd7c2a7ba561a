//! Handshake messages a client may send after the handshake, taken apart record by record:
//! pure bytes in, what to do out. TLS allows a handshake message to be split over several
//! records (RFC 8446 §5.1, RFC 5246 §6.2.1), so the few bytes tern needs to decide are gathered
//! across records here; nothing is buffered beyond a message header and one body byte.
//!
//! - TLS 1.3: only KeyUpdate is acceptable (tern requests no post-handshake authentication
//!   and a client sends no tickets). Its body is one byte, 0 or 1; and since it changes the
//!   key, it must end its record.
//! - TLS 1.2: a ClientHello asks to renegotiate, which tern declines (as rustls does) by
//!   skipping the message and answering no_renegotiation; anything else is refused.

use super::record::RecordError;

const HELLO_REQUEST: u8 = 0;
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;
const HEADER: usize = 4;

/// What one handshake record asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Nothing yet (a fragment of a message, or the rest of a skipped one).
    Nothing,
    /// TLS 1.3 KeyUpdate: switch the receiving key after this record; if `reply`, update
    /// the sending key too (update_requested).
    KeyUpdate { reply: bool },
    /// TLS 1.2 ClientHello: decline with a no_renegotiation warning.
    Renegotiation,
}

/// Gathers post-handshake handshake messages across records.
#[derive(Debug, Default)]
pub struct Joiner {
    head: [u8; HEADER],
    /// Bytes of `head` received so far.
    have: u8,
    /// TLS 1.2: body bytes of a declined ClientHello still to skip.
    skip: u32,
}

impl Joiner {
    /// Whether a message is partly received: TLS 1.3 forbids any other record in between.
    pub fn partial(&self) -> bool {
        self.have > 0 || self.skip > 0
    }

    /// TLS 1.3: the payload of one handshake record.
    pub fn tls13(&mut self, payload: &[u8]) -> Result<Asked, RecordError> {
        if payload.is_empty() {
            // RFC 8446 §5.1: zero-length handshake fragments are not allowed.
            return Err(RecordError::Unexpected("empty handshake record"));
        }
        let mut at = self.fill_head(payload);
        // Decided on the first byte: nothing but a KeyUpdate is waited for.
        if self.head[0] != KEY_UPDATE {
            return Err(RecordError::Unexpected(
                "handshake message after the handshake",
            ));
        }
        if (self.have as usize) < HEADER {
            return Ok(Asked::Nothing);
        }
        if self.head[1..] != [0, 0, 1] {
            return Err(RecordError::Decode("KeyUpdate length"));
        }
        let Some(&request) = payload.get(at) else {
            return Ok(Asked::Nothing);
        };
        at += 1;
        if request > 1 {
            // RFC 8446 §4.6.3: request_update other than 0 or 1.
            return Err(RecordError::Illegal("KeyUpdate request_update"));
        }
        if at != payload.len() {
            // RFC 8446 §5.1: a message before a key change must end its record.
            return Err(RecordError::Unexpected(
                "data after KeyUpdate in its record",
            ));
        }
        self.have = 0;
        Ok(Asked::KeyUpdate {
            reply: request == 1,
        })
    }

    /// TLS 1.2: the payload of one handshake record.
    pub fn tls12(&mut self, mut payload: &[u8]) -> Result<Asked, RecordError> {
        let mut asked = Asked::Nothing;
        while !payload.is_empty() {
            if self.skip > 0 {
                let n = payload.len().min(self.skip as usize);
                self.skip -= n as u32;
                payload = &payload[n..];
                continue;
            }
            let at = self.fill_head(payload);
            payload = &payload[at..];
            if (self.have as usize) < HEADER {
                break;
            }
            self.have = 0;
            match self.head[0] {
                CLIENT_HELLO => {
                    self.skip = u32::from_be_bytes([0, self.head[1], self.head[2], self.head[3]]);
                    asked = Asked::Renegotiation;
                }
                HELLO_REQUEST => {
                    return Err(RecordError::Unexpected("HelloRequest from the client"))
                }
                _ => {
                    return Err(RecordError::Unexpected(
                        "handshake message after the handshake",
                    ))
                }
            }
        }
        Ok(asked)
    }

    /// Takes header bytes from the front of `payload`; returns how many.
    fn fill_head(&mut self, payload: &[u8]) -> usize {
        let have = self.have as usize;
        let n = (HEADER - have).min(payload.len());
        self.head[have..have + n].copy_from_slice(&payload[..n]);
        self.have += n as u8;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(r: Result<Asked, RecordError>) -> u8 {
        r.unwrap_err().alert()
    }

    #[test]
    fn key_update_whole_or_in_fragments() {
        let mut j = Joiner::default();
        assert_eq!(
            j.tls13(&[24, 0, 0, 1, 1]),
            Ok(Asked::KeyUpdate { reply: true })
        );
        assert!(!j.partial());
        assert_eq!(
            j.tls13(&[24, 0, 0, 1, 0]),
            Ok(Asked::KeyUpdate { reply: false })
        );
        for split in [&[1usize, 1, 1, 1, 1][..], &[2, 2, 1], &[4, 1], &[3, 2]] {
            let msg = [24, 0, 0, 1, 1];
            let mut j = Joiner::default();
            let mut at = 0;
            for (i, &n) in split.iter().enumerate() {
                let got = j.tls13(&msg[at..at + n]).unwrap();
                at += n;
                if i + 1 < split.len() {
                    assert_eq!(got, Asked::Nothing, "{split:?}");
                    assert!(j.partial());
                } else {
                    assert_eq!(got, Asked::KeyUpdate { reply: true }, "{split:?}");
                }
            }
        }
    }

    #[test]
    fn bad_key_updates_get_the_rfc_alerts() {
        // illegal_parameter for every request_update other than 0 and 1 (RFC 8446 §4.6.3).
        for request in 2..=255u8 {
            assert_eq!(alert(Joiner::default().tls13(&[24, 0, 0, 1, request])), 47);
        }
        // decode_error for a KeyUpdate of the wrong length, empty or long.
        assert_eq!(alert(Joiner::default().tls13(&[24, 0, 0, 0])), 50);
        assert_eq!(alert(Joiner::default().tls13(&[24, 0, 0, 2, 1, 0])), 50);
        // unexpected_message: two messages in the record of a key change, other messages,
        // and empty handshake records.
        assert_eq!(
            alert(Joiner::default().tls13(&[24, 0, 0, 1, 0, 24, 0, 0, 1, 1])),
            10
        );
        assert_eq!(alert(Joiner::default().tls13(&[4, 0, 0, 1, 0])), 10);
        assert_eq!(alert(Joiner::default().tls13(&[1])), 10);
        assert_eq!(alert(Joiner::default().tls13(&[])), 10);
    }

    #[test]
    fn tls12_renegotiation_is_skipped_across_records() {
        let mut hello = vec![1, 0, 0, 40];
        hello.extend([0xaa; 40]);
        let mut j = Joiner::default();
        assert_eq!(j.tls12(&hello[..2]), Ok(Asked::Nothing));
        assert_eq!(j.tls12(&hello[2..10]), Ok(Asked::Renegotiation));
        assert!(j.partial());
        assert_eq!(j.tls12(&hello[10..]), Ok(Asked::Nothing));
        assert!(!j.partial());
        // Two in one record are declined once; a HelloRequest from a client is refused.
        let two = [&hello[..], &hello[..]].concat();
        assert_eq!(Joiner::default().tls12(&two), Ok(Asked::Renegotiation));
        assert_eq!(alert(Joiner::default().tls12(&[0, 0, 0, 0])), 10);
        assert_eq!(alert(Joiner::default().tls12(&[20, 0, 0, 12])), 10);
    }
}
