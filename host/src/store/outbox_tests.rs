//! Outbox tests against real SQLite files and PostgreSQL databases (`on_both`): rows land
//! with their commit and never with a refused one; an endpoint is claimed by one runner at
//! a time, in order, and concurrent claimers never take a row twice; a claim expires and is
//! taken over with its attempts; retries wait; old rows are deleted.

use super::*;
use crate::store::tests::{fresh_pg, on_both};
use crate::store::{AuditEvent, Commit, NewRunner, RolloutRow};
use serde_json::json;
use std::time::{Duration, Instant};
use tempfile::TempDir;

async fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("rollgate.db"))
        .await
        .expect("open");
    (dir, store)
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        at_ms: 1_000,
        actor: "rollgate".into(),
        action: action.into(),
        reason: format!("because {action}"),
        state_before: "progressing".into(),
        state_after: "progressing".into(),
        progress: json!({}),
    }
}

async fn create(store: &Store, name: &str) -> RolloutRow {
    store
        .create_rollout(name, "{}", "{}", "progressing", &event("create"), 0)
        .await
        .expect("create")
}

async fn runner(store: &Store) -> i64 {
    store
        .register_runner(
            NewRunner {
                host: "h",
                pid: 1,
                command: "serve",
                version: "test",
                period_ms: 5_000,
            },
            1,
        )
        .await
        .expect("runner")
        .id
}

fn item(event: usize, endpoint: &str, body: &str) -> OutboxItem {
    OutboxItem {
        event,
        endpoint: endpoint.into(),
        body: body.into(),
    }
}

fn commit<'a>(events: &'a [AuditEvent], outbox: &'a [OutboxItem]) -> Commit<'a> {
    Commit {
        epoch: None,
        checkpoint: "{}",
        state: "progressing",
        finished: false,
        events,
        measurements: &[],
        step_intents: &[],
        outbox,
        consumed_actions: &[],
        spec: None,
    }
}

/// Queue `n` rows for `endpoint` (bodies `0`, `1`, …); their ids.
async fn queue(store: &Store, endpoint: &str, n: usize) -> Vec<i64> {
    let items: Vec<(String, String)> = (0..n)
        .map(|i| (endpoint.to_string(), i.to_string()))
        .collect();
    store.enqueue(None, &items).await.expect("enqueue");
    let mine: Vec<i64> = store
        .outbox_rows()
        .await
        .expect("rows")
        .into_iter()
        .filter(|r| r.endpoint == endpoint)
        .map(|r| r.id)
        .collect();
    mine[mine.len() - n..].to_vec()
}

fn ids(claimed: &[Claimed]) -> Vec<i64> {
    claimed.iter().map(|c| c.id).collect()
}

