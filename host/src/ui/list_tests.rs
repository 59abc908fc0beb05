//! The list index: tiles, filters and paging over known entries, the query's errors, and
//! 20,000 rollouts read once, then incrementally.

use super::*;
use crate::engine::{NewRun, create_run};
use crate::store::RunnerRow;

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_800_000_000_000;

fn entry(
    id: i64,
    state: &str,
    finished: bool,
    ended_ago: i64,
    took: i64,
    cause: &'static str,
) -> Entry {
    let updated = NOW - ended_ago;
    Entry {
        id,
        run: 1,
        generation: 1,
        strategy: "canary".into(),
        state: state.into(),
        phase_name: "canary-10".into(),
        phase: 0,
        phase_count: 3,
        weight: 10.0,
        created_ms: updated - took,
        updated_ms: updated,
        finished,
        last_actor: Some("rollgate".into()),
        last_action: Some("start".into()),
        message: format!("{state} message"),
        cause,
    }
}

fn index() -> Index {
    let mut index = Index::default();
    let entries = [
        ("a-live", entry(1, "progressing", false, 0, 10, "other")),
        ("a-held", entry(2, "paused(policy)", false, 0, 10, "other")),
        (
            "b-ok",
            entry(3, "succeeded", true, HOUR / 2, 1_000, "other"),
        ),
        (
            "b-ok-old",
            entry(4, "succeeded", true, 48 * HOUR, 9_000, "other"),
        ),
        (
            "c-back",
            entry(5, "rolled-back", true, 2 * HOUR, 3_000, "verification"),
        ),
        (
            "c-back-op",
            entry(6, "rolled-back", true, 3 * HOUR, 5_000, "operator"),
        ),
        ("d-stale", entry(7, "progressing", false, 0, 10, "other")),
        (
            "e-broken",
            entry(8, "succeeded", true, 100 * HOUR, 10, "other"),
        ),
    ];
    for (name, e) in entries {
        index.entries.insert(name.into(), e);
    }
    // e-broken's documents no longer load; f-new never ran.
    for name in ["e-broken", "f-new"] {
        index.invalid.insert(
            name.into(),
            InvalidSpec {
                name: name.into(),
                problems: vec!["rollouts.yaml:3:5: spec: what to do".into()],
                since_ms: NOW - HOUR,
                held_run: None,
            },
        );
    }
    // Run 7's runner stopped beating an hour ago (the refresh judges it stale).
    index.claims.runs.insert(7, 1);
    index.stale_runners.insert(1);
    index.claims.runners.insert(
        1,
        RunnerRow {
            id: 1,
            host: "h".into(),
            pid: 1,
            command: "run".into(),
            version: "0".into(),
            started_ms: NOW - HOUR,
            heartbeat_ms: NOW - HOUR,
            period_ms: 5_000,
            stopped_ms: None,
        },
    );
    index
}

fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["rollout"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn tiles_count_now_and_the_period() {
    let index = index();
    let v = answer(&index, &ask(&query(&[]), NOW).expect("ask"), NOW);
    let t = &v["tiles"];
    assert_eq!(v["period"], "24h");
    // a-live and d-stale (whose runner stopped beating: attention too).
    assert_eq!(t["progressing"], 2, "{t}");
    assert_eq!(t["attention"], 4, "{t}");
    assert_eq!(
        t["attentionBy"],
        json!({"paused": 1, "invalidSpec": 2, "staleRunner": 1})
    );
    // In 24 h: b-ok, c-back, c-back-op ended (b-ok-old and e-broken are older).
    assert_eq!(t["ended"], 3);
    assert_eq!(t["succeeded"], 1);
    assert_eq!(t["rolledBack"], 2);
    assert_eq!(t["rolledBackBy"]["verification"], 1);
    assert_eq!(t["rolledBackBy"]["operator"], 1);
    assert_eq!(t["successRatio"], 0.333);
    assert_eq!(t["medianDurationMs"], 3_000);
    let all = answer(
        &index,
        &ask(&query(&[("period", "all")]), NOW).expect("ask"),
        NOW,
    );
    assert_eq!(all["tiles"]["ended"], 5);
    assert_eq!(all["tiles"]["succeeded"], 3);
    let none = answer(&Index::default(), &ask(&query(&[]), NOW).expect("ask"), NOW);
    assert_eq!(none["tiles"]["successRatio"], Value::Null);
    assert_eq!(none["tiles"]["medianDurationMs"], Value::Null);
    assert_eq!(none["pages"], 1);
}

#[test]
fn rows_are_sorted_filtered_and_paged() {
    let index = index();
    let v = answer(&index, &ask(&query(&[]), NOW).expect("ask"), NOW);
    assert_eq!(
        names(&v),
        [
            "a-held",
            "a-live",
            "b-ok",
            "b-ok-old",
            "c-back",
            "c-back-op",
            "d-stale",
            "e-broken",
            "f-new"
        ]
    );
    assert_eq!(v["total"], 9);
    let row = |name: &str| {
        v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["rollout"] == name)
            .cloned()
            .expect(name)
    };
    assert_eq!(row("a-held")["attention"], "paused");
    assert_eq!(row("d-stale")["attention"], "stale-runner");
    assert_eq!(row("e-broken")["state"], "invalid-spec");
    assert_eq!(row("e-broken")["finished"], false);
    assert_eq!(row("f-new")["run"], 0);
    assert_eq!(row("f-new")["attention"], "invalid-spec");
    assert_eq!(row("b-ok")["durationMs"], 1_000);
    assert_eq!(row("a-live")["lastActor"], "rollgate");
    let filtered = |pairs: &[(&str, &str)]| {
        names(&answer(&index, &ask(&query(pairs), NOW).expect("ask"), NOW))
    };
    assert_eq!(filtered(&[("state", "paused")]), ["a-held"]);
    assert_eq!(filtered(&[("state", "paused(policy)")]), ["a-held"]);
    assert_eq!(
        filtered(&[("state", "attention")]),
        ["a-held", "d-stale", "e-broken", "f-new"]
    );
    assert_eq!(
        filtered(&[("state", "unfinished")]),
        ["a-held", "a-live", "d-stale", "e-broken", "f-new"]
    );
    assert_eq!(
        filtered(&[("state", "rolled-back")]),
        ["c-back", "c-back-op"]
    );
    assert_eq!(filtered(&[("prefix", "b-")]), ["b-ok", "b-ok-old"]);
    assert_eq!(
        filtered(&[("prefix", "c"), ("state", "rolled-back")]),
        ["c-back", "c-back-op"]
    );
    let page = answer(
        &index,
        &ask(&query(&[("page", "2"), ("pageSize", "4")]), NOW).expect("ask"),
        NOW,
    );
    assert_eq!(names(&page), ["c-back", "c-back-op", "d-stale", "e-broken"]);
    assert_eq!(
        (page["pages"].clone(), page["total"].clone()),
        (json!(3), json!(9))
    );
    let past = answer(
        &index,
        &ask(&query(&[("page", "9")]), NOW).expect("ask"),
        NOW,
    );
    assert!(names(&past).is_empty());
}

