//! The replay backend's tests: its formats, selectors, lookback, alignment and refusals.

use super::*;
const OM: &str = r#"# TYPE error_ratio gauge
error_ratio{version="canary"} 0.02 1700000000
error_ratio{version="canary"} 0.1 1700000060
error_ratio{version="stable",note="a \"quoted\" } brace"} 0.01 1700000000
error_ratio{version="canary"} NaN 1700000120
up 1 1700000000.5
# EOF
"#;

fn q(r: &Replay, query: &str, window: Window) -> Result<Vec<Series>, QueryError> {
    futures::executor::block_on(r.query("rec", query, window)).map(|r| r.series)
}

#[test]
fn openmetrics_selectors_and_lookback() {
    let r = Replay::from_openmetrics(OM).unwrap();
    let s = q(
        &r,
        "error_ratio{version=\"canary\"}",
        Window::Instant(1_700_000_030_000),
    )
    .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].points, vec![(1_700_000_030_000, 0.02)]);
    // The latest sample wins; NaN is a value; beyond the lookback there is nothing.
    let s = q(
        &r,
        "error_ratio{version=\"canary\"}",
        Window::Instant(1_700_000_150_000),
    )
    .unwrap();
    assert!(s[0].points[0].1.is_nan());
    let s = q(
        &r,
        "error_ratio{version=\"canary\"}",
        Window::Instant(1_700_000_120_000 + LOOKBACK_MS + 1),
    )
    .unwrap();
    assert!(s.is_empty());
    // Before the first sample: nothing.
    assert!(
        q(&r, "up", Window::Instant(1_699_999_999_000))
            .unwrap()
            .is_empty()
    );
    // Escaped quotes and braces inside values; != matchers.
    let s = q(
        &r,
        "error_ratio{version!=\"canary\"}",
        Window::Instant(1_700_000_000_000),
    )
    .unwrap();
    assert_eq!(s.len(), 1);
    assert!(
        s[0].labels
            .contains(&("note".into(), "a \"quoted\" } brace".into()))
    );
    // Fractional-second timestamps.
    let s = q(&r, "up", Window::Instant(1_700_000_000_500)).unwrap();
    assert_eq!(s[0].points, vec![(1_700_000_000_500, 1.0)]);
    // A range evaluates every step.
    let s = q(
        &r,
        "error_ratio{version=\"canary\"}",
        Window::Range {
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_090_000,
            step_ms: 30_000,
        },
    )
    .unwrap();
    let values: Vec<f64> = s[0].points.iter().map(|p| p.1).collect();
    assert_eq!(values, [0.02, 0.02, 0.1, 0.1]);
}

#[test]
fn alignment_shifts_onto_the_rollout_clock() {
    let r = Replay::from_openmetrics(OM)
        .unwrap()
        .aligned_to(5_000_000)
        .unwrap();
    // The recording spans 1_700_000_000_000 ..= 1_700_000_120_000.
    assert_eq!(r.span_ms(), (5_000_000, 5_120_000));
    let s = q(
        &r,
        "error_ratio{version=\"canary\"}",
        Window::Instant(5_060_000),
    )
    .unwrap();
    assert_eq!(s[0].points, vec![(5_060_000, 0.1)]);
}

#[test]
fn bad_input_says_where() {
    let cases = [
        ("up 1", "1:1: a timestamp is required"),
        ("up{a=\"1\" 1 2", "1:1: unbalanced braces"),
        ("up{a=\"1\"} x 2", "1:1: expected a sample value"),
        ("# c\nup 1 2\n  up{a!=\"1\"} 1 2", "3:3: `!=` is not valid"),
        // A no-break space is one column, though two bytes (found by the fuzzer).
        ("\u{a0}2", "1:2: expected a metric name"),
        ("# only comments", "no samples"),
    ];
    for (text, msg) in cases {
        let e = Replay::from_openmetrics(text).unwrap_err().to_string();
        assert!(e.starts_with(msg), "{text:?}: {e}");
    }
    let r = Replay::from_openmetrics(OM).unwrap();
    for (query, msg) in [
        ("rate(up[5m])", "plain selectors"),
        ("up{a=~\"x\"}", "regular expression"),
        ("{}", "matches nothing"),
    ] {
        let e = q(&r, query, Window::Instant(0)).unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::BadQuery);
        assert!(e.message.contains(msg), "{query}: {e}");
    }
}

