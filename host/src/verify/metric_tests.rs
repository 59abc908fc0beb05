//! The counting rules' tests, one metric at a time; [`spec`] is shared with the run's tests.

use super::*;
use crate::plugin::types::Measurement;
use std::collections::BTreeMap;

/// A metric with the spec's defaults: one measurement, failureLimit 0,
/// inconclusiveLimit 0, consecutiveErrorLimit 4, noData no-data (limit 0), retention 10.
pub(crate) fn spec(name: &str) -> MetricSpec {
    MetricSpec {
        name: name.to_string(),
        template: None,
        plugin: "threshold".to_string(),
        backend: None,
        config: serde_json::Value::Null,
        interval_ms: None,
        count: None,
        initial_delay_ms: 0,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        consecutive_failure_limit: None,
        consecutive_success_limit: None,
        no_data: NoDataAction::NoData,
        no_data_limit: 0,
        dry_run: false,
        retention: 10,
        args: BTreeMap::new(),
        config_at: None,
    }
}

/// `spec` measuring every 60 s, `count` times (`None`: until stopped).
pub(crate) fn every(name: &str, count: Option<u32>) -> MetricSpec {
    MetricSpec {
        interval_ms: Some(60_000),
        count,
        ..spec(name)
    }
}

pub(crate) fn obs(verdict: Verdict, value: Option<f64>, message: &str) -> Observation {
    Observation::Measured(Measurement {
        verdict,
        value,
        message: message.to_string(),
        details: "{}".to_string(),
    })
}

pub(crate) fn pass() -> Observation {
    obs(Verdict::Pass, Some(0.01), "")
}
pub(crate) fn fail() -> Observation {
    obs(Verdict::Fail, Some(0.5), "")
}
fn inconclusive() -> Observation {
    obs(Verdict::Inconclusive, None, "")
}
fn no_data() -> Observation {
    obs(Verdict::NoData, None, "")
}
pub(crate) fn error() -> Observation {
    Observation::Error("backend prometheus timed out".to_string())
}

/// Feed observations one minute apart; return the run and the statuses after each.
fn feed(spec: MetricSpec, seq: Vec<Observation>) -> (MetricRun, Vec<MetricStatus>) {
    let mut run = MetricRun::new(spec, 0);
    let mut statuses = Vec::new();
    for (i, o) in seq.into_iter().enumerate() {
        run.record(o, (i as i64 + 1) * 60_000);
        statuses.push(run.status);
    }
    (run, statuses)
}

