//! Several `rollgate serve` runners on one store, for real: two processes share a SQLite
//! file (several processes on one machine can) and split its runs by leases. The target is
//! an exec script that logs every delivery with its step id, the lease epoch it came with
//! and the runner's pid, and applies each step id once, as an operator's idempotent target
//! would. Runners are killed (SIGKILL), frozen (SIGSTOP/SIGCONT) and stopped (SIGTERM) by
//! PID; every wait is bounded.
//!
//! The runners are started by [`runner`], which takes the store as a `--db` URL: every test
//! runs twice ([`on_both`]), on a SQLite file (`NAME::sqlite`) and on a fresh database of a
//! real PostgreSQL server (`NAME::postgres`, `rollgate-pgtest`).
//!
//! The local takeover shortcut (a runner of this host whose process is gone has its leases
//! freed at once) applies only when a runner *starts*; these tests kill a runner while the
//! other runs, so its runs are taken over by lease expiry, as on a shared database.

use crate::common;

use common::serve::{OPERATOR, Serve, Server};
use rollgate::store::{Location, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The target: one line per delivery (`STEP_ID EPOCH PID`), each step id applied once.
/// It fences as README asks of a target: a delivery under an epoch older than one it saw
/// for the rollout is refused (logged in `refused.log`, exit 1) and applies nothing.
const TARGET: &str = r#"#!/bin/sh
set -u
d="$LOGDIR"
exec 9>>"$d/lock"
flock 9
epoch="${ROLLGATE_LEASE_EPOCH:-none}"
echo "$ROLLGATE_STEP_ID $epoch $PPID" >> "$d/deliveries.log"
seen="$d/epoch.$ROLLGATE_ROLLOUT"
if [ -f "$seen" ] && [ "$epoch" -lt "$(cat "$seen")" ]; then
    echo "$ROLLGATE_STEP_ID $epoch $PPID" >> "$d/refused.log"
    echo "refused: epoch $epoch is older than $(cat "$seen")" >&2
    exit 1
fi
echo "$epoch" > "$seen"
if ! grep -qxF "$ROLLGATE_STEP_ID" "$d/applied.log"; then
    echo "$ROLLGATE_STEP_ID" >> "$d/applied.log"
fi
"#;

/// One delivery the target logged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    step: String,
    epoch: i64,
    pid: i32,
}

impl Delivery {
    /// The rollout the step belongs to (`NAME#RUN/SEQ-OPERATION`).
    fn rollout(&self) -> &str {
        self.step.split('#').next().unwrap_or_default()
    }
}

/// A configuration folder of `n` rollouts (`r00`…) on the logging target, a store file, the
/// logs; runners' own folders beside.
struct Shared {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    /// The store's `--db` URL.
    db: String,
}

/// Which store the runners share.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Run the test `$name(backend)` on a SQLite file and on PostgreSQL.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::Postgres)
            }
        }
    };
}

