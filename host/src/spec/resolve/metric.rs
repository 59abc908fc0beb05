//! One metric as written, in a template or inline in a rollout: its provider (plugin,
//! backend, config and the `{{args.NAME}}` they use), its timing and its limits.

use super::args::placeholders;
use super::source::Src;
use super::{Loader, list};
use crate::spec::docs::{MetricDoc, Node, P};
use crate::spec::model::MetricSpec;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

impl Loader {
    /// Check one metric as written; the result's `config` and `backend` are not
    /// substituted. `declared` are the arg names `{{args.x}}` may use; `owner` says whose
    /// args they are, for messages.
    pub(super) fn metric(
        &mut self,
        src: &Src,
        path: &str,
        m: &MetricDoc,
        declared: &BTreeSet<String>,
        owner: &str,
    ) -> Option<MetricSpec> {
        let before = self.errors.len();
        if m.name.value.trim().is_empty() {
            self.errors
                .push(src.err(&m.name, format!("{path}.name"), "a metric needs a name"));
        }
        self.plugin_exists(src, &m.provider.plugin, &format!("{path}.provider.plugin"));
        if let Some(b) = &m.provider.backend {
            self.check_args(src, b, &format!("{path}.provider.backend"), declared, owner);
            if placeholders(&b.value).is_empty()
                && let Some(message) = self.backend_missing(&b.value)
            {
                self.errors
                    .push(src.err(b, format!("{path}.provider.backend"), message));
            }
        }
        let config_at = m
            .provider
            .config
            .as_ref()
            .map(|node| src.at(node, &format!("{path}.provider.config")));
        let config = match &m.provider.config {
            Some(node) => {
                self.check_node(
                    src,
                    node,
                    &format!("{path}.provider.config"),
                    declared,
                    owner,
                );
                to_json(&node.value)
            }
            None => Value::Object(Default::default()),
        };
        let interval_ms = m
            .interval
            .as_ref()
            .and_then(|i| self.positive_duration(src, i, &format!("{path}.interval")));
        let mut count = None;
        if let Some(c) = &m.count {
            if c.value == 0 {
                self.errors.push(src.err(
                    c,
                    format!("{path}.count"),
                    "count must be at least 1 (leave it out to measure until the phase ends)",
                ));
            } else if c.value > 1 && m.interval.is_none() {
                self.errors.push(src.err(
                    c,
                    format!("{path}.count"),
                    format!(
                        "count {} needs an interval (the time between measurements), e.g. `interval: 30s`",
                        c.value
                    ),
                ));
            }
            count = Some(c.value);
        }
        let initial_delay_ms = self.opt_duration(
            src,
            &m.initial_delay,
            &format!("{path}.initialDelay"),
            0,
            false,
        );
        let failure_limit = self.limits(src, path, m);
        (self.errors.len() == before).then(|| MetricSpec {
            name: m.name.value.clone(),
            template: None,
            plugin: m.provider.plugin.value.clone(),
            backend: m.provider.backend.as_ref().map(|b| b.value.clone()),
            config,
            interval_ms,
            count,
            initial_delay_ms,
            failure_limit,
            inconclusive_limit: m.inconclusive_limit.unwrap_or(0),
            consecutive_error_limit: m.consecutive_error_limit.unwrap_or(4),
            consecutive_failure_limit: m.consecutive_failure_limit.as_ref().map(|l| l.value),
            consecutive_success_limit: m.consecutive_success_limit.as_ref().map(|l| l.value),
            no_data: m.no_data.unwrap_or_default(),
            no_data_limit: m.no_data_limit.unwrap_or(0),
            dry_run: m.dry_run.unwrap_or(false),
            retention: m.measurement_retention.as_ref().map_or(10, |r| r.value),
            args: BTreeMap::new(),
            config_at,
        })
    }

    pub(super) fn check_args(
        &mut self,
        src: &Src,
        p: &P<String>,
        path: &str,
        declared: &BTreeSet<String>,
        owner: &str,
    ) {
        for name in placeholders(&p.value) {
            if !declared.contains(&name) {
                self.errors.push(src.err(
                    p,
                    path,
                    format!(
                        "unknown arg {name:?} in {{{{args.{name}}}}}; {owner} {}",
                        list(declared)
                    ),
                ));
            }
        }
    }

    pub(super) fn check_node(
        &mut self,
        src: &Src,
        node: &P<Node>,
        path: &str,
        declared: &BTreeSet<String>,
        owner: &str,
    ) {
        match &node.value {
            Node::String(s) => {
                let p = P {
                    value: s.clone(),
                    line: node.line,
                    col: node.col,
                };
                self.check_args(src, &p, path, declared, owner);
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_node(src, item, &format!("{path}[{i}]"), declared, owner);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let key = &key.value;
                    self.check_node(src, value, &format!("{path}.{key}"), declared, owner);
                }
            }
            Node::Null | Node::Bool(_) | Node::Number(_) => {}
        }
    }

    /// The consecutive limits (at least 1 when set) and `failureLimit` (0 or more, or -1
    /// with a consecutive limit to end the metric); the failure limit in effect.
    fn limits(&mut self, src: &Src, path: &str, m: &MetricDoc) -> i64 {
        for (limit, field) in [
            (&m.consecutive_failure_limit, "consecutiveFailureLimit"),
            (&m.consecutive_success_limit, "consecutiveSuccessLimit"),
        ] {
            if let Some(l) = limit
                && l.value == 0
            {
                self.errors.push(src.err(
                    l,
                    format!("{path}.{field}"),
                    "must be at least 1 (leave it out to turn it off)",
                ));
            }
        }
        match &m.failure_limit {
            None => 0,
            Some(f) if f.value < -1 => {
                self.errors.push(src.err(
                    f,
                    format!("{path}.failureLimit"),
                    format!(
                        "failureLimit {} is invalid: use 0 or more, or -1 to disable",
                        f.value
                    ),
                ));
                0
            }
            Some(f)
                if f.value == -1
                    && m.consecutive_failure_limit.is_none()
                    && m.consecutive_success_limit.is_none() =>
            {
                self.errors.push(src.err(
                    f,
                    format!("{path}.failureLimit"),
                    "failureLimit -1 disables failing by total, so the metric needs consecutiveFailureLimit or consecutiveSuccessLimit",
                ));
                -1
            }
            Some(f) => f.value,
        }
    }
}

pub(super) fn to_json(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Number(n) => Value::Number(n.clone()),
        Node::String(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(|i| to_json(&i.value)).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(&v.value)))
                .collect(),
        ),
    }
}
