//! Store tests against real SQLite files in a temporary folder and, through [`on_both`],
//! the same tests against a fresh database of a real PostgreSQL server (`rollgate-pgtest`).

use super::*;
use serde_json::json;
use sqlx::Row;
use std::collections::BTreeMap;
use tempfile::TempDir;

async fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("rollgate.db"))
        .await
        .expect("open");
    (dir, store)
}

/// A store on a fresh database of the test process's PostgreSQL server, migrated; `None`
/// (the test is skipped, loudly) when PostgreSQL is not installed and not required.
pub(super) async fn fresh_pg() -> Option<Store> {
    let cluster = rollgate_pgtest::Cluster::shared()?;
    let url = cluster.database().expect("a fresh PostgreSQL database");
    Some(
        Store::open_postgres(&url, true)
            .await
            .expect("open PostgreSQL"),
    )
}

/// Run the store test `$name(store: Store)` twice: `$name::sqlite` on a SQLite file and
/// `$name::postgres` on a PostgreSQL database.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (_dir, store) = super::fresh().await;
                super::$name(store).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(store) = super::fresh_pg().await {
                    super::$name(store).await
                }
            }
        }
    };
}
pub(super) use on_both;

fn event(action: &str, before: &str, after: &str) -> AuditEvent {
    AuditEvent {
        at_ms: 1_000,
        actor: "rollgate".into(),
        action: action.into(),
        reason: format!("because {action}"),
        state_before: before.into(),
        state_after: after.into(),
        progress: json!({"updated": 1, "total": 4}),
    }
}

fn commit<'a>(checkpoint: &'a str, state: &'a str, events: &'a [AuditEvent]) -> Commit<'a> {
    Commit {
        epoch: None,
        checkpoint,
        state,
        finished: false,
        events,
        measurements: &[],
        step_intents: &[],
        outbox: &[],
        consumed_actions: &[],
        spec: None,
    }
}

fn measurement(metric: &str, index: i64, verdict: &str, retention: i64) -> MeasurementRow {
    MeasurementRow {
        phase_index: 0,
        metric: metric.into(),
        index,
        at_ms: index * 10,
        verdict: verdict.into(),
        value: Some(index as f64 / 2.0),
        message: String::new(),
        details: "{}".into(),
        retention,
    }
}

async fn create(store: &Store, name: &str) -> RolloutRow {
    store
        .create_rollout(
            name,
            r#"{"spec":1}"#,
            r#"{"cp":0}"#,
            "pending",
            &event("create", "", "pending"),
            500,
        )
        .await
        .expect("create")
}

