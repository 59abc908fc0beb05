//! Process-wide counters and histograms for `/metrics` (server mode), in the Prometheus text
//! exposition format.
//!
//! The numbers are recorded where they happen — plugin calls in [`crate::plugin`], backend
//! queries in [`crate::metrics`], timers in [`crate::engine`] — and rendered by the HTTP API.
//! They live in one global registry because those layers must not know about each other or
//! about HTTP; recording costs one short lock, a few thousand times a second at most.
//!
//! Deliberately small: counters and histograms with fixed bucket bounds, labels as ordered
//! (name, value) pairs. Gauges that describe current state (rollouts by state) are not kept
//! here; whoever knows the state passes them to [`Telemetry::render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

/// Latency buckets, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Scheduler lag buckets, in seconds (the timers have millisecond resolution).
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Labels = Vec<(&'static str, String)>;

/// A gauge family given to [`Telemetry::render`]: name, help, and each series' labels and
/// value.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(Labels, f64)>);

/// One histogram series: cumulative counts are computed when rendering.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1) estimated from the buckets, as Prometheus'
    /// `histogram_quantile` does (linear within a bucket); `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut seen = 0u64;
        let mut lower = 0.0;
        for (i, bound) in self.bounds.iter().enumerate() {
            let c = self.counts[i];
            if (seen + c) as f64 >= rank && c > 0 {
                let into = (rank - seen as f64) / c as f64;
                return Some(lower + (bound - lower) * into.clamp(0.0, 1.0));
            }
            seen += c;
            lower = *bound;
        }
        // Above the last bucket: the last bound is the best the buckets can say.
        self.bounds.last().copied()
    }
}

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// The registry. One per process: [`global`].
#[derive(Debug, Default)]
pub struct Telemetry {
    families: Mutex<Families>,
}

/// Help text of every family rollgate records.
const HELP: &[(&str, &str, &str)] = &[
    (
        "rollgate_decisions_total",
        "counter",
        "Decisions taken on rollouts, by decision and by who took it (verification, gate, operator, engine).",
    ),
    (
        "rollgate_rollbacks_total",
        "counter",
        "Rollouts that started rolling back, by cause (verification: the failure policy on the verdicts; gate, operator, deadline).",
    ),
    (
        "rollgate_measurements_total",
        "counter",
        "Measurements taken, by verdict (pass, fail, inconclusive, no-data, error).",
    ),
    (
        "rollgate_plugin_call_seconds",
        "histogram",
        "Wall time of plugin calls (instantiation included), by plugin and call.",
    ),
    (
        "rollgate_plugin_limit_hits_total",
        "counter",
        "Plugin calls stopped by a sandbox limit, by plugin and limit (timeout, out-of-fuel, memory-limit, trap, too-large, guest-error).",
    ),
    (
        "rollgate_backend_query_seconds",
        "histogram",
        "Wall time of metric backend queries, by backend.",
    ),
    (
        "rollgate_backend_query_errors_total",
        "counter",
        "Failed metric backend queries, by backend and error kind.",
    ),
    (
        "rollgate_backend_queries_shared_total",
        "counter",
        "Queries answered by an identical query of the same tick instead of the backend, by backend.",
    ),
    (
        "rollgate_scheduler_lag_seconds",
        "histogram",
        "How late rollout timers fired.",
    ),
    (
        "rollgate_notifications_total",
        "counter",
        "Webhook notifications this runner sent, by outcome (delivered, retried, failed).",
    ),
    (
        "rollgate_api_refused_total",
        "counter",
        "API requests refused for want of a valid token or role, by reason.",
    ),
    (
        "rollgate_task_panics_total",
        "counter",
        "Panics caught in serve's tasks, by task (config-watch, reload, run, notify, api); any makes /readyz answer 503.",
    ),
];

