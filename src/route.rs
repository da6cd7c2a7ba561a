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
    pub fn pick(&self, host: Option<&str>, path: &[u8]) -> Option<usize> {
        self.routes
            .iter()
            .find(|r| {
                let host_ok = match host {
                    Some(h) => r.host.matches(h),
                    None => r.host == HostMatch::Any,
                };
                host_ok && path.starts_with(r.path_prefix.as_bytes())
            })
            .map(|r| r.pool)
    }

    /// The pool for a connection by host name alone (tcp mode routes on SNI; paths do not
    /// exist there): the most specific host match, and of its routes the broadest path.
    pub fn pick_host(&self, host: Option<&str>) -> Option<usize> {
        self.routes
            .iter()
            .filter(|r| match host {
                Some(h) => r.host.matches(h),
                None => r.host == HostMatch::Any,
            })
            .min_by_key(|r| (std::cmp::Reverse(r.host.rank()), r.path_prefix.len()))
            .map(|r| r.pool)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, path: &str, pool: usize) -> Route {
        Route {
            host: HostMatch::parse(host).unwrap(),
            path_prefix: path.into(),
            pool,
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
        let narrow = Routes::new(vec![route("a.com", "/", 0)]);
        assert_eq!(narrow.pick(Some("b.com"), b"/"), None);
        assert_eq!(narrow.pick(None, b"/"), None);
    }
}
