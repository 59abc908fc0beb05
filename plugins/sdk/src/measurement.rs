//! Constructors for measurements, so plugins say what they mean in one call.

use crate::bindings::provider::rollgate::plugin::types::{Measurement, Verdict};

/// A horizontal line a chart of the metric draws: a bound the plugin judged the value
/// against, such as the `0.05` of `< 0.05`. The host's web view reads them from the
/// details' `"limits"` array (`[{"label": "< 0.05", "value": 0.05}, …]`, see
/// [`MeasurementExt::with_limits`]); a line only makes sense on the scale of the
/// measurement's `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// What the line means, short (`< 0.05`, `fail: > 0.1`, `pass ≥ 95`).
    pub label: String,
    /// Where it is, on the scale of the measurement's value.
    pub value: f64,
}

impl Limit {
    /// A line at `value` labelled `label`.
    pub fn new(label: impl Into<String>, value: f64) -> Limit {
        Limit {
            label: label.into(),
            value,
        }
    }
}

/// Constructors and builders for [`Measurement`].
pub trait MeasurementExt: Sized {
    /// A measurement with a verdict, an optional value and a message.
    fn new(verdict: Verdict, value: Option<f64>, message: impl Into<String>) -> Self;
    /// Pass or fail by `ok`, with the value that was judged.
    fn judge(ok: bool, value: f64, message: impl Into<String>) -> Self {
        let verdict = if ok { Verdict::Pass } else { Verdict::Fail };
        Self::new(verdict, Some(value), message)
    }
    /// No data to judge.
    fn no_data(message: impl Into<String>) -> Self {
        Self::new(Verdict::NoData, None, message)
    }
    /// Attach structured details (a JSON object). The host shows them with the measurement
    /// and keeps them with it in the store; one key has a meaning to the host: `"limits"`
    /// (see [`with_limits`](MeasurementExt::with_limits)).
    fn with_details(self, details: serde_json::Value) -> Self;
    /// Add the lines a chart of the metric draws, as `"limits": [{"label", "value"}]` in
    /// the details (merged into the details object; call it after
    /// [`with_details`](MeasurementExt::with_details)). Lines at a non-finite value are left
    /// out; details that are not an object move under `"details"`.
    fn with_limits(self, limits: &[Limit]) -> Self;
}

impl MeasurementExt for Measurement {
    fn new(verdict: Verdict, value: Option<f64>, message: impl Into<String>) -> Self {
        Measurement {
            verdict,
            value,
            message: message.into(),
            details: "{}".to_string(),
        }
    }

    fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details.to_string();
        self
    }

    fn with_limits(mut self, limits: &[Limit]) -> Self {
        // Usually the details are an object `with_details` just wrote (keys in order, no
        // `limits` yet): the lines are spliced into its text at their key's place, the
        // bytes parsing, inserting and writing the document again gives, without building
        // it (that was ~2 µs of a 26 µs `threshold` call in wasm). Anything else is parsed.
        self.details = match limits_splice(&self.details) {
            Some((at, comma)) => {
                let lines = limit_lines(limits);
                let member = match comma {
                    Comma::None => format!("\"limits\":{lines}"),
                    Comma::Before => format!(",\"limits\":{lines}"),
                    Comma::After => format!("\"limits\":{lines},"),
                };
                let mut details = std::mem::take(&mut self.details);
                details.insert_str(at, &member);
                details
            }
            None => with_limits_parsed(&self.details, limits),
        };
        self
    }
}

/// [`MeasurementExt::with_limits`] on the parsed document: any details.
fn with_limits_parsed(details: &str, limits: &[Limit]) -> String {
    use serde_json::{Map, Value, json};
    let mut details = match serde_json::from_str::<Value>(details) {
        Ok(Value::Object(object)) => object,
        Ok(other) => Map::from_iter([("details".to_string(), other)]),
        Err(_) => Map::from_iter([("details".to_string(), json!(details))]),
    };
    let lines: Vec<Value> = limits
        .iter()
        .filter(|l| l.value.is_finite())
        .map(|l| json!({"label": l.label, "value": l.value}))
        .collect();
    details.insert("limits".into(), Value::Array(lines));
    Value::Object(details).to_string()
}

/// The `"limits"` array's text: `[{"label":…,"value":…},…]`, the finite lines only, as
/// `serde_json` writes them.
fn limit_lines(limits: &[Limit]) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        label: &'a str,
        value: f64,
    }
    let lines: Vec<Line> = limits
        .iter()
        .filter(|l| l.value.is_finite())
        .map(|l| Line {
            label: &l.label,
            value: l.value,
        })
        .collect();
    serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into())
}

/// Which side of the spliced `"limits"` member a comma goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comma {
    /// The object is empty: no comma.
    None,
    /// After other members: `,"limits":…`.
    Before,
    /// Before the first key that sorts after it: `"limits":…,`.
    After,
}

