//! A small YAML emitter for JSON values: the effective Rollout the detail page shows.
//!
//! Block style, keys in the value's order (serde_json's maps are sorted, so the text is
//! stable from one read to the next), two spaces per level. A string is written plain only
//! when it cannot be read back as anything else (a conservative set of characters, no
//! word YAML 1.1 or 1.2 gives a meaning: `true`, `no`, `null`, `~`, …, nothing that looks
//! like a number); every other string is double-quoted with escapes, so any text — line
//! breaks, control characters, `: `, `#`, quotes — reads back exactly. Floats always carry
//! a `.` or an exponent, so `10.0` does not come back as the integer `10`. The tests parse
//! the output with the project's YAML parser (serde-saphyr) and compare the values.

use serde_json::Value;
use std::fmt::Write;

/// `value` as a YAML document (ends with a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// A scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Whether `value` is written on its own lines (a non-empty collection).
fn is_block(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A non-empty mapping, every key at `indent`.
fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        entry(out, key, value, indent);
    }
}

/// `key: value` whose key starts where the cursor is (already indented to `indent`).
fn entry(out: &mut String, key: &str, value: &Value, indent: usize) {
    out.push_str(&string(key));
    out.push(':');
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            sequence(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// A non-empty sequence, every `- ` at `indent` (the first one where the cursor is).
fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if is_block(item) => mapping(out, map, indent + 2),
            Value::Array(inner) if is_block(item) => sequence(out, inner, indent + 2),
            scalar => {
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// A number as YAML reads it back to the same JSON number: integers as they are, floats
/// with a `.` or an exponent.
fn number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_f64() && !text.contains(['.', 'e', 'E']) {
        format!("{text}.0")
    } else {
        text
    }
}

/// Words a YAML reader may take for something other than a string (YAML 1.1 and 1.2,
/// compared without case).
const RESERVED: [&str; 16] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf", "infinity", "none",
    "nil", "~", "<<",
];

/// A string (or key), plain when that is safe, double-quoted otherwise.
pub fn string(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '))
        && !RESERVED.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// `s` double-quoted: `"` and `\` escaped, and every character YAML does not print as it
/// is (controls, line and paragraph separators, the byte-order mark, non-characters) as
/// a `\u` escape.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// YAML's printable characters, less the ones that read as line breaks in YAML 1.1
/// (U+0085, U+2028, U+2029) and the byte-order mark.
fn printable(c: char) -> bool {
    matches!(c as u32,
        0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD
        | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Parse YAML with the project's parser into a JSON value.
    fn parse(text: &str) -> Value {
        serde_saphyr::from_str::<Value>(text)
            .unwrap_or_else(|e| panic!("does not parse: {e}\n{text}"))
    }

    #[test]
    fn a_rollout_reads_like_yaml_written_by_hand() {
        let v = json!({
            "name": "payments",
            "phases": [{"name": "canary-10", "weight": 10.0, "pause": null}, {"name": "full", "weight": 100.0}],
            "args": {"service": "payments", "max-error-ratio": "0.05"},
            "empty": {}, "nothing": [], "count": 4,
            "condition": "< 0.05",
            "command": ["sh", "-c", "echo \"$X\": done # not a comment\nnext"],
        });
        let text = to_yaml(&v);
        assert_eq!(parse(&text), v);
        for line in [
            "name: payments\n",
            "phases:\n  - name: canary-10\n    pause: null\n    weight: 10.0\n  - name: full\n",
            "  max-error-ratio: \"0.05\"\n",
            "condition: \"< 0.05\"\n",
            "empty: {}\n",
            "nothing: []\n",
            "count: 4\n",
            "  - \"-c\"\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn strings_that_would_read_as_something_else_are_quoted() {
        for s in [
            "true",
            "No",
            "null",
            "~",
            "1",
            "1.5",
            "0x10",
            "-1",
            ".inf",
            "NaN",
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "#c",
            "- x",
            "'q'",
            "\"q\"",
            "[x]",
            "{x}",
            "&a",
            "*a",
            "!t",
            "|",
            ">",
            "%x",
            "@x",
            "`x",
            "a\nb",
            "tab\there",
            "nel\u{85}",
            "ls\u{2028}",
            "bom\u{feff}",
            "bell\u{7}",
            "del\u{7f}",
            "<<",
            "2026-01-01",
        ] {
            let v = json!({ s: s, "list": [s] });
            assert_eq!(parse(&to_yaml(&v)), v, "{s:?}");
        }
    }

    #[test]
    fn numbers_keep_their_kind() {
        let v = json!([
            0,
            -1,
            u64::MAX,
            i64::MIN,
            10.0,
            -0.0,
            0.5,
            1e300,
            1.5e-7,
            f64::MAX
        ]);
        assert_eq!(parse(&to_yaml(&v)), v);
    }

    #[test]
    fn scalars_and_nested_collections_at_the_top() {
        for v in [
            json!(null),
            json!("x"),
            json!(3),
            json!([]),
            json!({}),
            json!([[1, [2, []]], [{}], [{"a": [{"b": {}}]}]]),
        ] {
            assert_eq!(parse(&to_yaml(&v)), v, "{v}");
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z0-9 :#.\\-\"'\\\\]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![any::<String>(), "[a-z\\-: ]{0,8}"],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn every_value_reads_back_the_same(v in any_value()) {
            let text = to_yaml(&v);
            let back = serde_saphyr::from_str::<Value>(&text);
            prop_assert!(back.is_ok(), "{:?}\n{}", back.err(), text);
            prop_assert_eq!(back.ok(), Some(v), "{}", text);
        }
    }
}