impl Shared {
    /// `pause` is each phase's pause (`{duration: 2s}`, or `{}` to wait for an operator);
    /// `None` (the test skipped) on PostgreSQL when it is not installed and not required.
    fn on(backend: Backend, n: usize, pause: &str) -> Option<Shared> {
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                rollgate_pgtest::Cluster::shared()?
                    .database()
                    .expect("a PostgreSQL database"),
            ),
        };
        Some(Shared::at(db, n, pause))
    }

    /// [`Shared::on`] the database `db` (a `--db` URL), or a SQLite file when `None`.
    fn at(db: Option<String>, n: usize, pause: &str) -> Shared {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("target.sh"), TARGET).expect("target");
        std::fs::write(d.join("deliveries.log"), "").expect("log");
        std::fs::write(d.join("applied.log"), "").expect("log");
        std::fs::write(d.join("refused.log"), "").expect("log");
        std::fs::create_dir(d.join("config")).expect("mkdir");
        let mut text = String::new();
        for i in 0..n {
            text.push_str("---\n");
            text.push_str(&common::fixture_with(
                "leases/rollout.yaml",
                &[
                    ("name", &format!("r{i:02}")),
                    ("dir", &d.display().to_string()),
                    ("pause", pause),
                ],
            ));
        }
        std::fs::write(d.join("config/rollouts.yaml"), text).expect("rollouts");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let db = db.unwrap_or_else(|| format!("sqlite:{}", d.join("shared.db").display()));
        // The store is created (migrated) before the runners start: two processes
        // migrating one new SQLite file at the same instant race on its schema.
        rt.block_on(Store::open_at(&Location::parse(&db), true))
            .expect("create the store");
        Shared { dir, rt, db }
    }

    /// The store's `--db` URL.
    fn db(&self) -> String {
        self.db.clone()
    }

    /// Two runners `a` and `b` started side by side (so neither has the runs to itself
    /// for long), with `--lease-ttl ttl` and `extra`.
    /// Once both runners hold runs and all four wait for an operator: `a`'s runner id and
    /// the name of a run it holds.
    fn a_waiting_run_held_by(&self, a: &Server, b: &Server) -> (i64, String) {
        let store = self.store();
        let (ia, _) = self.both_hold(&store, a, b);
        self.wait_until(
            "every run waits for an operator",
            Duration::from_secs(30),
            || {
                let runs = self.runs(&store);
                runs.len() == 4 && runs.values().all(|r| r.2 == "paused(step)")
            },
        );
        let (&id, _) = self
            .held_by(&store, ia)
            .iter()
            .next()
            .expect("a holds a run");
        let name = self.runs(&store)[&id].0.clone();
        (ia, name)
    }

    /// Three runners `a`, `b` and `c` started side by side.
    fn three(&self, ttl: &str) -> [Server; 3] {
        let config = self.dir.path().join("config");
        let db = self.db();
        std::thread::scope(|s| {
            let start = |name: &'static str| {
                let (config, db) = (&config, &db);
                s.spawn(move || runner(self.dir.path(), name, config, db, ttl, &[]))
            };
            let (a, b, c) = (start("a"), start("b"), start("c"));
            [
                a.join().expect("a starts"),
                b.join().expect("b starts"),
                c.join().expect("c starts"),
            ]
        })
    }

    fn two(&self, ttl: &str, extra: &[&str]) -> (Server, Server) {
        let config = self.dir.path().join("config");
        let db = self.db();
        std::thread::scope(|s| {
            let a = s.spawn(|| runner(self.dir.path(), "a", &config, &db, ttl, extra));
            let b = s.spawn(|| runner(self.dir.path(), "b", &config, &db, ttl, extra));
            (a.join().expect("a starts"), b.join().expect("b starts"))
        })
    }

    /// The store, read directly.
    fn store(&self) -> Store {
        self.rt
            .block_on(Store::open_existing_at(&Location::parse(&self.db)))
            .expect("open the store")
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.delivery_log("deliveries.log")
    }

    /// The deliveries the target refused: made under an epoch older than one it saw.
    fn refused(&self) -> Vec<Delivery> {
        self.delivery_log("refused.log")
    }

    fn delivery_log(&self, name: &str) -> Vec<Delivery> {
        std::fs::read_to_string(self.dir.path().join(name))
            .expect("deliveries")
            .lines()
            .map(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                assert_eq!(parts.len(), 3, "a delivery line: {l:?}");
                Delivery {
                    step: parts[0].to_string(),
                    epoch: parts[1]
                        .parse()
                        .unwrap_or_else(|_| panic!("every delivery carries an epoch: {l:?}")),
                    pid: parts[2].parse().expect("pid"),
                }
            })
            .collect()
    }

    fn applied(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("applied.log"))
            .expect("applied")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The store's runner id of the running process `pid`.
    fn runner_id(&self, store: &Store, pid: i32) -> i64 {
        let runners = self.rt.block_on(store.claims()).expect("runners").runners;
        runners
            .values()
            .filter(|r| r.pid == i64::from(pid))
            .map(|r| r.id)
            .max()
            .expect("the runner is registered")
    }

    /// Every run: id → (name, finished, state).
    fn runs(&self, store: &Store) -> BTreeMap<i64, (String, bool, String)> {
        self.rt
            .block_on(store.list())
            .expect("list")
            .into_iter()
            .map(|r| (r.id, (r.name, r.finished, r.state)))
            .collect()
    }

    /// The unfinished runs whose live lease `runner` holds, with their epoch.
    fn held_by(&self, store: &Store, runner: i64) -> BTreeMap<i64, i64> {
        let mut out = BTreeMap::new();
        for (id, (_, finished, _)) in self.runs(store) {
            let lease = self.rt.block_on(store.lease_of(id)).expect("lease");
            if let Some(l) = lease.filter(|l| !finished && l.live() && l.runner == Some(runner)) {
                out.insert(id, l.epoch);
            }
        }
        out
    }

    /// Wait (bounded) until `done` holds.
    fn wait_until(&self, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until both runners hold some runs; their runner ids.
    fn both_hold(&self, store: &Store, a: &Server, b: &Server) -> (i64, i64) {
        let (ia, ib) = (
            self.runner_id(store, a.pid()),
            self.runner_id(store, b.pid()),
        );
        self.wait_until("both runners hold runs", Duration::from_secs(60), || {
            !self.held_by(store, ia).is_empty() && !self.held_by(store, ib).is_empty()
        });
        (ia, ib)
    }

    /// Wait (bounded) until all `n` runs succeeded.
    fn all_succeeded(&self, store: &Store, n: usize, within: Duration) {
        self.wait_until("every rollout succeeded", within, || {
            let runs = self.runs(store);
            runs.len() == n && runs.values().all(|(_, _, state)| state == "succeeded")
        });
        assert_eq!(self.runs(store).len(), n, "one run per rollout, never two");
    }

    /// Every run's audit log: seqs 1, 2, … without gaps, times in order.
    fn audits_are_gapless(&self, store: &Store) {
        for (id, (name, _, _)) in self.runs(store) {
            let audit = self.rt.block_on(store.audit(id)).expect("audit");
            assert!(!audit.is_empty(), "{name}");
            for (i, row) in audit.iter().enumerate() {
                assert_eq!(row.seq, i as i64 + 1, "{name}: seq {i}");
            }
            assert!(
                audit
                    .windows(2)
                    .all(|w| w[0].event.at_ms <= w[1].event.at_ms),
                "{name}: audit times in order"
            );
        }
    }
}

