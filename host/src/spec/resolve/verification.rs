//! A verification's metrics (a phase's or the background's): the templates it uses,
//! expanded with their args (defaults < the rollout's args < the reference's own), then
//! its inline metrics; metric names unique across both, and a phase's metrics sure to end.

use super::args::{placeholders, substitute, substitute_value};
use super::source::Src;
use super::{Loader, list};
use crate::spec::docs::{self, MetricDoc, P, TemplateRefDoc};
use crate::spec::model::{MetricSpec, TemplateSpec};
use std::collections::{BTreeMap, BTreeSet};

/// One verification while its metrics are collected.
struct Collecting<'a> {
    /// The rollout's document.
    src: &'a Src,
    /// The rollout's args.
    rollout_args: &'a BTreeMap<String, String>,
    /// The phase's name (`None`: background verification, whose metrics may run on).
    phase: Option<&'a str>,
    /// The metrics so far.
    out: Vec<MetricSpec>,
    /// Where each metric name came from (`template "NAME"` or `inline`).
    origins: BTreeMap<String, String>,
}

impl Loader {
    /// The metrics a verification (phase or background) runs: its templates, expanded with
    /// their args, then its inline metrics; names unique across both.
    pub(super) fn verification(
        &mut self,
        src: &Src,
        path: &str,
        templates: &[P<TemplateRefDoc>],
        inline: &[MetricDoc],
        rollout_args: &BTreeMap<String, String>,
        phase: Option<&str>,
    ) -> Vec<MetricSpec> {
        let mut v = Collecting {
            src,
            rollout_args,
            phase,
            out: Vec::new(),
            origins: BTreeMap::new(),
        };
        for (i, r) in templates.iter().enumerate() {
            self.template_use(&mut v, &format!("{path}.templates[{i}]"), r);
        }
        let declared: BTreeSet<String> = rollout_args.keys().cloned().collect();
        for (i, mdoc) in inline.iter().enumerate() {
            self.inline_metric(&mut v, &format!("{path}.metrics[{i}]"), mdoc, &declared);
        }
        v.out
    }

    /// The metrics of one template reference (at `rpath`), expanded with its args.
    fn template_use(&mut self, v: &mut Collecting, rpath: &str, r: &P<TemplateRefDoc>) {
        let src = v.src;
        let Some((tsrc, tdoc, tspec)) = self.templates.get(&r.value.name).cloned() else {
            let message = format!(
                "template {:?} not found; known templates: {}",
                r.value.name,
                list(&self.template_names)
            );
            // A template that exists but is invalid was already reported.
            if !self.template_names.contains(&r.value.name) {
                self.errors.push(src.err(r, rpath, message));
            }
            return;
        };
        let Some(args) = self.template_args(src, rpath, r, &tspec, v.rollout_args) else {
            return;
        };
        for (m, mdoc) in tspec.metrics.iter().zip(&tdoc.metrics.value) {
            let mut m = m.clone();
            m.config = substitute_value(&m.config, &args);
            if let Some(b) = &m.backend {
                let b = substitute(b, &args);
                if placeholders(&b).is_empty()
                    && !placeholders(mdoc.provider.backend.as_ref().map_or("", |b| &b.value))
                        .is_empty()
                    && let Some(message) = self.backend_missing(&b)
                {
                    self.errors.push(src.err(
                        r,
                        rpath,
                        format!("template {:?} metric {:?}: {message}", tspec.name, m.name),
                    ));
                }
                m.backend = Some(b);
            }
            m.args = args.clone();
            let origin = format!("template {:?}", tspec.name);
            if let Some(first) = v.origins.get(&m.name) {
                self.errors.push(src.err(
                    r,
                    rpath,
                    format!(
                        "metric {:?} is defined twice in this verification: by {first} and by {origin}",
                        m.name
                    ),
                ));
                continue;
            }
            if let Some(phase) = v.phase
                && runs_forever(&m)
            {
                self.errors.push(tsrc.err(
                    mdoc.interval.as_ref().unwrap_or(&mdoc.name),
                    format!("spec.metrics[{}].interval", index_of(&tdoc, &m.name)),
                    format!(
                        "metric {:?} (used by phase {phase:?} at {}) has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
                        m.name,
                        src.here(r)
                    ),
                ));
            }
            v.origins.insert(m.name.clone(), origin);
            v.out.push(m);
        }
    }