/// Wait (bounded) until the database's clock passed `t`.
async fn past(store: &Store, t: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.db_now_ms().await.expect("now") <= t {
        assert!(Instant::now() < deadline, "the database clock stands still");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

on_both!(rows_land_with_their_commit_and_never_with_a_refused_one);
async fn rows_land_with_their_commit_and_never_with_a_refused_one(store: Store) {
    let row = create(&store, "web").await;
    let events = [event("pause"), event("resume")];
    let outbox = [
        item(0, "http://a/hook", "{\"seq\":0,\"action\":\"pause\"}"),
        item(1, "http://a/hook", "{\"seq\":0,\"action\":\"resume\"}"),
        item(
            1,
            "https://u:secret@b/hook",
            "{\"seq\":0,\"action\":\"resume\"}",
        ),
    ];
    let before = store.db_now_ms().await.unwrap();
    let g = store
        .commit(row.id, 1, commit(&events, &outbox), 5)
        .await
        .unwrap();
    let rows = store.outbox_rows().await.unwrap();
    // The create event is seq 1: the commit's events are 2 and 3.
    assert_eq!(
        rows.iter()
            .map(|r| (r.rollout_id, r.seq, r.endpoint.as_str(), r.body.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (
                Some(row.id),
                Some(2),
                "http://a/hook",
                "{\"seq\":0,\"action\":\"pause\"}"
            ),
            (
                Some(row.id),
                Some(3),
                "http://a/hook",
                "{\"seq\":0,\"action\":\"resume\"}"
            ),
            (
                Some(row.id),
                Some(3),
                "https://u:secret@b/hook",
                "{\"seq\":0,\"action\":\"resume\"}"
            ),
        ]
    );
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    for r in &rows {
        assert_eq!(
            (
                r.attempts,
                r.claimed_by,
                r.delivered_ms,
                r.failed_ms,
                &r.last_error
            ),
            (0, None, None, None, &None)
        );
        // Created and due on the database's clock.
        assert!(
            r.created_ms >= before && r.next_try_ms == r.created_ms,
            "{r:?}"
        );
    }
    assert_eq!(store.outbox_pending().await.unwrap(), 3);
    let mut endpoints = store.outbox_endpoints().await.unwrap();
    endpoints.sort();
    assert_eq!(endpoints, ["http://a/hook", "https://u:secret@b/hook"]);

    // A conflicting commit queues nothing.
    let more = [item(0, "http://a/hook", "{}")];
    let pause = [event("pause")];
    assert!(matches!(
        store.commit(row.id, 1, commit(&pause, &more), 6).await,
        Err(StoreError::Conflict { .. })
    ));
    // Nor a fenced one.
    let a = runner(&store).await;
    let b = runner(&store).await;
    store.take_run(row.id, a, 60_000).await.unwrap().expect("a");
    let lease = store.take_run(row.id, b, 60_000).await.unwrap().expect("b");
    let stale = Commit {
        epoch: Some(lease.epoch - 1),
        ..commit(&pause, &more)
    };
    assert!(matches!(
        store.commit(row.id, g, stale, 7).await,
        Err(StoreError::Fenced { .. })
    ));
    // Nor one whose item names an event it does not have (and the commit is refused).
    let wrong = [item(1, "http://a/hook", "{}")];
    assert!(matches!(
        store.commit(row.id, g, commit(&pause, &wrong), 8).await,
        Err(StoreError::Db(_))
    ));
    assert_eq!(store.outbox_rows().await.unwrap(), rows);
    assert_eq!(store.audit(row.id).await.unwrap().len(), 3);
    // The holder's commit queues its row, with its event's seq.
    let held = Commit {
        epoch: Some(lease.epoch),
        ..commit(&pause, &more)
    };
    store.commit(row.id, g, held, 9).await.unwrap();
    let last = store.outbox_rows().await.unwrap().pop().expect("a row");
    assert_eq!((last.seq, last.body.as_str()), (Some(4), "{}"));
}

on_both!(an_endpoint_is_claimed_by_one_runner_at_a_time_in_order);
async fn an_endpoint_is_claimed_by_one_runner_at_a_time_in_order(store: Store) {
    let a = runner(&store).await;
    let b = runner(&store).await;
    let hook = queue(&store, "http://a/hook", 5).await;
    let other = queue(&store, "http://b/hook", 2).await;

    // A takes the oldest three of the endpoint; while A's claim lives B gets none of it,
    // but B may take another endpoint.
    let got = store
        .claim_outbox(a, "http://a/hook", 3, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&got), hook[..3]);
    assert_eq!(
        got.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    assert!(
        store
            .claim_outbox(b, "http://a/hook", 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    let got_b = store
        .claim_outbox(b, "http://b/hook", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&got_b), other);
    let mut renewed = store.renew_outbox(a, 60_000).await.unwrap();
    renewed.sort_unstable();
    assert_eq!(renewed, hook[..3]);

    // Delivered rows are done; with A's claims all ended, B takes the rest, in order.
    for id in &hook[..3] {
        store.outbox_delivered(*id).await.unwrap();
    }
    assert!(store.renew_outbox(a, 60_000).await.unwrap().is_empty());
    let rest = store
        .claim_outbox(b, "http://a/hook", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&rest), hook[3..]);
    let rows = store.outbox_rows().await.unwrap();
    let done = rows.iter().find(|r| r.id == hook[0]).expect("row");
    assert_eq!((done.attempts, done.claimed_until_ms), (1, None));
    assert!(done.delivered_ms.is_some());
    assert_eq!(store.outbox_pending().await.unwrap(), 4);

    // A clean stop releases B's claims: A may take them at once.
    store.release_outbox(b).await.unwrap();
    let back = store
        .claim_outbox(a, "http://a/hook", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&back), hook[3..]);
}

on_both!(concurrent_claimers_never_claim_a_row_twice);
async fn concurrent_claimers_never_claim_a_row_twice(store: Store) {
    let mut all = queue(&store, "http://a/hook", 60).await;
    all.extend(queue(&store, "http://b/hook", 20).await);
    all.sort_unstable();
    let mut runners = Vec::new();
    for _ in 0..4 {
        runners.push(runner(&store).await);
    }
    // Four deliverers at once, each claiming batches of 7 of both endpoints and marking
    // every row it got delivered, until none is left: every row is claimed exactly once,
    // and each endpoint's rows in order.
    // Each batch gets a ticket as soon as its claim returns: an endpoint's next claim can
    // only succeed once the previous batch was delivered, after its ticket was taken.
    let tickets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let claims = futures::future::join_all(runners.iter().map(|&r| {
        let store = store.clone();
        let tickets = tickets.clone();
        async move {
            let mut got: Vec<(String, i64, usize)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while store.outbox_pending().await.unwrap() > 0 {
                assert!(Instant::now() < deadline, "the outbox never emptied");
                let mut any = false;
                for endpoint in ["http://a/hook", "http://b/hook"] {
                    let batch = store.claim_outbox(r, endpoint, 7, 60_000).await.unwrap();
                    let ticket = tickets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    for c in &batch {
                        store.outbox_delivered(c.id).await.unwrap();
                        got.push((endpoint.to_string(), c.id, ticket));
                    }
                    any |= !batch.is_empty();
                }
                if !any {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            got
        }
    }))
    .await;
    let mut seen: Vec<(String, i64, usize)> = claims.into_iter().flatten().collect();
    // In ticket order, each endpoint's ids increase: never twice, never out of order.
    seen.sort_by_key(|(_, id, ticket)| (*ticket, *id));
    for endpoint in ["http://a/hook", "http://b/hook"] {
        let ids: Vec<i64> = seen
            .iter()
            .filter(|(e, _, _)| e == endpoint)
            .map(|(_, id, _)| *id)
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{endpoint}: claimed twice or out of order: {ids:?}"
        );
    }
    let mut every: Vec<i64> = seen.iter().map(|(_, id, _)| *id).collect();
    every.sort_unstable();
    assert_eq!(every, all);
    assert!(
        store
            .outbox_rows()
            .await
            .unwrap()
            .iter()
            .all(|r| r.attempts == 1 && r.delivered_ms.is_some())
    );
}

on_both!(an_expired_claim_is_taken_over_and_a_retry_waits);
async fn an_expired_claim_is_taken_over_and_a_retry_waits(store: Store) {
    let a = runner(&store).await;
    let b = runner(&store).await;
    let hook = queue(&store, "http://a/hook", 3).await;

    // A claims for no time at all (a runner that died right after), tries the first row
    // once; once the database's clock passed the claim, B takes the rows over, attempts
    // and all, and A may no longer send them.
    let got = store.claim_outbox(a, "http://a/hook", 10, 0).await.unwrap();
    assert_eq!(ids(&got), hook);
    store.outbox_retry(hook[0], 0, "HTTP 503").await.unwrap();
    let until = store.outbox_rows().await.unwrap()[0]
        .claimed_until_ms
        .expect("claimed");
    past(&store, until).await;
    let taken = store
        .claim_outbox(b, "http://a/hook", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&taken), hook);
    assert_eq!(taken[0].attempts, 1);
    assert!(
        !store
            .renew_outbox(a, 60_000)
            .await
            .unwrap()
            .contains(&hook[0])
    );
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!(
        (row.claimed_by, row.last_error.as_deref()),
        (Some(b), Some("HTTP 503"))
    );

    // While the oldest row waits for its next try nobody claims the endpoint — not even
    // its later rows, which would go out of order.
    store
        .outbox_retry(hook[0], 60_000, "HTTP 503")
        .await
        .unwrap();
    store.release_outbox(b).await.unwrap();
    assert!(
        store
            .claim_outbox(a, "http://a/hook", 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Given up on, it is out of the way.
    store.outbox_failed(hook[0], "HTTP 503").await.unwrap();
    let rest = store
        .claim_outbox(a, "http://a/hook", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&rest), hook[1..]);
    let failed = &store.outbox_rows().await.unwrap()[0];
    assert_eq!(failed.attempts, 3);
    assert!(failed.failed_ms.is_some() && failed.delivered_ms.is_none());
}

on_both!(old_delivered_and_failed_rows_are_deleted);
async fn old_delivered_and_failed_rows_are_deleted(store: Store) {
    let hook = queue(&store, "http://a/hook", 3).await;
    store.outbox_delivered(hook[0]).await.unwrap();
    store.outbox_failed(hook[1], "HTTP 400").await.unwrap();
    // Young rows stay.
    assert_eq!(store.prune_outbox(60_000, 60_000).await.unwrap(), 0);
    let at = store.db_now_ms().await.unwrap();
    past(&store, at).await;
    // Delivered rows go after their age, failed ones after theirs; pending rows never.
    assert_eq!(store.prune_outbox(0, 60_000).await.unwrap(), 1);
    assert_eq!(store.prune_outbox(0, 0).await.unwrap(), 1);
    assert_eq!(ids_of(&store).await, hook[2..]);
}

async fn ids_of(store: &Store) -> Vec<i64> {
    store
        .outbox_rows()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}
