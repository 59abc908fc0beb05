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
        use serde_json::{Map, Value, json};
        let mut details = match serde_json::from_str::<Value>(&self.details) {
            Ok(Value::Object(object)) => object,
            Ok(other) => Map::from_iter([("details".to_string(), other)]),
            Err(_) => Map::from_iter([("details".to_string(), json!(self.details))]),
        };
        let lines: Vec<Value> = limits
            .iter()
            .filter(|l| l.value.is_finite())
            .map(|l| json!({"label": l.label, "value": l.value}))
            .collect();
        details.insert("limits".into(), Value::Array(lines));
        self.details = Value::Object(details).to_string();
        self
    }
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
}
