use super::*;
use rollgate_plugin::{Label, RolloutContext};

fn series(labels: &[(&str, &str)], values: &[f64]) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        times_ms: (0..values.len()).map(|i| i as i64 * 1000).collect(),
        values: values.to_vec(),
    }
}

fn compiled(json: serde_json::Value) -> Compiled {
    let config: Config = serde_json::from_value(json).expect("config parses");
    config.compile().expect("config compiles")
}

fn base(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"backend": "prom", "query": "up", "condition": "< 0.05"});
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
    v
}

#[test]
fn conditions() {
    let cases: &[(&str, &[(f64, bool)])] = &[
        ("< 0.05", &[(0.04, true), (0.05, false), (f64::NAN, false)]),
        ("<= 0.05", &[(0.05, true), (0.051, false)]),
        (
            "> 0.99",
            &[(0.995, true), (0.99, false), (f64::INFINITY, true)],
        ),
        (">= 0.99", &[(0.99, true)]),
        ("== 0", &[(0.0, true), (-0.0, true), (1e-9, false)]),
        ("!= 0", &[(0.0, false), (2.0, true)]),
        ("[0.1, 0.2]", &[(0.1, true), (0.2, true), (0.25, false)]),
        ("(0.1, 0.2)", &[(0.1, false), (0.15, true), (0.2, false)]),
        ("[0.1, 0.2)", &[(0.1, true), (0.2, false)]),
        ("between 1 and 2", &[(1.0, true), (2.0, true), (2.1, false)]),
        ("outside [1, 2]", &[(1.0, false), (0.5, true), (3.0, true)]),
        ("< inf", &[(1e300, true), (f64::INFINITY, false)]),
        (">= -inf", &[(f64::NEG_INFINITY, true)]),
        ("<1e-3", &[(0.0005, true)]),
    ];
    for (text, checks) in cases {
        let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        for (v, expect) in *checks {
            assert_eq!(c.holds(*v), *expect, "{text} with {v}");
        }
        // Display round-trips.
        assert_eq!(Condition::parse(&c.to_string()), Ok(c.clone()), "{text}");
    }
    let bad = [
        ("", "empty condition"),
        ("0.05", "not understood"),
        ("< abc", "is not a number"),
        ("< NaN", "NaN"),
        ("[2, 1]", "above the upper bound"),
        ("[1, 2", "must end with"),
        ("[1]", "two bounds"),
        ("between 1 2", "between a and b"),
        ("=~ 3", "not understood"),
        ("(1, 1)", "empty range"),
        ("[2, 2)", "empty range"),
        ("outside (1, 1]", "empty range"),
    ];
    for (text, msg) in bad {
        let e = Condition::parse(text).expect_err(text);
        assert!(e.contains(msg), "{text}: {e}");
    }
}

/// A percentile by selection is the one a full sort gives, bit for bit: random samples with
/// ties, signed zeros, infinities and NaN (ignored), at ranks on and between values.
#[test]
fn percentiles_by_selection_are_the_sorted_ones() {
    // The reducer as it was: sort everything, interpolate between the closest ranks.
    fn sorted_quantile(values: &[f64], q: f64) -> Option<f64> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let (a, b) = (sorted[lo], sorted[hi]);
        let w = rank - lo as f64;
        Some(if lo == hi || a == b || w == 0.0 {
            a
        } else if w == 1.0 {
            b
        } else {
            a * (1.0 - w) + b * w
        })
    }
    // SplitMix64, so a failure replays exactly.
    let mut state = 0x7e57_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let quantiles = [
        "p0", "p1", "p25", "median", "p90", "p95", "p99", "p99.9", "p100",
    ];
    for case in 0..2_000 {
        let n = (next() % 80) as usize;
        let values: Vec<f64> = (0..n)
            .map(|_| match next() % 12 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                5..=7 => (next() % 6) as f64 * 0.5,
                _ => (next() >> 11) as f64 / (1u64 << 53) as f64 * 20.0 - 10.0,
            })
            .collect();
        for name in quantiles {
            let Reducer::Quantile(q) = Reducer::parse(name).unwrap() else {
                unreachable!("{name} is a quantile")
            };
            let got = Reducer::Quantile(q).apply(values.iter().copied());
            let want = sorted_quantile(&values, q);
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "case {case} {name}: {got:?} vs {want:?} for {values:?}"
            );
        }
    }
}

