//! CPU sets: the CPUs this process may run on (`sched_getaffinity`, so `taskset` and cgroup
//! cpusets are respected) and the `--cores 0,2-5` list syntax.

use std::collections::BTreeSet;

/// Parses a CPU list such as `0,2-5` into sorted, distinct CPU numbers.
pub fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    let mut set = BTreeSet::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("'{text}' has an empty item (expected e.g. 0,2-5)"));
        }
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not a CPU number (expected e.g. 0,2-5)"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("range '{part}' runs backwards"));
                }
                if hi - lo >= 4096 {
                    return Err(format!("range '{part}' is implausibly large"));
                }
                set.extend(lo..=hi);
            }
            None => {
                set.insert(num(part)?);
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// Formats CPU numbers compactly (`0-3,6`), for messages.
pub fn show_list(cpus: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The CPUs the calling thread may run on, sorted.
pub fn allowed() -> std::io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Chooses the CPU for each worker. `cores` (from `--cores`) must lie inside `allowed`; with
/// `workers` unset there is one worker per chosen CPU, otherwise workers are dealt round-robin
/// over the chosen CPUs.
pub fn plan(
    allowed: &[usize],
    cores: Option<&[usize]>,
    workers: Option<usize>,
) -> Result<Vec<usize>, String> {
    let chosen: Vec<usize> = match cores {
        Some(list) => {
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "--cores: CPU {bad} is not in the set this process may run on ({})",
                    show_list(allowed)
                ));
            }
            list.to_vec()
        }
        None => allowed.to_vec(),
    };
    if chosen.is_empty() {
        return Err("--cores: no CPU to run on".into());
    }
    let n = match workers {
        Some(0) => return Err("--workers: must be at least 1".into()),
        Some(n) if n > 1024 => return Err(format!("--workers: {n} is more than 1024")),
        Some(n) => n,
        None => chosen.len(),
    };
    Ok((0..n).map(|i| chosen[i % chosen.len()]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_list("0").unwrap(), vec![0]);
        assert_eq!(parse_list("0,2-5").unwrap(), vec![0, 2, 3, 4, 5]);
        assert_eq!(parse_list("3, 1,1-2").unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["", "a", "1,", "5-2", "1-", "-3", "0-99999", "1;2"] {
            assert!(parse_list(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn shows_compactly() {
        assert_eq!(show_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(show_list(&[]), "");
    }

    #[test]
    fn plans_workers() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(plan(&allowed, None, None).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(plan(&allowed, Some(&[2, 3]), None).unwrap(), vec![2, 3]);
        assert_eq!(plan(&allowed, None, Some(2)).unwrap(), vec![0, 1]);
        assert_eq!(plan(&allowed, Some(&[1]), Some(3)).unwrap(), vec![1, 1, 1]);
        let err = plan(&allowed, Some(&[1, 7]), None).unwrap_err();
        assert!(
            err.contains("--cores") && err.contains("CPU 7") && err.contains("0-3"),
            "{err}"
        );
        assert!(plan(&allowed, None, Some(0))
            .unwrap_err()
            .contains("--workers"));
    }

    #[test]
    fn allowed_is_not_empty() {
        let cpus = allowed().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
