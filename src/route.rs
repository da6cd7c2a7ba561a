//! Routing: which backend pool serves a request, by host name and path prefix. Pure and
//! immutable (shared by every worker through an `Arc`). http mode routes on the request's
//! Host and path; tcp mode on the TLS server name (SNI) alone.

/// Which host names a route (or a certificate) covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Every host.
    Any,
    /// One name, lower-case, e.g. `example.com`.
    Exact(String),
    /// `*.example.com`: exactly one more label in front, e.g. `www.example.com` (not
    /// `example.com`, not `a.b.example.com`), as certificate wildcards match. Holds
    /// `.example.com`.
    Wildcard(String),
}

impl HostMatch {
    /// Parses `example.com`, `*.example.com` or `*`.
    pub fn parse(pattern: &str) -> Result<HostMatch, String> {
        let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        if p == "*" || p.is_empty() {
            return Ok(HostMatch::Any);
        }
        let (wild, name) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let valid = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !valid || name.len() > 253 {
            return Err(format!("'{pattern}' is not a host name or *.wildcard"));
        }
        Ok(if wild {
            HostMatch::Wildcard(format!(".{name}"))
        } else {
            HostMatch::Exact(name.to_string())
        })
    }

    /// Whether `host` (already normalised by [`normalize_host`]) is covered.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(name) => host == name,
            HostMatch::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Exact beats wildcard beats any.
    fn rank(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 2,
            HostMatch::Wildcard(_) => 1,
            HostMatch::Any => 0,
        }
    }
}

/// Lower-cases a Host header value and drops a port and a trailing dot: `Example.COM:443`
/// → `example.com`. IPv6 literals keep their brackets: `[::1]:8443` → `[::1]`.
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: HostMatch,
    /// Requests whose path starts with this (as nginx's prefix `location` does).
    pub path_prefix: String,
    /// Index of the backend pool.
    pub pool: usize,
    /// Only for clients that presented a verified certificate (`client_auth = "required"`):
    /// http mode answers others `403`, tcp mode closes their connection.
    pub client_cert_required: bool,
}

/// Routes in the order they are tried: most specific host first, then longest path prefix;
/// the first match wins.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>) -> Routes {
        // Stable: among equals, the order of the configuration decides.
        routes.sort_by(|a, b| {
            (b.host.rank(), b.path_prefix.len()).cmp(&(a.host.rank(), a.path_prefix.len()))
        });
        Routes { routes }
    }

    /// The pool for a request to `host` (normalised) with `path`; `None` if no route covers it.
    /// `path` is the request target's path as sent; it is matched as [`routing_path`] reads
    /// it.
    pub fn pick(&self, host: Option<&str>, path: &[u8]) -> Option<usize> {
        self.pick_route(host, path).map(|r| r.pool)
    }

    /// The route [`pick`](Self::pick) takes.
    pub fn pick_route(&self, host: Option<&str>, path: &[u8]) -> Option<&Route> {
        let path = routing_path(path);
        self.routes.iter().find(|r| {
            let host_ok = match host {
                Some(h) => r.host.matches(h),
                None => r.host == HostMatch::Any,
            };
            host_ok && path.starts_with(r.path_prefix.as_bytes())
        })
    }

    /// The pool for a connection by host name alone (tcp mode routes on SNI; paths do not
    /// exist there): the most specific host match, and of its routes the broadest path.
    pub fn pick_host(&self, host: Option<&str>) -> Option<usize> {
        self.pick_host_route(host).map(|r| r.pool)
    }

    /// The route [`pick_host`](Self::pick_host) takes.
    pub fn pick_host_route(&self, host: Option<&str>) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| match host {
                Some(h) => r.host.matches(h),
                None => r.host == HostMatch::Any,
            })
            .min_by_key(|r| (std::cmp::Reverse(r.host.rank()), r.path_prefix.len()))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The path a request is routed by: without its query, percent-decoded, `//` merged and `.`
