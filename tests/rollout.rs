//! The rollout engine end to end, through the library: real YAML documents, the real
//! built-in plugins, replayed metrics, real SQLite files, exec targets that are real
//! processes, HTTP gates on a loopback stand-in, and the simulated clock so each rollout's
//! hour takes milliseconds.

use crate::common;

use common::StandIn;
use proptest::prelude::*;
use rollgate::engine::clock::SimClock;
use rollgate::engine::state::{Checkpoint, State};
use rollgate::engine::{Engine, Outcome, setup};
use rollgate::store::{AuditRow, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const T0: i64 = 1_767_225_600_000;

/// Recorded error ratios: `values[i]` holds for minute i.
pub(crate) fn recording(service: &str, values: &[f64]) -> String {
    let mut text = String::from("# TYPE http_error_ratio gauge\n");
    for (minute, v) in values.iter().enumerate() {
        for q in 0..4 {
            let t = T0 / 1000 + 60 * minute as i64 + 15 * q;
            text.push_str(&format!(
                "http_error_ratio{{service=\"{service}\",version=\"v2\"}} {v} {t}\n"
            ));
        }
    }
    text.push_str("# EOF\n");
    text
}

/// The recorded backend and the error-ratio template every rollout here uses.
pub(crate) const TEMPLATE: &str = include_str!("fixtures/rollout/common.yaml");

/// One plugin host for every test, with a compile cache, so each test does not compile
/// the built-in components again.
fn shared_host() -> rollgate::plugin::PluginHost {
    static HOST: std::sync::OnceLock<rollgate::plugin::PluginHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rollgate-test-cache-{}", std::process::id()));
        rollgate::plugin::PluginHost::new(rollgate::plugin::HostConfig {
            cache: rollgate::plugin::ComponentCache::at(dir),
            ..rollgate::plugin::HostConfig::default()
        })
        .expect("plugin host starts")
    })
    .clone()
}

/// A loaded test setup: files in a temp folder, the engine on a simulated clock.
pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) engine: Engine,
    pub(crate) clock: SimClock,
}

impl Harness {
    pub(crate) async fn new(rollouts: &str, values: &[f64]) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("recording.om"), recording("web", values)).expect("write");
        std::fs::write(d.join("common.yaml"), TEMPLATE).expect("write");
        std::fs::write(
            d.join("rollouts.yaml"),
            rollouts.replace("$DIR", &d.display().to_string()),
        )
        .expect("write");
        let bundle = rollgate::spec::load(&[d.to_path_buf()]).unwrap_or_else(|e| {
            panic!(
                "spec: {}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let clock = SimClock::new(T0);
        let backends = setup::backends(&bundle, Some(T0)).expect("backends");
        let host = shared_host();
        let refs: Vec<_> = bundle.rollouts.iter().map(|r| &**r).collect();
        let plugins = setup::plugins(&host, &bundle, &refs, true)
            .await
            .unwrap_or_else(|e| panic!("plugins: {e:#?}"));
        let store = Store::open(&d.join("rollgate.db")).await.expect("store");
        let engine = Engine::alone(
            store,
            Arc::new(clock.clone()),
            plugins,
            Arc::new(backends),
            Duration::from_millis(50),
        );
        let harness = Harness { dir, engine, clock };
        for r in &bundle.rollouts {
            harness
                .engine
                .create(r, "test", "test run")
                .await
                .expect("create");
        }
        harness
    }

    pub(crate) async fn drive(&self, name: &str) -> Outcome {
        let row = self
            .engine
            .store
            .latest(name)
            .await
            .expect("latest")
            .expect("row");
        self.engine.drive(row.id).await.expect("drive")
    }

    pub(crate) async fn audit(&self, name: &str) -> Vec<AuditRow> {
        let row = self
            .engine
            .store
            .latest(name)
            .await
            .expect("latest")
            .expect("row");
        self.engine.store.audit(row.id).await.expect("audit")
    }

    pub(crate) async fn act(&self, name: &str, action: &str, actor: &str, reason: &str) {
        let row = self
            .engine
            .store
            .latest(name)
            .await
            .expect("latest")
            .expect("a run");
        self.engine
            .store
            .request_action(row.id, action, actor, reason, self.clock_now())
            .await
            .expect("request");
    }

    /// The latest run's checkpoint.
    async fn checkpoint(&self, name: &str) -> Checkpoint {
        let row = self
            .engine
            .store
            .latest(name)
            .await
            .expect("latest")
            .expect("a run");
        serde_json::from_str(&row.checkpoint).expect("a readable checkpoint")
    }

    /// The failures the latest run recorded, as JSON (what v2 shows).
    async fn failures(&self, name: &str) -> Vec<serde_json::Value> {
        self.checkpoint(name)
            .await
            .failures
            .iter()
            .map(|f| serde_json::to_value(f).expect("json"))
            .collect()
    }

    pub(crate) fn clock_now(&self) -> i64 {
        use rollgate::engine::clock::Clock;
        self.clock.now_ms()
    }

    pub(crate) fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("steps.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// An exec target that appends `OPERATION WEIGHT UPDATED INSTANCES` per step to steps.log.
const LOGGING_TARGET: &str = r#"  target:
    exec:
      command: [sh, -c, 'echo "$ROLLGATE_OPERATION $ROLLGATE_WEIGHT $ROLLGATE_UPDATED $ROLLGATE_INSTANCES" >> $DIR/steps.log']
"#;

pub(crate) fn rollout(name: &str, strategy: &str, phases: &str, extra: &str) -> String {
    format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}}}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  args: {{service: web}}\n{LOGGING_TARGET}  strategy: {strategy}\n  phases:\n{phases}{extra}"
    )
}

