//! Webhooks through the store's outbox, end to end: two `rollgate serve` processes share
//! one store (a SQLite file here; the store is a parameter of the harness, `Serve::db`) and
//! one `--notify` webhook, a stand-in that records every request. Every notifiable audit
//! event of every run reaches the webhook exactly once — and after a SIGKILL of the runner
//! that was delivering, still every event, the only repeat being the one in doubt, with the
//! same `Idempotency-Key`. Servers are killed by PID on drop; every wait is bounded.
//!
//! Each server has a folder of its own, and the second starts once the first one's runs
//! ended: a server resumes every unfinished run of its store at start, and until runs are
//! split by leases two servers started on the same unfinished runs take them from each
//! other (one's commit conflicts, the other's is fenced, and the run can stop). Which
//! runner *drives* a run is not what these tests are about; both runners deliver.

use crate::common;

use common::StandIn;
use common::serve::{Serve, Server};
use rollgate::store::{OutboxRow, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Write the folder `dir/NAME` of rollouts `names` that pass five phases on their own,
/// pausing `pause` in each; its path.
fn folder(dir: &Path, name: &str, names: &[&str], pause: &str) -> std::path::PathBuf {
    let config = dir.join(name);
    std::fs::create_dir(&config).expect("mkdir");
    let text: String = names
        .iter()
        .map(|name| {
            format!(
                "---\n{}",
                common::fixture_with("outbox/timed.yaml", &[("name", name), ("pause", pause)])
            )
        })
        .collect();
    std::fs::write(config.join("rollouts.yaml"), text).expect("write rollouts");
    config
}

/// A webhook that answers 200 after `delay` (500 to the first request when `fail_first`)
/// and records every request.
fn webhook(delay: Duration, fail_first: bool) -> StandIn {
    StandIn::open_blocking(move |_, i| {
        std::thread::sleep(delay);
        (
            if fail_first && i == 0 { 500 } else { 200 },
            vec![],
            String::new(),
        )
    })
}

/// Actions the webhooks are told of even when the state stays (decisions).
const DECISIONS: &[&str] = &[
    "start",
    "verified",
    "next-phase",
    "promote",
    "promote-full",
    "pause",
    "resume",
    "rollback",
    "abort",
    "succeed",
    "rolled-back",
    "deadline",
    "retry",
];

/// What the store says: every run's audit events the webhook must get — (rollout id, seq)
/// → the event — and the outbox's rows.
struct Stored {
    expected: BTreeMap<(i64, i64), (String, i64, Value)>,
    rows: Vec<OutboxRow>,
    unfinished: usize,
}

fn stored(db: &Path) -> Stored {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Store::open_existing(db).await.expect("open the store");
        let mut expected = BTreeMap::new();
        let mut unfinished = 0;
        for row in store.list().await.expect("list") {
            unfinished += usize::from(!row.finished);
            for a in store.audit(row.id).await.expect("audit") {
                let e = &a.event;
                // Decisions and state changes; a run's `create` is written when the run
                // is created, not by a commit, and has never been a webhook event.
                let told = e.action != "create"
                    && (DECISIONS.contains(&e.action.as_str()) || e.state_before != e.state_after);
                if told {
                    let v = serde_json::json!({
                        "atMs": e.at_ms,
                        "actor": e.actor,
                        "action": e.action,
                        "reason": e.reason,
                        "stateBefore": e.state_before,
                        "stateAfter": e.state_after,
                    });
                    expected.insert((row.id, a.seq), (row.name.clone(), row.run, v));
                }
            }
        }
        let rows = store.outbox_rows().await.expect("outbox");
        Stored {
            expected,
            rows,
            unfinished,
        }
    })
}

