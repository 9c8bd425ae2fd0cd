//! UTC calendar arithmetic for timestamps chmigrate prints and writes
//! (no time-zone database needed: everything is UTC).

/// Year, month, day, hour, minute, second (UTC) of a Unix time in seconds.
pub fn civil(unix_secs: u64) -> (i64, u64, u64, u64, u64, u64) {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// `YYYYMMDDHHMMSS` (a timestamp migration version).
pub fn compact(unix_secs: u64) -> String {
    let (y, m, d, h, mi, s) = civil(unix_secs);
    format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// `YYYY-MM-DD HH:MM:SS` of microseconds since the epoch.
pub fn format_us(us: u64) -> String {
    let (y, m, d, h, mi, s) = civil(us / 1_000_000);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `7d`, `12h`, `30m`, `45s`, `2w` as seconds; a bare number is days
/// (`30` = `30d`, as the seed framework's `clean --older-than 30` means).
pub fn parse_age(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        format!("{s:?}: expected a number and a unit, e.g. 7d, 12h, 30m (a bare number is days)")
    })?;
    let per = match unit {
        "" => 86_400,
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(compact(0), "19700101000000");
        assert_eq!(compact(1_748_433_600), "20250528120000");
        assert_eq!(format_us(1_748_433_600_000_000), "2025-05-28 12:00:00");
        assert_eq!(format_us(951_782_400_000_000), "2000-02-29 00:00:00");
        assert_eq!(format_us(1_767_225_599_000_000), "2025-12-31 23:59:59");
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(604_800));
        assert_eq!(parse_age("30m"), Ok(1800));
        assert_eq!(parse_age("0s"), Ok(0));
        assert_eq!(parse_age("30"), Ok(30 * 86_400), "a bare number is days");
        assert!(parse_age("d").is_err());
        assert!(parse_age("3y").is_err());
    }
}
