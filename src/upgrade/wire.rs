//! The upgrade protocol's messages: one line of text per `SOCK_SEQPACKET` message (so each
//! `recvmsg` is one whole message, with the descriptors sent along with it), versioned:
//!
//! ```text
//! tern-upgrade/1 hello 4242                              both ways, first: the sender's pid
//! tern-upgrade/1 sockets 127.0.0.1:443/own [::]:443/own  old -> new, one descriptor per entry
//! tern-upgrade/1 end 2                                   old -> new: that many in all
//! tern-upgrade/1 ready                                   new -> old: every new worker accepts
//! tern-upgrade/1 done                                    old -> new: stopped accepting; the
//!                                                        upgrade socket's listener attached
//! tern-upgrade/1 refused protocol version 2 ...          either way, instead of an answer
//! ```
//!
//! `own` is one worker's `SO_REUSEPORT` socket; `shared` a socket every worker accepts on
//! (socket activation), which the receiver must not bind siblings to. Pure functions, no I/O.

use std::net::SocketAddr;

pub const VERSION: u32 = 1;
const MAGIC: &str = "tern-upgrade/";
/// Descriptors per message, well below the kernel's SCM_MAX_FD (253).
pub const MAX_FDS: usize = 64;
/// The longest message: 64 IPv6 addresses with scope and kind fit comfortably.
pub const MAX_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello { pid: u32 },
    Sockets(Vec<Entry>),
    End { count: usize },
    Ready,
    Done,
    Refused(String),
}

/// One listening socket's address, and whether every worker shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub addr: SocketAddr,
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Another protocol version: the peer is a tern too old or too new for this one.
    Version(String),
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Version(v) => write!(
                f,
                "protocol version {v} is not supported (this tern speaks {VERSION})"
            ),
            WireError::Malformed(m) => write!(f, "malformed message: {m}"),
        }
    }
}

impl Message {
    /// How many descriptors travel with this message.
    pub fn fds(&self) -> usize {
        match self {
            Message::Sockets(e) => e.len(),
            Message::Done => 1,
            _ => 0,
        }
    }
}

pub fn encode(m: &Message) -> Vec<u8> {
    let body = match m {
        Message::Hello { pid } => format!("hello {pid}"),
        Message::Sockets(entries) => {
            let list: Vec<String> = entries
                .iter()
                .map(|e| format!("{}/{}", e.addr, if e.shared { "shared" } else { "own" }))
                .collect();
            format!("sockets {}", list.join(" "))
        }
        Message::End { count } => format!("end {count}"),
        Message::Ready => "ready".into(),
        Message::Done => "done".into(),
        // One line, and short enough to always fit.
        Message::Refused(why) => {
            let why: String = why.chars().filter(|c| !c.is_control()).take(512).collect();
            format!("refused {why}")
        }
    };
    format!("{MAGIC}{VERSION} {body}").into_bytes()
}

pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let bad = |m: &str| Err(WireError::Malformed(m.into()));
    if bytes.len() > MAX_LEN {
        return bad("too long");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bad("not UTF-8");
    };
    let Some(rest) = text.strip_prefix(MAGIC) else {
        return bad("not a tern upgrade message");
    };
    let (version, body) = rest.split_once(' ').unwrap_or((rest, ""));
    if version != VERSION.to_string() {
        let shown: String = version.chars().take(16).collect();
        return Err(WireError::Version(shown));
    }
    // `None`: no arguments, not even the space before them.
    let (verb, args) = match body.split_once(' ') {
        Some((v, a)) => (v, Some(a)),
        None => (body, None),
    };
    let no_args = |m: Message| match args {
        None => Ok(m),
        Some(_) => bad("unexpected arguments"),
    };
    let args_or_empty = args.unwrap_or("");
    match verb {
        "hello" => match args_or_empty.parse::<u32>() {
            Ok(pid) if pid > 0 && !args_or_empty.starts_with('+') => Ok(Message::Hello { pid }),
            _ => bad("hello needs a pid"),
        },
        "sockets" => {
            let entries = args_or_empty
                .split(' ')
                .map(entry)
                .collect::<Option<Vec<Entry>>>()
                .ok_or_else(|| WireError::Malformed("bad socket entry".into()))?;
            if entries.is_empty() || entries.len() > MAX_FDS {
                return bad("between 1 and 64 sockets per message");
            }
            Ok(Message::Sockets(entries))
        }
        "end" => match args_or_empty.parse::<usize>() {
            Ok(count) if !args_or_empty.starts_with('+') => Ok(Message::End { count }),
            _ => bad("end needs a count"),
        },
        "ready" => no_args(Message::Ready),
        "done" => no_args(Message::Done),
        "refused" => Ok(Message::Refused(args_or_empty.to_string())),
        _ => bad("unknown message"),
    }
}