/// Start runner `name` (its tokens, cache and log in `base/name`) on the shared
/// configuration `config` and the store `db` — a `--db` URL, so the same test runs on a
/// SQLite file or a database server — with `--lease-ttl ttl` and `extra`.
fn runner(base: &Path, name: &str, config: &Path, db: &str, ttl: &str, extra: &[&str]) -> Server {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).expect("runner dir");
    Serve::new(&dir)
        .config(config)
        .db(db)
        .args(&["--lease-ttl", ttl, "--heartbeat", "500ms"])
        .args(extra)
        .start()
}

/// Each step applied once (the target applies an id once); each step id delivered once
/// when `exactly_once`, and otherwise again only as the redelivery of a step in doubt —
/// its runner killed, frozen or too slow to renew between delivering and recording it —
/// with the same id, never under an older epoch than an earlier delivery (the same one
/// when the runner whose driver stopped on its local deadline renewed the lease after
/// all, a newer one when another runner took the run over).
/// Every line of the servers' logs that names one of `rollouts`, and every warning and
/// error (for a failure's message).
fn lines_about<'a>(servers: &[&Server], rollouts: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = rollouts.collect();
    // `r06` but not `r066`: a name, not a prefix of another.
    let names_it = |l: &str| {
        names.iter().any(|n| {
            l.match_indices(n).any(|(i, _)| {
                !l[i + n.len()..].starts_with(|c: char| c.is_ascii_digit())
                    && !l[..i].ends_with(|c: char| c.is_ascii_alphanumeric())
            })
        })
    };
    let mut out = String::new();
    for s in servers {
        for l in s.log().lines() {
            if names_it(l) || l.contains("WARN") || l.contains("ERROR") {
                out.push_str(&format!("[{}] {l}\n", s.pid()));
            }
        }
    }
    out
}

