//! Constructors for measurements, so plugins say what they mean in one call.

use crate::bindings::provider::rollgate::plugin::types::{Measurement, Verdict};

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
    /// Attach structured details (a JSON object).
    fn with_details(self, details: serde_json::Value) -> Self;
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
}