pub(crate) fn actions(audit: &[AuditRow]) -> Vec<String> {
    audit.iter().map(|a| a.event.action.clone()).collect()
}

#[tokio::test]
async fn an_indefinite_pause_waits_for_an_operator_and_every_action_is_audited() {
    let phases = "    - {name: p10, weight: 10, pause: {}, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";
    let h = Harness::new(&rollout("web", "{canary: {}}", phases, ""), &[0.01; 30]).await;
    let o = h.drive("web").await;
    assert_eq!(
        o.state,
        State::Paused(rollgate::engine::state::PauseReason::Step),
        "{o:?}"
    );

    // Resume of a step pause is allowed; promote of a *finished* run is refused later.
    h.act("web", "promote", "alice", "error ratio looks fine")
        .await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Succeeded, "{o:?}");
    assert_eq!(
        h.log(),
        ["set-weight 10 0 ", "set-weight 100 0 ", "finalize 100 0 "]
    );

    let audit = h.audit("web").await;
    let promote = audit
        .iter()
        .find(|a| a.event.action == "promote")
        .expect("promote audited");
    assert_eq!(promote.event.actor, "alice");
    assert_eq!(promote.event.state_before, "paused(step)");
    assert_eq!(promote.event.state_after, "progressing");
    assert!(
        promote.event.reason.contains("error ratio looks fine"),
        "{}",
        promote.event.reason
    );
    assert_eq!(promote.event.progress["weight"], 10.0);
    assert_eq!(
        actions(&audit),
        [
            "create",
            "start",
            "apply",
            "metric-running",
            "metric-successful",
            "verified",
            "pause",
            "promote",
            "next-phase",
            "apply",
            "verified",
            "apply",
            "succeed"
        ]
    );
}

#[tokio::test]
async fn manual_pause_resume_abort_and_refusals() {
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: p50, weight: 50, pause: {}}\n    - {name: full, weight: 100}\n";
    let h = Harness::new(&rollout("web", "{canary: {}}", phases, ""), &[0.01; 30]).await;
    // Requested before the run starts: taken at its first step.
    h.act("web", "pause", "bob", "").await;
    h.act("web", "promote-ful", "bob", "").await;
    let o = h.drive("web").await;
    assert_eq!(o.state.name(), "paused(manual)");
    h.act("web", "resume", "bob", "maintenance over").await;
    h.act("web", "resume", "bob", "again").await;
    let o = h.drive("web").await;
    assert_eq!(o.state.name(), "paused(step)", "{o:?}");
    h.act("web", "abort", "carol", "release window closed")
        .await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Aborted);
    // Abort keeps what was applied: no rollback step.
    assert_eq!(h.log(), ["set-weight 10 0 ", "set-weight 50 0 "]);
    let audit = h.audit("web").await;
    let acts = actions(&audit);
    assert!(
        acts.contains(&"promote-ful-refused".to_string()),
        "{acts:?}"
    );
    let refused = audit
        .iter()
        .find(|a| a.event.action == "resume-refused")
        .expect("second resume refused");
    assert!(
        refused
            .event
            .reason
            .contains("not possible while the rollout is progressing"),
        "{}",
        refused.event.reason
    );
    let abort = audit
        .iter()
        .find(|a| a.event.action == "abort")
        .expect("abort");
    assert_eq!(
        (abort.event.actor.as_str(), abort.event.state_after.as_str()),
        ("carol", "aborted")
    );
    // The pause and the abort, each an operator's, with who and why.
    let failures = h.failures("web").await;
    let got: Vec<(&str, &str, &str)> = failures
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or(""),
                f["actor"].as_str().unwrap_or(""),
                f["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("operator", "bob", "paused by bob"),
            (
                "operator",
                "carol",
                "aborted; what was applied stays by carol: release window closed"
            )
        ]
    );
}