#[test]
fn recordings_round_trip_and_answer_by_query_text() {
    let recording = Recording {
        version: 1,
        queries: vec![RecordedQuery {
            backend: Some("prom".into()),
            query: "sum(rate(x[1m]))".into(),
            start_ms: Some(0),
            end_ms: Some(60_000),
            step_ms: Some(30_000),
            series: vec![RecordedSeries {
                labels: BTreeMap::from([("job".to_string(), "a".to_string())]),
                points: vec![
                    (0, JsonValue(1.0)),
                    (30_000, JsonValue(f64::NAN)),
                    (60_000, JsonValue(f64::INFINITY)),
                ],
            }],
        }],
    };
    let text = serde_json::to_string(&recording).unwrap();
    assert!(
        text.contains("\"NaN\"") && text.contains("\"+Inf\""),
        "{text}"
    );
    let back: Recording = serde_json::from_str(&text).unwrap();
    assert_eq!(
        back.queries[0].series[0].points[2],
        (60_000, JsonValue(f64::INFINITY))
    );
    let r = Replay::from_recording(&back).unwrap();
    let s = q(&r, "sum(rate(x[1m]))", Window::Instant(60_000)).unwrap();
    assert_eq!(s[0].points, vec![(60_000, f64::INFINITY)]);
    // Whitespace does not matter; another query is a bad-query error that lists what exists.
    assert!(q(&r, "  sum(rate(x[1m]))  ", Window::Instant(0)).is_ok());
    let e = q(&r, "sum(rate(y[1m]))", Window::Instant(0)).unwrap_err();
    assert!(e.message.contains("holds [sum(rate(x[1m]))]"), "{e}");
    // null reads as NaN.
    let with_null: Recording = serde_json::from_str(
            r#"{"version": 1, "queries": [{"query": "q", "series": [{"labels": {}, "points": [[0, null]]}]}]}"#,
        )
        .unwrap();
    assert!(with_null.queries[0].series[0].points[0].1.0.is_nan());
    let e = Replay::from_recording(&Recording {
        version: 2,
        queries: vec![],
    })
    .unwrap_err();
    assert!(e.contains("version 2 is not supported"), "{e}");
}

