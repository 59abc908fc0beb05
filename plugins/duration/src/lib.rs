//! Durations as operators write them: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
//!
//! One parser for the host (specs, backend timeouts) and the plugins (their configs), so a
//! duration means the same thing everywhere.

/// The longest duration accepted: 100 years (36,525 days), in milliseconds. Nothing in a
/// rollout waits longer, and every sum of a duration with a time (a deadline, a replay step)
/// then stays far inside `i64`.
pub const MAX_MS: u64 = 36_525 * 86_400_000;

/// Parse a duration into milliseconds, at most [`MAX_MS`]. Units: `ms`, `s`, `m`, `h`, `d`; several may follow
/// each other (`1h30m`). A bare number is refused: the unit must be explicit.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 30s, 5m or 1h".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before {rest:?}"
            ));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: bad number {:?}",
                &rest[..digits]
            )
        })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor: f64 = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                ));
            }
        };
        let ms = number * factor;
        // Compared as a float first: the cast of a larger float would saturate silently.
        if !ms.is_finite() || ms > MAX_MS as f64 {
            return Err(format!(
                "invalid duration {text:?}: longer than 100 years (36525d)"
            ));
        }
        total = total.saturating_add(ms.round() as u64);
        if total > MAX_MS {
            return Err(format!(
                "invalid duration {text:?}: longer than 100 years (36525d)"
            ));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::{MAX_MS, parse_ms};

    #[test]
    fn table() {
        let ok = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("2d", 172_800_000),
            (" 10s ", 10_000),
            ("36525d", MAX_MS),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
        let bad = [
            ("", "empty"),
            ("10", "missing unit"),
            ("5x", "unknown unit"),
            ("m", "expected a number"),
            ("1..2s", "bad number"),
            ("36526d", "longer than 100 years"),
            ("36525d1ms", "longer than 100 years"),
            ("99999999999999999999999h", "longer than 100 years"),
        ];
        for (text, msg) in bad {
            let e = parse_ms(text).expect_err(text);
            assert!(e.contains(msg), "{text}: {e}");
        }
    }
}