/// "Promote" in the last phase is the end of the rollout: the final weight is applied
/// before finalizing, even when the phase had not applied it yet.
#[tokio::test]
async fn promote_in_the_last_phase_still_applies_its_weight() {
    let phases = "    - {name: full, weight: 100}\n";
    let h = Harness::new(&rollout("web", "{canary: {}}", phases, ""), &[0.01; 30]).await;
    // Paused before it started: the only phase has applied nothing.
    h.act("web", "pause", "bob", "freeze").await;
    let o = h.drive("web").await;
    assert_eq!(o.state.name(), "paused(manual)", "{o:?}");
    assert!(h.log().is_empty(), "{:?}", h.log());
    h.act("web", "promote", "bob", "ship it").await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Succeeded, "{o:?}");
    assert_eq!(h.log(), ["set-weight 100 0 ", "finalize 100 0 "]);
    let audit = h.audit("web").await;
    assert_eq!(
        audit.last().expect("events").event.progress["weight"],
        100.0
    );
}

/// An aborted run keeps what was applied; a later rollback request reopens it and restores
/// the stable version. The request belongs to that run: a new run does not inherit it.
#[tokio::test]
async fn an_aborted_run_can_still_be_rolled_back() {
    let phases = "    - {name: p10, weight: 10, pause: {}}\n    - {name: full, weight: 100}\n";
    let h = Harness::new(&rollout("web", "{canary: {}}", phases, ""), &[0.01; 30]).await;
    assert_eq!(h.drive("web").await.state.name(), "paused(step)");
    h.act("web", "abort", "carol", "").await;
    assert_eq!(h.drive("web").await.state, State::Aborted);
    assert_eq!(h.log(), ["set-weight 10 0 "]);
    // Nothing waiting: driving an aborted run again changes nothing.
    assert_eq!(h.drive("web").await.state, State::Aborted);
    h.act("web", "rollback", "carol", "restore v1").await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    assert_eq!(h.log(), ["set-weight 10 0 ", "rollback 0 0 "]);
    let audit = h.audit("web").await;
    let rb = audit
        .iter()
        .find(|a| a.event.action == "rollback")
        .expect("rollback audited");
    assert_eq!(
        (
            rb.event.actor.as_str(),
            rb.event.state_before.as_str(),
            rb.event.state_after.as_str()
        ),
        ("carol", "aborted", "rolling-back")
    );
    // A rolled-back run refuses another rollback.
    h.act("web", "rollback", "carol", "").await;
    assert_eq!(h.drive("web").await.state, State::RolledBack);
    assert_eq!(h.log().len(), 2);
}

/// Background metrics keep measuring while the policy holds the rollout, but a measurement
/// that changes nothing does not ask the policy again: the pause is not extended or stacked
/// (which, with maxPauses, would turn one pause into a rollback).
#[tokio::test]
async fn background_measurements_do_not_stack_policy_pauses() {
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";
    let extra = r#"  backgroundVerification:
    metrics:
      - name: alive
        provider:
          plugin: threshold
          backend: recorded
          config:
            backend: recorded
            query: 'http_error_ratio{service="web",version="v2"}'
            window: 1m
            condition: "< 1"
        interval: 1m
  failurePolicy:
    plugin: default-policy
    config: {inconclusive: {action: pause, duration: 5m}, maxPauses: 2}
"#;
    // Inconclusive (between 0.05 and 0.1) for the first minutes, healthy afterwards.
    let mut values = vec![0.07; 2];
    values.extend([0.01; 30]);
    let h = Harness::new(&rollout("web", "{canary: {}}", phases, extra), &values).await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Succeeded, "{o:?}");
    let audit = h.audit("web").await;
    let pauses: Vec<&AuditRow> = audit
        .iter()
        .filter(|a| a.event.action == "pause" && a.event.actor.starts_with("policy:"))
        .collect();
    assert_eq!(pauses.len(), 1, "{:?}", actions(&audit));
    let background = audit
        .iter()
        .filter(|a| a.event.action.starts_with("metric-") && a.event.reason.contains("alive"))
        .count();
    assert!(
        background >= 1,
        "the background metric never reported: {:?}",
        actions(&audit)
    );
    // It resumed by itself after the 5 minutes, not earlier and not later.
    let resume = audit
        .iter()
        .find(|a| a.event.action == "resume")
        .expect("resumed by itself");
    assert_eq!(resume.event.at_ms - pauses[0].event.at_ms, 5 * 60_000);
}

