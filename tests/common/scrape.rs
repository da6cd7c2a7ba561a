//! Reading tern's `--metrics` from a test: the address it logged, one scrape, one series.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::{Tern, WAIT};

/// The address tern logged as `metrics on ADDR`.
pub fn metrics_addr(tern: &Tern) -> SocketAddr {
    let log = tern.log_text();
    let rest = log
        .split("metrics on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'metrics on' line in:\n{log}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// The Prometheus text of one scrape.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: tern\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The sum of the samples of `name` whose labels include every `label="value"` in `with`.
pub fn sum(text: &str, name: &str, with: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            n == name && with.iter().all(|w| labels.contains(w))
        })
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

/// Scrapes until the series `name` reaches `want` (counters settle as connection tasks end);
/// panics with the last scrape after `WAIT`.
pub fn wait_for(addr: SocketAddr, name: &str, want: u64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(addr);
        if sum(&text, name, &[]) == want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want}:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