#[test]
fn bad_parameters_name_themselves() {
    for (pairs, want) in [
        (
            vec![("period", "2h")],
            "period: \"2h\" is not a period; use 1h, 24h, 7d, 30d or all",
        ),
        (
            vec![("pageSize", "501")],
            "pageSize: \"501\" is not a whole number from 1 to 500",
        ),
        (vec![("page", "0")], "page: \"0\" is not a whole number"),
        (vec![("page", "x")], "page: \"x\""),
        (
            vec![("state", "sleeping")],
            "state: \"sleeping\" is not a state; use one of pending,",
        ),
    ] {
        let e = ask(&query(&pairs), NOW).expect_err(want);
        assert!(e.starts_with(want), "{pairs:?}: {e}");
    }
}

/// 20,000 rollouts: the first request reads them all once; later ones read only what
/// changed. Prints the figures (run with `--nocapture` to see them).
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_rollouts_are_read_once_then_incrementally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_durable(&dir.path().join("s.db"), false)
        .await
        .expect("store");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    let bundle = crate::spec::load(&[examples]).expect("the quickstart loads");
    let mut spec = (*bundle.rollouts[0]).clone();
    let new = || NewRun {
        actor: "test",
        action: "create",
        reason: "bench",
        state_before: "",
    };
    const N: usize = 20_000;
    let started = Instant::now();
    for i in 0..N {
        spec.name = format!("svc-{i:05}");
        create_run(&store, &spec, NOW + i as i64, new())
            .await
            .expect("create");
    }
    let created = started.elapsed();
    let list = ListIndex::default();
    let a = ask(&query(&[("pageSize", "100"), ("page", "150")]), NOW).expect("ask");
    let started = Instant::now();
    let v = list.overview(&store, &a, NOW).await.expect("overview");
    let first = started.elapsed();
    assert_eq!(v["total"], N);
    assert_eq!(v["pages"], 200);
    assert_eq!(names(&v)[0], "svc-14900");
    // A few rollouts change; the next requests read only those.
    for i in 0..3 {
        spec.name = format!("svc-{i:05}");
        create_run(&store, &spec, NOW + N as i64 + 1, new())
            .await
            .expect("create");
    }
    let started = Instant::now();
    let v = list.overview(&store, &a, NOW + 1).await.expect("overview");
    let next = started.elapsed();
    let read = list.index.lock().await.last_read;
    assert_eq!(read, 3, "only the changed rollouts were read");
    let started = Instant::now();
    let rounds = 20u32;
    for page in 1..=rounds {
        let a = ask(
            &query(&[("page", &page.to_string()), ("state", "pending")]),
            NOW,
        )
        .expect("ask");
        list.overview(&store, &a, NOW + 1).await.expect("overview");
    }
    let per_page = started.elapsed() / rounds;
    assert_eq!(v["total"], N);
    eprintln!(
        "list index, {N} rollouts: created in {created:?}; first request (reads all) {first:?}; \
         after 3 changes {next:?}; a page with a filter {per_page:?} on average"
    );
}