#[tokio::test]
async fn a_failing_metric_rolls_back_by_policy() {
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: p50, weight: 50, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";
    // Healthy for a minute, then failing: p10 passes (its windows end at 0 and 1 min),
    // p50's second window (1-2 min) is all bad.
    let mut values = vec![0.01];
    values.extend([0.9; 20]);
    let h = Harness::new(
        &rollout(
            "web",
            "{canary: {}}",
            phases,
            "  rollback: {mode: gradual, stepPause: 10s}\n",
        ),
        &values,
    )
    .await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    assert_eq!(
        h.log(),
        [
            "set-weight 10 0 ",
            "set-weight 50 0 ",
            "rollback 10 0 ",
            "rollback 0 0 "
        ]
    );
    let audit = h.audit("web").await;
    let decision = audit
        .iter()
        .find(|a| a.event.action == "rollback")
        .expect("policy rollback");
    assert_eq!(decision.event.actor, "policy:default-policy");
    assert!(
        decision.event.reason.contains("error-ratio"),
        "{}",
        decision.event.reason
    );
    let failed = audit
        .iter()
        .find(|a| a.event.action == "metric-failed")
        .expect("metric failed");
    assert!(
        failed.event.reason.contains("failureLimit 0"),
        "{}",
        failed.event.reason
    );
    // One structured failure: the metric, its value, the limit it crossed, its plugin and
    // backend, in the phase it failed in.
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert_eq!(
        (
            &f["kind"],
            &f["phase"],
            &f["metric"],
            &f["limit"],
            &f["plugin"],
            &f["backend"]
        ),
        (
            &"metric-failed".into(),
            &"p50".into(),
            &"error-ratio".into(),
            &"failureLimit 0".into(),
            &"threshold".into(),
            &"recorded".into()
        ),
        "{f}"
    );
    assert!(f["value"].as_f64().is_some_and(|v| v > 0.5), "{f}");
    assert_eq!(
        f["message"], failed.event.reason,
        "the audit log's sentence"
    );
    // Measurements were stored with the failure kept.
    let row = h.engine.store.latest("web").await.unwrap().unwrap();
    let ms = h.engine.store.measurements(row.id).await.unwrap();
    assert!(
        ms.iter()
            .any(|m| m.verdict == "fail" && m.value.is_some_and(|v| v > 0.5)),
        "{ms:?}"
    );
}

#[tokio::test]
async fn rolling_and_blue_green_apply_their_own_steps() {
    let rolling = rollout(
        "roll",
        "{rolling: {instances: [a, b, c, d, e], parallelism: 2, delayBetweenBatches: 5s}}",
        "    - {name: half, weight: 50, verification: {templates: [error-ratio]}}\n    - {name: all, weight: 100}\n",
        "",
    );
    let h = Harness::new(&rolling, &[0.01; 30]).await;
    assert_eq!(h.drive("roll").await.state, State::Succeeded);
    let spec: rollgate::spec::model::RolloutSpec =
        serde_json::from_str(&h.engine.store.latest("roll").await.unwrap().unwrap().spec)
            .expect("spec");
    let target = rollgate::engine::target_progress(&spec, &h.checkpoint("roll").await);
    assert_eq!(
        serde_json::to_value(target).unwrap(),
        serde_json::json!({"unit": "instances", "completed": 5, "failed": 0, "remaining": 0, "total": 5})
    );
    assert!(h.failures("roll").await.is_empty());
    assert_eq!(
        h.log(),
        [
            "update-batch 40 2 a,b",
            "update-batch 60 3 c",
            "update-batch 100 5 d,e",
            "finalize 100 5 "
        ]
    );

    let bg = rollout(
        "bg",
        "{blueGreen: {}}",
        "    - {name: preview, weight: 0, verification: {templates: [error-ratio]}}\n    - {name: live, weight: 100, verification: {templates: [error-ratio]}}\n",
        "",
    );
    let h = Harness::new(&bg, &[0.01; 30]).await;
    assert_eq!(h.drive("bg").await.state, State::Succeeded);
    let spec: rollgate::spec::model::RolloutSpec =
        serde_json::from_str(&h.engine.store.latest("bg").await.unwrap().unwrap().spec)
            .expect("spec");
    let target = rollgate::engine::target_progress(&spec, &h.checkpoint("bg").await);
    assert_eq!(
        serde_json::to_value(target).unwrap(),
        serde_json::json!({"unit": "steps", "completed": 2, "failed": 0, "remaining": 0, "total": 2, "previewDeployed": true, "cutOver": true})
    );
    assert_eq!(
        h.log(),
        ["deploy-preview 0 0 ", "cut-over 100 0 ", "finalize 100 0 "]
    );
}

