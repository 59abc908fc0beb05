//! A rollout's phases: names unique, weights in range and in order for the strategy, the
//! pause, the verification and the HTTP gates of each.

use super::source::Src;
use super::{Loader, MAX_RETRIES};
use crate::spec::docs::{self, P};
use crate::spec::model::{GateSpec, PauseSpec, PhaseSpec, Strategy};
use std::collections::{BTreeMap, BTreeSet};

impl Loader {
    /// `spec.phases`, checked against the rollout's strategy (`None`: the strategy was
    /// invalid, already reported, so only the range of weights is checked).
    pub(super) fn phases(
        &mut self,
        src: &Src,
        doc: &docs::RolloutDoc,
        strategy: Option<&Strategy>,
    ) -> Vec<PhaseSpec> {
        let mut phases = Vec::new();
        if doc.phases.value.is_empty() {
            self.errors.push(src.err(
                &doc.phases,
                "spec.phases",
                "a rollout needs at least one phase",
            ));
        }
        let mut phase_names: BTreeMap<String, String> = BTreeMap::new();
        let mut previous: Option<f64> = None;
        let count = doc.phases.value.len();
        for (i, p) in doc.phases.value.iter().enumerate() {
            let path = format!("spec.phases[{i}]");
            if p.name.value.trim().is_empty() {
                self.errors
                    .push(src.err(&p.name, format!("{path}.name"), "a phase needs a name"));
            } else if let Some(first) = phase_names.get(&p.name.value) {
                self.errors.push(src.err(
                    &p.name,
                    format!("{path}.name"),
                    format!(
                        "phase name {:?} is used twice (first at {first})",
                        p.name.value
                    ),
                ));
            } else {
                phase_names.insert(p.name.value.clone(), src.here(&p.name));
            }
            let last = i + 1 == count;
            previous = self
                .weight(src, &path, &p.weight, last, strategy, previous)
                .or(previous);
            let pause = p.pause.as_ref().map(|pause| match &pause.duration {
                None => Some(PauseSpec::Indefinite),
                Some(d) => self
                    .duration(src, d, &format!("{path}.pause.duration"))
                    .map(PauseSpec::Timed),
            });
            let metrics = match &p.verification {
                Some(v) => self.verification(
                    src,
                    &format!("{path}.verification"),
                    &v.templates,
                    &v.metrics,
                    &doc.args,
                    Some(&p.name.value),
                ),
                None => Vec::new(),
            };
            let gates = self.gates(src, &path, &p.gates);
            phases.push(PhaseSpec {
                name: p.name.value.clone(),
                weight: p.weight.value,
                pause: pause.flatten(),
                metrics: super::verification::shared(metrics),
                gates,
            });
        }
        phases
    }

    /// A phase's weight: 0 to 100; for blue-green 0 or 100 and 100 in the `last` phase;
    /// for canary and rolling not below the `previous` phase's. The weight when it is in
    /// range (the next phase compares with it), else `None`.
    fn weight(
        &mut self,
        src: &Src,
        path: &str,
        weight: &P<f64>,
        last: bool,
        strategy: Option<&Strategy>,
        previous: Option<f64>,
    ) -> Option<f64> {
        let w = weight.value;
        let wpath = format!("{path}.weight");
        if !(0.0..=100.0).contains(&w) {
            self.errors.push(src.err(
                weight,
                wpath,
                format!("weight {w} is out of range; use 0 to 100 (percent)"),
            ));
            return None;
        }
        match strategy {
            Some(Strategy::BlueGreen) => {
                if w != 0.0 && w != 100.0 {
                    self.errors.push(src.err(
                        weight,
                        wpath,
                        format!(
                            "a blue-green phase's weight is 0 (preview) or 100 (cut over), not {w}"
                        ),
                    ));
                } else if last && w != 100.0 {
                    self.errors.push(src.err(
                        weight,
                        wpath,
                        format!("the last phase of a blue-green rollout must have weight 100 (cut over), not {w}"),
                    ));
                }
            }
            Some(s) => {
                if let Some(prev) = previous
                    && w < prev
                {
                    let kind = if matches!(s, Strategy::Canary) {
                        "canary"
                    } else {
                        "rolling"
                    };
                    self.errors.push(src.err(
                        weight,
                        wpath,
                        format!("weight {w} is below the previous phase's {prev}; {kind} weights may not decrease"),
                    ));
                }
            }
            None => {}
        }
        Some(w)
    }

    /// A phase's HTTP gates: names unique within the phase, URLs http(s), timings.
    fn gates(&mut self, src: &Src, path: &str, gates: &[docs::GateDoc]) -> Vec<GateSpec> {
        let mut out = Vec::new();
        let mut gate_names = BTreeSet::new();
        for (g_index, g) in gates.iter().enumerate() {
            let gpath = format!("{path}.gates[{g_index}]");
            if g.name.value.trim().is_empty() {
                self.errors
                    .push(src.err(&g.name, format!("{gpath}.name"), "a gate needs a name"));
            } else if !gate_names.insert(g.name.value.clone()) {
                self.errors.push(src.err(
                    &g.name,
                    format!("{gpath}.name"),
                    format!("gate name {:?} is used twice in this phase", g.name.value),
                ));
            }
            self.url(src, &g.url, &format!("{gpath}.url"));
            out.push(GateSpec {
                name: g.name.value.clone(),
                kind: g.kind,
                url: g.url.value.clone(),
                timeout_ms: self.opt_duration(
                    src,
                    &g.timeout,
                    &format!("{gpath}.timeout"),
                    10_000,
                    true,
                ),
                retries: self.bounded(
                    src,
                    g.retries.as_ref(),
                    &format!("{gpath}.retries"),
                    2,
                    (0, MAX_RETRIES),
                ),
                interval_ms: self.opt_duration(
                    src,
                    &g.interval,
                    &format!("{gpath}.interval"),
                    30_000,
                    true,
                ),
            });
        }
        out
    }
}
