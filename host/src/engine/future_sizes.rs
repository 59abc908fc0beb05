//! The size of a run's driver: one future per unfinished run lives for the run's whole
//! life, so its size is memory per rollout (`cargo bench --bench serve` measures RSS per
//! rollout). A future is as large as the largest state of everything it awaits inline.

use super::clock::SimClock;
use super::{Engine, Plugins};
use crate::metrics::Backends;
use std::sync::Arc;
use std::time::Duration;

/// The size of the future a method of `Run` returns, without a `Run`.
fn run_future<'e: 'r, 'r, F: std::future::Future>(
    _: impl FnOnce(&'r mut super::Run<'e>) -> F,
) -> usize {
    std::mem::size_of::<F>()
}

fn print_size(what: &str, size: usize) -> usize {
    println!("{what}: {size} bytes");
    size
}

#[tokio::test]
async fn a_run_driver_future_stays_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(&dir.path().join("s.db"))
        .await
        .expect("store");
    let engine = Engine::alone(
        store.clone(),
        Arc::new(SimClock::new(0)),
        Plugins::new(),
        Arc::new(Backends::new()),
        Duration::from_millis(10),
    );
    let drive = print_size("Engine::drive", std::mem::size_of_val(&engine.drive(1)));
    print_size(
        "Engine::drive_one",
        std::mem::size_of_val(&engine.drive_one(1)),
    );
    print_size("Store::get", std::mem::size_of_val(&store.get(1)));
    let commit = crate::store::Commit {
        checkpoint: "{}",
        state: "pending",
        finished: false,
        events: &[],
        measurements: &[],
        step_intents: &[],
        consumed_actions: &[],
        spec: None,
        outbox: &[],
        epoch: None,
    };
    print_size(
        "Store::commit",
        std::mem::size_of_val(&store.commit(1, 0, commit, 0)),
    );
    print_size(
        "Store::step_done",
        std::mem::size_of_val(&store.step_done(
            1,
            "s",
            crate::store::StepStatus::Applied,
            "",
            0,
            None,
        )),
    );
    print_size("Engine", std::mem::size_of::<Engine>());
    print_size("Run", std::mem::size_of::<super::Run<'_>>());
    // What a driver awaits inside `Run::drive`: all but the waiting path (`progress` →
    // `verify` → `wait`) is boxed where awaited, so an idle run holds only that path.
    print_size("Run::drive", run_future(|r| r.drive()));
    print_size("Run::progress", run_future(|r| r.progress()));
    print_size("Run::verify", run_future(|r| r.verify()));
    print_size("Run::wait", run_future(|r| r.wait(None)));
    print_size(
        "Run::paused",
        run_future(|r| r.paused(super::state::PauseReason::Policy)),
    );
    print_size(
        "Run::measure",
        run_future(|r| r.measure(super::verification::Which::Phase, 0)),
    );
    print_size("Run::decide", run_future(|r| r.decide(false)));
    print_size("Run::commit", run_future(|r| r.commit(&[], &[])));
    print_size("Run::handle_actions", run_future(|r| r.handle_actions()));
    print_size("Run::deadline_passed", run_future(|r| r.deadline_passed()));
    print_size("Run::apply_phase", run_future(|r| r.apply_phase()));
    print_size("Run::roll_back_step", run_future(|r| r.roll_back_step()));
    print_size(
        "RolloutSpec",
        std::mem::size_of::<crate::spec::model::RolloutSpec>(),
    );
    print_size(
        "Checkpoint",
        std::mem::size_of::<super::state::Checkpoint>(),
    );
    print_size(
        "RolloutRow",
        std::mem::size_of::<crate::store::RolloutRow>(),
    );
    // 12 KB (24 KB once spawned) before the boxing and the spawn's fix: most of the
    // 67 KB a rollout `cargo bench --bench serve` measured at 20,000 rollouts; 4.2 KB
    // before `Run::drive` boxed all but its waiting path (2.6 KB after).
    assert!(
        drive <= 3 * 1024,
        "a run's driver takes {drive} bytes for the run's whole life: box what it awaits \
         only briefly (store calls, plugin calls) instead of growing it"
    );
}
