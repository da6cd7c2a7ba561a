//! Byte sizes on the command line: `32768`, `32KiB`, `32k`, `10MiB`, `1G`.

/// Parses a size in bytes; K/M/G (with or without `iB`, any case) are powers of 1024.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 32KiB, 10MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("32768"), Ok(32768));
        assert_eq!(parse("32KiB"), Ok(32768));
        assert_eq!(parse("32k"), Ok(32768));
        assert_eq!(parse("10MiB"), Ok(10 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("12 parsecs").is_err());
        assert!(parse("99999999999999999999G").is_err());
    }
}