#[test]
fn reducers() {
    let v = [3.0, f64::NAN, 1.0, 4.0, 1.0, 5.0];
    let cases = [
        ("last", Some(5.0)),
        ("first", Some(3.0)),
        ("avg", Some(2.8)),
        ("min", Some(1.0)),
        ("max", Some(5.0)),
        ("sum", Some(14.0)),
        ("count", Some(5.0)),
        ("median", Some(3.0)),
        ("p0", Some(1.0)),
        ("p100", Some(5.0)),
        ("p75", Some(4.0)),
        ("p90", Some(4.6)),
    ];
    // An infinite neighbour gives an infinite percentile, as in Prometheus, not NaN.
    let p50 = Reducer::parse("p50").unwrap();
    assert_eq!(
        p50.apply([f64::NEG_INFINITY, 5.0].into_iter()),
        Some(f64::NEG_INFINITY)
    );
    assert_eq!(
        p50.apply([1.0, f64::INFINITY].into_iter()),
        Some(f64::INFINITY)
    );
    assert_eq!(p50.apply([2.0, 2.0].into_iter()), Some(2.0));
    for (name, expect) in cases {
        let r = Reducer::parse(name).unwrap();
        let got = r.apply(v.iter().copied());
        match (got, expect) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-12, "{name}: {g} != {e}"),
            _ => assert_eq!(got, expect, "{name}"),
        }
        assert_eq!(
            r.apply([f64::NAN, f64::NAN].into_iter()),
            None,
            "{name} of NaNs"
        );
        assert_eq!(r.apply(std::iter::empty()), None, "{name} of nothing");
    }
    for bad in ["p", "p101", "px", "average", "mode"] {
        assert!(Reducer::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn config_errors_point_at_fields() {
    let config: Config = serde_json::from_value(json!({
        "backend": "", "query": "up", "condition": "<< 1", "failCondition": "[3, 1]",
        "reduce": "p200", "across": "every", "step": "0s"
    }))
    .unwrap();
    let errors = config.compile().expect_err("invalid");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "/reduce",
        "/across",
        "/condition",
        "/failCondition",
        "/step",
        "/backend",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
}

#[test]
fn verdicts() {
    struct Case {
        name: &'static str,
        config: serde_json::Value,
        series: Vec<Series>,
        verdict: Verdict,
        value: Option<f64>,
        message: &'static str,
    }
    let cases = vec![
        Case {
            name: "single instant pass",
            config: base(json!({})),
            series: vec![series(&[], &[0.01])],
            verdict: Verdict::Pass,
            value: Some(0.01),
            message: "last = 0.01, meets < 0.05 (1 sample)",
        },
        Case {
            name: "single instant fail",
            config: base(json!({})),
            series: vec![series(&[], &[0.071])],
            verdict: Verdict::Fail,
            value: Some(0.071),
            message: "last = 0.071, does not meet < 0.05 (1 sample)",
        },
        Case {
            name: "avg over window",
            config: base(json!({"window": "5m", "reduce": "avg"})),
            series: vec![series(&[], &[0.02, 0.04, 0.12])],
            verdict: Verdict::Fail,
            value: Some(0.06),
            message: "avg over 5m = 0.06, does not meet < 0.05 (3 samples)",
        },
        Case {
            name: "a value just under the bound is not shown as the bound",
            config: base(json!({"window": "5m", "reduce": "avg"})),
            series: vec![series(&[], &[0.02, 0.04, 0.09])],
            verdict: Verdict::Pass,
            value: Some((0.02 + 0.04 + 0.09) / 3.0),
            message: "avg over 5m = 0.049999999999999996, meets < 0.05",
        },
        Case {
            name: "no series is no-data",
            config: base(json!({})),
            series: vec![],
            verdict: Verdict::NoData,
            value: None,
            message: "the query returned no series",
        },
        Case {
            name: "all NaN is no-data, never pass",
            config: base(json!({})),
            series: vec![series(&[], &[f64::NAN, f64::NAN])],
            verdict: Verdict::NoData,
            value: None,
            message: "null or NaN",
        },
        Case {
            name: "all NaN pooled is no-data",
            config: base(json!({"across": "pool"})),
            series: vec![series(&[], &[f64::NAN]), series(&[], &[])],
            verdict: Verdict::NoData,
            value: None,
            message: "no data",
        },
        Case {
            name: "NaN samples ignored",
            config: base(json!({"reduce": "max"})),
            series: vec![series(&[], &[0.01, f64::NAN, 0.02])],
            verdict: Verdict::Pass,
            value: Some(0.02),
            message: "max = 0.02",
        },
        Case {
            name: "+Inf fails an upper bound",
            config: base(json!({})),
            series: vec![series(&[], &[f64::INFINITY])],
            verdict: Verdict::Fail,
            value: Some(f64::INFINITY),
            message: "+Inf",
        },
        Case {
            name: "each: one bad series fails",
            config: base(json!({})),
            series: vec![
                series(&[("version", "stable")], &[0.01]),
                series(&[("version", "canary")], &[0.2]),
            ],
            verdict: Verdict::Fail,
            value: Some(0.2),
            message: "1 of 2 series does not meet < 0.05: last {version=\"canary\"} = 0.2",
        },
        Case {
            name: "each: empty series ignored but noted",
            config: base(json!({})),
            series: vec![
                series(&[("v", "a")], &[0.01]),
                series(&[("v", "b")], &[f64::NAN]),
            ],
            verdict: Verdict::Pass,
            value: Some(0.01),
            message: "1 series without data ignored",
        },
        Case {
            name: "across max",
            config: base(json!({"across": "max"})),
            series: vec![series(&[], &[0.01]), series(&[], &[0.03])],
            verdict: Verdict::Pass,
            value: Some(0.03),
            message: "last (max across series) = 0.03, meets < 0.05 (2 series, 2 samples)",
        },
        Case {
            name: "pool p50",
            config: base(json!({"across": "pool", "reduce": "p50"})),
            series: vec![series(&[], &[1.0, 2.0]), series(&[], &[3.0])],
            verdict: Verdict::Fail,
            value: Some(2.0),
            message: "p50 (pooled) = 2",
        },
        Case {
            name: "fail condition: between is inconclusive",
            config: base(json!({"condition": "< 0.03", "failCondition": "> 0.05"})),
            series: vec![series(&[], &[0.04])],
            verdict: Verdict::Inconclusive,
            value: Some(0.04),
            message: "meets neither < 0.03 nor fail condition > 0.05",
        },
        Case {
            name: "fail condition wins when both hold",
            config: base(json!({"condition": "< 1", "failCondition": "> 0.5"})),
            series: vec![series(&[], &[0.7])],
            verdict: Verdict::Fail,
            value: Some(0.7),
            message: "meets fail condition > 0.5",
        },
        Case {
            name: "range condition",
            config: base(json!({"condition": "[0.99, 1]"})),
            series: vec![series(&[], &[0.995])],
            verdict: Verdict::Pass,
            value: Some(0.995),
            message: "meets [0.99, 1]",
        },
        Case {
            name: "a NaN series value says it cannot judge",
            config: base(json!({"reduce": "avg"})),
            series: vec![series(&[], &[f64::INFINITY, f64::NEG_INFINITY])],
            verdict: Verdict::Inconclusive,
            value: None,
            message: "avg is NaN for 1 of 1 series (e.g. +Inf and -Inf combined): cannot judge",
        },
        Case {
            name: "a reducer across series does not drop a NaN series and pass",
            config: base(json!({"reduce": "avg", "across": "max"})),
            series: vec![
                series(&[], &[f64::INFINITY, f64::NEG_INFINITY]),
                series(&[], &[0.01]),
            ],
            verdict: Verdict::Inconclusive,
            value: None,
            message: "is NaN",
        },
        Case {
            name: "a reducer across series says which series had no data",
            config: base(json!({"across": "max"})),
            series: vec![series(&[], &[f64::NAN]), series(&[], &[0.01])],
            verdict: Verdict::Pass,
            value: Some(0.01),
            message: "max across series, 1 without data ignored",
        },
        Case {
            name: "bounds are shown at full precision next to a rounded value",
            config: base(json!({"condition": "< 100.0004"})),
            series: vec![series(&[], &[100.0002])],
            verdict: Verdict::Pass,
            value: Some(100.0002),
            message: "last = 100, meets < 100.0004",
        },
        Case {
            name: "inf minus inf is inconclusive, not pass",
            config: base(json!({"across": "pool", "reduce": "sum", "condition": "!= 0"})),
            series: vec![series(&[], &[f64::INFINITY, f64::NEG_INFINITY])],
            verdict: Verdict::Inconclusive,
            value: None,
            message: "is NaN",
        },
    ];
    for case in cases {
        let m = judge(&compiled(case.config), &case.series);
        assert_eq!(m.verdict, case.verdict, "{}: {}", case.name, m.message);
        assert_eq!(m.value, case.value, "{}: {}", case.name, m.message);
        assert!(
            m.message.contains(case.message),
            "{}: {:?} does not contain {:?}",
            case.name,
            m.message,
            case.message
        );
        let details: serde_json::Value =
            serde_json::from_str(&m.details).expect("details are JSON");
        assert!(details.is_object(), "{}", case.name);
    }
}

struct Fixture(Vec<Series>);

impl rollgate_plugin::Metrics for Fixture {
    fn query(
        &self,
        backend: &str,
        _query: &str,
        window: Window,
        now_ms: i64,
    ) -> Result<Vec<Series>, rollgate_plugin::QueryError> {
        assert_eq!(backend, "prom");
        assert_eq!(
            window,
            Window::Last {
                lookback_ms: 300_000,
                step_ms: 5_000
            }
        );
        assert_eq!(now_ms, 1_700_000_000_000);
        Ok(self.0.clone())
    }
}

#[test]
fn measure_queries_the_window_ending_now() {
    let ctx = RolloutContext {
        rollout: "r".into(),
        phase: "p".into(),
        phase_index: 0,
        phase_count: 1,
        weight: 10.0,
        stable_version: "1".into(),
        canary_version: "2".into(),
        now_ms: 1_700_000_000_000,
        phase_started_ms: 0,
        metric: "m".into(),
        measurement_index: 0,
        args: vec![],
    };
    let fixture = Fixture(vec![series(&[], &[0.01, 0.02])]);
    let config: Config =
        serde_json::from_value(base(json!({"window": "5m", "reduce": "avg"}))).unwrap();
    let m = Threshold::measure(config, &Context::new(ctx, &fixture)).expect("measures");
    assert_eq!(m.verdict, Verdict::Pass);
    assert!((m.value.unwrap() - 0.015).abs() < 1e-12);
}

#[test]
fn numbers_read_well() {
    let cases = [
        (0.0, "0"),
        (0.05, "0.05"),
        (0.071234567, "0.0712346"),
        (123456.789, "123457"),
        (1.5, "1.5"),
        (2e-7, "2e-7"),
        (3e12, "3e12"),
        (f64::NEG_INFINITY, "-Inf"),
        (0.000123456, "0.000123456"),
        (0.1234567, "0.123457"),
        (100.0002, "100"),
    ];
    for (v, s) in cases {
        assert_eq!(fmt_num(v), s, "{v}");
    }
}

#[test]
fn limits_are_the_finite_bounds_of_each_condition() {
    // (condition, lines: (label, value))
    let cases: &[(&str, &[(&str, f64)])] = &[
        ("< 0.05", &[("< 0.05", 0.05)]),
        ("<= 0.05", &[("<= 0.05", 0.05)]),
        ("> 0.99", &[("> 0.99", 0.99)]),
        (">= 0.99", &[(">= 0.99", 0.99)]),
        ("== 0", &[("== 0", 0.0)]),
        ("!= 2", &[("!= 2", 2.0)]),
        ("[0.1, 0.2]", &[(">= 0.1", 0.1), ("<= 0.2", 0.2)]),
        ("(0.1, 0.2)", &[("> 0.1", 0.1), ("< 0.2", 0.2)]),
        ("between 1 and 2", &[(">= 1", 1.0), ("<= 2", 2.0)]),
        ("outside [1, 2]", &[("< 1", 1.0), ("> 2", 2.0)]),
        ("outside (1, 2)", &[("<= 1", 1.0), (">= 2", 2.0)]),
        ("[-inf, 3]", &[("<= 3", 3.0)]),
        ("< inf", &[]),
        ("<1e-3", &[("< 0.001", 0.001)]),
    ];
    for (text, want) in cases {
        let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let got = c.limits("");
        let want: Vec<(String, f64)> = want.iter().map(|(l, v)| (l.to_string(), *v)).collect();
        assert_eq!(got, want, "{text}");
    }
    let fail = Condition::parse("> 0.1").unwrap().limits("fail: ");
    assert_eq!(fail, [("fail: > 0.1".to_string(), 0.1)]);
}

#[test]
fn every_measurement_carries_the_limits_in_its_details() {
    let both = compiled(base(json!({"failCondition": ">= 0.1"})));
    let pass_only = compiled(base(json!({})));
    let lines = |m: &Measurement| -> serde_json::Value {
        let details: serde_json::Value = serde_json::from_str(&m.details).expect("JSON details");
        details["limits"].clone()
    };
    let with_fail = json!([
        {"label": "< 0.05", "value": 0.05},
        {"label": "fail: >= 0.1", "value": 0.1}
    ]);
    // A pass, an inconclusive value, a failure, several series, no data at all.
    for (c, series_list, want) in [
        (&both, vec![series(&[], &[0.01])], &with_fail),
        (&both, vec![series(&[], &[0.07])], &with_fail),
        (
            &both,
            vec![
                series(&[("pod", "a")], &[0.2]),
                series(&[("pod", "b")], &[0.01]),
            ],
            &with_fail,
        ),
        (&both, vec![], &with_fail),
        (&both, vec![series(&[], &[f64::NAN])], &with_fail),
        (
            &pass_only,
            vec![series(&[], &[0.2])],
            &json!([{"label": "< 0.05", "value": 0.05}]),
        ),
    ] {
        let m = judge(c, &series_list);
        assert_eq!(&lines(&m), want, "{}: {}", m.message, m.details);
    }
    // The rest of the details stay.
    let m = judge(&both, &[series(&[], &[0.01])]);
    let details: serde_json::Value = serde_json::from_str(&m.details).unwrap();
    assert_eq!(details["condition"], "< 0.05");
}