/// `ADDR/own` or `ADDR/shared`.
fn entry(s: &str) -> Option<Entry> {
    let (addr, kind) = s.rsplit_once('/')?;
    let shared = match kind {
        "own" => false,
        "shared" => true,
        _ => return None,
    };
    Some(Entry {
        addr: addr.parse().ok()?,
        shared,
    })
}

/// The fuzz target's body (`fuzz/fuzz_targets/upgrade_message.rs`, and `tests/fuzz_corpus.rs`
/// over its corpus): decoding never panics, and what decodes re-encodes to a message that
/// decodes to itself.
pub fn fuzz(data: &[u8]) {
    if let Ok(m) = decode(data) {
        let bytes = encode(&m);
        assert!(bytes.len() <= MAX_LEN);
        let again = decode(&bytes).expect("an encoded message decodes");
        assert_eq!(encode(&again), bytes);
        assert_eq!(again.fds(), m.fds());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        assert_eq!(decode(&encode(&m)), Ok(m));
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Message::Hello { pid: 4242 });
        round_trip(Message::Sockets(vec![
            Entry {
                addr: "127.0.0.1:443".parse().unwrap(),
                shared: false,
            },
            Entry {
                addr: "[fe80::1%2]:8443".parse().unwrap(),
                shared: true,
            },
        ]));
        round_trip(Message::End { count: 0 });
        round_trip(Message::End { count: 128 });
        round_trip(Message::Ready);
        round_trip(Message::Done);
        round_trip(Message::Refused("already draining".into()));
    }

    #[test]
    fn the_text_is_as_documented() {
        let m = Message::Sockets(vec![Entry {
            addr: "[::]:443".parse().unwrap(),
            shared: false,
        }]);
        assert_eq!(encode(&m), b"tern-upgrade/1 sockets [::]:443/own");
        assert_eq!(encode(&Message::Ready), b"tern-upgrade/1 ready");
        assert_eq!(m.fds(), 1);
        assert_eq!(Message::Done.fds(), 1);
        assert_eq!(Message::Ready.fds(), 0);
    }

    #[test]
    fn the_largest_sockets_message_fits() {
        let addr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        let m = Message::Sockets(vec![Entry { addr, shared: true }; MAX_FDS]);
        let bytes = encode(&m);
        assert!(bytes.len() <= MAX_LEN, "{}", bytes.len());
        assert_eq!(decode(&bytes), Ok(m));
    }

    #[test]
    fn refusals_stay_one_line() {
        let m = encode(&Message::Refused("a\nb\r\0c".into()));
        assert_eq!(decode(&m), Ok(Message::Refused("abc".into())));
    }

    #[test]
    fn another_version_is_told_apart_from_garbage() {
        assert_eq!(
            decode(b"tern-upgrade/2 hello 1"),
            Err(WireError::Version("2".into()))
        );
        assert!(decode(b"tern-upgrade/2 hello 1")
            .unwrap_err()
            .to_string()
            .contains("this tern speaks 1"));
        for bad in [
            &b""[..],
            b"hello 1",
            b"tern-upgrade/1",
            b"tern-upgrade/1 ",
            b"tern-upgrade/1 hello",
            b"tern-upgrade/1 hello 0",
            b"tern-upgrade/1 hello +5",
            b"tern-upgrade/1 hello 99999999999",
            b"tern-upgrade/1 ready now",
            b"tern-upgrade/1 done ",
            b"tern-upgrade/1 sockets",
            b"tern-upgrade/1 sockets ",
            b"tern-upgrade/1 sockets 127.0.0.1:1/mine",
            b"tern-upgrade/1 sockets 127.0.0.1/own",
            b"tern-upgrade/1 sockets 127.0.0.1:1/own  127.0.0.1:2/own",
            b"tern-upgrade/1 end -1",
            b"tern-upgrade/1 jump",
            b"tern-upgrade/1 hello \xff",
        ] {
            assert!(
                matches!(decode(bad), Err(WireError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            "tern-upgrade/1 sockets {}",
            vec!["127.0.0.1:1/own"; MAX_FDS + 1].join(" ")
        );
        assert!(decode(many.as_bytes()).is_err());
        assert!(decode(&vec![b'a'; MAX_LEN + 1]).is_err());
    }
}