#[tokio::test]
async fn gates_hold_the_rollout_until_they_confirm_and_may_roll_back() {
    // Closed twice, then open.
    let gate = StandIn::open(|_, i| {
        if i < 2 {
            (503, vec![], "not yet".into())
        } else {
            (200, vec![], "ok".into())
        }
    })
    .await;
    let phases = format!(
        "    - name: p10\n      weight: 10\n      gates: [{{name: qa, kind: confirm-promotion, url: '{}/confirm', interval: 1m, retries: 0}}]\n    - {{name: full, weight: 100}}\n",
        gate.url
    );
    let h = Harness::new(&rollout("web", "{canary: {}}", &phases, ""), &[0.01; 30]).await;
    assert_eq!(h.drive("web").await.state, State::Succeeded);
    let acts = actions(&h.audit("web").await);
    assert_eq!(
        acts.iter().filter(|a| *a == "gate-closed").count(),
        2,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| *a == "gate-open").count(),
        1,
        "{acts:?}"
    );
    // Closed twice: one failure, updated by the second check, naming the gate.
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["kind"], "gate-closed");
    assert_eq!(failures[0]["gate"], "qa");
    assert_eq!(failures[0]["phase"], "p10");
    assert!(
        failures[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not yet")),
        "{failures:?}"
    );
    let seen = gate.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body["gate"], "qa");
    assert_eq!(seen[0].body["phase"], "p10");
    assert_eq!(seen[0].body["kind"], "confirm-promotion");

    // A rollback gate that answers 2xx rolls the rollout back.
    let rollback = StandIn::open(|_, _| (200, vec![], "incident open".into())).await;
    let phases = format!(
        "    - name: p10\n      weight: 10\n      pause: {{duration: 10m}}\n      gates: [{{name: incidents, kind: rollback, url: '{}/rb', interval: 1m}}]\n    - {{name: full, weight: 100}}\n",
        rollback.url
    );
    let h = Harness::new(&rollout("web", "{canary: {}}", &phases, ""), &[0.01; 30]).await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    let audit = h.audit("web").await;
    let rb = audit
        .iter()
        .find(|a| a.event.action == "rollback")
        .expect("rollback audited");
    assert_eq!(rb.event.actor, "gate:incidents");
    assert!(
        rb.event.reason.contains("incident open"),
        "{}",
        rb.event.reason
    );
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (&failures[0]["kind"], &failures[0]["gate"]),
        (&"gate-rollback".into(), &"incidents".into())
    );
    assert_eq!(failures[0]["message"], rb.event.reason);
}

#[tokio::test]
async fn a_target_that_refuses_or_never_gets_ready_does_not_hang() {
    // The step to 50 % fails: roll back.
    let refusing = rollout("web", "{canary: {}}", "    - {name: p10, weight: 10}\n    - {name: p50, weight: 50}\n", "")
        .replace(
            "command: [sh, -c, 'echo",
            "command: [sh, -c, 'if [ $ROLLGATE_WEIGHT = 50 ]; then echo no capacity >&2; exit 3; fi; echo",
        );
    let h = Harness::new(&refusing, &[0.01; 30]).await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    let audit = h.audit("web").await;
    let failed = audit
        .iter()
        .find(|a| a.event.action == "step-failed")
        .expect("step-failed");
    assert!(
        failed.event.reason.contains("no capacity"),
        "{}",
        failed.event.reason
    );
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (&failures[0]["kind"], &failures[0]["phase"]),
        (&"step-failed".into(), &"p50".into())
    );
    assert_eq!(failures[0]["message"], failed.event.reason);
    let refused = h
        .checkpoint("web")
        .await
        .refused_step
        .expect("the refused step");
    assert_eq!(refused.weight, 50.0);

    // Never ready: the readiness timeout fails the rollout (onDeadline: fail).
    let never_ready = rollout(
        "web",
        "{canary: {}}",
        "    - {name: p10, weight: 10}\n",
        "  readiness: {timeout: 1m, interval: 10s}\n",
    )
    .replace(
        "      command:",
        "      readyCommand: [sh, -c, 'echo warming up; exit 1']\n      command:",
    );
    let h = Harness::new(&never_ready, &[0.01; 30]).await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Failed, "{o:?}");
    assert!(
        o.message.contains("did not become ready within 1m"),
        "{}",
        o.message
    );
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (&failures[0]["kind"], &failures[0]["limit"]),
        (&"readiness-timeout".into(), &"readiness.timeout 1m".into())
    );
}

