//! A rollout's `target`: where steps are delivered (`exec`, `webhook` or `none`).

use super::source::Src;
use super::{Loader, MAX_RETRIES};
use crate::spec::docs::{self, P};
use crate::spec::model::{ExecTargetSpec, TargetSpec, WebhookTargetSpec};
use std::path::PathBuf;

impl Loader {
    pub(super) fn target(&mut self, src: &Src, t: &P<docs::TargetDoc>) -> Option<TargetSpec> {
        let options = [
            ("exec", t.value.exec.is_some()),
            ("webhook", t.value.webhook.is_some()),
            ("none", t.value.none.is_some()),
        ];
        if !self.exactly_one(src, t, "spec.target", "target", &options) {
            return None;
        }
        if let Some(e) = &t.value.exec {
            let e = &e.value;
            if e.command.value.is_empty() || e.command.value[0].trim().is_empty() {
                self.errors.push(src.err(
                    &e.command,
                    "spec.target.exec.command",
                    "the command needs at least a program, e.g. [./deploy.sh]",
                ));
            }
            if let Some(r) = &e.ready_command
                && (r.value.is_empty() || r.value[0].trim().is_empty())
            {
                self.errors.push(src.err(
                    r,
                    "spec.target.exec.readyCommand",
                    "the ready command needs at least a program, e.g. [./ready.sh]",
                ));
            }
            Some(TargetSpec::Exec(ExecTargetSpec {
                command: e.command.value.clone(),
                ready_command: e.ready_command.as_ref().map(|r| r.value.clone()),
                timeout_ms: self.opt_duration(
                    src,
                    &e.timeout,
                    "spec.target.exec.timeout",
                    5 * 60_000,
                    true,
                ),
                env: e.env.clone(),
                // As written: the target joins it onto the rollout file's folder (once).
                working_dir: e.working_dir.as_ref().map(PathBuf::from),
            }))
        } else if let Some(w) = &t.value.webhook {
            let w = &w.value;
            self.url(src, &w.url, "spec.target.webhook.url");
            if let Some(r) = &w.ready_url {
                self.url(src, r, "spec.target.webhook.readyUrl");
            }
            Some(TargetSpec::Webhook(WebhookTargetSpec {
                url: w.url.value.clone(),
                ready_url: w.ready_url.as_ref().map(|r| r.value.clone()),
                timeout_ms: self.opt_duration(
                    src,
                    &w.timeout,
                    "spec.target.webhook.timeout",
                    10_000,
                    true,
                ),
                retries: self.bounded(
                    src,
                    w.retries.as_ref(),
                    "spec.target.webhook.retries",
                    3,
                    (0, MAX_RETRIES),
                ),
                retry_delay_ms: self.opt_duration(
                    src,
                    &w.retry_delay,
                    "spec.target.webhook.retryDelay",
                    1_000,
                    false,
                ),
                headers: w.headers.clone(),
            }))
        } else {
            Some(TargetSpec::None)
        }
    }
}
