//! Canary against baseline: where each side's series come from, for providers that compare
//! the new version with the stable one.

use crate::bindings::provider::rollgate::plugin::types::Series;
use crate::{ConfigError, Context, SeriesExt, Window};

/// Two queries (`canaryQuery`, `baselineQuery`), or one query whose series a label tells
/// apart (`query`, `splitBy`, `canary`, `baseline`). Flatten it into a configuration with
/// `#[serde(flatten)]`, or nest it.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sides {
    /// The canary's query (with `baselineQuery`).
    #[serde(default)]
    pub canary_query: Option<String>,
    /// The baseline's query (with `canaryQuery`).
    #[serde(default)]
    pub baseline_query: Option<String>,
    /// One query for both sides (with `splitBy`, `canary` and `baseline`).
    #[serde(default)]
    pub query: Option<String>,
    /// The label that tells the canary's series from the baseline's.
    #[serde(default)]
    pub split_by: Option<String>,
    /// The canary's value of `splitBy`.
    #[serde(default)]
    pub canary: Option<String>,
    /// The baseline's value of `splitBy`.
    #[serde(default)]
    pub baseline: Option<String>,
}

impl Sides {
    /// The problem, if the fields do not make exactly one of the two shapes; `at` is the
    /// JSON pointer of the object holding them ("" for the root).
    pub fn check(&self, at: &str) -> Option<ConfigError> {
        let pair = self.canary_query.is_some() || self.baseline_query.is_some();
        let split = self.query.is_some()
            || self.split_by.is_some()
            || self.canary.is_some()
            || self.baseline.is_some();
        let whole_pair = self.canary_query.is_some() && self.baseline_query.is_some();
        let whole_split = self.query.is_some()
            && self.split_by.is_some()
            && self.canary.is_some()
            && self.baseline.is_some();
        if pair == split || (pair && !whole_pair) || (split && !whole_split) {
            Some(ConfigError::new(
                at,
                "give canaryQuery and baselineQuery, or query with splitBy, canary and baseline",
            ))
        } else {
            None
        }
    }

    /// The canary's and the baseline's series from `backend` over `window`.
    pub fn fetch(
        &self,
        ctx: &Context,
        backend: &str,
        window: Window,
    ) -> Result<(Vec<Series>, Vec<Series>), String> {
        if let (Some(c), Some(b)) = (&self.canary_query, &self.baseline_query) {
            return Ok((
                ctx.query(backend, c, window)?,
                ctx.query(backend, b, window)?,
            ));
        }
        let (Some(q), Some(label), Some(c), Some(b)) =
            (&self.query, &self.split_by, &self.canary, &self.baseline)
        else {
            return Err(
                "no queries configured: give canaryQuery and baselineQuery, or query with splitBy"
                    .into(),
            );
        };
        let (canary, rest): (Vec<Series>, Vec<Series>) = ctx
            .query(backend, q, window)?
            .into_iter()
            .partition(|s| s.label(label) == Some(c.as_str()));
        let baseline = rest
            .into_iter()
            .filter(|s| s.label(label) == Some(b.as_str()))
            .collect();
        Ok((canary, baseline))
    }
}