/// A rolling target that refuses a batch: the batch's instances are the failed ones, as
/// the target progress counts them (and the rollback brings the completed ones back).
#[tokio::test]
async fn a_refused_batch_is_the_failed_part_of_the_target_progress() {
    let rolling = rollout(
        "roll",
        "{rolling: {instances: [a, b, c, d, e], parallelism: 2}}",
        "    - {name: most, weight: 80}\n    - {name: all, weight: 100}\n",
        "",
    )
    .replace(
        "command: [sh, -c, 'echo",
        "command: [sh, -c, 'if [ \"$ROLLGATE_INSTANCES\" = c,d ]; then echo c is down >&2; exit 3; fi; echo",
    );
    let h = Harness::new(&rolling, &[0.01; 30]).await;
    assert_eq!(h.drive("roll").await.state, State::RolledBack);
    assert_eq!(h.log(), ["update-batch 40 2 a,b", "rollback 0 0 a,b"]);
    let cp = h.checkpoint("roll").await;
    let refused = cp.refused_step.clone().expect("the refused batch");
    assert_eq!(refused.instances, ["c", "d"]);
    let spec: rollgate::spec::model::RolloutSpec =
        serde_json::from_str(&h.engine.store.latest("roll").await.unwrap().unwrap().spec)
            .expect("spec");
    assert_eq!(
        serde_json::to_value(rollgate::engine::target_progress(&spec, &cp)).unwrap(),
        serde_json::json!({"unit": "instances", "completed": 0, "failed": 2, "remaining": 3, "total": 5})
    );
    let failures = h.failures("roll").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["kind"], "step-failed");
    assert!(
        failures[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("c is down")),
        "{failures:?}"
    );
}

/// A failure policy that cannot be asked holds the run: a policy error, naming the policy.
#[tokio::test]
async fn a_policy_that_fails_is_a_policy_error() {
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";
    let mut h = Harness::new(&rollout("web", "{canary: {}}", phases, ""), &[0.01; 30]).await;
    // The providers stay; the policy is gone.
    let mut only = rollgate::engine::Plugins::new();
    only.insert(
        "threshold",
        h.engine
            .plugins
            .get("threshold")
            .expect("threshold")
            .clone(),
    );
    h.engine.plugins = Arc::new(only);
    let o = h.drive("web").await;
    assert_eq!(o.state.name(), "paused(policy)", "{o:?}");
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (
            &failures[0]["kind"],
            &failures[0]["plugin"],
            &failures[0]["phase"]
        ),
        (
            &"policy-error".into(),
            &"default-policy".into(),
            &"p10".into()
        )
    );
    assert!(
        failures[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not loaded")),
        "{failures:?}"
    );
}

/// A metric that ends `error` says whose error it was: the plugin's own (metric-error),
/// the plugin breaking (plugin-error), or a backend whose query failed (backend-error,
/// naming the backend).
#[tokio::test]
async fn an_erroring_metric_names_the_plugin_or_the_backend() {
    use sha2::Digest;
    let hostile = rollgate_test_plugins::HOSTILE;
    let sha = hex::encode(sha2::Sha256::digest(
        std::fs::read(hostile).expect("hostile plugin"),
    ));
    let mut text = format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: hostile}}\nspec: {{source: '{hostile}', sha256: '{sha}'}}\n---\napiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata: {{name: down}}\nspec:\n  prometheus: {{address: 'http://127.0.0.1:9'}}\n"
    );
    for (name, mode) in [("own", "env"), ("broken", "panic"), ("backend", "query")] {
        let phases = format!(
            "    - name: p1\n      weight: 10\n      verification:\n        metrics:\n          - name: m\n            provider: {{plugin: hostile, backend: down, config: {{mode: {mode}, backend: down}}}}\n            consecutiveErrorLimit: 0\n"
        );
        text.push_str("---\n");
        text.push_str(&rollout(name, "{canary: {}}", &phases, ""));
    }
    let h = Harness::new(&text, &[0.01; 30]).await;
    // (rollout, kind, backend)
    for (name, kind, backend) in [
        ("own", "metric-error", "down"),
        ("broken", "plugin-error", "down"),
        ("backend", "backend-error", "down"),
    ] {
        let o = h.drive(name).await;
        assert_eq!(o.state.name(), "paused(policy)", "{name}: {o:?}");
        let failures = h.failures(name).await;
        assert_eq!(failures.len(), 1, "{name}: {failures:?}");
        let f = &failures[0];
        assert_eq!(f["kind"], kind, "{name}: {f}");
        assert_eq!(
            (&f["metric"], &f["plugin"], &f["backend"], &f["limit"]),
            (
                &"m".into(),
                &"hostile".into(),
                &backend.into(),
                &"consecutiveErrorLimit 0".into()
            ),
            "{name}: {f}"
        );
        assert!(f.get("value").is_none(), "an error has no value: {f}");
    }
}

