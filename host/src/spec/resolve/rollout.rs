//! A `Rollout` document, section by section: the versions, the target and strategy
//! (`target.rs`, `strategy.rs`), the phases (`phase.rs`), background verification, the
//! failure policy, the progress deadline, rollback, readiness and notifications.

use super::metric::to_json;
use super::source::Src;
use super::{Loader, list};
use crate::spec::docs::{self, P};
use crate::spec::model::{
    BackgroundSpec, NotificationSpec, PolicyRef, Readiness, RollbackMode, RolloutSpec,
};
use serde_json::Value;

impl Loader {
    pub(super) fn rollout(
        &mut self,
        src: &Src,
        name: &P<String>,
        doc: &docs::RolloutDoc,
    ) -> Option<RolloutSpec> {
        let before = self.errors.len();
        for (p, field) in [
            (&doc.stable_version, "spec.stableVersion"),
            (&doc.canary_version, "spec.canaryVersion"),
        ] {
            if p.value.trim().is_empty() {
                self.errors.push(src.err(p, field, "must not be empty"));
            }
        }
        let target = self.target(src, &doc.target);
        let strategy = self.strategy(src, &doc.strategy);
        let mut phases = self.phases(src, doc, strategy.as_ref());
        // Kept for the server's whole life, once per rollout: no spare capacity.
        phases.shrink_to_fit();
        let background = self.background(src, doc);
        let failure_policy = self.failure_policy(src, doc);
        let progress_deadline_ms = doc
            .progress_deadline
            .as_ref()
            .and_then(|d| self.positive_duration(src, d, "spec.progressDeadline"));
        let rollback = self.rollback(src, doc);
        let readiness = self.readiness(src, doc);
        let notifications = self.notifications(src, doc);
        if self.errors.len() != before {
            return None;
        }
        Some(RolloutSpec {
            name: name.value.clone(),
            file: src.file.clone(),
            stable_version: doc.stable_version.value.clone(),
            canary_version: doc.canary_version.value.clone(),
            target: target?,
            strategy: strategy?,
            phases,
            background,
            failure_policy,
            progress_deadline_ms,
            on_deadline: doc.on_deadline.unwrap_or_default(),
            rollback,
            readiness,
            args: doc.args.clone(),
            notifications,
        })
    }

    /// `spec.backgroundVerification`: the phase it starts at and its metrics.
    fn background(&mut self, src: &Src, doc: &docs::RolloutDoc) -> Option<BackgroundSpec> {
        let b = doc.background_verification.as_ref()?;
        let starting_phase = match &b.starting_phase {
            None => 0,
            Some(sp) => match doc
                .phases
                .value
                .iter()
                .position(|p| p.name.value == sp.value)
            {
                Some(i) => i,
                None => {
                    self.errors.push(src.err(
                        sp,
                        "spec.backgroundVerification.startingPhase",
                        format!(
                            "phase {:?} not found; phases: {}",
                            sp.value,
                            list(doc.phases.value.iter().map(|p| p.name.value.as_str()))
                        ),
                    ));
                    0
                }
            },
        };
        let metrics = self.verification(
            src,
            "spec.backgroundVerification",
            &b.templates,
            &b.metrics,
            &doc.args,
            None,
        );
        Some(BackgroundSpec {
            starting_phase,
            metrics: super::verification::shared(metrics),
        })
    }

    /// `spec.failurePolicy` (default: the built-in `default-policy`, configured with `{}`).
    fn failure_policy(&mut self, src: &Src, doc: &docs::RolloutDoc) -> PolicyRef {
        let Some(p) = &doc.failure_policy else {
            return PolicyRef {
                plugin: "default-policy".into(),
                config: Value::Object(Default::default()),
                config_at: None,
            };
        };
        if let Some(plugin) = &p.plugin {
            self.plugin_exists(src, plugin, "spec.failurePolicy.plugin");
        }
        PolicyRef {
            plugin: p
                .plugin
                .as_ref()
                .map_or_else(|| "default-policy".to_string(), |p| p.value.clone()),
            config: p
                .config
                .as_ref()
                .map_or_else(|| Value::Object(Default::default()), |c| to_json(&c.value)),
            config_at: p
                .config
                .as_ref()
                .map(|c| src.at(c, "spec.failurePolicy.config")),
        }
    }

    /// `spec.rollback`: immediate (the default), or gradual with a pause between steps.
    fn rollback(&mut self, src: &Src, doc: &docs::RolloutDoc) -> RollbackMode {
        let Some(r) = &doc.rollback else {
            return RollbackMode::Immediate;
        };
        match (r.value.mode, &r.value.step_pause) {
            (None | Some(docs::RollbackModeName::Immediate), None) => RollbackMode::Immediate,
            (Some(docs::RollbackModeName::NewRollout), None) => RollbackMode::NewRollout,
            // An error: the value returned does not matter.
            (
                None | Some(docs::RollbackModeName::Immediate | docs::RollbackModeName::NewRollout),
                Some(s),
            ) => {
                self.errors.push(src.err(
                    s,
                    "spec.rollback.stepPause",
                    "stepPause applies to `mode: gradual` only",
                ));
                RollbackMode::Immediate
            }
            (Some(docs::RollbackModeName::Gradual), step) => RollbackMode::Gradual {
                step_pause_ms: self.opt_duration(src, step, "spec.rollback.stepPause", 0, false),
            },
        }
    }

    /// `spec.readiness`: how long and how often to wait for readiness after a step.
    fn readiness(&mut self, src: &Src, doc: &docs::RolloutDoc) -> Readiness {
        let d = Readiness::default();
        let Some(r) = &doc.readiness else {
            return d;
        };
        Readiness {
            timeout_ms: self.opt_duration(
                src,
                &r.timeout,
                "spec.readiness.timeout",
                d.timeout_ms,
                true,
            ),
            interval_ms: self.opt_duration(
                src,
                &r.interval,
                "spec.readiness.interval",
                d.interval_ms,
                true,
            ),
        }
    }

    /// `spec.notifications`: webhooks (http or https) and the events each one receives.
    fn notifications(&mut self, src: &Src, doc: &docs::RolloutDoc) -> Vec<NotificationSpec> {
        let mut notifications = Vec::new();
        for (i, n) in doc.notifications.iter().enumerate() {
            self.url(src, &n.url, &format!("spec.notifications[{i}].url"));
            notifications.push(NotificationSpec {
                url: n.url.value.clone(),
                events: n.events.clone(),
            });
        }
        notifications
    }
}
