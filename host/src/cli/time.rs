//! Time arguments: `now`, `now-1h`, `-30m`, unix seconds or milliseconds, RFC 3339.

use rollgate_duration::parse_ms;

/// Parse a time argument into milliseconds since the Unix epoch, relative to `now_ms`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    let relative = |rest: &str, sign: i64| -> Result<i64, String> {
        let ms = parse_ms(rest).map_err(|e| format!("time {text:?}: {e}"))?;
        Ok(now_ms + sign * i64::try_from(ms).map_err(|_| format!("time {text:?}: too far"))?)
    };
    if t == "now" {
        return Ok(now_ms);
    }
    let after_now = t.strip_prefix("now").unwrap_or(t);
    if let Some(rest) = after_now.strip_prefix('-') {
        return relative(rest, -1);
    }
    if let Some(rest) = after_now.strip_prefix('+') {
        return relative(rest, 1);
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        let n: i64 = t.parse().map_err(|_| format!("time {text:?}: too large"))?;
        // Ten digits is seconds until the year 2286; thirteen is milliseconds.
        return Ok(if t.len() >= 12 { n } else { n * 1000 });
    }
    rfc3339(t).ok_or_else(|| {
        format!("time {text:?} not understood: use now, now-1h, -30m, unix seconds or ms, or RFC 3339 (2026-11-22T10:00:00Z)")
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        let ms_text: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = ms_text.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn table() {
        let now = 1_700_000_000_000;
        let ok = [
            ("now", now),
            ("now-1h", now - 3_600_000),
            ("-30m", now - 1_800_000),
            ("now+5m", now + 300_000),
            ("1700000000", 1_700_000_000_000),
            ("1700000000123", 1_700_000_000_123),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
            ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600_000),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_time(text, now), Ok(expected), "{text}");
        }
        for bad in [
            "yesterday",
            "-5",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13",
            "now-",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