/// Each step applied once, never delivered again under an older epoch. With `lapses`
/// (the runners of a test where nothing is in doubt by design), a step is delivered more
/// than once only where the runner that delivered it first logged that its lease on the
/// run lapsed (a renewal missed on a starved machine; the next holder then delivers the
/// step in doubt again, with its id); without, a kill or freeze may leave one in doubt.
fn applied_once(shared: &Shared, lapses: Option<&[&Server]>) {
    let refused = shared.refused();
    if let Some(servers) = lapses {
        assert!(
            refused.is_empty(),
            "the target refused deliveries under an older epoch: {refused:?}\n{}",
            lines_about(servers, refused.iter().map(Delivery::rollout))
        );
    }
    let mut by_step: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for d in shared.deliveries() {
        // A delivery the target refused (only ever one in flight when its runner froze,
        // see the SIGSTOP test) applied nothing.
        if !refused.contains(&d) {
            by_step.entry(d.step.clone()).or_default().push(d);
        }
    }
    for (step, ds) in &by_step {
        if let (Some(servers), [first, ..]) = (lapses, ds.as_slice())
            && ds.len() > 1
        {
            let lapsed = servers.iter().filter(|s| s.pid() == first.pid).any(|s| {
                s.log().lines().any(|l| {
                    l.contains(&format!(" {} run ", first.rollout()))
                        && (l.contains("expired locally") || l.contains("lost the lease"))
                })
            });
            assert!(
                lapsed,
                "{step} delivered more than once though its runner's lease never lapsed: \
                 {ds:?}\n{}",
                lines_about(servers, [first.rollout()].into_iter())
            );
        }
        assert!(
            ds.windows(2).all(|w| w[1].epoch >= w[0].epoch),
            "{step} delivered again under an older epoch: {ds:?}"
        );
    }
    let applied = shared.applied();
    let unique: BTreeSet<&String> = applied.iter().collect();
    assert_eq!(unique.len(), applied.len(), "each step applied once");
    assert_eq!(applied.len(), by_step.len());
}

on_both!(two_runners_split_the_rollouts_and_apply_every_step_once);
/// Two runners share forty rollouts on a SQLite file (whose writers queue behind one
/// lock), two hundred on PostgreSQL.
fn two_runners_split_the_rollouts_and_apply_every_step_once(backend: Backend) {
    let n = match backend {
        Backend::Sqlite => 40,
        Backend::Postgres => 200,
    };
    let Some(shared) = Shared::on(backend, n, "{duration: 3s}") else {
        return;
    };
    // A ttl long enough that no renewal misses on a busy machine: nothing is in doubt.
    let (a, b) = shared.two("5s", &[]);
    let store = shared.store();
    shared.all_succeeded(&store, n, Duration::from_secs(300));
    applied_once(&shared, Some(&[&a, &b]));
    let deliveries = shared.deliveries();
    // set-weight 10, 50 and 100, then finalize: four steps a rollout.
    let steps: BTreeSet<&String> = deliveries.iter().map(|d| &d.step).collect();
    assert_eq!(steps.len(), n * 4);
    let drove = |pid: i32| {
        deliveries
            .iter()
            .filter(|d| d.pid == pid)
            .map(Delivery::rollout)
            .collect::<BTreeSet<_>>()
            .len()
    };
    assert!(
        drove(a.pid()) > 0 && drove(b.pid()) > 0,
        "both runners drove rollouts: a {}, b {}\n{}\n{}",
        drove(a.pid()),
        drove(b.pid()),
        a.log(),
        b.log()
    );
    assert!(deliveries.iter().all(|d| d.epoch >= 1));
    shared.audits_are_gapless(&store);
    for s in [&a, &b] {
        assert!(!s.log().contains("ERROR"), "{}", s.log());
    }
}