#[tokio::test]
async fn the_progress_deadline_rolls_back_when_asked_to() {
    // The step never takes effect and the readiness timeout (5m) is longer than the
    // progress deadline (30s): the deadline wins.
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n";
    let slow = rollout("web", "{canary: {}}", phases, "  progressDeadline: 30s\n  onDeadline: rollback\n  readiness: {timeout: 5m, interval: 1m}\n")
        .replace("      command:", "      readyCommand: [sh, -c, 'exit 1']\n      command:");
    let h = Harness::new(&slow, &[0.01; 30]).await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    let audit = h.audit("web").await;
    let deadline = audit
        .iter()
        .find(|a| a.event.action == "deadline")
        .expect("deadline audited");
    assert!(
        deadline
            .event
            .reason
            .contains("progress deadline of 30s exceeded in phase \"p10\""),
        "{}",
        deadline.event.reason
    );
    assert_eq!(deadline.event.state_after, "rolling-back");
    let failures = h.failures("web").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (&failures[0]["kind"], &failures[0]["limit"]),
        (&"deadline".into(), &"progressDeadline 30s".into())
    );
}

#[test]
fn the_quickstart_example_succeeds_one_canary_and_rolls_back_the_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("sh")
        .arg(root.join("examples/canary/demo.sh"))
        .env("ROLLGATE", env!("CARGO_BIN_EXE_rollgate"))
        .output()
        .expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checkout: succeeded"), "{stdout}");
    assert!(stdout.contains("payments: rolled-back"), "{stdout}");
}

// ----- the state machine under arbitrary verdicts, policies and actions ----------------

/// Which (before → after) transitions an audit event may record.
fn allowed(before: &str, after: &str, action: &str) -> bool {
    let paused = |s: &str| s.starts_with("paused(");
    if action.ends_with("-refused") || action.starts_with("metric-") || action == "create" {
        return before == after || action == "create";
    }
    match (before, after) {
        (b, a) if b == a => true,
        ("pending", a) => {
            a == "progressing"
                || paused(a)
                || a == "aborted"
                || a == "rolling-back"
                || a == "rolled-back"
        }
        ("progressing", a) => {
            paused(a) || matches!(a, "succeeded" | "rolling-back" | "aborted" | "failed")
        }
        (b, a) if paused(b) => {
            paused(a) || matches!(a, "progressing" | "rolling-back" | "aborted" | "failed")
        }
        ("rolling-back", a) => paused(a) || matches!(a, "rolled-back" | "aborted" | "failed"),
        ("aborted" | "failed", "rolling-back") => action == "rollback",
        _ => false,
    }
}

fn rule() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["rollback", "abort", "pause", "continue", "promote"])
}