/// Wait (bounded) until every run ended and every outbox row was delivered: nothing more
/// can be sent then.
fn settled(db: &Path, servers: &[&Server]) -> Stored {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = stored(db);
        if s.unfinished == 0
            && !s.rows.is_empty()
            && s.rows.iter().all(|r| r.delivered_ms.is_some())
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {} unfinished, rows {:?}\n{}",
            s.unfinished,
            s.rows
                .iter()
                .map(|r| (r.id, r.attempts, r.claimed_by, r.delivered_ms, r.failed_ms))
                .collect::<Vec<_>>(),
            servers.iter().map(|s| s.log()).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Check what `hook` received against the store: one row per expected event, each
/// delivered, its body the event; every row received, and received again only as the
/// same row (same `Idempotency-Key`, same body). The number of repeats, not counting the
/// first `refused` requests (answered with an error).
fn check(hook: &StandIn, s: &Stored, refused: usize) -> usize {
    // One row per notifiable audit event, no more, no less.
    let rows: BTreeMap<(i64, i64), &OutboxRow> = s
        .rows
        .iter()
        .map(|r| {
            (
                (r.rollout_id.expect("a run's"), r.seq.expect("an audit seq")),
                r,
            )
        })
        .collect();
    assert_eq!(rows.len(), s.rows.len(), "two rows for one event");
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        s.expected.keys().collect::<Vec<_>>(),
        "the outbox holds exactly the notifiable audit events"
    );
    let by_id: BTreeMap<i64, (i64, i64)> = rows.iter().map(|(k, r)| (r.id, *k)).collect();
    let mut got: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let seen: Vec<_> = hook.seen().into_iter().skip(refused).collect();
    for request in seen.iter().cloned() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/hook")
        );
        let key = request
            .headers
            .get("idempotency-key")
            .expect("an Idempotency-Key");
        let id: i64 = key
            .strip_prefix("rollgate-")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("key {key:?}"));
        assert_eq!(request.body["seq"], id, "the body's seq is the key's id");
        assert_eq!(
            request.headers.get("x-rollgate-event").map(String::as_str),
            request.body["action"].as_str()
        );
        got.entry(id).or_default().push(request.body);
    }
    let mut repeats = 0;
    for (id, event) in &by_id {
        let bodies = got
            .get(id)
            .unwrap_or_else(|| panic!("row {id} (event {event:?}) never arrived"));
        let (rollout, run, want) = &s.expected[event];
        let body = &bodies[0];
        assert_eq!(
            (body["rollout"].as_str(), body["run"].as_i64()),
            (Some(rollout.as_str()), Some(*run))
        );
        for key in [
            "atMs",
            "actor",
            "action",
            "reason",
            "stateBefore",
            "stateAfter",
        ] {
            assert_eq!(body[key], want[key], "{key} of {body}");
        }
        assert!(
            bodies.iter().all(|b| b == body),
            "a repeat differs: {bodies:?}"
        );
        repeats += bodies.len() - 1;
    }
    assert_eq!(
        got.len(),
        by_id.len(),
        "requests for rows that do not exist"
    );
    // Each run's events arrived in the order of its audit log.
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    for request in &seen {
        let id: i64 = request.body["seq"].as_i64().expect("seq");
        let (run, seq) = by_id[&id];
        let before = last.insert(run, seq).unwrap_or(0);
        assert!(seq >= before, "run {run}: event {seq} after {before}");
    }
    repeats
}

