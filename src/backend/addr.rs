//! Where a backend is: a TCP address (resolved once, when the configuration is read) or the
//! path of a Unix stream socket (`unix:/run/app.sock`), which skips a loopback TCP hop for a
//! backend on the same machine. Written back (logs, errors) as it was given: `10.0.0.5:8080`,
//! `unix:/run/app.sock`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The prefix that makes a backend a Unix socket path.
pub const UNIX_PREFIX: &str = "unix:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp(a) => a.fmt(f),
            BackendAddr::Unix(p) => write!(f, "{UNIX_PREFIX}{}", p.display()),
        }
    }
}

/// The socket path of a backend written `unix:PATH`: `None` for any other form (`HOST:PORT`),
/// else the path, or why it cannot be one. Only absolute paths: tern may start in one working
/// directory and be reloaded after a `chdir` nobody sees, and a relative socket path would
/// quietly name another file.
pub fn parse_unix(text: &str) -> Option<Result<PathBuf, String>> {
    let path = text.strip_prefix(UNIX_PREFIX)?;
    Some(if path.is_empty() {
        Err("expected unix:/absolute/path/to.sock, the path is empty".into())
    } else if !path.starts_with('/') {
        Err(format!(
            "the socket path must be absolute, e.g. unix:/run/app.sock (not '{path}')"
        ))
    } else if path.contains('\0') {
        Err("the socket path contains a NUL byte".into())
    } else if path.len() >= 108 {
        // sun_path holds 108 bytes with the terminating NUL.
        Err(format!(
            "the socket path is {} bytes long; Unix sockets allow at most 107",
            path.len()
        ))
    } else {
        Ok(PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths() {
        assert_eq!(parse_unix("127.0.0.1:80"), None);
        assert_eq!(parse_unix("localhost:8080"), None);
        assert_eq!(
            parse_unix("unix:/run/app.sock"),
            Some(Ok(PathBuf::from("/run/app.sock")))
        );
        assert!(matches!(parse_unix("unix:"), Some(Err(e)) if e.contains("empty")));
        assert!(matches!(parse_unix("unix:run/app.sock"), Some(Err(e)) if e.contains("absolute")));
        assert!(matches!(parse_unix("unix:./app.sock"), Some(Err(_))));
        let long = format!("unix:/{}", "a".repeat(120));
        assert!(matches!(parse_unix(&long), Some(Err(e)) if e.contains("107")));
    }

    #[test]
    fn written_back_as_given() {
        let u = BackendAddr::Unix("/run/app.sock".into());
        assert_eq!(u.to_string(), "unix:/run/app.sock");
        let t = BackendAddr::Tcp("10.0.0.5:8080".parse().unwrap());
        assert_eq!(t.to_string(), "10.0.0.5:8080");
    }
}