#[test]
fn limits_and_defaults() {
    use MetricStatus::*;
    #[rustfmt::skip]
        let cases: Vec<(&str, MetricSpec, Vec<Observation>, Vec<MetricStatus>)> = vec![
            ("one pass, no interval: count defaults to 1", spec("m"), vec![pass()], vec![Successful]),
            ("one fail: failureLimit defaults to 0", spec("m"), vec![fail()], vec![Failed]),
            ("one inconclusive: inconclusiveLimit defaults to 0", spec("m"), vec![inconclusive()], vec![Inconclusive]),
            ("one no-data: noDataLimit defaults to 0", spec("m"), vec![no_data()], vec![NoData]),
            ("errors: consecutiveErrorLimit defaults to 4",
                spec("m"), vec![error(), error(), error(), error(), error()],
                vec![Running, Running, Running, Running, Error]),
            ("failureLimit 2: the third failure fails (not the second)",
                MetricSpec { failure_limit: 2, ..every("m", Some(5)) },
                vec![fail(), fail(), fail()], vec![Running, Running, Failed]),
            ("failureLimit -1 never fails by total",
                MetricSpec { failure_limit: -1, ..every("m", Some(3)) },
                vec![fail(), fail(), fail()], vec![Running, Running, Successful]),
            ("consecutiveFailureLimit 2: two in a row fail",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(5)) },
                vec![fail(), pass(), fail(), fail()], vec![Running, Running, Running, Failed]),
            ("consecutiveFailureLimit: an error does not break the streak",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), error(), fail()], vec![Running, Running, Failed]),
            ("consecutiveFailureLimit: a pass breaks the streak, errors do not extend it",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), pass(), error(), fail()], vec![Running, Running, Running, Successful]),
            ("inconclusiveLimit 1: the second inconclusive",
                MetricSpec { inconclusive_limit: 1, ..every("m", Some(5)) },
                vec![inconclusive(), pass(), inconclusive()], vec![Running, Running, Inconclusive]),
            ("noDataLimit 1: the second no-data",
                MetricSpec { no_data_limit: 1, ..every("m", Some(5)) },
                vec![no_data(), no_data()], vec![Running, NoData]),
            ("consecutiveErrorLimit 1: two in a row",
                MetricSpec { consecutive_error_limit: 1, ..every("m", Some(3)) },
                vec![error(), pass(), error(), error()], vec![Running, Running, Running, Error]),
            ("consecutiveSuccessLimit 2 ends early",
                MetricSpec { failure_limit: 5, consecutive_success_limit: Some(2), ..every("m", Some(5)) },
                vec![pass(), fail(), pass(), pass()], vec![Running, Running, Running, Successful]),
            ("consecutiveSuccessLimit 3: an error breaks the streak (pass, pass, error, pass is not successful yet)",
                MetricSpec { consecutive_success_limit: Some(3), ..every("m", Some(5)) },
                vec![pass(), pass(), error(), pass(), pass(), pass()],
                vec![Running, Running, Running, Running, Running, Successful]),
            ("consecutiveFailureLimit 2: an error does not reset the failure streak either way",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), consecutive_success_limit: Some(5), ..every("m", Some(5)) },
                vec![fail(), error(), error(), fail()], vec![Running, Running, Running, Failed]),
            // count reached without the success streak: inconclusive while failureLimit
            // applies (unset, which loads as 0; 0; 3), failed only with -1.
            ("count reached without the streak, failureLimit unset (0): inconclusive",
                MetricSpec { consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), pass(), error(), pass()], vec![Running, Running, Running, Inconclusive]),
            ("count reached without the streak, failureLimit 0: inconclusive",
                MetricSpec { failure_limit: 0, consecutive_success_limit: Some(2), ..every("m", Some(2)) },
                vec![pass(), error(), pass()], vec![Running, Running, Inconclusive]),
            ("count reached without the streak, failureLimit 3: inconclusive",
                MetricSpec { failure_limit: 3, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), fail(), pass()], vec![Running, Running, Inconclusive]),
            ("failureLimit 1 exceeded before count: failed, whatever the streak",
                MetricSpec { failure_limit: 1, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![fail(), pass(), fail()], vec![Running, Running, Failed]),
            ("count reached without the streak, failureLimit -1: failed",
                MetricSpec { failure_limit: -1, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), fail(), pass()], vec![Running, Running, Failed]),
            ("count reached with the streak on its last measurement: successful",
                MetricSpec { failure_limit: -1, consecutive_success_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), pass(), pass()], vec![Running, Running, Successful]),
            ("errors are not counted in count",
                every("m", Some(2)),
                vec![pass(), error(), error(), pass()], vec![Running, Running, Running, Successful]),
            ("failures within the limit still succeed at count",
                MetricSpec { failure_limit: 1, ..every("m", Some(2)) },
                vec![fail(), pass()], vec![Running, Successful]),
            ("error wins over failure when both trip",
                MetricSpec { consecutive_error_limit: 0, ..every("m", Some(3)) },
                vec![error()], vec![Error]),
            ("indefinite metric keeps running",
                MetricSpec { failure_limit: 3, ..every("m", None) },
                vec![pass(), pass(), fail(), pass()], vec![Running, Running, Running, Running]),
        ];
    for (name, spec, seq, want) in cases {
        let (_, got) = feed(spec, seq);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn no_data_mappings() {
    use MetricStatus::*;
    let cases = [
        (
            NoDataAction::NoData,
            NoData,
            (0, 0, 0, 1),
            RecordedVerdict::NoData,
        ),
        (
            NoDataAction::Inconclusive,
            Inconclusive,
            (0, 0, 1, 0),
            RecordedVerdict::Inconclusive,
        ),
        (
            NoDataAction::Fail,
            Failed,
            (0, 1, 0, 0),
            RecordedVerdict::Fail,
        ),
        (
            NoDataAction::Pass,
            Successful,
            (1, 0, 0, 0),
            RecordedVerdict::Pass,
        ),
    ];
    for (action, status, (p, f, i, n), verdict) in cases {
        let (run, _) = feed(
            MetricSpec {
                no_data: action,
                ..spec("m")
            },
            vec![obs(Verdict::NoData, None, "no series")],
        );
        let c = run.counters;
        assert_eq!(run.status, status, "{action:?}");
        assert_eq!(
            (c.passes, c.failures, c.inconclusives, c.no_data),
            (p, f, i, n)
        );
        assert_eq!(c.measurements, 1);
        let last = run.last.unwrap();
        assert_eq!(last.verdict, verdict);
        if action != NoDataAction::NoData {
            assert_eq!(
                last.message,
                format!("no series (no data, counted as {})", verdict.name())
            );
        }
    }
}

#[test]
fn reasons_name_the_numbers() {
    let cases: Vec<(MetricSpec, Vec<Observation>, &str)> = vec![
        (
            MetricSpec {
                failure_limit: 2,
                ..every("m", Some(5))
            },
            vec![
                fail(),
                fail(),
                obs(Verdict::Fail, Some(0.071), "error ratio 0.071 >= 0.05"),
            ],
            "failed: 3 failures > failureLimit 2, last value 0.071 (the plugin said: error ratio 0.071 >= 0.05)",
        ),
        (
            every("m", Some(5)),
            vec![error(), error(), error(), error(), error()],
            "error: 5 consecutive errors > consecutiveErrorLimit 4, last: backend prometheus timed out",
        ),
        (
            every("m", Some(5)),
            vec![pass(), pass(), pass(), pass(), pass()],
            "successful: 5 of 5 measurements, 5 passed, last value 0.01",
        ),
        (
            MetricSpec {
                failure_limit: 1,
                ..every("m", Some(3))
            },
            vec![pass(), fail(), error(), pass()],
            "successful: 3 of 3 measurements, 2 passed, 1 failed, 1 error, last value 0.01",
        ),
        (
            MetricSpec {
                failure_limit: 5,
                consecutive_success_limit: Some(3),
                ..every("m", Some(5))
            },
            vec![pass(), pass(), fail(), pass(), pass()],
            "inconclusive: count 5 reached without 3 passes in a row (consecutiveSuccessLimit 3) and within failureLimit 5, 4 passed, 1 failed, last value 0.01",
        ),
        (
            MetricSpec {
                failure_limit: -1,
                consecutive_success_limit: Some(3),
                ..every("m", Some(3))
            },
            vec![pass(), error(), pass(), pass()],
            "failed: count 3 reached without 3 passes in a row (consecutiveSuccessLimit 3, failureLimit -1), 3 passed, 1 error, last value 0.01",
        ),
        (
            MetricSpec {
                failure_limit: -1,
                consecutive_failure_limit: Some(2),
                ..every("m", Some(5))
            },
            vec![fail(), fail()],
            "failed: 2 consecutive failures >= consecutiveFailureLimit 2, last value 0.5",
        ),
        (
            spec("m"),
            vec![obs(Verdict::Inconclusive, Some(0.04), "between")],
            "inconclusive: 1 inconclusive > inconclusiveLimit 0, last value 0.04 (the plugin said: between)",
        ),
        (
            spec("m"),
            vec![obs(Verdict::NoData, None, "no series")],
            "no-data: 1 no-data > noDataLimit 0 (the plugin said: no series)",
        ),
        (
            MetricSpec {
                failure_limit: 1,
                consecutive_success_limit: Some(2),
                ..every("m", Some(5))
            },
            vec![fail(), pass(), pass()],
            "successful: 2 consecutive passes >= consecutiveSuccessLimit 2 after 3 measurements, 2 passed, 1 failed, last value 0.01",
        ),
        (
            MetricSpec {
                consecutive_error_limit: 0,
                ..spec("m")
            },
            vec![error()],
            "error: 1 consecutive error > consecutiveErrorLimit 0, last: backend prometheus timed out",
        ),
        (
            every("m", Some(5)),
            vec![pass()],
            "running: first result pass, last value 0.01",
        ),
        (
            every("m", Some(5)),
            vec![error()],
            "running: first attempt failed with an error: backend prometheus timed out",
        ),
    ];
    for (spec, seq, want) in cases {
        let (run, _) = feed(spec, seq);
        assert_eq!(run.message, want);
    }
}

#[test]
fn completing_changes_name_the_limit_that_decided() {
    let cases: Vec<(MetricSpec, Vec<Observation>, Option<&str>)> = vec![
        (spec("m"), vec![fail()], Some("failureLimit 0")),
        (
            MetricSpec {
                failure_limit: -1,
                consecutive_failure_limit: Some(2),
                ..every("m", Some(5))
            },
            vec![fail(), fail()],
            Some("consecutiveFailureLimit 2"),
        ),
        (spec("m"), vec![inconclusive()], Some("inconclusiveLimit 0")),
        (spec("m"), vec![no_data()], Some("noDataLimit 0")),
        (
            MetricSpec {
                consecutive_error_limit: 1,
                ..spec("m")
            },
            vec![error(), error()],
            Some("consecutiveErrorLimit 1"),
        ),
        (
            MetricSpec {
                consecutive_success_limit: Some(2),
                ..every("m", Some(2))
            },
            vec![pass(), error(), pass()],
            Some("consecutiveSuccessLimit 2"),
        ),
        (spec("m"), vec![pass()], None),
        (every("m", Some(3)), vec![pass()], None),
    ];
    for (spec, seq, want) in cases {
        let mut run = MetricRun::new(spec, 0);
        let mut last = None;
        for (i, o) in seq.into_iter().enumerate() {
            if let (_, Some(change)) = run.record(o, i as i64) {
                last = Some(change);
            }
        }
        let change = last.expect("a change");
        assert_eq!(change.limit.as_deref(), want, "{}", change.reason);
    }
}

#[test]
fn status_changes_are_reported_once() {
    let mut run = MetricRun::new(every("m", Some(2)), 0);
    let (_, first) = run.record(pass(), 10);
    let first = first.unwrap();
    assert_eq!(
        (first.from, first.to),
        (MetricStatus::Pending, MetricStatus::Running)
    );
    assert_eq!(first.counters.measurements, 1);
    assert_eq!(first.last_value, Some(0.01));
    assert_eq!(first.metric, "m");
    let (_, second) = run.record(pass(), 20);
    let second = second.unwrap();
    assert_eq!(
        (second.from, second.to, second.at_ms),
        (MetricStatus::Running, MetricStatus::Successful, 20)
    );
    // One observation that completes straight away: a single change from pending.
    let mut once = MetricRun::new(spec("m"), 0);
    let change = once.record(fail(), 5).1.unwrap();
    assert_eq!(
        (change.from, change.to),
        (MetricStatus::Pending, MetricStatus::Failed)
    );
    // A late observation is handed back but neither counted nor kept.
    let before = once.clone();
    let (late, none) = once.record(pass(), 6);
    assert!(none.is_none());
    assert_eq!((late.index, late.verdict), (1, RecordedVerdict::Pass));
    assert_eq!(once, before);
    assert_eq!(once.due(), None);
}

#[test]
fn scheduling() {
    // (spec, observations with times, expected due after each)
    let delayed = MetricSpec {
        initial_delay_ms: 30_000,
        ..every("m", Some(3))
    };
    assert_eq!(MetricRun::new(delayed, 1_000).due(), Some(31_000));
    /// A spec, observations with their times, and the due time expected after each.
    type Case = (MetricSpec, Vec<(Observation, i64)>, Vec<Option<i64>>);
    let cases: Vec<Case> = vec![
        (
            every("m", Some(3)),
            vec![
                (pass(), 0),
                (error(), 60_000),
                (pass(), 70_000),
                (pass(), 130_000),
            ],
            vec![Some(60_000), Some(70_000), Some(130_000), None],
        ),
        (
            MetricSpec {
                interval_ms: Some(3_000),
                ..every("m", Some(2))
            },
            vec![(error(), 0), (pass(), 3_000)],
            vec![Some(3_000), Some(6_000)],
        ),
        (
            spec("m"),
            vec![(error(), 0), (error(), 10_000), (pass(), 20_000)],
            vec![Some(10_000), Some(20_000), None],
        ),
    ];
    for (spec, seq, want) in cases {
        let mut run = MetricRun::new(spec, 0);
        let got: Vec<_> = seq
            .into_iter()
            .map(|(o, at)| {
                run.record(o, at);
                run.due()
            })
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn the_checkpoint_does_not_grow_with_failures() {
    // The history of measurements lives in the store; the checkpoint, rewritten on
    // every commit, keeps only the counters and the latest observations, however many
    // failures and errors there were.
    let spec = MetricSpec {
        retention: 2,
        failure_limit: -1,
        ..every("m", None)
    };
    let size_after = |n: usize| {
        let seq: Vec<_> = (0..n)
            .map(|i| match i % 3 {
                0 => fail(),
                1 => error(),
                _ => pass(),
            })
            .collect();
        let (run, _) = feed(spec.clone(), seq);
        (run.clone(), serde_json::to_string(&run).unwrap().len())
    };
    let (small_run, small) = size_after(9);
    let (run, big) = size_after(3_000);
    // Only the digits of the counters, indexes and times differ.
    assert!(big <= small + 64, "{small} bytes after 9, {big} after 3000");
    assert_eq!(small_run.counters.failures, 3);
    let c = run.counters;
    assert_eq!(
        (c.measurements, c.passes, c.failures, c.errors),
        (2_000, 1_000, 1_000, 1_000)
    );
    assert_eq!(run.status, MetricStatus::Running);
    // The latest observation, and the latest measurement, are still at hand.
    let last = run.last.as_ref().unwrap();
    assert_eq!((last.index, last.verdict), (2_999, RecordedVerdict::Pass));
    let (run, _) = feed(spec.clone(), vec![pass(), fail(), error()]);
    assert_eq!(
        run.last.as_ref().map(|r| (r.index, r.verdict)),
        Some((2, RecordedVerdict::Error))
    );
    assert_eq!(
        run.last_measured.as_ref().map(|r| (r.index, r.verdict)),
        Some((1, RecordedVerdict::Fail))
    );
    assert_eq!(run.last_value(), Some(0.5));
    let json = serde_json::to_value(&run).unwrap();
    assert!(json.get("retained").is_none(), "{json}");
}

#[test]
fn an_old_checkpoint_with_a_retained_history_still_loads() {
    let (run, _) = feed(every("m", Some(3)), vec![pass(), fail()]);
    let mut json = serde_json::to_value(&run).unwrap();
    let old_entry = serde_json::to_value(run.last.as_ref().unwrap()).unwrap();
    json.as_object_mut()
        .unwrap()
        .insert("retained".into(), serde_json::json!([old_entry]));
    let back: MetricRun = serde_json::from_value(json).unwrap();
    assert_eq!(back, run);
}

#[test]
fn terminate_and_finish() {
    let mut pending = MetricRun::new(every("m", None), 0);
    let change = pending.finish(5).unwrap();
    assert_eq!(change.to, MetricStatus::Terminated);
    assert_eq!(
        change.reason,
        "terminated: the rollout ended before the metric completed (0 measurements taken)"
    );

    let (mut background, _) = feed(every("bg", None), vec![pass(), pass()]);
    let change = background.finish(9).unwrap();
    assert_eq!(change.to, MetricStatus::Successful);
    assert_eq!(
        change.reason,
        "successful: stopped at the end of the rollout after 2 measurements, 2 passed, last value 0.01"
    );
    assert!(background.finish(10).is_none());
    assert!(background.terminate(10, "x").is_none());

    let (mut counted, _) = feed(every("c", Some(3)), vec![pass()]);
    assert_eq!(counted.finish(9).unwrap().to, MetricStatus::Terminated);

    let (mut stopped, _) = feed(every("s", None), vec![pass()]);
    let change = stopped
        .terminate(3, "sibling metric \"latency\" failed")
        .unwrap();
    assert_eq!(
        change.reason,
        "terminated: sibling metric \"latency\" failed"
    );
    assert_eq!(stopped.due(), None);
    // Terminated is final.
    stopped.record(fail(), 4);
    assert_eq!(stopped.status, MetricStatus::Terminated);
}

#[test]
fn summary_for_the_policy() {
    let (run, _) = feed(
        MetricSpec {
            dry_run: true,
            ..every("m", Some(3))
        },
        vec![obs(Verdict::Pass, Some(0.2), ""), error()],
    );
    let s = run.summary();
    assert_eq!(s.name, "m");
    assert!(s.dry_run);
    assert!(matches!(
        s.status,
        crate::plugin::types::MetricStatus::Running
    ));
    assert_eq!(
        (s.measurements, s.passes, s.errors, s.consecutive_errors),
        (1, 1, 1, 1)
    );
    assert!(matches!(s.last_verdict, Some(Verdict::Pass)));
    assert_eq!(s.last_value, Some(0.2));
    assert_eq!(s.message, without_status(&run.message));
    assert!(!s.message.starts_with("running: "), "{}", s.message);
}

#[test]
fn checkpoint_round_trip() {
    let (run, _) = feed(every("m", Some(3)), vec![pass(), error()]);
    let text = serde_json::to_string(&run).unwrap();
    let back: MetricRun = serde_json::from_str(&text).unwrap();
    assert_eq!(back, run);
}
