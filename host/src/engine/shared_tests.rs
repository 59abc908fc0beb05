//! A driver keeps the loaded configuration's spec instead of its own parsed copy when the
//! stored one is the same ([`SharedSpecs`]).

use super::{NewRun, SharedSpecs, create_run};
use crate::spec::model::RolloutSpec;
use std::path::Path;
use std::sync::Arc;

fn new_run() -> NewRun<'static> {
    NewRun {
        actor: "test",
        action: "create",
        reason: "test",
        state_before: "",
    }
}

/// Every rollout of the examples and fixtures, stored as `create_run` stores it and read
/// back as a driver reads it, is the loaded one: shared, not copied.
#[tokio::test]
async fn a_stored_spec_read_back_is_the_loaded_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::store::Store::open(&dir.path().join("s.db"))
        .await
        .expect("store");
    // The replay fixture (gates, an exec target, background checks) with its placeholders
    // filled in.
    let guarded = dir.path().join("guarded");
    std::fs::create_dir(&guarded).expect("mkdir");
    let text = std::fs::read_to_string(root.join("tests/fixtures/replay/guarded.yaml"))
        .expect("fixture")
        .replace("{gate_url}", "http://127.0.0.1:9")
        .replace(
            "{touched}",
            &dir.path().join("touched").display().to_string(),
        );
    std::fs::write(guarded.join("guarded.yaml"), text).expect("write");
    let mut seen = 0;
    for folder in [root.join("examples/canary"), guarded] {
        let bundle = crate::spec::load(&[folder]).expect("the folder loads");
        let shared = SharedSpecs::new(&bundle.rollouts);
        for loaded in &bundle.rollouts {
            let created = create_run(&store, loaded, 1_000, new_run())
                .await
                .expect("create");
            let row = store.get(created.id).await.expect("get").expect("the row");
            let parsed: RolloutSpec = serde_json::from_str(&row.spec).expect("parse");
            let driven = shared.share(parsed);
            assert!(
                Arc::ptr_eq(&driven, loaded),
                "{}: the stored spec is not the loaded one",
                loaded.name
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} rollouts checked");
}

/// A stored spec that differs from the loaded one (the configuration changed since the
/// run was created) is kept as stored: the run goes on with its own spec.
#[tokio::test]
async fn a_stored_spec_that_differs_is_kept_as_stored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    let bundle = crate::spec::load(&[root]).expect("the quickstart loads");
    let shared = SharedSpecs::new(&bundle.rollouts);
    let mut older = (*bundle.rollouts[0]).clone();
    older.canary_version = format!("{}-older", older.canary_version);
    let driven = shared.share(older.clone());
    assert!(!Arc::ptr_eq(&driven, &bundle.rollouts[0]));
    assert_eq!(*driven, older);
    // A rollout the configuration no longer holds keeps its own too.
    let mut gone = (*bundle.rollouts[0]).clone();
    gone.name = "not-in-the-configuration".into();
    assert_eq!(*shared.share(gone.clone()), gone);
    // Without a configuration (replays, `rollgate run`'s tests) every run has its own.
    let alone = SharedSpecs::default().share((*bundle.rollouts[0]).clone());
    assert!(!Arc::ptr_eq(&alone, &bundle.rollouts[0]));
    assert_eq!(*alone, *bundle.rollouts[0]);
}

/// The metric specs a stored checkpoint carries are the run's spec's own once read back.
#[test]
fn a_checkpoint_read_back_shares_the_metric_specs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    let bundle = crate::spec::load(&[root]).expect("the quickstart loads");
    let spec = bundle
        .rollouts
        .iter()
        .find(|r| r.phases.iter().any(|p| !p.metrics.is_empty()))
        .expect("a rollout that verifies");
    let phase = spec
        .phases
        .iter()
        .position(|p| !p.metrics.is_empty())
        .expect("a phase that verifies");
    let mut cp = super::state::Checkpoint::new(1_000);
    cp.phase = phase;
    cp.verification = Some(crate::verify::VerificationRun::new(
        &spec.phases[phase].metrics,
        1_000,
    ));
    let json = super::checkpoint_json(&spec.name, &cp).expect("json");
    let mut read: super::state::Checkpoint = serde_json::from_str(&json).expect("parse");
    let metrics = |cp: &super::state::Checkpoint| {
        cp.verification
            .as_ref()
            .map(|v| v.metrics.iter().map(|m| m.spec.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(
        metrics(&read)
            .iter()
            .zip(&spec.phases[phase].metrics)
            .all(|(a, b)| !Arc::ptr_eq(a, b)),
        "parsing makes copies"
    );
    // With one measurement recorded: `last` and `last_measured` are one copy again.
    if let Some(m) = read
        .verification
        .as_mut()
        .and_then(|v| v.metrics.first_mut())
    {
        let observed = crate::verify::Observation::Measured(crate::plugin::types::Measurement {
            verdict: crate::plugin::types::Verdict::Pass,
            value: Some(0.01),
            message: "avg 0.01 meets < 0.05".into(),
            details: "{}".into(),
        });
        m.record(observed, 2_000);
        let json = serde_json::to_string(m).expect("json");
        *m = serde_json::from_str(&json).expect("parse");
    }
    super::share_metric_specs(&mut read, spec);
    let first = read.verification.as_ref().and_then(|v| v.metrics.first());
    let (last, measured) = first
        .and_then(|m| Some((m.last.as_ref()?, m.last_measured.as_ref()?)))
        .expect("a measurement recorded");
    assert!(
        Arc::ptr_eq(last, measured),
        "last and last_measured are two copies"
    );
    let shared = metrics(&read);
    assert_eq!(shared.len(), spec.phases[phase].metrics.len());
    for (a, b) in shared.iter().zip(&spec.phases[phase].metrics) {
        assert!(Arc::ptr_eq(a, b), "{}: not shared", b.name);
    }
    // A metric whose spec changed since (another configuration) keeps its own.
    let mut other = (*spec.phases[phase].metrics[0]).clone();
    other.name = format!("{}-renamed", other.name);
    let mut changed = super::state::Checkpoint::new(1_000);
    changed.verification = Some(crate::verify::VerificationRun::new(&[other.clone()], 1_000));
    super::share_metric_specs(&mut changed, spec);
    assert_eq!(*metrics(&changed)[0], other);
}