    /// The args in effect for one use of a template (defaults < rollout args < per-use
    /// args); `None` when one it declares has no value (reported).
    fn template_args(
        &mut self,
        src: &Src,
        rpath: &str,
        r: &P<TemplateRefDoc>,
        tspec: &TemplateSpec,
        rollout_args: &BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &tspec.args {
            if let Some(v) = rollout_args.get(k).or(v.as_ref()) {
                args.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &r.value.args {
            if tspec.args.contains_key(k) {
                args.insert(k.clone(), v.clone());
            } else {
                self.errors.push(src.err(
                    r,
                    format!("{rpath}.args.{k}"),
                    format!(
                        "template {:?} has no arg {k:?}; its args: {}",
                        tspec.name,
                        list(tspec.args.keys())
                    ),
                ));
            }
        }
        let mut complete = true;
        for k in tspec.args.keys() {
            if !args.contains_key(k) {
                complete = false;
                self.errors.push(src.err(
                    r,
                    rpath,
                    format!(
                        "template {:?} needs arg {k:?}: set it in the rollout's spec.args or in this reference's args",
                        tspec.name
                    ),
                ));
            }
        }
        complete.then_some(args)
    }

    /// One inline metric (at `mpath`), with the rollout's args substituted.
    fn inline_metric(
        &mut self,
        v: &mut Collecting,
        mpath: &str,
        mdoc: &MetricDoc,
        declared: &BTreeSet<String>,
    ) {
        let src = v.src;
        let Some(mut m) = self.metric(src, mpath, mdoc, declared, "the rollout's args:") else {
            return;
        };
        m.config = substitute_value(&m.config, v.rollout_args);
        if let Some(b) = &m.backend {
            let b = substitute(b, v.rollout_args);
            if placeholders(&b).is_empty()
                && !placeholders(mdoc.provider.backend.as_ref().map_or("", |x| &x.value)).is_empty()
                && let Some(message) = self.backend_missing(&b)
                && let Some(bp) = &mdoc.provider.backend
            {
                self.errors
                    .push(src.err(bp, format!("{mpath}.provider.backend"), message));
            }
            m.backend = Some(b);
        }
        m.args = v.rollout_args.clone();
        if let Some(first) = v.origins.get(&m.name) {
            self.errors.push(src.err(
                &mdoc.name,
                format!("{mpath}.name"),
                format!(
                    "metric {:?} is defined twice in this verification: by {first} and inline",
                    m.name
                ),
            ));
            return;
        }
        if v.phase.is_some() && runs_forever(&m) {
            self.errors.push(src.err(
                mdoc.interval.as_ref().unwrap_or(&mdoc.name),
                format!("{mpath}.interval"),
                format!(
                    "metric {:?} has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
                    m.name
                ),
            ));
        }
        v.origins.insert(m.name.clone(), "inline".into());
        v.out.push(m);
    }
}

fn index_of(doc: &docs::TemplateDoc, metric: &str) -> usize {
    doc.metrics
        .value
        .iter()
        .position(|m| m.name.value == metric)
        .unwrap_or(0)
}

/// A phase metric that measures on an interval with nothing that ends it: no count, and
/// no consecutiveSuccessLimit, or one that alternating verdicts never reach while
/// failureLimit -1 never fails it.
fn runs_forever(m: &MetricSpec) -> bool {
    m.interval_ms.is_some()
        && m.count.is_none()
        && (m.consecutive_success_limit.is_none() || m.failure_limit < 0)
}

/// Resolved metrics as the spec keeps them: each shared by the runs that measure it, in a
/// list of exactly their number (`into_iter().map().collect()` would reuse the resolver's
/// buffer, sized for `MetricSpec`s, for the spec's whole life).
pub(super) fn shared(metrics: Vec<MetricSpec>) -> Vec<std::sync::Arc<MetricSpec>> {
    let mut out = Vec::with_capacity(metrics.len());
    out.extend(metrics.into_iter().map(std::sync::Arc::new));
    out
}
