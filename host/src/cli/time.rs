//! Time arguments: `now`, `now-1h`, `-30m`, unix seconds or milliseconds, RFC 3339.

use rollgate_duration::parse_ms;

/// Parse a time argument into milliseconds since the Unix epoch, relative to `now_ms`.
/// Every time argument lies in the years 1 to 9999, as recordings do, so that the clocks and
/// windows built from it never overflow.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    use crate::metrics::replay::{MAX_TIME_MS, MIN_TIME_MS};
    let t = parse_any_time(text, now_ms)?;
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t) {
        Ok(t)
    } else {
        Err(format!(
            "time {text:?} is outside the years 1 to 9999; write a time such as 2026-11-22T10:00:00Z"
        ))
    }
}

fn parse_any_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    let relative = |rest: &str, sign: i64| -> Result<i64, String> {
        let ms = parse_ms(rest).map_err(|e| format!("time {text:?}: {e}"))?;
        i64::try_from(ms)
            .ok()
            .and_then(|ms| now_ms.checked_add(sign.checked_mul(ms)?))
            .ok_or_else(|| format!("time {text:?}: too far"))
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
        return if t.len() >= 12 {
            Ok(n)
        } else {
            n.checked_mul(1000)
                .ok_or_else(|| format!("time {text:?}: too large"))
        };
    }
    rfc3339(t).ok_or_else(|| {
        format!("time {text:?} not understood: use now, now-1h, -30m, unix seconds or ms, or RFC 3339 (2026-11-22T10:00:00Z)")
    })
}

/// [`parse_time`] within a recording that spans `first_ms..=last_ms`: also `start`, `end`,
/// `start+10m`, `end-5m`.
pub fn parse_in_span(text: &str, first_ms: i64, last_ms: i64, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    for (word, base) in [("start", first_ms), ("end", last_ms)] {
        if let Some(rest) = t.strip_prefix(word) {
            if rest.is_empty() {
                return Ok(base);
            }
            return parse_time(&format!("now{rest}"), base).map_err(|_| {
                format!("time {text:?} not understood: after `{word}` write +DURATION or -DURATION ({word}+10m)")
            });
        }
    }
    parse_time(t, now_ms)
        .map_err(|e| format!("{e}; or start, end, start+10m, end-5m within the recording"))
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC (it lives with the engine's clock,
/// which the server's views share).
pub use crate::engine::clock::rfc3339_ms;

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
            let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
            if !(0..=23).contains(&h) || !(0..=59).contains(&m) {
                return None;
            }
            sign * (h * 60 + m)
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
    use super::{parse_in_span, parse_time, rfc3339_ms};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn formatting_and_parsing_agree(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            prop_assert_eq!(parse_time(&rfc3339_ms(ms), 0), Ok(ms));
        }
    }

    #[test]
    fn within_a_recording() {
        let (first, last, now) = (1_000_000, 5_000_000, 9_000_000);
        assert_eq!(parse_in_span("start", first, last, now), Ok(first));
        assert_eq!(parse_in_span("end", first, last, now), Ok(last));
        assert_eq!(
            parse_in_span("start+10m", first, last, now),
            Ok(first + 600_000)
        );
        assert_eq!(parse_in_span("end-1s", first, last, now), Ok(last - 1000));
        assert_eq!(parse_in_span("now", first, last, now), Ok(now));
        assert_eq!(
            parse_in_span("1970-01-01T00:00:01Z", first, last, now),
            Ok(1000)
        );
        // Nothing overflows, and times outside the years 1 to 9999 are refused.
        for text in [
            "9223372036854775807",
            "-9223372036854775808",
            "253402300800000",
            "2026-01-01T00:00:00+99999999999999999:00",
        ] {
            assert!(parse_in_span(text, first, last, now).is_err(), "{text}");
        }
        assert!(
            parse_time("9223372036854775807", now)
                .unwrap_err()
                .contains("outside the years 1 to 9999")
        );
        let e = parse_in_span("start*2", first, last, now).unwrap_err();
        assert!(e.contains("start+10m"), "{e}");
        assert_eq!(rfc3339_ms(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_767_225_600_250), "2026-01-01T00:00:00.250Z");
    }

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