impl Telemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `by` to a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self
            .lock()
            .counters
            .entry(name)
            .or_default()
            .entry(labels)
            .or_default() += by;
    }

    /// Record an observation in a histogram with `bounds`.
    pub fn observe(
        &self,
        name: &'static str,
        bounds: &'static [f64],
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.lock()
            .histograms
            .entry(name)
            .or_default()
            .entry(labels)
            .or_insert_with(|| Histogram::new(bounds))
            .observe(value);
    }

    /// Record how late a timer fired, in seconds.
    pub fn observe_lag(&self, seconds: f64) {
        self.observe("rollgate_scheduler_lag_seconds", LAG_BUCKETS, &[], seconds);
    }

    /// A counter's value (0 when never counted).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let families = self.lock();
        families
            .counters
            .get(name)
            .and_then(|series| {
                series.iter().find(|(l, _)| {
                    l.len() == labels.len()
                        && l.iter()
                            .zip(labels)
                            .all(|((k, v), (k2, v2))| k == k2 && v == v2)
                })
            })
            .map_or(0, |(_, v)| *v)
    }

    /// A copy of a histogram series without labels, merged over every label set.
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let families = self.lock();
        let series = families.histograms.get(name)?;
        let mut merged: Option<Histogram> = None;
        for h in series.values() {
            match merged.as_mut() {
                None => merged = Some(h.clone()),
                Some(m) if m.bounds == h.bounds => {
                    for (a, b) in m.counts.iter_mut().zip(&h.counts) {
                        *a += b;
                    }
                    m.sum += h.sum;
                    m.count += h.count;
                }
                Some(_) => {}
            }
        }
        merged
    }

    /// The exposition text: the `gauges` given (family, help, series), then every counter
    /// and histogram.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        for (name, help, series) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, v) in series {
                let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
            }
        }
        let families = self.lock();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if let Some(series) = families.counters.get(name) {
                for (labels, v) in series {
                    let _ = writeln!(out, "{name}{} {v}", label_text(labels, None));
                }
            }
            if let Some(series) = families.histograms.get(name) {
                for (labels, h) in series {
                    let mut cumulative = 0;
                    for (bound, c) in h.bounds.iter().zip(&h.counts) {
                        cumulative += c;
                        let le = number(*bound);
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {cumulative}",
                            label_text(labels, Some(&le))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        label_text(labels, Some("+Inf")),
                        h.count
                    );
                    let _ = writeln!(
                        out,
                        "{name}_sum{} {}",
                        label_text(labels, None),
                        number(h.sum)
                    );
                    let _ = writeln!(out, "{name}_count{} {}", label_text(labels, None), h.count);
                }
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// `{k="v",…}` with the exposition format's escapes; `le` appended for histogram buckets.
fn label_text(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

static GLOBAL: LazyLock<Telemetry> = LazyLock::new(Telemetry::default);

/// The process's registry.
pub fn global() -> &'static Telemetry {
    &GLOBAL
}

/// Label pairs for [`Telemetry::render`]'s gauges.
pub fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_exposition_format() {
        let t = Telemetry::default();
        t.count("rollgate_measurements_total", &[("verdict", "fail")], 2);
        t.count("rollgate_measurements_total", &[("verdict", "fail")], 1);
        t.observe(
            "rollgate_backend_query_seconds",
            LATENCY_BUCKETS,
            &[("backend", "prom \"a\"")],
            0.003,
        );
        let text = t.render(&[(
            "rollgate_rollouts",
            "Rollouts by state.",
            vec![(labels(&[("state", "paused")]), 2.0)],
        )]);
        assert!(
            text.contains(
                "# TYPE rollgate_rollouts gauge\nrollgate_rollouts{state=\"paused\"} 2\n"
            )
        );
        assert!(text.contains("rollgate_measurements_total{verdict=\"fail\"} 3\n"));
        assert!(text.contains(
            "rollgate_backend_query_seconds_bucket{backend=\"prom \\\"a\\\"\",le=\"0.0025\"} 0\n"
        ));
        assert!(text.contains(
            "rollgate_backend_query_seconds_bucket{backend=\"prom \\\"a\\\"\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "rollgate_backend_query_seconds_bucket{backend=\"prom \\\"a\\\"\",le=\"+Inf\"} 1\n"
        ));
        assert!(
            text.contains("rollgate_backend_query_seconds_count{backend=\"prom \\\"a\\\"\"} 1\n")
        );
        assert_eq!(
            t.counter("rollgate_measurements_total", &[("verdict", "fail")]),
            3
        );
        assert_eq!(
            t.counter("rollgate_measurements_total", &[("verdict", "pass")]),
            0
        );
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut h = Histogram::new(LAG_BUCKETS);
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..90 {
            h.observe(0.0005);
        }
        for _ in 0..10 {
            h.observe(0.2);
        }
        // 90 in (0, 1 ms], 10 in (100 ms, 250 ms].
        let p50 = h.quantile(0.5).unwrap_or(f64::NAN);
        assert!(p50 > 0.0 && p50 <= 0.001, "{p50}");
        let p99 = h.quantile(0.99).unwrap_or(f64::NAN);
        assert!(p99 > 0.1 && p99 <= 0.25, "{p99}");
        h.observe(100.0);
        assert_eq!(h.quantile(1.0), Some(5.0));
    }
}