on_both!(create_and_commit_round_trip);
async fn create_and_commit_round_trip(store: Store) {
    let row = create(&store, "web").await;
    assert_eq!(
        (row.name.as_str(), row.run, row.generation, row.finished),
        ("web", 1, 1, false)
    );
    assert_eq!((row.created_ms, row.updated_ms), (500, 500));
    assert_eq!(store.get(row.id).await.unwrap(), Some(row.clone()));

    let events = [event("start", "pending", "progressing")];
    let g = store
        .commit(
            row.id,
            1,
            commit(r#"{"cp":1}"#, "progressing", &events),
            700,
        )
        .await
        .unwrap();
    assert_eq!(g, 2);
    let got = store.get(row.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.checkpoint.as_str(),
            got.state.as_str(),
            got.generation,
            got.updated_ms
        ),
        (r#"{"cp":1}"#, "progressing", 2, 700)
    );
    assert_eq!(store.unfinished().await.unwrap(), vec![got.clone()]);

    let done = Commit {
        epoch: None,
        finished: true,
        ..commit(r#"{"cp":2}"#, "promoted", &[])
    };
    assert_eq!(store.commit(row.id, 2, done, 800).await.unwrap(), 3);
    assert!(store.unfinished().await.unwrap().is_empty());
    assert!(store.get(row.id).await.unwrap().unwrap().finished);
    assert_eq!(store.get(row.id + 100).await.unwrap(), None);
    let audit = store.audit(row.id).await.unwrap();
    assert_eq!(audit[1].event, events[0]);
}

on_both!(generation_conflict_writes_nothing);
async fn generation_conflict_writes_nothing(store: Store) {
    let row = create(&store, "web").await;
    let action = store
        .request_action(row.id, "promote", "alice", "looks good", 600)
        .await
        .unwrap();
    store
        .commit(row.id, 1, commit("{}", "progressing", &[]), 700)
        .await
        .unwrap();

    let events = [event("stale", "progressing", "paused")];
    let measurements = [measurement("errors", 0, "fail", 10)];
    let intents = [("s1".to_string(), "{}".to_string())];
    let stale = Commit {
        epoch: None,
        checkpoint: r#"{"stale":true}"#,
        state: "paused",
        finished: true,
        events: &events,
        measurements: &measurements,
        step_intents: &intents,
        outbox: &[],
        consumed_actions: &[action],
        spec: None,
    };
    let before = store.get(row.id).await.unwrap();
    match store.commit(row.id, 1, stale, 900).await {
        Err(StoreError::Conflict {
            rollout,
            expected,
            found,
        }) => assert_eq!((rollout.as_str(), expected, found), ("web", 1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(row.id).await.unwrap(), before);
    assert_eq!(store.audit(row.id).await.unwrap().len(), 1);
    assert!(store.measurements(row.id).await.unwrap().is_empty());
    assert!(store.steps(row.id).await.unwrap().is_empty());
    assert_eq!(store.pending_actions(row.id).await.unwrap().len(), 1);

    // A later failure inside the transaction (unknown action) rolls back the bump too.
    let bad = Commit {
        epoch: None,
        events: &events,
        consumed_actions: &[action + 99],
        ..commit("{}", "paused", &[])
    };
    assert!(matches!(
        store.commit(row.id, 2, bad, 900).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get(row.id).await.unwrap(), before);
    assert_eq!(store.audit(row.id).await.unwrap().len(), 1);

    assert!(matches!(
        store.commit(row.id + 7, 1, commit("{}", "x", &[]), 1).await,
        Err(StoreError::NotFound(_))
    ));
}

on_both!(audit_seq_is_gapless_per_rollout);
async fn audit_seq_is_gapless_per_rollout(store: Store) {
    let a = create(&store, "a").await;
    let b = create(&store, "b").await;
    // (rollout, events in this commit)
    let plan: &[(i64, usize)] = &[(a.id, 2), (b.id, 1), (a.id, 0), (a.id, 3), (b.id, 2)];
    let mut generation = BTreeMap::from([(a.id, 1), (b.id, 1)]);
    for &(id, n) in plan {
        let events: Vec<_> = (0..n).map(|i| event(&format!("e{i}"), "x", "y")).collect();
        let g = generation[&id];
        let next = store
            .commit(id, g, commit("{}", "progressing", &events), 1)
            .await
            .unwrap();
        generation.insert(id, next);
    }
    for (id, expected) in [(a.id, 6), (b.id, 4)] {
        let seqs: Vec<i64> = store
            .audit(id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=expected).collect::<Vec<_>>(), "rollout {id}");
    }
    assert_eq!(store.audit(a.id).await.unwrap()[0].event.action, "create");
}

on_both!(measurements_keep_failures_and_last_n_others);
async fn measurements_keep_failures_and_last_n_others(store: Store) {
    let row = create(&store, "web").await;
    // index → verdict; retention 2 for "latency", 1 for "errors".
    let verdicts = [
        "pass",
        "fail",
        "pass",
        "error",
        "inconclusive",
        "pass",
        "no-data",
    ];
    let mut generation = 1;
    for (i, v) in verdicts.iter().enumerate() {
        let batch = [
            measurement("latency", i as i64, v, 2),
            measurement("errors", i as i64, "pass", 1),
        ];
        let c = Commit {
            epoch: None,
            measurements: &batch,
            ..commit("{}", "progressing", &[])
        };
        generation = store.commit(row.id, generation, c, 1).await.unwrap();
    }
    let background = MeasurementRow {
        phase_index: -1,
        ..measurement("latency", 0, "pass", 0)
    };
    let c = Commit {
        epoch: None,
        measurements: std::slice::from_ref(&background),
        ..commit("{}", "progressing", &[])
    };
    store.commit(row.id, generation, c, 1).await.unwrap();

    let kept: Vec<(i64, String, i64, String)> = store
        .measurements(row.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.phase_index, m.metric, m.index, m.verdict))
        .collect();
    let expected: Vec<(i64, String, i64, String)> = [
        (0, "latency", 1, "fail"),
        (0, "latency", 3, "error"),
        (0, "latency", 5, "pass"),
        (0, "latency", 6, "no-data"),
        (0, "errors", 6, "pass"),
        // retention 0 keeps no non-failure; a background row is its own key.
    ]
    .into_iter()
    .map(|(p, m, i, v)| (p, m.to_string(), i, v.to_string()))
    .collect();
    assert_eq!(kept, expected);
    let all = store.measurements(row.id).await.unwrap();
    assert_eq!(all[2].value, Some(2.5));
}

on_both!(step_intents_never_downgrade);
async fn step_intents_never_downgrade(store: Store) {
    let row = create(&store, "web").await;
    let intents = [
        ("scale-10".to_string(), r#"{"weight":10}"#.to_string()),
        ("scale-50".to_string(), r#"{"weight":50}"#.to_string()),
    ];
    let c = Commit {
        epoch: None,
        step_intents: &intents,
        ..commit("{}", "progressing", &[])
    };
    let g = store.commit(row.id, 1, c, 10).await.unwrap();
    store
        .step_done(row.id, "scale-10", StepStatus::Applied, "ok", 20, None)
        .await
        .unwrap();
    store
        .step_done(row.id, "scale-50", StepStatus::Failed, "boom", 25, None)
        .await
        .unwrap();

    // The same intents again (a resumed runner) plus a new one.
    let again = [
        intents[0].clone(),
        ("scale-100".to_string(), r#"{"weight":100}"#.to_string()),
        intents[1].clone(),
    ];
    let c = Commit {
        epoch: None,
        step_intents: &again,
        ..commit("{}", "progressing", &[])
    };
    store.commit(row.id, g, c, 30).await.unwrap();

    let got: Vec<(String, StepStatus, Option<String>, i64)> = store
        .steps(row.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.step_id, s.status, s.result, s.updated_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "scale-10".into(),
                StepStatus::Applied,
                Some("ok".into()),
                20
            ),
            (
                "scale-50".into(),
                StepStatus::Failed,
                Some("boom".into()),
                25
            ),
            ("scale-100".into(), StepStatus::Intent, None, 30),
        ]
    );
    assert!(matches!(
        store
            .step_done(row.id, "nope", StepStatus::Applied, "", 1, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn step_status_words() {
    for (status, word) in [
        (StepStatus::Intent, "intent"),
        (StepStatus::Applied, "applied"),
        (StepStatus::Failed, "failed"),
    ] {
        assert_eq!(status.as_str(), word);
        assert_eq!(word.parse::<StepStatus>().unwrap(), status);
        assert_eq!(serde_json::to_value(status).unwrap(), json!(word));
    }
    assert!("done".parse::<StepStatus>().is_err());
}

on_both!(consumed_actions_leave_pending);
async fn consumed_actions_leave_pending(store: Store) {
    let row = create(&store, "web").await;
    let api = create(&store, "api").await;
    let mut ids = Vec::new();
    for (rollout, action) in [(row.id, "pause"), (row.id, "promote"), (api.id, "abort")] {
        ids.push(
            store
                .request_action(rollout, action, "bob", "ops", 42)
                .await
                .unwrap(),
        );
    }
    let pending = store.pending_actions(row.id).await.unwrap();
    assert_eq!(
        pending[0],
        ActionRequest {
            id: ids[0],
            rollout_id: row.id,
            rollout: "web".into(),
            action: "pause".into(),
            actor: "bob".into(),
            reason: "ops".into(),
            at_ms: 42
        }
    );
    assert_eq!(pending.len(), 2);

    let c = Commit {
        epoch: None,
        consumed_actions: &ids[..1],
        ..commit("{}", "paused", &[])
    };
    let g = store.commit(row.id, 1, c, 50).await.unwrap();
    let left: Vec<i64> = store
        .pending_actions(row.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(left, vec![ids[1]]);
    // Consuming an already consumed action again is harmless.
    let c = Commit {
        epoch: None,
        consumed_actions: &ids[..2],
        ..commit("{}", "progressing", &[])
    };
    let g = store.commit(row.id, g, c, 60).await.unwrap();
    assert!(store.pending_actions(row.id).await.unwrap().is_empty());
    assert_eq!(store.pending_actions(api.id).await.unwrap().len(), 1);

    // Another run's request is refused, and the commit writes nothing.
    let c = Commit {
        epoch: None,
        consumed_actions: &ids[2..],
        ..commit("{}", "aborted", &[])
    };
    assert!(
        matches!(store.commit(row.id, g, c, 70).await, Err(StoreError::Db(m)) if m.contains("is for rollout row"))
    );
    assert_eq!(store.pending_actions(api.id).await.unwrap().len(), 1);
    assert_eq!(store.get(row.id).await.unwrap().unwrap().generation, g);
}

on_both!(requests_belong_to_one_run);
/// A request names one run: the next run of the same name does not inherit it, and a
/// request for a run that does not exist is refused.
async fn requests_belong_to_one_run(store: Store) {
    let first = create(&store, "web").await;
    store
        .request_action(first.id, "rollback", "erin", "", 5)
        .await
        .unwrap();
    let second = create(&store, "web").await;
    assert_eq!(second.run, first.run + 1);
    assert!(store.pending_actions(second.id).await.unwrap().is_empty());
    assert_eq!(store.pending_actions(first.id).await.unwrap().len(), 1);
    assert!(matches!(
        store
            .request_action(second.id + 100, "pause", "erin", "", 6)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn reopened_store_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.db");
    let (row, audit, measurements, steps, pending) = {
        let store = Store::open(&path).await.unwrap();
        let row = create(&store, "web").await;
        store
            .request_action(row.id, "promote", "carol", "", 1)
            .await
            .unwrap();
        let events = [event("start", "pending", "progressing")];
        let ms = [measurement("errors", 0, "pass", 5)];
        let intents = [("s".to_string(), "{}".to_string())];
        let c = Commit {
            epoch: None,
            measurements: &ms,
            step_intents: &intents,
            ..commit(r#"{"cp":1}"#, "progressing", &events)
        };
        store.commit(row.id, 1, c, 2).await.unwrap();
        store
            .step_done(row.id, "s", StepStatus::Applied, "done", 3, None)
            .await
            .unwrap();
        (
            store.get(row.id).await.unwrap().unwrap(),
            store.audit(row.id).await.unwrap(),
            store.measurements(row.id).await.unwrap(),
            store.steps(row.id).await.unwrap(),
            store.pending_actions(row.id).await.unwrap(),
        )
    };
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.latest("web").await.unwrap(), Some(row.clone()));
    assert_eq!(store.list().await.unwrap(), vec![row.clone()]);
    assert_eq!(store.audit(row.id).await.unwrap(), audit);
    assert_eq!(audit.len(), 2);
    assert_eq!(store.measurements(row.id).await.unwrap(), measurements);
    assert_eq!(store.steps(row.id).await.unwrap(), steps);
    assert_eq!(store.pending_actions(row.id).await.unwrap(), pending);
    assert_eq!(store.location(), &Location::File(path.clone()));
}

#[tokio::test]
async fn two_handles_write_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.db");
    let runner = Store::open(&path).await.unwrap();
    let cli = Store::open(&path).await.unwrap();
    let row = create(&runner, "web").await;
    const ROUNDS: i64 = 60;

    let committing = tokio::spawn({
        let runner = runner.clone();
        async move {
            let mut g = 1;
            for i in 0..ROUNDS {
                let events = [event("tick", "progressing", "progressing")];
                let ms = [measurement("errors", i, "pass", 3)];
                let c = Commit {
                    epoch: None,
                    measurements: &ms,
                    ..commit("{}", "progressing", &events)
                };
                g = runner.commit(row.id, g, c, i).await?;
            }
            Ok::<i64, StoreError>(g)
        }
    });
    let requesting = tokio::spawn(async move {
        for i in 0..ROUNDS {
            cli.request_action(row.id, "pause", "dave", "", i).await?;
        }
        Ok::<(), StoreError>(())
    });
    let (g, r) = tokio::join!(committing, requesting);
    assert_eq!(g.unwrap().unwrap(), ROUNDS + 1);
    r.unwrap().unwrap();
    assert_eq!(
        runner.pending_actions(row.id).await.unwrap().len(),
        ROUNDS as usize
    );
    assert_eq!(
        runner.audit(row.id).await.unwrap().len(),
        ROUNDS as usize + 1
    );
    assert_eq!(runner.measurements(row.id).await.unwrap().len(), 3);
}

on_both!(runs_are_numbered_per_name);
async fn runs_are_numbered_per_name(store: Store) {
    let mut runs = Vec::new();
    for name in ["web", "api", "web", "web", "api"] {
        let row = create(&store, name).await;
        runs.push((row.name, row.run));
    }
    let expected: Vec<(String, i64)> = [("web", 1), ("api", 1), ("web", 2), ("web", 3), ("api", 2)]
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
    assert_eq!(runs, expected);
    assert_eq!(store.latest("web").await.unwrap().unwrap().run, 3);
    assert_eq!(store.latest("api").await.unwrap().unwrap().run, 2);
    assert_eq!(store.latest("db").await.unwrap(), None);
    // Each run has its own audit log starting at 1.
    for row in store.list().await.unwrap() {
        assert_eq!(store.audit(row.id).await.unwrap()[0].seq, 1);
    }
}

#[tokio::test]
async fn unopenable_paths_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let cases = [
        dir.path().to_path_buf(),
        file.join("rollgate.db"),
        dir.path().join("missing").join("rollgate.db"),
    ];
    for path in cases {
        match Store::open(&path).await {
            Err(e @ StoreError::Open { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains("check the path"), "{text}");
            }
            other => panic!("{}: expected Open, got {other:?}", path.display()),
        }
    }
}

#[tokio::test]
async fn a_store_from_a_newer_rollgate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.db");
    let store = Store::open(&path).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (9999, 'future', 1, x'00', 0)",
    )
    .execute(store.pool.sqlite())
    .await
    .unwrap();
    store.pool.close().await;
    match Store::open(&path).await {
        Err(StoreError::Migrate(m)) => {
            assert!(m.contains("migration 9999 unknown"), "{m}");
            assert!(m.contains("upgrade rollgate"), "{m}");
        }
        other => panic!("expected Migrate, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_are_durable_and_patient() {
    let (_dir, store) = fresh().await;
    // (pragma, expected value): WAL, synchronous=FULL (2), foreign keys on, 5 s busy timeout.
    let cases = [
        ("journal_mode", "wal"),
        ("synchronous", "2"),
        ("foreign_keys", "1"),
        ("busy_timeout", "5000"),
    ];
    for (pragma, expected) in cases {
        let row = sqlx::query(&format!("PRAGMA {pragma}"))
            .fetch_one(store.pool.sqlite())
            .await
            .unwrap();
        let got: String = match row.try_get::<String, _>(0) {
            Ok(s) => s,
            Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
        };
        assert_eq!(got, expected, "PRAGMA {pragma}");
    }
}

/// The committer's own connection (the SQLite writer thread) has the pools' settings —
/// `synchronous` as the store was opened — and never creates a file.
#[tokio::test]
async fn the_committers_connection_is_durable_and_patient() {
    let (dir, _store) = fresh().await;
    for (full_sync, synchronous) in [(true, 2_i64), (false, 1)] {
        let options = group::DirectOptions {
            path: dir.path().join("rollgate.db"),
            full_sync,
            busy_timeout: BUSY_TIMEOUT,
        };
        let conn = group::open_direct(&options).expect("open the committer's connection");
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, String>(0)
                    .or_else(|_| row.get::<_, i64>(0).map(|v| v.to_string()))
            })
            .expect("pragma")
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), synchronous.to_string());
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("busy_timeout"), "5000");
    }
    let missing = group::DirectOptions {
        path: dir.path().join("missing.db"),
        full_sync: true,
        busy_timeout: BUSY_TIMEOUT,
    };
    let err = group::open_direct(&missing).expect_err("a missing file is not created");
    assert!(err.to_string().contains("missing.db"), "{err}");
    assert!(!dir.path().join("missing.db").exists());
}

/// The committer's connection reads what the commit path reads with the pools' types and
/// the pools' error mapping: a created run's row, a unique violation as
/// [`StoreError::Duplicate`], and a row type it does not read named instead of guessed.
#[tokio::test]
async fn the_committers_connection_reads_and_fails_as_the_pools_do() {
    use super::db::{Writer, query, query_as};
    let (dir, store) = fresh().await;
    let options = group::DirectOptions {
        path: dir.path().join("rollgate.db"),
        full_sync: true,
        busy_timeout: BUSY_TIMEOUT,
    };
    let mut writer = Writer::Direct(group::open_direct(&options).expect("open"));
    let mut tx = writer.begin().await.expect("begin");
    let created: RolloutRow = query_as(|s| s.create_rollout)
        .bind("checkout")
        .bind("{}")
        .bind("{\"cp\":1}")
        .bind("Pending")
        .bind(5_i64)
        .bind(5_i64)
        .bind("checkout")
        .fetch_one(&mut tx)
        .await
        .expect("create on the committer's connection");
    assert_eq!(created.run, 1);
    let measurements: Result<Vec<MeasurementRow>, _> = query_as(|s| s.measurements)
        .bind(created.id)
        .fetch_all(&mut tx)
        .await;
    let err = measurements.expect_err("not read by the committer");
    assert!(err.to_string().contains("MeasurementRow"), "{err}");
    tx.commit().await.expect("commit");
    // Committed: the pools see it.
    let row = store
        .get(created.id)
        .await
        .expect("read back")
        .expect("the created run");
    assert_eq!(row.checkpoint, "{\"cp\":1}");
    assert!(!row.finished);
    assert_eq!(row.generation, created.generation);

    // A duplicate (name, run) is the pools' Duplicate; a transaction dropped uncommitted
    // leaves nothing.
    let mut tx = writer.begin().await.expect("begin");
    let dup = query(|_| {
        "INSERT INTO rollouts (name, run, spec, checkpoint, state, finished, generation, \
         created_ms, updated_ms) VALUES (?, ?, '{}', '{}', 'Pending', 0, 1, 0, 0)"
    })
    .bind("checkout")
    .bind(1_i64)
    .execute(&mut tx)
    .await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    drop(tx);
    let mut tx = writer
        .begin()
        .await
        .expect("the connection is usable after a rollback");
    query(|s| s.replace_spec)
        .bind("{\"changed\":true}")
        .bind(created.id)
        .execute(&mut tx)
        .await
        .expect("write");
    drop(tx);
    let row = store.get(created.id).await.expect("read").expect("the run");
    assert_eq!(row.spec, "{}");
}

on_both!(a_successor_is_created_with_the_last_commit_or_not_at_all);
/// A run that follows another (a reversal) is created with that run's last commit, in one
/// transaction: both or neither; and never after a run someone else created meanwhile.
async fn a_successor_is_created_with_the_last_commit_or_not_at_all(store: Store) {
    let row = create(&store, "web").await;
    let created = event("rollback", "rolled-back", "pending");
    let successor = NewRow {
        name: "web",
        spec: r#"{"spec":2}"#,
        checkpoint: r#"{"cp":"reversal"}"#,
        state: "pending",
        event: &created,
        after: 1,
    };
    let last = [event("rollback", "progressing", "rolled-back")];
    let done = Commit {
        epoch: None,
        finished: true,
        ..commit(r#"{"cp":"done"}"#, "rolled-back", &last)
    };
    // A stale generation: neither the commit nor the successor lands.
    assert!(matches!(
        store
            .commit_with_successor(row.id, 7, done, successor, 900)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.runs("web").await.unwrap().len(), 1);
    // The latest run is not the one named: nothing lands either, the commit included.
    let wrong = NewRow {
        after: 5,
        ..successor
    };
    match store
        .commit_with_successor(row.id, 1, done, wrong, 900)
        .await
    {
        Err(StoreError::RunTaken {
            rollout,
            run,
            latest,
        }) => assert_eq!((rollout.as_str(), run, latest), ("web", 6, 1)),
        other => panic!("expected run-taken, got {other:?}"),
    }
    assert_eq!(store.get(row.id).await.unwrap(), Some(row.clone()));
    assert_eq!(store.runs("web").await.unwrap().len(), 1);

    let (generation, next) = store
        .commit_with_successor(row.id, 1, done, successor, 900)
        .await
        .unwrap();
    assert_eq!(
        (generation, next.run, next.state.as_str()),
        (2, 2, "pending")
    );
    let first = store.get(row.id).await.unwrap().unwrap();
    assert!(first.finished);
    assert_eq!(store.audit(next.id).await.unwrap()[0].event, created);
    // The same successor again (a second runner, a retried request): refused.
    assert!(matches!(
        store.create_after(successor, 950).await,
        Err(StoreError::RunTaken { latest: 2, .. })
    ));
    let third = store
        .create_after(
            NewRow {
                after: 2,
                ..successor
            },
            950,
        )
        .await
        .unwrap();
    assert_eq!(third.run, 3);
    assert_eq!(store.runs("web").await.unwrap().len(), 3);
}

fn new_runner(command: &str) -> NewRunner<'_> {
    NewRunner {
        host: "build-3",
        pid: 4242,
        command,
        version: "0.1.0",
        period_ms: 5_000,
    }
}

on_both!(runners_register_beat_claim_and_stop);
async fn runners_register_beat_claim_and_stop(store: Store) {
    assert!(store.tracks_runners().await.unwrap());
    let web = create(&store, "web").await;
    let api = create(&store, "api").await;
    assert_eq!(store.runner_of(web.id).await.unwrap(), None, "no claim yet");

    let first = store
        .register_runner(new_runner("run"), 1_000)
        .await
        .unwrap();
    assert_eq!(
        (first.host.as_str(), first.pid, first.command.as_str()),
        ("build-3", 4242, "run")
    );
    assert_eq!((first.started_ms, first.heartbeat_ms), (1_000, 1_000));
    assert_eq!((first.period_ms, first.stopped_ms), (5_000, None));

    store
        .claim_run(web.id, first.id, 60_000)
        .await
        .unwrap()
        .expect("free");
    store
        .claim_run(api.id, first.id, 60_000)
        .await
        .unwrap()
        .expect("free");
    store.heartbeat(first.id, 6_000).await.unwrap();
    let seen = store.runner_of(web.id).await.unwrap().expect("claimed");
    assert_eq!(seen.heartbeat_ms, 6_000);
    assert_eq!(seen.id, first.id);
    // A claim is not a transition: the checkpoint's generation and time stay.
    assert_eq!(store.get(web.id).await.unwrap(), Some(web.clone()));

    // A second runner takes over one run; a release by the first leaves that claim alone.
    let second = store
        .register_runner(new_runner("serve"), 7_000)
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert!(
        store
            .claim_run(api.id, second.id, 60_000)
            .await
            .unwrap()
            .is_none(),
        "first holds a live lease"
    );
    store
        .take_run(api.id, second.id, 60_000)
        .await
        .unwrap()
        .expect("taken");
    store.release_run(api.id, first.id).await.unwrap();
    assert_eq!(
        store.runner_of(api.id).await.unwrap().map(|r| r.id),
        Some(second.id)
    );
    store.release_run(web.id, first.id).await.unwrap();
    assert_eq!(store.runner_of(web.id).await.unwrap(), None);

    // Only unfinished runs are listed with their runner.
    store
        .claim_run(web.id, first.id, 60_000)
        .await
        .unwrap()
        .expect("free");
    let drivers = store.drivers().await.unwrap();
    assert_eq!(
        drivers
            .iter()
            .map(|(id, r)| (*id, r.id))
            .collect::<Vec<_>>(),
        vec![(web.id, first.id), (api.id, second.id)]
    );
    let events = [event("succeed", "progressing", "succeeded")];
    let done = Commit {
        epoch: None,
        finished: true,
        ..commit("{}", "succeeded", &events)
    };
    store.commit(web.id, 1, done, 8_000).await.unwrap();
    assert_eq!(
        store
            .drivers()
            .await
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![api.id]
    );

    // A clean stop: recorded, and a stopped runner beats no more.
    store.runner_stopped(second.id, 9_000).await.unwrap();
    let stopped = store
        .runner_of(api.id)
        .await
        .unwrap()
        .expect("still claimed");
    assert_eq!(
        (stopped.heartbeat_ms, stopped.stopped_ms),
        (9_000, Some(9_000))
    );
    assert!(matches!(
        store.heartbeat(second.id, 10_000).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.heartbeat(second.id + 100, 10_000).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .claim_run(api.id + 100, first.id, 60_000)
            .await
            .unwrap(),
        None,
        "no such run"
    );
}

/// A store as the rollgate before runners made it: only the first migration applied.
async fn store_before_runners(path: &Path) {
    let migrations = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/0001_store.sql"),
        migrations.path().join("0001_store.sql"),
    )
    .unwrap();
    let old = Store::connect(path, Mode::Create(SqliteSynchronous::Full))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(old.pool.sqlite())
        .await
        .unwrap();
    create(&old, "web").await;
    old.pool.close().await;
}

#[tokio::test]
async fn a_store_from_before_runners_reads_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.db");
    store_before_runners(&path).await;

    // A reader does not migrate: the store reads as it is, without runners.
    let reader = Store::open_existing(&path).await.unwrap();
    assert!(!reader.tracks_runners().await.unwrap());
    let row = reader.latest("web").await.unwrap().expect("the old row");
    assert_eq!(reader.runner_of(row.id).await.unwrap(), None);
    assert!(reader.drivers().await.unwrap().is_empty());

    // A runner migrates it: the old run is there, claimed by no one until a runner drives it.
    let store = Store::open(&path).await.unwrap();
    assert!(store.tracks_runners().await.unwrap());
    assert_eq!(store.latest("web").await.unwrap(), Some(row.clone()));
    assert_eq!(store.runner_of(row.id).await.unwrap(), None);
    let runner = store.register_runner(new_runner("run"), 5).await.unwrap();
    store
        .claim_run(row.id, runner.id, 60_000)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(reader.runner_of(row.id).await.unwrap(), Some(runner));
}

on_both!(leases_are_claimed_once_renewed_released_and_fence_commits);
async fn leases_are_claimed_once_renewed_released_and_fence_commits(store: Store) {
    let a = store.register_runner(new_runner("serve"), 1).await.unwrap();
    let b = store.register_runner(new_runner("serve"), 1).await.unwrap();
    let runs = [
        create(&store, "r1").await,
        create(&store, "r2").await,
        create(&store, "r3").await,
    ];
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();

    // A claims two, oldest first, each at epoch 1; B gets the one left; nothing is left.
    let now = store.db_now_ms().await.unwrap();
    let got_a = store.claim_free(a.id, 2, 60_000).await.unwrap();
    assert_eq!(
        got_a
            .iter()
            .map(|l| (l.rollout_id, l.epoch))
            .collect::<Vec<_>>(),
        vec![(ids[0], 1), (ids[1], 1)]
    );
    assert!(
        got_a
            .iter()
            .all(|l| l.expires_ms >= now + 60_000 && l.expires_ms < now + 70_000)
    );
    let got_b = store.claim_free(b.id, 10, 60_000).await.unwrap();
    assert_eq!(
        got_b.iter().map(|l| l.rollout_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert!(store.claim_free(b.id, 10, 60_000).await.unwrap().is_empty());
    assert_eq!(store.claim_run(ids[0], b.id, 60_000).await.unwrap(), None);
    assert_eq!(
        store
            .leases_held()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(a.id, 2), (b.id, 1)]
    );
    // A claim is not a transition.
    assert_eq!(store.get(ids[0]).await.unwrap(), Some(runs[0].clone()));

    // The holder commits under its epoch; a claim of its own live lease takes the next
    // epoch (a driver started again is told apart from the one before it).
    let events = [event("note", "progressing", "progressing")];
    let g = store
        .commit(
            ids[0],
            1,
            Commit {
                epoch: Some(1),
                ..commit("{}", "progressing", &events)
            },
            5,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_run(ids[0], a.id, 60_000)
            .await
            .unwrap()
            .map(|l| l.epoch),
        Some(2)
    );

    // Renewal extends every lease A holds, in one statement.
    let renewed = store.renew_leases(a.id, 120_000).await.unwrap();
    assert_eq!(
        renewed.iter().map(|l| l.rollout_id).collect::<Vec<_>>(),
        vec![ids[0], ids[1]]
    );
    assert!(renewed.iter().all(|l| l.expires_ms >= now + 120_000));

    // A lease that expired is claimed by B with the next epoch; A is fenced from then on,
    // for commits and step outcomes alike, and its renewal no longer returns the run.
    store.expire_leases(a.id).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let taken = loop {
        let got = store.claim_free(b.id, 10, 60_000).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired leases never became free"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(
        taken
            .iter()
            .map(|l| (l.rollout_id, l.epoch))
            .collect::<Vec<_>>(),
        vec![(ids[0], 3), (ids[1], 2)]
    );
    let stale = Commit {
        epoch: Some(1),
        ..commit("{}", "progressing", &events)
    };
    match store.commit(ids[0], g, stale, 6).await {
        Err(StoreError::Fenced {
            rollout,
            epoch: 1,
            holder: 3,
        }) => assert_eq!(rollout, "r1"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(
        store.audit(ids[0]).await.unwrap().len(),
        2,
        "the fenced commit wrote nothing"
    );
    let intents = [("s1".to_string(), "{}".to_string())];
    let with_step = Commit {
        epoch: Some(3),
        step_intents: &intents,
        ..commit("{}", "progressing", &events)
    };
    store.commit(ids[0], g, with_step, 7).await.unwrap();
    assert!(matches!(
        store
            .step_done(ids[0], "s1", StepStatus::Applied, "ok", 8, Some(1))
            .await,
        Err(StoreError::Fenced {
            epoch: 1,
            holder: 3,
            ..
        })
    ));
    assert_eq!(
        store.steps(ids[0]).await.unwrap()[0].status,
        StepStatus::Intent
    );
    store
        .step_done(ids[0], "s1", StepStatus::Applied, "ok", 8, Some(3))
        .await
        .unwrap();
    assert!(store.renew_leases(a.id, 60_000).await.unwrap().is_empty());

    // A clean stop frees B's leases at once; A claims them with the next epoch.
    store.release_leases(b.id, None).await.unwrap();
    assert!(store.leases_held().await.unwrap().is_empty());
    let back = store.claim_free(a.id, 10, 60_000).await.unwrap();
    assert_eq!(
        back.iter()
            .map(|l| (l.rollout_id, l.epoch))
            .collect::<Vec<_>>(),
        vec![(ids[0], 4), (ids[1], 3), (ids[2], 2)]
    );
    store
        .release_leases(a.id, Some(&[(ids[2], 1)]))
        .await
        .unwrap();
    assert!(
        store.lease_of(ids[2]).await.unwrap().expect("row").live(),
        "a release under an older epoch frees nothing"
    );
    store
        .release_leases(a.id, Some(&[(ids[2], 2)]))
        .await
        .unwrap();
    let lease = store.lease_of(ids[2]).await.unwrap().expect("row");
    assert!(!lease.live());
    assert_eq!(
        (lease.runner, lease.epoch),
        (Some(a.id), 2),
        "the last holder stays recorded"
    );
}

#[test]
fn database_urls_never_show_their_password() {
    assert_eq!(
        redact_url("postgres://rg:s3cr3t@db.example:5432/rollgate?sslmode=require"),
        "postgres://rg:***@db.example:5432/rollgate?sslmode=require"
    );
    assert_eq!(
        redact_url("postgresql://rg@db/x?password=s3cr3t&application_name=a"),
        "postgresql://rg@db/x?password=***&application_name=a"
    );
    assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    // A password holding '@' or '/' (percent-encoded or not) is cut at the last '@'.
    let odd = redact_url("postgres://rg:p@ss/w@db:1/x");
    assert!(!odd.contains("p@ss") && !odd.contains("ss/w"), "{odd}");
    assert_eq!(redact_url("not a url"), "<database URL>");
    assert_eq!(
        Location::parse("postgres://rg:pw@h/d").to_string(),
        "postgres://rg:***@h/d"
    );
    assert_eq!(
        Location::parse("sqlite:///var/lib/r.db"),
        Location::File("/var/lib/r.db".into())
    );
    assert_eq!(Location::parse("r.db"), Location::File("r.db".into()));
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    // A port nothing listens on: bind one, read it, drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://rg:hunter2secret@127.0.0.1:{port}/rollgate");
    match Store::open_postgres(&url, true).await {
        Err(e @ StoreError::Open { .. }) => {
            let text = e.to_string();
            assert!(!text.contains("hunter2secret"), "{text}");
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        }
        other => panic!("expected Open, got {other:?}"),
    }
    match Store::open_postgres("postgres://rg:hunter2secret@[::1", true).await {
        Err(e) => assert!(!e.to_string().contains("hunter2secret"), "{e}"),
        Ok(_) => panic!("a malformed URL opened"),
    }
}

#[tokio::test]
async fn concurrent_claimers_on_postgres_take_disjoint_runs() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(create(&store, &format!("r{i}")).await.id);
    }
    let mut runners = Vec::new();
    for _ in 0..4 {
        runners.push(
            store
                .register_runner(new_runner("serve"), 1)
                .await
                .unwrap()
                .id,
        );
    }
    // Four claimers at once, each wanting 15: every run is claimed by exactly one, none
    // waits for another's locks, and together they take all 40.
    let claims = futures::future::join_all(runners.iter().map(|&r| {
        let store = store.clone();
        async move { store.claim_free(r, 15, 60_000).await.unwrap() }
    }))
    .await;
    let mut seen: Vec<i64> = claims.iter().flatten().map(|l| l.rollout_id).collect();
    assert!(claims.iter().all(|c| c.len() <= 15));
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "a run was claimed twice");
    // Whatever the first round left (skipped while locked) is claimed by the next.
    let rest = store.claim_free(runners[0], 100, 60_000).await.unwrap();
    seen.extend(rest.iter().map(|l| l.rollout_id));
    seen.sort_unstable();
    assert_eq!(seen, ids);
    let held: i64 = store.leases_held().await.unwrap().values().sum();
    assert_eq!(held, 40);
}

#[tokio::test]
async fn postgres_tells_listeners_of_actions_and_commits_when_they_commit() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let mut listener = store.listen().await.unwrap().expect("PostgreSQL listens");
    let row = create(&store, "web").await;
    assert_eq!(
        tokio::time::timeout(std::time::Duration::from_secs(10), listener.next())
            .await
            .unwrap(),
        Notice::Event(row.id, 1)
    );
    let id = store
        .request_action(row.id, "pause", "ops", "look", 5)
        .await
        .unwrap();
    assert!(id > 0);
    let within = std::time::Duration::from_secs(10);
    assert_eq!(
        tokio::time::timeout(within, listener.next()).await.unwrap(),
        Notice::Action(row.id)
    );
    let events = [event("note", "progressing", "progressing")];
    store
        .commit(row.id, 1, commit("{}", "progressing", &events), 6)
        .await
        .unwrap();
    // The creation's event was seq 1 (its notice came before the action's).
    assert_eq!(
        tokio::time::timeout(within, listener.next()).await.unwrap(),
        Notice::Event(row.id, 2)
    );
    // A refused commit tells nobody: the next notice is the following action.
    assert!(
        store
            .commit(row.id, 1, commit("{}", "x", &events), 7)
            .await
            .is_err()
    );
    store
        .request_action(row.id, "resume", "ops", "ok", 8)
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(within, listener.next()).await.unwrap(),
        Notice::Action(row.id)
    );
    // A SQLite file has no notifications.
    let (_dir, file) = fresh().await;
    assert!(file.listen().await.unwrap().is_none());
}

on_both!(a_finished_run_is_claimed_only_by_name_and_unfinished_runs_are_counted);
async fn a_finished_run_is_claimed_only_by_name_and_unfinished_runs_are_counted(store: Store) {
    let a = store.register_runner(new_runner("serve"), 1).await.unwrap();
    let b = store.register_runner(new_runner("serve"), 1).await.unwrap();
    let done = create(&store, "done").await;
    let open = create(&store, "open").await;
    assert_eq!(store.unfinished_count().await.unwrap(), 2);
    let events = [event("succeed", "progressing", "aborted")];
    let finished = Commit {
        finished: true,
        ..commit("{}", "aborted", &events)
    };
    store.commit(done.id, 1, finished, 5).await.unwrap();
    assert_eq!(store.unfinished_count().await.unwrap(), 1);

    // claim_free never takes a finished run; a claim by id does (an operator reopens it),
    // with the next epoch, and then no one else can claim it while the lease lives.
    let free = store.claim_free(a.id, 10, 60_000).await.unwrap();
    assert_eq!(
        free.iter().map(|l| l.rollout_id).collect::<Vec<_>>(),
        vec![open.id]
    );
    let lease = store
        .claim_run(done.id, b.id, 60_000)
        .await
        .unwrap()
        .expect("a finished run is claimed by id");
    assert_eq!(lease.epoch, 1);
    assert_eq!(store.claim_run(done.id, a.id, 60_000).await.unwrap(), None);
    // Its lease is not renewed while it is finished (nothing drives a finished run).
    assert!(store.renew_leases(b.id, 60_000).await.unwrap().is_empty());
}

on_both!(two_runners_creating_the_same_run_at_once_create_it_once);
/// Two runners that load the same new rollout at once both try to create its run 1: one
/// does, the other is told the run was taken (on PostgreSQL through the unique key).
async fn two_runners_creating_the_same_run_at_once_create_it_once(store: Store) {
    let created = event("create", "", "pending");
    let row = NewRow {
        name: "web",
        spec: "{}",
        checkpoint: "{}",
        state: "pending",
        event: &created,
        after: 0,
    };
    let other = store.clone();
    let (a, b) = tokio::join!(store.create_after(row, 1), other.create_after(row, 1));
    let (ok, taken): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!((ok.len(), taken.len()), (1, 1), "{ok:?} {taken:?}");
    assert!(matches!(taken[0], Err(StoreError::RunTaken { run: 1, .. })));
    assert_eq!(store.runs("web").await.unwrap().len(), 1);
    assert_eq!(
        store.audit(ok[0].as_ref().unwrap().id).await.unwrap().len(),
        1
    );
}

on_both!(a_group_commit_fails_only_its_refused_commits);
/// Commits queued together are written in one transaction by the store's committer; each is
/// still checked alone: a stale generation, a stale lease epoch and a commit that fails
/// after writing (an unknown action) each fail with their own error, while every other
/// commit of the batch lands, once.
async fn a_group_commit_fails_only_its_refused_commits(store: Store) {
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(create(&store, &format!("g{i}")).await.id);
    }
    let runner = store
        .register_runner(new_runner("serve"), 1)
        .await
        .unwrap()
        .id;
    let leases = store.claim_free(runner, 100, 60_000).await.unwrap();
    let epoch: BTreeMap<i64, i64> = leases.iter().map(|l| (l.rollout_id, l.epoch)).collect();
    assert_eq!(epoch.len(), ids.len());
    let events = [event("measured", "progressing", "progressing")];
    let checkpoints: Vec<String> = (0..ids.len()).map(|i| format!(r#"{{"cp":{i}}}"#)).collect();
    let unknown_action = [999_999_i64];
    // All queued before the committer runs (one thread): one batch.
    let results = futures::future::join_all(ids.iter().enumerate().map(|(i, &id)| {
        let mut c = Commit {
            epoch: Some(epoch[&id]),
            ..commit(&checkpoints[i], "progressing", &events)
        };
        let mut expected = 1;
        match i {
            3 => expected = 7,
            5 => c.epoch = Some(epoch[&id] - 1),
            8 => c.consumed_actions = &unknown_action,
            _ => {}
        }
        store.commit(id, expected, c, 10)
    }))
    .await;
    for (i, (&id, result)) in ids.iter().zip(results).enumerate() {
        let row = store.get(id).await.unwrap().unwrap();
        let audit = store.audit(id).await.unwrap().len();
        match (i, result) {
            (
                3,
                Err(StoreError::Conflict {
                    expected: 7,
                    found: 1,
                    ..
                }),
            )
            | (5, Err(StoreError::Fenced { .. }))
            | (8, Err(StoreError::NotFound(_))) => {
                assert_eq!((row.generation, audit), (1, 1), "run {i} wrote nothing");
                assert_eq!(row.checkpoint, r#"{"cp":0}"#);
            }
            (3 | 5 | 8, other) => panic!("commit {i}: expected its own error, got {other:?}"),
            (_, Ok(2)) => {
                assert_eq!((row.generation, audit), (2, 2), "run {i} landed once");
                assert_eq!(row.checkpoint, checkpoints[i]);
            }
            (_, other) => panic!("commit {i}: expected generation 2, got {other:?}"),
        }
    }
}
