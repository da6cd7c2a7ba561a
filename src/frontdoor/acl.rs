//! Allow and deny lists of address prefixes (CIDR), checked on every accepted connection.
//! Pure: built once from the configuration, then only read; a lookup is a binary search over
//! sorted, merged ranges and allocates nothing.
//!
//! IPv4 and IPv6 are kept apart: an IPv4 prefix matches IPv4 clients, an IPv6 prefix IPv6
//! clients. A client on a dual-stack socket appears as a v4-mapped IPv6 address
//! (`::ffff:192.0.2.1`) and is looked up as the IPv4 address it is; a v4-mapped prefix
//! (`::ffff:192.0.2.0/120`) is taken as the IPv4 prefix it names. So `::/0` means every IPv6
//! client and `0.0.0.0/0` every IPv4 client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One prefix, as written: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4(u32, u8),
    V6(u128, u8),
}

impl Cidr {
    /// Parses a prefix. Host bits after the prefix length must be zero (`10.0.0.1/8` is
    /// refused, naming `10.0.0.0/8`): a typo there would otherwise silently widen a list.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an address or prefix (e.g. 10.0.0.0/8)"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{text}': the prefix length must be 0 to {max}")),
            },
        };
        let cidr = match ip {
            IpAddr::V4(v4) => Cidr::V4(u32::from(v4), len),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // ::ffff:a.b.c.d/n with n >= 96 names the IPv4 prefix /n-96.
                Some(v4) if len >= 96 => Cidr::V4(u32::from(v4), len - 96),
                _ => Cidr::V6(u128::from(v6), len),
            },
        };
        let masked = match cidr {
            Cidr::V4(a, l) => Cidr::V4(a & mask32(l), l),
            Cidr::V6(a, l) => Cidr::V6(a & mask128(l), l),
        };
        if masked != cidr {
            return Err(format!(
                "'{text}' has bits set past its prefix length; did you mean {masked}?"
            ));
        }
        Ok(cidr)
    }

    fn range_u128(self) -> (u128, u128) {
        match self {
            Cidr::V4(a, l) => {
                let m = mask32(l);
                (u128::from(a & m), u128::from(a | !m))
            }
            Cidr::V6(a, l) => {
                let m = mask128(l);
                (a & m, a | !m)
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cidr::V4(a, l) => write!(f, "{}/{l}", Ipv4Addr::from(a)),
            Cidr::V6(a, l) => write!(f, "{}/{l}", Ipv6Addr::from(a)),
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// A set of prefixes: for each family, disjoint inclusive ranges sorted by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl PrefixSet {
    pub fn new(prefixes: &[Cidr]) -> PrefixSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &c in prefixes {
            let (start, end) = c.range_u128();
            match c {
                // In range by construction: both ends come from a u32.
                Cidr::V4(..) => v4.push((start as u32, end as u32)),
                Cidr::V6(..) => v6.push((start, end)),
            }
        }
        PrefixSet {
            v4: merge(v4).into(),
            v6: merge(v6).into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` lies in one of the prefixes (v4-mapped addresses as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }
}

/// Sorts ranges and merges the ones that overlap or touch, so that a lookup needs to look at
/// one range only.
fn merge<T: Ord + Copy + adjacent::Adjacent>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if T::touches(last.1, start) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The last range starting at or before `x` is the only one that can hold it.
fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

mod adjacent {
    /// Whether a range ending at `end` and one starting at `start` (sorted after it) overlap
    /// or are adjacent.
    pub trait Adjacent {
        fn touches(end: Self, start: Self) -> bool;
    }
    impl Adjacent for u32 {
        fn touches(end: u32, start: u32) -> bool {
            end.checked_add(1).is_none_or(|next| start <= next)
        }
    }
    impl Adjacent for u128 {
        fn touches(end: u128, start: u128) -> bool {
            end.checked_add(1).is_none_or(|next| start <= next)
        }
    }
}

/// Client addresses a listener lets in: deny wins over allow, and once any allow is given only
/// allowed addresses pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// `None`: no allow list, every address not denied passes.
    allow: Option<PrefixSet>,
    deny: PrefixSet,
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Denied,
    NotAllowed,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Denied => "the address is on the deny list",
            Refused::NotAllowed => "the address is not on the allow list",
        })
    }
}

impl Acl {
    pub fn new(allow: &[Cidr], deny: &[Cidr]) -> Acl {
        Acl {
            allow: (!allow.is_empty()).then(|| PrefixSet::new(allow)),
            deny: PrefixSet::new(deny),
        }
    }

    /// Whether the lists let anything be refused at all (so the check can be skipped).
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.deny.contains(ip) {
            return Err(Refused::Denied);
        }
        match &self.allow {
            Some(allow) if !allow.contains(ip) => Err(Refused::NotAllowed),
            _ => Ok(()),
        }
    }
}

/// Parses a list of prefixes for `what` (a flag or a file position), one-line refusals.
pub fn parse_list<S: AsRef<str>>(what: &str, items: &[S]) -> Result<Vec<Cidr>, String> {
    items
        .iter()
        .map(|s| Cidr::parse(s.as_ref().trim()).map_err(|e| format!("{what}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    fn acl(allow: &[&str], deny: &[&str]) -> Acl {
        Acl::new(&cidrs(allow), &cidrs(deny))
    }

    #[test]
    fn parses_prefixes_and_refuses_bad_ones() {
        assert_eq!(Cidr::parse("10.0.0.0/8"), Ok(Cidr::V4(0x0a00_0000, 8)));
        assert_eq!(Cidr::parse("192.0.2.7"), Ok(Cidr::V4(0xc000_0207, 32)));
        assert_eq!(Cidr::parse("0.0.0.0/0"), Ok(Cidr::V4(0, 0)));
        assert_eq!(Cidr::parse("::/0"), Ok(Cidr::V6(0, 0)));
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            Cidr::parse("::ffff:10.1.0.0/112"),
            Ok(Cidr::V4(0x0a01_0000, 16)),
            "a v4-mapped prefix is the IPv4 prefix"
        );
        assert_eq!(Cidr::parse("::ffff:0:0/96"), Ok(Cidr::V4(0, 0)));
        assert_eq!(
            Cidr::parse("::/95"),
            Ok(Cidr::V6(0, 95)),
            "wider than the mapped space"
        );
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        let e = Cidr::parse("2001:db8::1/64").unwrap_err();
        assert!(e.contains("did you mean 2001:db8::/64"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "",
            "10.0.0.0/",
            "/8",
            "1.2.3.4/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} accepted");
        }
        let e = parse_list("--allow", &["10.0.0.0/8", "nope"]).unwrap_err();
        assert!(e.starts_with("--allow: 'nope'"), "{e}");
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let open = acl(&[], &[]);
        assert!(open.is_open());
        assert_eq!(open.check(ip("203.0.113.9")), Ok(()));

        let a = acl(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(!a.is_open());
        assert_eq!(a.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(a.check(ip("10.9.2.3")), Err(Refused::Denied));
        assert_eq!(a.check(ip("11.0.0.1")), Err(Refused::NotAllowed));
        // An IPv4-only allow list lets no IPv6 client in.
        assert_eq!(a.check(ip("2001:db8::1")), Err(Refused::NotAllowed));

        let d = acl(&[], &["127.0.0.0/8"]);
        assert_eq!(d.check(ip("127.0.0.1")), Err(Refused::Denied));
        assert_eq!(d.check(ip("128.0.0.1")), Ok(()));
        // Deny wins even when the same address is allowed.
        let both = acl(&["127.0.0.1/32"], &["127.0.0.0/8"]);
        assert_eq!(both.check(ip("127.0.0.1")), Err(Refused::Denied));
    }

    #[test]
    fn families_are_kept_apart_and_v4_mapped_is_ipv4() {
        let v6all = acl(&[], &["::/0"]);
        assert_eq!(v6all.check(ip("192.0.2.1")), Ok(()));
        assert_eq!(v6all.check(ip("::ffff:192.0.2.1")), Ok(()), "mapped = IPv4");
        assert_eq!(v6all.check(ip("::1")), Err(Refused::Denied));
        let v4 = acl(&[], &["192.0.2.0/24"]);
        assert_eq!(v4.check(ip("::ffff:192.0.2.200")), Err(Refused::Denied));
        assert_eq!(v4.check(ip("::ffff:192.0.3.1")), Ok(()));
        let mapped_rule = acl(&[], &["::ffff:192.0.2.0/120"]);
        assert_eq!(mapped_rule.check(ip("192.0.2.5")), Err(Refused::Denied));
        let v6 = acl(&["2001:db8:1::/48"], &[]);
        assert_eq!(v6.check(ip("2001:db8:1:ffff::1")), Ok(()));
        assert_eq!(v6.check(ip("2001:db8:2::1")), Err(Refused::NotAllowed));
        assert_eq!(v6.check(ip("10.0.0.1")), Err(Refused::NotAllowed));
    }

    #[test]
    fn ranges_merge_and_edges_hold() {
        let s = PrefixSet::new(&cidrs(&[
            "10.0.1.0/24",
            "10.0.0.0/24",
            "10.0.0.128/25",
            "10.0.3.0/24",
            "255.255.255.255/32",
            "0.0.0.0/32",
        ]));
        // 10.0.0.0/24 and 10.0.1.0/24 touch: one range; the /25 inside is absorbed.
        assert_eq!(s.v4.len(), 4, "{:?}", s.v4);
        for (a, inside) in [
            ("10.0.0.0", true),
            ("10.0.1.255", true),
            ("10.0.2.0", false),
            ("10.0.2.255", false),
            ("10.0.3.0", true),
            ("10.0.3.255", true),
            ("10.0.4.0", false),
            ("9.255.255.255", false),
            ("255.255.255.255", true),
            ("255.255.255.254", false),
            ("0.0.0.0", true),
            ("0.0.0.1", false),
        ] {
            assert_eq!(s.contains(ip(a)), inside, "{a}");
        }
        let all = PrefixSet::new(&cidrs(&["0.0.0.0/0", "::/0", "10.0.0.0/8", "::1"]));
        assert_eq!((all.v4.len(), all.v6.len()), (1, 1));
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("ffff::")));
    }

    /// Against a plain linear check over the prefixes, on a spread of addresses.
    #[test]
    fn lookups_agree_with_a_linear_scan() {
        let list = cidrs(&[
            "10.0.0.0/8",
            "10.128.0.0/9",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "192.168.77.0/24",
            "100.64.0.0/10",
            "1.2.3.4",
            "fc00::/7",
            "2001:db8::/32",
            "2001:db8:ffff::/48",
            "::1",
        ]);
        let set = PrefixSet::new(&list);
        let linear = |x: IpAddr| {
            list.iter().any(|c| {
                let (s, e) = c.range_u128();
                match (c, x.to_canonical()) {
                    (Cidr::V4(..), IpAddr::V4(a)) => (s..=e).contains(&u128::from(u32::from(a))),
                    (Cidr::V6(..), IpAddr::V6(a)) => (s..=e).contains(&u128::from(a)),
                    _ => false,
                }
            })
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = (x >> 32) as u32;
            // Half the IPv4 addresses inside 10/8, where most of the prefixes are.
            let v4 = IpAddr::V4(Ipv4Addr::from(if x & 1 == 1 {
                r & 0x00ff_ffff | 0x0a00_0000
            } else {
                r
            }));
            // IPv6: a prefix of the list (or none), then random bits below its /48.
            let top = [
                0xfc00u128 << 112,
                0x2001_0db8u128 << 96,
                0x2001_0db8_ffffu128 << 80,
                0,
            ];
            let low = u128::from(x).wrapping_mul(0x1234_5678_9abc_def1) & ((1u128 << 80) - 1);
            let v6 = IpAddr::V6(Ipv6Addr::from(top[((x >> 1) & 3) as usize] | low));
            for a in [v4, v6] {
                assert_eq!(set.contains(a), linear(a), "{a}");
            }
        }
    }
}