/// Where a `"limits"` member can be spliced into `details` as text: when they are one JSON
/// object without a top-level `limits` key and without escapes in its top-level keys. The
/// member goes before the first key that sorts after `limits` when the keys are in order
/// (as `serde_json` writes an object), else last. `None`: take the general path.
fn limits_splice(details: &str) -> Option<(usize, Comma)> {
    // Valid JSON (one value, nothing after it), checked without building it.
    serde_json::from_str::<serde::de::IgnoredAny>(details).ok()?;
    let bytes = details.as_bytes();
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'{' {
        return None;
    }
    // The top-level keys (quote offset, text) and the closing brace, in one pass.
    let (mut depth, mut in_string, mut escaped, mut expect_key) = (0usize, false, false, false);
    let mut key_start = 0;
    let (mut previous, mut sorted, mut keys) = (None::<&[u8]>, true, 0usize);
    let mut insert_before = None;
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                if depth == 1 && expect_key {
                    return None;
                }
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if depth == 1 && expect_key {
                    let key = &bytes[key_start + 1..i];
                    if key == b"limits" {
                        return None;
                    }
                    sorted &= previous.is_none_or(|p| p < key);
                    if insert_before.is_none() && key > b"limits".as_slice() {
                        insert_before = Some(key_start);
                    }
                    previous = Some(key);
                    keys += 1;
                    expect_key = false;
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                key_start = i;
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
    }
    let close = close?;
    Some(match insert_before {
        Some(at) if sorted => (at, Comma::After),
        _ if keys == 0 => (close, Comma::None),
        _ => (close, Comma::Before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_join_the_details_object() {
        let m = Measurement::new(Verdict::Pass, Some(0.01), "ok")
            .with_details(json!({"series": 1}))
            .with_limits(&[
                Limit::new("< 0.05", 0.05),
                Limit::new("> -inf", f64::NEG_INFINITY),
                Limit::new("fail: >= 0.1", 0.1),
            ]);
        let details: serde_json::Value = serde_json::from_str(&m.details).unwrap();
        assert_eq!(
            details,
            json!({"series": 1, "limits": [
                {"label": "< 0.05", "value": 0.05},
                {"label": "fail: >= 0.1", "value": 0.1}
            ]})
        );
        // Without details first, and over details that are not an object.
        let bare = Measurement::no_data("none").with_limits(&[Limit::new("< 1", 1.0)]);
        assert_eq!(bare.details, r#"{"limits":[{"label":"< 1","value":1.0}]}"#);
        let text = Measurement::no_data("none")
            .with_details(json!("just text"))
            .with_limits(&[]);
        let details: serde_json::Value = serde_json::from_str(&text.details).unwrap();
        assert_eq!(details, json!({"details": "just text", "limits": []}));
    }

    #[test]
    fn spliced_limits_are_the_bytes_the_parsed_path_writes() {
        let limits = [
            Limit::new("< 0.05", 0.05),
            Limit::new("nan", f64::NAN),
            Limit::new("fail: \"q\" \\ {", 1e-7),
        ];
        // Objects as serde_json writes them (keys in order): spliced.
        for details in [
            json!({}),
            json!({"a": 1}),
            json!({"zeta": [1, 2]}),
            json!({"a": {"limits": 1, "z": "}"}, "m": [{"limits": []}], "series": 3}),
            json!({"key": "va\\l\"ue\"", "lim": "{[", "limits2": null, "x": -1.5e300}),
            json!({"aaa": true, "limitless": false, "limitz": 0}),
        ] {
            let text = details.to_string();
            assert!(limits_splice(&text).is_some(), "{text}");
            let m = Measurement::no_data("x")
                .with_details(details)
                .with_limits(&limits);
            assert_eq!(m.details, with_limits_parsed(&text, &limits), "{text}");
        }
        // Anything else is parsed: the same document as before.
        for text in [
            r#"{"limits": [1], "a": 2}"#,
            r#"{"li\u006dits": 1}"#,
            r#"{"a\"b": 1}"#,
            r#"[1, 2]"#,
            r#""text""#,
            r#"{"a": 1"#,
            r#"{} {}"#,
            "",
        ] {
            assert!(limits_splice(text).is_none(), "{text}");
        }
        // Keys out of order, or spaced: spliced last, the same object.
        for text in [
            r#"{"z": 1, "a": 2}"#,
            r#" { "a" : 1 , "n" : { "b" : 2 } } "#,
        ] {
            let m = Measurement {
                details: text.into(),
                ..Measurement::no_data("x")
            }
            .with_limits(&limits);
            let spliced: serde_json::Value = serde_json::from_str(&m.details).unwrap();
            let parsed: serde_json::Value =
                serde_json::from_str(&with_limits_parsed(text, &limits)).unwrap();
            assert_eq!(spliced, parsed, "{text}");
        }
    }
}