on_both!(a_killed_runner_s_runs_are_taken_over_after_its_lease_expires_and_finish);
fn a_killed_runner_s_runs_are_taken_over_after_its_lease_expires_and_finish(backend: Backend) {
    let Some(shared) = Shared::on(backend, 8, "{duration: 4s}") else {
        return;
    };
    let (mut a, b) = shared.two("3s", &[]);
    let store = shared.store();
    let (ia, ib) = shared.both_hold(&store, &a, &b);
    let held = shared.held_by(&store, ia);
    assert!(!held.is_empty());
    a.signal(libc::SIGKILL);
    a.wait_exit();
    let t0 = Instant::now();
    // Taken over only once the lease expired (at most ttl after the kill, at least the
    // time left since a's last renewal), within ttl + two renew periods + slack.
    shared.wait_until(
        "b takes every run a held",
        Duration::from_secs(3 + 4),
        || {
            let now_b = shared.held_by(&store, ib);
            let runs = shared.runs(&store);
            held.keys()
                .all(|id| now_b.contains_key(id) || runs.get(id).is_some_and(|r| r.1))
        },
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "taken over after {took:?}: before a's lease could expire"
    );
    shared.all_succeeded(&store, 8, Duration::from_secs(60));
    applied_once(&shared, None);
    for (id, epoch) in &held {
        let lease = shared.rt.block_on(store.lease_of(*id)).unwrap().unwrap();
        assert!(
            lease.epoch > *epoch,
            "run {id}: b claimed it with a newer epoch"
        );
    }
    shared.audits_are_gapless(&store);
    assert!(!b.log().contains("ERROR"), "{}", b.log());
}

