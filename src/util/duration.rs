//! Human durations on the command line: `10s`, `500ms`, `5m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// Parses `10`, `10s`, `1.5s`, `250ms`, `5m`, `1h` into a [`Duration`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{text}' is not a duration (try 10s, 500ms, 5m)"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 10s, 500ms, 5m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way [`parse`] reads it, for help texts and log lines.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
        assert!(parse("10 parsecs").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("1e99").is_err());
    }

    #[test]
    fn show_round_trips() {
        for s in ["10s", "250ms", "300s"] {
            assert_eq!(show(parse(s).unwrap()), s);
        }
    }
}
