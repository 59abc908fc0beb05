//! Delivery: where a rollout's steps are applied — its *target* (the spec's `target:`):
//! `exec` (the operator's command), `webhook` (an HTTP POST), `none` (verification only).
//! (Named `deliver`, not `target`, so that it cannot be taken for cargo's `target/` folder.)
//!
//! Files: `mod.rs` the [`Target`] trait, [`Step`], readiness and [`build`]; `exec.rs`
//! (tested in `exec_tests.rs`), `webhook.rs` and `none.rs` the three kinds; `testing.rs`
//! test helpers (a stand-in HTTP server, steps).
//!
//! A step is a *desired state* ("canary weight 20", "instances web-1..web-4 on v2"), never a
//! delta, so applying it twice is harmless; each step also carries a stable `id` the target
//! can use to recognise a re-delivery after a crash, and the lease epoch of the runner
//! delivering it: several runners share a store, and a runner that lost its lease (frozen,
//! cut off) stops before delivering — the epoch lets a target check that too, since a
//! newer holder's deliveries carry a higher one. The engine records a step's intent
//! before calling [`Target::apply`] and its completion after, so a step is re-delivered only
//! when the runner died in between.
//!
//! This module does not decide anything: it applies, reports readiness and errors. It also
//! does not retry across calls: a [`TargetError`] says whether retrying is worth it and the
//! engine decides when.
//!
//! `retryable` is the target's last word on one [`Target::apply`] call, and a target that
//! has its own retry budget spends it first: a webhook retries transient failures
//! `target.webhook.retries` times with backoff and then reports `retryable: false`, so the
//! engine does not multiply those retries with its own. An exec command that runs out of
//! `target.exec.timeout` is not retryable either: it had its whole time, and another run
//! would most likely wait as long again. `retryable: true` is left for failures the target
//! did not already retry and that may pass on a later call (the engine retries those a
//! few times, with backoff).

pub mod exec;
pub mod none;
#[cfg(test)]
pub(crate) mod testing;
pub mod webhook;

use crate::metrics::BoxFuture;
use crate::spec::model::TargetSpec;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub use exec::ExecTarget;
pub use none::NoneTarget;
pub use webhook::WebhookTarget;

/// The environment variable an exec command finds the delivering runner's lease epoch in,
/// beside `ROLLGATE_STEP_ID`.
pub const LEASE_EPOCH_ENV: &str = "ROLLGATE_LEASE_EPOCH";

/// The header a webhook finds the delivering runner's lease epoch in, beside
/// `Idempotency-Key`.
pub const LEASE_EPOCH_HEADER: &str = "x-rollgate-lease-epoch";

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Canary: send `weight` percent of traffic to the canary version.
    SetWeight,
    /// Rolling: `instances` (this batch) run the canary version; `updated` of `total` done.
    UpdateBatch,
    /// Blue-green: deploy the canary version in full beside the stable one, no traffic.
    DeployPreview,
    /// Blue-green: move all traffic to the canary version.
    CutOver,
    /// Restore the stable version (`weight` is what the canary keeps: 0 when complete).
    Rollback,
    /// The rollout succeeded: the canary version is the new stable (clean-up hook).
    Finalize,
}

impl Operation {
    /// The kebab-case name (as in JSON and `ROLLGATE_OPERATION`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::SetWeight => "set-weight",
            Operation::UpdateBatch => "update-batch",
            Operation::DeployPreview => "deploy-preview",
            Operation::CutOver => "cut-over",
            Operation::Rollback => "rollback",
            Operation::Finalize => "finalize",
        }
    }
}

/// One step, as sent to a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Stable identity: `ROLLOUT#RUN/SEQ-OPERATION` — the same on a re-delivery.
    pub id: String,
    /// The rollout's name.
    pub rollout: String,
    /// What to do.
    pub operation: Operation,
    /// The phase's name (empty for finalize/rollback outside a phase).
    pub phase: String,
    /// 0-based phase index.
    pub phase_index: u32,
    /// How many phases.
    pub phase_count: u32,
    /// Desired canary weight (percent) after the step.
    pub weight: f64,
    /// The stable version.
    pub stable_version: String,
    /// The canary version.
    pub canary_version: String,
    /// Rolling: the instances of this batch (empty otherwise).
    pub instances: Vec<String>,
    /// Rolling: instances on the canary version after this step.
    pub updated: u32,
    /// Rolling: all instances.
    pub total: u32,
}

/// What a target said when it applied a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// Captured output (stdout / response body), truncated to 4 KiB.
    pub output: String,
}

/// Whether a step took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "message")]
pub enum Readiness {
    /// Took effect: verification may start.
    Ready,
    /// Not yet (why).
    NotReady(String),
}

/// A target failed to apply a step or to report readiness.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("target {target}: {message}")]
pub struct TargetError {
    /// `exec`, `webhook` (with its URL / command).
    pub target: String,
    /// What went wrong: exit code and the tail of stderr, HTTP status and body, timeout.
    pub message: String,
    /// Worth the engine calling [`Target::apply`] again later rather than failing now.
    /// `false` once the target's own retries (a webhook's `retries`) are spent, and for an
    /// exec command's timeout; see the module documentation.
    pub retryable: bool,
}