on_both!(
    a_frozen_runner_that_wakes_past_its_lease_commits_and_delivers_nothing_for_the_runs_it_lost
);
fn a_frozen_runner_that_wakes_past_its_lease_commits_and_delivers_nothing_for_the_runs_it_lost(
    backend: Backend,
) {
    let Some(shared) = Shared::on(backend, 6, "{duration: 5s}") else {
        return;
    };
    // Long enough that a renewal does not miss while both start on a busy machine: a
    // driver that stopped on its deadline and was not restarted yet when a froze would
    // leave a nothing to say.
    let (a, b) = shared.two("5s", &[]);
    let store = shared.store();
    let (ia, ib) = shared.both_hold(&store, &a, &b);
    let held = shared.held_by(&store, ia);
    // A process frozen inside a write transaction keeps SQLite's write lock, and then no
    // runner of the file can write until it wakes (on a database server a frozen
    // connection blocks only the rows it locked): if b cannot take over within ttl + a
    // few seconds, the freeze caught a mid-write — wake a, and freeze it again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        a.signal(libc::SIGSTOP);
        let deadline = Instant::now() + Duration::from_secs(15);
        let taken = loop {
            let now_b = shared.held_by(&store, ib);
            let runs = shared.runs(&store);
            if held
                .keys()
                .all(|id| now_b.contains_key(id) || runs.get(id).is_some_and(|r| r.1))
            {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if taken {
            break;
        }
        assert!(
            attempts < 3 && b.log().contains("database is locked"),
            "b did not take over the frozen runner's runs {held:?}:\n{}",
            b.log()
        );
        a.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_secs(1));
    }
    // The epoch each lost run has now: anything a delivers for it later under an older
    // one would be a stale delivery.
    let names: BTreeMap<String, i64> = shared
        .runs(&store)
        .into_iter()
        .map(|(id, (name, _, _))| (name, id))
        .collect();
    let taken: BTreeMap<i64, i64> = held
        .keys()
        .map(|id| {
            (
                *id,
                shared
                    .rt
                    .block_on(store.lease_of(*id))
                    .unwrap()
                    .unwrap()
                    .epoch,
            )
        })
        .collect();
    let before = shared.deliveries().len();
    a.signal(libc::SIGCONT);
    let said = Instant::now();
    let deadline = said + Duration::from_secs(30);
    let stopped = |log: &str| {
        log.contains("lost the lease on")
            || log.contains("expired locally at")
            || log.contains("the store refused a write of")
    };
    while !stopped(&a.log()) {
        assert!(
            Instant::now() < deadline,
            "a never said it stopped:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.all_succeeded(&store, 6, Duration::from_secs(60));
    // A delivery whose lease check passed just before the freeze leaves when a wakes, under
    // its old epoch: no check in a process can close that window, which is why the epoch
    // travels with the step. Such a delivery can only be the one a run had in flight —
    // at most one a run: the step in doubt, which b delivers again under its newer epoch —
    // and the target, which fences, refuses it once it saw b's. Nothing else leaves a
    // under an epoch it lost.
    let refused = shared.refused();
    let all = shared.deliveries();
    let mut stale: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
    for d in &all[before..] {
        let id = names[d.rollout()];
        if d.pid == a.pid()
            && let Some(epoch) = taken.get(&id)
            && d.epoch <= *epoch
        {
            let in_doubt = all
                .iter()
                .any(|o| o.step == d.step && o.pid != a.pid() && o.epoch > d.epoch);
            assert!(
                refused.contains(d) || in_doubt,
                "the woken runner delivered {} under epoch {} (the run is at epoch {epoch}), \
                 neither refused by the target nor the step in doubt: {all:?}",
                d.step,
                d.epoch,
            );
            stale.entry(id).or_default().push(d.clone());
        }
    }
    for (id, ds) in &stale {
        assert_eq!(
            ds.len(),
            1,
            "run {id}: the woken runner delivered more than the one step in flight at the \
             freeze under its lost epoch: {ds:?}\n{}",
            a.log()
        );
    }
    // A step a froze between delivering and recording is in doubt, like a killed
    // runner's: b delivers it again, with its id, under the newer epoch.
    applied_once(&shared, None);
    shared.audits_are_gapless(&store);
}

on_both!(a_runner_stopped_cleanly_hands_its_runs_over_at_once);
fn a_runner_stopped_cleanly_hands_its_runs_over_at_once(backend: Backend) {
    let Some(shared) = Shared::on(backend, 6, "{duration: 60s}") else {
        return;
    };
    let (a, b) = shared.two("15s", &[]);
    let store = shared.store();
    let (ia, ib) = shared.both_hold(&store, &a, &b);
    let held = shared.held_by(&store, ia);
    let status = a.terminate();
    assert!(status.success(), "a stopped cleanly: {status:?}");
    let t0 = Instant::now();
    shared.wait_until(
        "b takes every run a held, well before a's lease would expire",
        Duration::from_millis(7_500),
        || {
            let now_b = shared.held_by(&store, ib);
            held.keys().all(|id| now_b.contains_key(id))
        },
    );
    assert!(t0.elapsed() < Duration::from_millis(7_500));
    let runners = shared.rt.block_on(store.claims()).unwrap().runners;
    assert!(runners[&ia].stopped_ms.is_some(), "a is marked stopped");
    assert!(shared.held_by(&store, ia).is_empty(), "a holds nothing");
}

on_both!(an_action_sent_to_the_runner_that_does_not_hold_the_run_is_applied_by_its_holder);
fn an_action_sent_to_the_runner_that_does_not_hold_the_run_is_applied_by_its_holder(
    backend: Backend,
) {
    let Some(shared) = Shared::on(backend, 4, "{}") else {
        return;
    };
    let (a, b) = shared.two("3s", &["--action-poll", "300ms"]);
    let (ia, name) = shared.a_waiting_run_held_by(&a, &b);
    // b reads a run it does not hold from the store.
    assert_eq!(b.rollout(&name)["state"], "paused(step)");
    let (status, answer) = b.act(&name, "promote", Some(OPERATOR));
    assert_eq!(status, 202, "accepted, not applied yet: {answer}");
    assert_eq!(answer["outcome"], "queued", "{answer}");
    assert_eq!(answer["heldBy"], ia, "{answer}");
    shared.wait_until("a applies the promotion", Duration::from_secs(20), || {
        b.audit(&name, 1)
            .iter()
            .any(|e| e["action"] == "promote" && e["actor"] == "alice")
    });
    shared.wait_until(
        "b shows the run's new phase",
        Duration::from_secs(20),
        || b.rollout(&name)["phase"] == 1,
    );
}

/// On PostgreSQL the holder is told at once (`LISTEN/NOTIFY`), not at its `--action-poll`
/// (an hour here), and the runner that does not hold the run streams its events too.
#[test]
fn on_postgres_an_action_reaches_the_holder_at_once_and_every_runner_streams_the_run() {
    let Some(shared) = Shared::on(Backend::Postgres, 4, "{}") else {
        return;
    };
    let (a, b) = shared.two("3s", &["--action-poll", "1h"]);
    let (_, name) = shared.a_waiting_run_held_by(&a, &b);
    // b's event stream of a run a drives, opened before the action.
    let url = format!("{}/api/v2/events?rollout={name}", b.url);
    let watching = std::thread::spawn(move || {
        common::serve::read_events(&url, Duration::from_secs(30), |events| {
            events.iter().any(|e| e["action"] == "promote")
        })
    });
    b.wait_subscribers(1);
    let sent = Instant::now();
    let (status, answer) = b.act(&name, "promote", Some(OPERATOR));
    assert_eq!(status, 202, "{answer}");
    shared.wait_until("a applies the promotion", Duration::from_secs(10), || {
        b.audit(&name, 1)
            .iter()
            .any(|e| e["action"] == "promote" && e["actor"] == "alice")
    });
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "applied {took:?} after the request, with --action-poll 1h"
    );
    let events = watching.join().expect("b streams");
    let promote = events
        .iter()
        .find(|e| e["action"] == "promote")
        .expect("b streamed the promotion");
    assert_eq!(promote["rollout"], name.as_str(), "{promote}");
    assert_eq!(promote["actor"], "alice", "{promote}");
}

/// PostgreSQL restarted while two runners drive twenty rollouts: they reconnect, every
/// rollout completes, each step is applied once and every audit log stays gapless.
#[test]
fn postgres_restarted_under_load_loses_no_run_and_repeats_no_step() {
    let Some(mut cluster) = rollgate_pgtest::Cluster::own() else {
        return;
    };
    let db = cluster.database().expect("a database");
    let shared = Shared::at(Some(db), 20, "{duration: 2s}");
    let (a, b) = shared.two("5s", &[]);
    let store = shared.store();
    shared.wait_until("both runners drive runs", Duration::from_secs(30), || {
        let deliveries = shared.deliveries();
        deliveries.iter().any(|d| d.pid == a.pid()) && deliveries.iter().any(|d| d.pid == b.pid())
    });
    let before = shared.deliveries().len();
    cluster.restart().expect("PostgreSQL restarts");
    drop(store);
    let store = shared.store();
    shared.all_succeeded(&store, 20, Duration::from_secs(180));
    assert!(
        shared.deliveries().len() > before,
        "work went on after the restart"
    );
    // A commit cut by the restart may leave a step in doubt: delivered again with its id,
    // never applied twice, never under an older epoch.
    applied_once(&shared, None);
    shared.audits_are_gapless(&store);
    for s in [&a, &b] {
        assert!(!s.log().contains("panicked"), "{}", s.log());
    }
}

/// Three runners share two hundred rollouts on PostgreSQL: every rollout completes, each
/// runner drove a share, each step is applied once, every audit log is gapless.
#[test]
fn three_runners_on_postgres_share_two_hundred_rollouts_and_apply_every_step_once() {
    let Some(shared) = Shared::on(Backend::Postgres, 200, "{duration: 2s}") else {
        return;
    };
    let runners = shared.three("10s");
    let store = shared.store();
    shared.all_succeeded(&store, 200, Duration::from_secs(300));
    let [r1, r2, r3] = &runners;
    applied_once(&shared, Some(&[r1, r2, r3]));
    let deliveries = shared.deliveries();
    let steps: BTreeSet<&String> = deliveries.iter().map(|d| &d.step).collect();
    assert_eq!(steps.len(), 800, "four steps a rollout, each delivered");
    for r in &runners {
        let drove = deliveries
            .iter()
            .filter(|d| d.pid == r.pid())
            .map(Delivery::rollout)
            .collect::<BTreeSet<_>>()
            .len();
        assert!(
            drove >= 20,
            "runner {} drove only {drove} of 200 rollouts",
            r.pid()
        );
        assert!(!r.log().contains("ERROR"), "{}", r.log());
    }
    shared.audits_are_gapless(&store);
}