/// and `..` segments resolved (RFC 3986 §5.2.4), as nginx matches its locations. Backends
/// resolve `/public/../admin` or `/public/%2e%2e/admin` to `/admin`, so that is where tern
/// routes it too; the request itself is forwarded as sent. Borrowed when nothing changes.
pub fn routing_path(target: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let path = match memchr::memchr2(b'?', b'#', target) {
        Some(i) => &target[..i],
        None => target,
    };
    let plain =
        memchr::memchr(b'%', path).is_none() && !path.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return Cow::Borrowed(path);
    }
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            path[i],
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split(|&b| b == b'/') {
        trailing = matches!(seg, b"" | b"." | b"..");
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, path: &str, pool: usize) -> Route {
        Route {
            host: HostMatch::parse(host).unwrap(),
            path_prefix: path.into(),
            pool,
            client_cert_required: false,
        }
    }

    #[test]
    fn host_patterns() {
        let w = HostMatch::parse("*.Example.com.").unwrap();
        assert_eq!(w, HostMatch::Wildcard(".example.com".into()));
        assert!(w.matches("www.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("wwwexample.com"));
        assert!(HostMatch::parse("EXAMPLE.com")
            .unwrap()
            .matches("example.com"));
        assert_eq!(HostMatch::parse("*").unwrap(), HostMatch::Any);
        for bad in ["exa mple.com", "a..b", "ex/ample", "*.*.x", "*.a..b"] {
            assert!(HostMatch::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routing_paths() {
        let r = |p: &[u8]| String::from_utf8(routing_path(p).into_owned()).unwrap();
        assert!(matches!(
            routing_path(b"/a/b?x=/../y"),
            std::borrow::Cow::Borrowed(b"/a/b")
        ));
        assert_eq!(r(b"/a/./b/../c"), "/a/c");
        assert_eq!(r(b"/a/b/.."), "/a/");
        assert_eq!(r(b"/../../x"), "/x");
        assert_eq!(r(b"/a//b/"), "/a/b/");
        assert_eq!(r(b"/%61pi/%2E%2e/v1%2fx"), "/v1/x");
        assert_eq!(r(b"/a/%zz/%4"), "/a/%zz/%4");
        assert_eq!(r(b"/.well-known/x"), "/.well-known/x");
        assert_eq!(r(b"/.."), "/");
        assert_eq!(r(b"/a?q"), "/a");
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:443"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:8443"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }

    #[test]
    fn most_specific_route_wins() {
        let routes = Routes::new(vec![
            route("*", "/", 0),
            route("*", "/api/", 1),
            route("*.example.com", "/", 2),
            route("shop.example.com", "/", 3),
            route("shop.example.com", "/cart", 4),
        ]);
        assert_eq!(routes.pick(Some("other.org"), b"/x"), Some(0));
        assert_eq!(routes.pick(Some("other.org"), b"/api/v1"), Some(1));
        assert_eq!(routes.pick(Some("www.example.com"), b"/api/v1"), Some(2));
        assert_eq!(routes.pick(Some("shop.example.com"), b"/"), Some(3));
        assert_eq!(routes.pick(Some("shop.example.com"), b"/cart/1"), Some(4));
        assert_eq!(routes.pick(None, b"/api/x"), Some(1));
        assert_eq!(routes.pick_host(Some("shop.example.com")), Some(3));
        assert_eq!(routes.pick_host(Some("x.example.com")), Some(2));
        assert_eq!(routes.pick_host(None), Some(0));
        // Routed where the backend will resolve the path, not by its spelling.
        assert_eq!(routes.pick(Some("other.org"), b"/api/../admin"), Some(0));
        assert_eq!(routes.pick(Some("other.org"), b"/x/%2e%2E/api/v1"), Some(1));
        assert_eq!(routes.pick(Some("other.org"), b"//api//v1"), Some(1));
        let narrow = Routes::new(vec![route("a.com", "/", 0)]);
        assert_eq!(narrow.pick(Some("b.com"), b"/"), None);
        assert_eq!(narrow.pick(None, b"/"), None);
    }
}
