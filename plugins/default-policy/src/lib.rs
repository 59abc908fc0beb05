//! `default-policy`: the failure policy rollgate uses unless a rollout names another.
//!
//! Each metric that ended badly (failed, error, inconclusive, no-data) is mapped to an
//! action; the most severe action wins (rollback > abort > pause > continue > promote).
//! Mappings are set for the whole rollout and may be overridden per phase and per metric
//! (metric beats phase beats rollout). Defaults: failed → rollback, error → pause,
//! inconclusive → pause, no-data → pause. Dry-run metrics never decide. With `maxPauses`,
//! a pause after that many pauses in the rollout becomes a rollback, so a flapping rollout
//! does not wait forever.

use rollgate_plugin::duration::parse_ms;
use rollgate_plugin::prelude::*;
use std::collections::BTreeMap;

/// What to do about one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Go to the next phase now (optimistic: treat the outcome as good enough).
    Promote,
    /// Carry on as planned.
    Continue,
    /// Hold at the current weight (optionally for a duration).
    Pause,
    /// Stop where it is; what was applied stays.
    Abort,
    /// Restore the stable version.
    Rollback,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Continue => "continue",
            Action::Pause => "pause",
            Action::Abort => "abort",
            Action::Rollback => "rollback",
        }
    }
}

/// An action, written either as its name (`"pause"`) or with options
/// (`{"action": "pause", "duration": "10m"}`).
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Rule {
    /// Just the action.
    Plain(Action),
    /// The action with options.
    Detailed {
        /// The action.
        action: Action,
        /// For `pause`: resume by itself after this long (e.g. `10m`); without it the
        /// rollout waits for an operator.
        #[serde(default)]
        duration: Option<String>,
    },
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            action: String,
            #[serde(default)]
            duration: Option<String>,
        }
        fn action<E: Error>(name: &str) -> Result<Action, E> {
            serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
                E::custom(format!(
                    "unknown action {name:?}: use rollback, abort, pause, continue or promote"
                ))
            })
        }
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(name) => action(&name).map(Rule::Plain),
            v @ serde_json::Value::Object(_) => {
                let detailed: Detailed = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(Rule::Detailed {
                    action: action(&detailed.action)?,
                    duration: detailed.duration,
                })
            }
            other => Err(D::Error::custom(format!(
                "expected an action name (\"pause\") or {{\"action\": \"pause\", \"duration\": \"10m\"}}, found {other}"
            ))),
        }
    }
}

impl Rule {
    fn action(&self) -> Action {
        match self {
            Rule::Plain(a) | Rule::Detailed { action: a, .. } => *a,
        }
    }
    fn duration(&self) -> Option<&str> {
        match self {
            Rule::Plain(_) => None,
            Rule::Detailed { duration, .. } => duration.as_deref(),
        }
    }
}

/// A set of mappings from outcome to action; unset outcomes fall through to the next level.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mapping {
    /// When a metric failed (too many fail verdicts).
    #[serde(default)]
    pub failed: Option<Rule>,
    /// When a metric errored (too many consecutive plugin or backend errors).
    #[serde(default)]
    pub error: Option<Rule>,
    /// When a metric was inconclusive (too many inconclusive verdicts).
    #[serde(default)]
    pub inconclusive: Option<Rule>,
    /// When a metric had no data (too many empty results).
    #[serde(default)]
    pub no_data: Option<Rule>,
}

impl Mapping {
    fn get(&self, outcome: Outcome) -> Option<&Rule> {
        [&self.failed, &self.error, &self.inconclusive, &self.no_data][outcome as usize].as_ref()
    }
}

/// The policy's configuration. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Rollout level: when a metric failed (default rollback).
    #[serde(default)]
    pub failed: Option<Rule>,
    /// Rollout level: when a metric errored (default pause).
    #[serde(default)]
    pub error: Option<Rule>,
    /// Rollout level: when a metric was inconclusive (default pause).
    #[serde(default)]
    pub inconclusive: Option<Rule>,
    /// Rollout level: when a metric had no data (default pause).
    #[serde(default)]
    pub no_data: Option<Rule>,
    /// Per-phase overrides, by phase name.
    #[serde(default)]
    pub phases: BTreeMap<String, Mapping>,
    /// Per-metric overrides, by metric name (they beat phase overrides).
    #[serde(default)]
    pub metrics: BTreeMap<String, Mapping>,
    /// Turn a pause into a rollback once the rollout has paused this many times.
    #[serde(default)]
    pub max_pauses: Option<u32>,
}

/// The outcomes the policy maps (the discriminants index the mapping fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Metric status `failed`.
    Failed = 0,
    /// Metric status `error`.
    Error = 1,
    /// Metric status `inconclusive`.
    Inconclusive = 2,
    /// Metric status `no-data`.
    NoData = 3,
}

impl Outcome {
    fn of(status: MetricStatus) -> Option<Outcome> {
        match status {
            MetricStatus::Failed => Some(Outcome::Failed),
            MetricStatus::Error => Some(Outcome::Error),
            MetricStatus::Inconclusive => Some(Outcome::Inconclusive),
            MetricStatus::NoData => Some(Outcome::NoData),
            MetricStatus::Pending
            | MetricStatus::Running
            | MetricStatus::Successful
            | MetricStatus::Terminated => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NoData => "noData",
        }
    }
    fn default_action(self) -> Action {
        match self {
            Outcome::Failed => Action::Rollback,
            Outcome::Error | Outcome::Inconclusive | Outcome::NoData => Action::Pause,
        }
    }
}