/// Where steps are applied.
pub trait Target: Send + Sync {
    /// A short description for logs and errors (`exec ./deploy.sh`, `webhook https://…`).
    fn describe(&self) -> String;
    /// Apply a step. Idempotent: the same step twice leaves the same state. `epoch` is the
    /// lease epoch the delivering runner holds on the run (`None`: no lease, a lone
    /// `replay`); it travels beside the step id ([`LEASE_EPOCH_ENV`],
    /// [`LEASE_EPOCH_HEADER`]) so a target can refuse a delivery older than one it saw.
    fn apply<'a>(
        &'a self,
        step: &'a Step,
        epoch: Option<i64>,
    ) -> BoxFuture<'a, Result<Applied, TargetError>>;
    /// Has the step taken effect?
    fn ready<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Readiness, TargetError>>;
}

/// Build the target a rollout names. `base_dir` is the rollout file's folder: relative
/// paths (the exec working directory and program, `file:` header references) resolve
/// against it. Errors name the offending field (`target.webhook.url: …`).
pub fn build(spec: &TargetSpec, base_dir: &Path) -> Result<Arc<dyn Target>, String> {
    Ok(match spec {
        TargetSpec::None => Arc::new(NoneTarget),
        TargetSpec::Exec(exec) => Arc::new(ExecTarget::new(exec, base_dir)?),
        TargetSpec::Webhook(hook) => Arc::new(WebhookTarget::new(hook, base_dir)?),
    })
}

/// A weight as a target sees it in `ROLLGATE_WEIGHT`: integers without a trailing `.0`
/// (`20`), fractions as written (`12.5`).
pub fn env_weight(w: f64) -> String {
    if w.is_finite() && w.fract() == 0.0 && w.abs() < 1e15 {
        format!("{}", w as i64)
    } else {
        format!("{w}")
    }
}

/// Captured output is at most this long ([`Applied::output`], error tails).
pub const OUTPUT_TAIL_BYTES: usize = 4 * 1024;

/// How much output is kept while reading, before the final cut to [`OUTPUT_TAIL_BYTES`].
pub(crate) const CAPTURE_BYTES: usize = 64 * 1024;

/// The last `cap` bytes of a stream that may be arbitrarily long, so a chatty command or
/// a huge response body costs bounded memory while the part that explains a failure (the
/// end) is kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    cap: usize,
    dropped: bool,
}

impl Tail {
    /// An empty tail keeping at most `cap` bytes.
    pub(crate) fn new(cap: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            cap,
            dropped: false,
        }
    }

    /// Append bytes, forgetting the oldest beyond the cap.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.cap {
            self.dropped |= !self.buf.is_empty() || bytes.len() > self.cap;
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
            self.dropped = true;
        }
    }

    /// The last `max` bytes as text (cut at a character boundary, `…` when something was
    /// left out).
    pub(crate) fn text(&self, max: usize) -> String {
        tail_text(&self.buf, max, self.dropped)
    }

    /// [`Tail::text`] of an answer from outside: `secrets` redacted *before* the cut (and a
    /// piece of one at a start the cap already dropped), see
    /// [`crate::metrics::secret::excerpt_tail`].
    pub(crate) fn excerpt(&self, max: usize, secrets: &[crate::metrics::secret::Secret]) -> String {
        crate::metrics::secret::excerpt_tail(&self.buf, max, self.dropped, secrets)
    }
}

/// The last `max` bytes of `bytes` as text, starting at a character boundary; `…` in front
/// when anything was cut (or `truncated` says an earlier cut happened).
pub(crate) fn tail_text(bytes: &[u8], max: usize, truncated: bool) -> String {
    let mut start = bytes.len().saturating_sub(max);
    let cut = truncated || start > 0;
    // Skip UTF-8 continuation bytes so the text does not begin with half a character.
    let mut skipped = 0;
    while start < bytes.len() && skipped < 3 && (bytes[start] & 0b1100_0000) == 0b1000_0000 {
        start += 1;
        skipped += 1;
    }
    let text = String::from_utf8_lossy(&bytes[start..]);
    if cut {
        format!("…{text}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_print_like_the_operator_wrote_them() {
        for (w, want) in [
            (0.0, "0"),
            (20.0, "20"),
            (100.0, "100"),
            (12.5, "12.5"),
            (0.25, "0.25"),
            (33.3, "33.3"),
        ] {
            assert_eq!(env_weight(w), want, "{w}");
        }
    }

    #[test]
    fn tails_keep_the_end_within_the_cap() {
        // (chunks pushed, cap, text max, expected)
        let cases: &[(&[&str], usize, usize, &str)] = &[
            (&["hello"], 16, 16, "hello"),
            (&["hello", " world"], 8, 8, "…lo world"),
            (&["abcdefghij"], 4, 4, "…ghij"),
            (&["ab", "cd", "ef"], 4, 2, "…ef"),
            (&["abcd"], 4, 4, "abcd"),
            (&[], 4, 4, ""),
            // A cut through a multi-byte character starts at the next whole one.
            (&["xé"], 8, 1, "…"),
            (&["aéb"], 8, 2, "…b"),
            (&["aéb"], 8, 3, "…éb"),
        ];
        for (chunks, cap, max, want) in cases {
            let mut tail = Tail::new(*cap);
            for c in *chunks {
                tail.push(c.as_bytes());
            }
            assert_eq!(tail.text(*max), *want, "{chunks:?} cap {cap} max {max}");
        }
    }
}
