//! CPU time and resident memory of a whole process tree, read from /proc.
//!
//! cpu = sum over the root and all its descendants of utime + stime (fields 14 and 15 of
//! /proc/<pid>/stat, in clock ticks; they include every thread of the process), divided by
//! sysconf(_SC_CLK_TCK). rss = sum of the resident pages (/proc/<pid>/statm, field 2).
//! Processes that share pages (nginx master and worker after fork) count them once each, which
//! cancels out in an after - before difference.

use std::collections::HashMap;
use std::fs;
use std::io;

#[derive(Clone, Copy, Debug, Default)]
pub struct TreeStat {
    pub cpu_ticks: u64,
    /// The kernel's part of cpu_ticks (stime): what the process spent in system calls and the
    /// TCP work done on its behalf, beside utime, its own code.
    pub sys_ticks: u64,
    pub rss_kb: u64,
    pub procs: usize,
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_kb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64 / 1024
    } else {
        4
    }
}

/// (ppid, utime + stime, stime) from the text of /proc/<pid>/stat.
fn parse_stat(s: &str) -> Option<(u32, u64, u64)> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4 -> f[1]; utime 14 -> f[11]; stime 15 -> f[12].
    let ppid = f.get(1)?.parse().ok()?;
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, ut + st, st))
}

fn cpu_and_ppid(pid: u32) -> Option<(u32, u64, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_kb())
        .unwrap_or(0)
}

/// Every pid in the tree rooted at `root` (root first).
pub fn tree_pids(root: u32) -> io::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, _, _)) = cpu_and_ppid(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend_from_slice(c);
        }
        i += 1;
    }
    Ok(out)
}

pub fn tree(root: u32) -> io::Result<TreeStat> {
    if fs::metadata(format!("/proc/{root}")).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process {root}"),
        ));
    }
    let mut t = TreeStat::default();
    for pid in tree_pids(root)? {
        if let Some((_, cpu, sys)) = cpu_and_ppid(pid) {
            t.cpu_ticks += cpu;
            t.sys_ticks += sys;
            t.rss_kb += rss_kb(pid);
            t.procs += 1;
        }
    }
    Ok(t)
}

/// Machine-wide CPU ticks from the first line of /proc/stat, summed over CPUs:
/// (task, irq, steal). task = user + nice + system, the time charged to processes (with
/// IRQ_TIME_ACCOUNTING, interrupt and softirq time, much of loopback TCP, is charged to no process
/// and shows in irq); steal = time the hypervisor ran something else.
pub fn machine_ticks() -> (u64, u64, u64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    (g(0) + g(1) + g(2), g(5) + g(6), g(7))
}

/// CPU ticks this process has used so far (all threads).
pub fn self_cpu_ticks() -> u64 {
    cpu_and_ppid(std::process::id())
        .map(|(_, c, _)| c)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let s = "42 (a b) c)) S 7 42 42 0 -1 4194560 100 0 0 0 15 6 0 0 20 0 1 0 9 1 1";
        assert_eq!(parse_stat(s), Some((7, 21, 6)));
    }

    #[test]
    fn reads_own_tree() {
        let t = tree(std::process::id()).unwrap();
        assert!(t.procs >= 1);
        assert!(t.rss_kb > 0);
    }
}