#[test]
fn openmetrics_timestamps_out_of_range_or_repeated_are_refused_at_their_line() {
    let too_far = "the timestamp is outside the years 1 to 9999";
    for (text, line, msg) in [
        ("up 1 -1e300", 1, too_far),
        ("# x\nup 1 1e300", 2, too_far),
        ("up 1 9223372036854775807", 1, too_far),
        ("up 1 253402300800", 1, too_far),
        ("up 1 NaN", 1, "not a finite number"),
        ("up 1 +Inf", 1, "not a finite number"),
        ("up 1 -Inf", 1, "not a finite number"),
        ("up 1 10\nup 2 20\nup 3 10", 3, "(the first is on line 1)"),
        ("up 1 10 extra", 1, "unexpected text after the timestamp"),
    ] {
        let e = Replay::from_openmetrics(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
    // The edges of the range are accepted; the same time in two series is no duplicate;
    // an exemplar after the timestamp is ignored as before.
    let r = Replay::from_openmetrics(
        "up 1 -62135596800\nup 2 253402300799.999\ndown 1 10\nup{a=\"b\"} 1 10 # {t=\"1\"} 1",
    )
    .unwrap();
    assert_eq!(r.span_ms(), (MIN_TIME_MS, MAX_TIME_MS));
}

#[test]
fn alignment_and_lookup_never_overflow() {
    let r = Replay::from_openmetrics("up 1 -62135596800\nup 2 253402300799").unwrap();
    // Shifting a recording that already spans the whole range anywhere else is refused.
    let e = r.clone().aligned_to(0).unwrap_err();
    assert!(e.contains("would leave the years 1 to 9999"), "{e}");
    for origin in [i64::MIN, i64::MAX] {
        assert!(r.clone().aligned_to(origin).is_err());
    }
    // Queries at extreme times answer (with nothing) instead of overflowing.
    let r = r.aligned_to(MIN_TIME_MS).unwrap();
    for t in [i64::MIN, i64::MAX, 0] {
        let got = q(&r, "up", Window::Instant(t)).unwrap();
        assert!(got.iter().all(|s| s.points.iter().all(|p| p.0 == t)), "{t}");
    }
    let got = q(
        &r,
        "up",
        Window::Range {
            start_ms: i64::MAX - 10,
            end_ms: i64::MAX,
            step_ms: u64::MAX,
        },
    )
    .unwrap();
    assert!(got.is_empty());
    // A range that ends at the end of i64 evaluates each step once, never the last
    // point again and again.
    let near_end = evaluation_times(Window::Range {
        start_ms: i64::MAX - 25,
        end_ms: i64::MAX,
        step_ms: 10,
    });
    assert_eq!(near_end, vec![i64::MAX - 25, i64::MAX - 15, i64::MAX - 5]);
}

#[test]
fn json_recordings_refuse_bad_times_at_their_position() {
    let doc = |points: &str| {
        format!(
            "{{\"version\": 1, \"queries\": [{{\"query\": \"q\", \"series\": [\n{{\"labels\": {{}}, \"points\": {points}}}]}}]}}"
        )
    };
    for (points, msg) in [
        ("[[-9223372036854775808, 1]]", "outside the years 1 to 9999"),
        ("[[9223372036854775807, 1]]", "outside the years 1 to 9999"),
        (
            "[[1000, 1], [2000, 1], [1000, 2]]",
            "a second point at 1000 ms",
        ),
    ] {
        let e = parse_recording_json(&doc(points)).unwrap_err();
        assert_eq!(e.line, 2, "{points}: {e}");
        assert!(e.col > 1, "{points}: {e}");
        assert!(e.message.contains(msg), "{points}: {e}");
    }
    // Built in code, the same rules hold.
    let recording = Recording {
        version: 1,
        queries: vec![RecordedQuery {
            backend: None,
            query: "q".into(),
            start_ms: None,
            end_ms: None,
            step_ms: None,
            series: vec![RecordedSeries {
                labels: BTreeMap::new(),
                points: vec![(i64::MIN, JsonValue(1.0))],
            }],
        }],
    };
    let e = Replay::from_recording(&recording).unwrap_err();
    assert!(e.contains("queries[0]: the timestamp"), "{e}");
}

#[test]
fn errors_do_not_quote_the_file() {
    // A file that is not a recording, or is one with secrets in unexpected places: the
    // error says where and what, never what the file holds.
    let secret = "hunter2-0123456789abcdef";
    for text in [
        format!("{secret} operator admin"),
        format!("{secret}{{a=\"1\"}} 1 2 3"),
        format!("up{{{secret}=\"x\"}} 1 2 3"),
    ] {
        let e = Replay::from_openmetrics(&text).unwrap_err();
        assert_eq!((e.line, e.col), (1, 1), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    for text in [
        format!("{{\"version\": \"{secret}\"}}"),
        format!("{{\"{secret}\": 1}}"),
        format!(
            "{{\"version\": 1, \"queries\": [{{\"query\": \"q\", \"series\": [{{\"labels\": {{}}, \"points\": [[1, \"{secret}\"]]}}]}}]}}"
        ),
    ] {
        let e = parse_recording_json(&text).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.starts_with("not a rollgate recording: "), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    let e = parse_recording_json("{\"version\": 1}").unwrap_err();
    assert!(e.message.contains("missing field `queries`"), "{e}");
    let e = parse_recording_json("{\"version\": 1, \"queries\": [], \"extra\": 1}").unwrap_err();
    assert!(e.message.contains("unknown field, expected"), "{e}");
    assert!(!e.message.contains("extra"), "{e}");
}