fn operator_action() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "pause",
        "resume",
        "promote",
        "promote-full",
        "abort",
        "rollback",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_verdicts_and_actions_reach_an_invalid_state_or_skip_the_policy(
        values in prop::collection::vec(prop::sample::select(vec![0.01, 0.07, 0.3]), 40),
        failed in rule(), inconclusive in rule(),
        ops in prop::collection::vec(operator_action(), 0..6),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: p40, weight: 40, pause: {duration: 2m}, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100, verification: {templates: [error-ratio]}}\n";
            let policy = format!("  failurePolicy:\n    plugin: default-policy\n    config: {{failed: {failed}, inconclusive: {inconclusive}, maxPauses: 3}}\n");
            let h = Harness::new(&rollout("web", "{canary: {}}", phases, &policy), &values).await;
            let mut ops = ops.into_iter();
            let mut outcome = h.drive("web").await;
            // Drive to the end, acting whenever the rollout waits for an operator.
            for _ in 0..20 {
                if outcome.state.is_final() { break; }
                let op = ops.next().unwrap_or("promote-full");
                h.act("web", op, "prop", "").await;
                outcome = h.drive("web").await;
            }
            prop_assert!(outcome.state.is_final(), "not finished: {:?}", outcome);
            let audit = h.audit("web").await;
            // Gapless, ordered, every transition allowed, no hole between events.
            for (i, a) in audit.iter().enumerate() {
                prop_assert_eq!(a.seq, i as i64 + 1);
                prop_assert!(allowed(&a.event.state_before, &a.event.state_after, &a.event.action),
                    "invalid transition {} → {} by {}", a.event.state_before, a.event.state_after, a.event.action);
            }
            for w in audit.windows(2) {
                prop_assert_eq!(&w[0].event.state_after, &w[1].event.state_before);
                prop_assert!(w[0].event.at_ms <= w[1].event.at_ms);
            }
            // The policy is never skipped: after a metric ends badly the engine moves on
            // (next phase or success) only after a policy decision or an operator action.
            for (i, a) in audit.iter().enumerate() {
                if !matches!(a.event.action.as_str(), "metric-failed" | "metric-inconclusive" | "metric-error" | "metric-no-data") {
                    continue;
                }
                let until = audit[i + 1..].iter().position(|b| matches!(b.event.action.as_str(), "next-phase" | "succeed"));
                if let Some(j) = until {
                    let decided = audit[i + 1..i + 1 + j].iter().any(|b| b.event.actor.starts_with("policy:") || b.event.actor == "prop");
                    prop_assert!(decided, "moved on after {} without a decision", a.event.reason);
                }
            }
            // The applied weight matches the outcome.
            let last = audit.last().expect("events");
            if outcome.state == State::RolledBack {
                prop_assert_eq!(&last.event.progress["weight"], &serde_json::json!(0.0));
            }
            if outcome.state == State::Succeeded {
                prop_assert_eq!(&last.event.progress["weight"], &serde_json::json!(100.0));
            }
            Ok(())
        })?;
    }
}

/// `rollgate` itself, run with a shared compile cache and a bounded time.
pub(crate) fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(args)
        .current_dir(dir)
        .env("ROLLGATE_CACHE_DIR", dir.join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rollgate runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rollgate {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's loop from the command line: a run that waits for an operator exits 8;
/// `abort`, `rollback`, `retry` and `promote` queue actions that the next `rollgate run`
/// takes, each outcome with its exit code; actions an ended run cannot take are refused.
#[test]
fn operator_actions_and_retry_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("recording.om"), recording("web", &[0.01; 30])).expect("write");
    std::fs::write(d.join("common.yaml"), TEMPLATE).expect("write");
    let phases = "    - {name: p10, weight: 10, pause: {}}\n    - {name: full, weight: 100}\n";
    std::fs::write(
        d.join("rollouts.yaml"),
        rollout("web", "{canary: {}}", phases, "").replace("$DIR", &d.display().to_string()),
    )
    .expect("write");
    let run = [
        "run",
        ".",
        "--store",
        "r.db",
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
    ];
    let act = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", "r.db", "--actor", "alice"]);
        cli(d, &all)
    };

    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 8, "{out}\n{err}");
    assert!(out.contains("web: paused(step)"), "{out}");

    let (code, out, err) = act(&["abort", "web", "--reason", "release window closed"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("web: abort requested (#1; run 1 is paused(step), cancel-requested)"),
        "{out}"
    );
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains("web: aborted"), "{out}");
    assert!(err.contains("resuming run 1"), "{err}");

    let (code, _, err) = act(&["pause", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("run 1 already ended aborted; nothing to pause"),
        "{err}"
    );

    // An aborted run keeps its weight until someone rolls it back.
    let (code, _, err) = act(&["rollback", "web"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(out.contains("web: rolled-back"), "{out}");

    let (code, out, err) = act(&["retry", "web"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("web: run 2 queued (retry of run 1 by alice)"),
        "{out}"
    );
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 8, "{out}\n{err}");
    assert!(err.contains("resuming run 2"), "{err}");
    let (code, _, err) = act(&["promote", "web", "--reason", "numbers look fine"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("web: succeeded"), "{out}");

    // The same files again: the finished run is reported, not run a third time; a
    // succeeded run is not retried.
    let (code, out, _) = cli(d, &run);
    assert_eq!(code, 0);
    assert!(out.contains("run 2 already ended succeeded"), "{out}");
    let (code, _, err) = act(&["retry", "web"]);
    assert_eq!(code, 1, "{err}");

    let log = std::fs::read_to_string(d.join("steps.log")).expect("log");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "set-weight 10 0 ",
            "rollback 0 0 ",
            "set-weight 10 0 ",
            "set-weight 100 0 ",
            "finalize 100 0 "
        ]
    );
}