/// One metric's contribution to the decision.
struct Vote<'a> {
    metric: &'a MetricSummary,
    outcome: Outcome,
    action: Action,
    duration: Option<&'a str>,
    level: &'static str,
}

impl Config {
    /// The rollout-level rule for an outcome.
    fn get(&self, outcome: Outcome) -> Option<&Rule> {
        [&self.failed, &self.error, &self.inconclusive, &self.no_data][outcome as usize].as_ref()
    }

    /// The rule for an outcome of `metric` in `phase`, and the level it came from.
    fn rule(&self, phase: &str, metric: &str, outcome: Outcome) -> (Option<&Rule>, &'static str) {
        if let Some(rule) = self.metrics.get(metric).and_then(|m| m.get(outcome)) {
            return (Some(rule), "metric");
        }
        if let Some(rule) = self.phases.get(phase).and_then(|m| m.get(outcome)) {
            return (Some(rule), "phase");
        }
        match self.get(outcome) {
            Some(rule) => (Some(rule), "rollout"),
            None => (None, "default"),
        }
    }

    fn all_rules(&self) -> Vec<(String, &Rule)> {
        const ALL: [Outcome; 4] = [
            Outcome::Failed,
            Outcome::Error,
            Outcome::Inconclusive,
            Outcome::NoData,
        ];
        let mut out: Vec<(String, &Rule)> = ALL
            .iter()
            .filter_map(|o| self.get(*o).map(|r| (format!("/{}", o.name()), r)))
            .collect();
        let levels = self
            .phases
            .iter()
            .map(|(n, m)| (format!("/phases/{}", pointer_escape(n)), m))
            .chain(
                self.metrics
                    .iter()
                    .map(|(n, m)| (format!("/metrics/{}", pointer_escape(n)), m)),
            );
        for (prefix, mapping) in levels {
            for o in ALL {
                if let Some(rule) = mapping.get(o) {
                    out.push((format!("{prefix}/{}", o.name()), rule));
                }
            }
        }
        out
    }
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Decide from the metrics' statuses. Pure, so it is tested natively.
pub fn decide(config: &Config, input: &PolicyInput) -> Result<Decision, String> {
    let mut votes: Vec<Vote> = Vec::new();
    for metric in input.metrics.iter().filter(|m| !m.dry_run) {
        let Some(outcome) = Outcome::of(metric.status) else {
            continue;
        };
        let (rule, level) = config.rule(&input.phase, &metric.name, outcome);
        votes.push(Vote {
            metric,
            outcome,
            action: rule.map_or(outcome.default_action(), Rule::action),
            duration: rule.and_then(Rule::duration),
            level,
        });
    }
    let Some(worst) = votes.iter().map(|v| v.action).max() else {
        return Ok(Decision::Continue);
    };
    let deciding: Vec<&Vote> = votes.iter().filter(|v| v.action == worst).collect();
    let reason = deciding
        .iter()
        .map(|v| {
            format!(
                "metric {:?} {}: {} ({} policy: {} → {})",
                v.metric.name,
                status_word(v.outcome),
                v.metric.message,
                v.level,
                v.outcome.name(),
                v.action.name()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(match worst {
        // Promote ends the phase: only once every metric has had its say.
        Action::Promote if !input.phase_complete => Decision::Continue,
        Action::Promote => Decision::Promote,
        Action::Continue => Decision::Continue,
        Action::Rollback => Decision::Rollback(reason),
        Action::Abort => Decision::Abort(reason),
        Action::Pause => {
            let paused = input.pauses.len() as u32;
            if let Some(max) = config.max_pauses.filter(|max| paused >= *max) {
                return Ok(Decision::Rollback(format!(
                    "{reason}; already paused {paused} time(s), maxPauses {max} reached"
                )));
            }
            // Honour every deciding rule: if one waits for an operator, so does the pause;
            // otherwise the longest duration asked for.
            let duration_ms = if deciding.iter().any(|v| v.duration.is_none()) {
                None
            } else {
                deciding
                    .iter()
                    .filter_map(|v| v.duration)
                    .map(parse_ms)
                    .collect::<Result<Vec<u64>, String>>()?
                    .into_iter()
                    .max()
            };
            Decision::Pause(Pause {
                reason,
                duration_ms,
            })
        }
    })
}

fn status_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Failed => "failed",
        Outcome::Error => "errored",
        Outcome::Inconclusive => "was inconclusive",
        Outcome::NoData => "had no data",
    }
}

/// The plugin.
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (path, rule) in config.all_rules() {
            if let Some(d) = rule.duration() {
                if rule.action() != Action::Pause {
                    errors.push(ConfigError::new(
                        format!("{path}/duration"),
                        format!(
                            "duration only applies to pause, not {}",
                            rule.action().name()
                        ),
                    ));
                } else if let Err(e) = parse_ms(d) {
                    errors.push(ConfigError::new(format!("{path}/duration"), e));
                }
            }
        }
        if config.max_pauses == Some(0) {
            errors.push(ConfigError::new(
                "/maxPauses",
                "maxPauses 0 would turn every pause into a rollback: map the outcome to rollback instead",
            ));
        }
        errors
    }

    fn decide(config: Config, input: &PolicyInput) -> Result<Decision, String> {
        decide(&config, input)
    }
}

rollgate_plugin::export_policy!(DefaultPolicy);

#[cfg(test)]
mod tests;
