//! A rollout's `strategy`: `canary`, `rolling` (instances or replicas, parallelism,
//! delay between batches) or `blueGreen`.

use super::Loader;
use super::source::Src;
use crate::spec::docs::{self, P};
use crate::spec::model::Strategy;
use std::collections::BTreeSet;

/// Most instances `rolling.replicas` may name: each one becomes a name in the spec, the
/// checkpoint and every step.
const MAX_REPLICAS: u32 = 10_000;

impl Loader {
    pub(super) fn strategy(&mut self, src: &Src, s: &P<docs::StrategyDoc>) -> Option<Strategy> {
        let options = [
            ("canary", s.value.canary.is_some()),
            ("rolling", s.value.rolling.is_some()),
            ("blueGreen", s.value.blue_green.is_some()),
        ];
        if !self.exactly_one(src, s, "spec.strategy", "strategy", &options) {
            return None;
        }
        if s.value.canary.is_some() {
            return Some(Strategy::Canary);
        }
        if s.value.blue_green.is_some() {
            return Some(Strategy::BlueGreen);
        }
        let r = s.value.rolling.as_ref()?;
        let before = self.errors.len();
        let instances = match (&r.value.instances, &r.value.replicas) {
            (Some(list), None) => {
                if list.value.is_empty() {
                    self.errors.push(src.err(
                        list,
                        "spec.strategy.rolling.instances",
                        "list at least one instance",
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, inst) in list.value.iter().enumerate() {
                    if inst.value.trim().is_empty() {
                        self.errors.push(src.err(
                            inst,
                            format!("spec.strategy.rolling.instances[{i}]"),
                            "an instance needs a name",
                        ));
                    } else if !seen.insert(inst.value.clone()) {
                        self.errors.push(src.err(
                            inst,
                            format!("spec.strategy.rolling.instances[{i}]"),
                            format!("instance {:?} is listed twice", inst.value),
                        ));
                    }
                }
                list.value.iter().map(|i| i.value.clone()).collect()
            }
            (None, Some(n)) => {
                if n.value == 0 {
                    self.errors.push(src.err(
                        n,
                        "spec.strategy.rolling.replicas",
                        "replicas must be at least 1",
                    ));
                    Vec::new()
                } else if n.value > MAX_REPLICAS {
                    self.errors.push(src.err(
                        n,
                        "spec.strategy.rolling.replicas",
                        format!("{} replicas are too many; use 1 to {MAX_REPLICAS}", n.value),
                    ));
                    Vec::new()
                } else {
                    (1..=n.value).map(|i| format!("instance-{i}")).collect()
                }
            }
            _ => {
                self.errors.push(src.err(
                    r,
                    "spec.strategy.rolling",
                    "set exactly one of instances (a list of names) or replicas (a number)",
                ));
                Vec::new()
            }
        };
        let parallelism = match &r.value.parallelism {
            None => 1,
            Some(p) if p.value == 0 => {
                self.errors.push(src.err(
                    p,
                    "spec.strategy.rolling.parallelism",
                    "parallelism must be at least 1",
                ));
                1
            }
            Some(p) => p.value,
        };
        let delay = self.opt_duration(
            src,
            &r.value.delay_between_batches,
            "spec.strategy.rolling.delayBetweenBatches",
            0,
            false,
        );
        (self.errors.len() == before).then_some(Strategy::Rolling {
            instances,
            parallelism,
            delay_between_batches_ms: delay,
        })
    }
}