#[test]
fn two_servers_on_one_store_deliver_every_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = folder(dir.path(), "first", &["alpha", "beta"], "100ms");
    let second = folder(
        dir.path(),
        "second",
        &["gamma", "delta", "epsilon"],
        "300ms",
    );
    // The first delivery fails and is retried (logged at debug); the URL carries
    // credentials and a token, which no log may show.
    let hook = webhook(Duration::ZERO, true);
    let port = hook.url.rsplit(':').next().expect("a port");
    let url =
        format!("http://hookuser:hook-secret-123@127.0.0.1:{port}/hook?token=query-secret-456");
    let start = |config: &Path| {
        Serve::new(dir.path())
            .config(config)
            .args(&["--notify", &url, "--heartbeat", "1s"])
            .log("rollgate=debug")
            .start()
    };
    let a = start(&first);
    a.wait_succeeded(&["alpha", "beta"]);
    let b = start(&second);
    b.wait_succeeded(&["gamma", "delta", "epsilon"]);
    let s = settled(&dir.path().join("state.db"), &[&a, &b]);
    assert!(s.expected.len() >= 5 * 6, "{}", s.expected.len());
    assert_eq!(
        check(&hook, &s, 1),
        0,
        "no runner died: nothing was sent twice"
    );
    // The webhook got the credentials (as basic auth) and the token; the logs did not.
    let first = &hook.seen()[0];
    assert_eq!(
        first.query.get("token").map(String::as_str),
        Some("query-secret-456")
    );
    assert!(
        first.headers.contains_key("authorization"),
        "{:?}",
        first.headers
    );
    let logs = a.log() + &b.log();
    assert!(
        logs.contains(&format!("http://127.0.0.1:{port}/hook")) && logs.contains("retrying"),
        "the retry is logged, with the webhook shown:\n{logs}"
    );
    for secret in ["hook-secret-123", "query-secret-456", "hookuser"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
    // /metrics counts the deliveries and shows the outbox's gauge.
    let text = a.metrics() + &b.metrics();
    for want in [
        "rollgate_notifications_total{outcome=\"delivered\"}",
        "rollgate_notifications_total{outcome=\"retried\"} 1",
        "# TYPE rollgate_notifications_pending gauge",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[test]
fn a_runner_killed_mid_delivery_loses_no_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = folder(dir.path(), "first", &["alpha"], "100ms");
    let second = folder(
        dir.path(),
        "second",
        &["beta", "gamma", "delta", "epsilon"],
        "1s",
    );
    let db = dir.path().join("state.db");
    // A slow webhook: a backlog builds up, so a claim is live when a runner dies.
    let hook = webhook(Duration::from_millis(150), false);
    let url = format!("{}/hook", hook.url);
    let start = |config: &Path| {
        Serve::new(dir.path())
            .config(config)
            .args(&["--notify", &url, "--heartbeat", "1s"])
            .start()
    };
    let a = start(&first);
    a.wait_succeeded(&["alpha"]);
    let b = start(&second);
    // SIGKILL whichever runner holds the webhook's claim, mid-way through b's runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        let s = stored(&db);
        let claimed = s
            .rows
            .iter()
            .find(|r| r.delivered_ms.is_none() && r.claimed_until_ms.is_some())
            .and_then(|r| r.claimed_by);
        if hook.seen().len() >= 3
            && s.unfinished > 0
            && let Some(runner) = claimed
        {
            break runner;
        }
        assert!(
            Instant::now() < deadline,
            "no claim while runs were going on\n{}{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pid = rt.block_on(async {
        let store = Store::open_existing(&db).await.expect("open");
        let claims = store.claims().await.expect("runners");
        claims.runners[&holder].pid
    });
    // The survivor takes the dead runner's rows once its claim expired. When the dead one
    // drove the runs, it is started again on its folder and resumes them.
    let (survivor, restarted) = if i64::from(b.pid()) == pid {
        drop(b);
        (a, Some(start(&second)))
    } else {
        assert_eq!(
            i64::from(a.pid()),
            pid,
            "the claim is one of the two servers'"
        );
        drop(a);
        (b, None)
    };
    let driver = restarted.as_ref().unwrap_or(&survivor);
    driver.wait_succeeded(&["beta", "gamma", "delta", "epsilon"]);
    let mut servers = vec![&survivor];
    servers.extend(restarted.as_ref());
    let s = settled(&db, &servers);
    let repeats = check(&hook, &s, 0);
    let retried = s.rows.iter().filter(|r| r.attempts > 1).count();
    eprintln!(
        "killed runner {holder} (pid {pid}{}): {} rows, {} requests, {repeats} repeated, {retried} tried twice",
        if restarted.is_some() {
            ", the driver"
        } else {
            ""
        },
        s.rows.len(),
        hook.seen().len()
    );
    assert!(
        repeats <= 1,
        "only the one row in doubt may come twice: {repeats}"
    );
}
