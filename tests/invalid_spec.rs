//! Rollout by rollout (issue 17, items 1 and 2): a rollout whose documents — or a template,
//! plugin or backend it uses — do not load is `invalid-spec` with every problem, the others
//! run; fixing the files starts it, or resumes its run where it was; a run paused by a
//! wrong backend resumes with the fixed documents, audited with both configuration
//! generations. The real binary, a real Prometheus, real SQLite stores.

use crate::common;

use common::serve::{OPERATOR, READER, Serve, Server, read_events};
use common::{PromServer, rollgate_in};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn serve(dir: &Path) -> Server {
    Serve::new(dir).reload_interval("100ms").start()
}

fn held(name: &str) -> String {
    common::fixture_with("serve/held.yaml", &[("name", name)])
}

/// The recorded backend of the canary example, as `backends.yaml` in `dir`.
fn recorded(dir: &Path) {
    common::copy_example("canary", &["backends.yaml", "error-ratio.om"], dir);
}

/// The line (1-based) of `dir/file` that contains `text`.
fn line_of(dir: &Path, file: &str, text: &str) -> usize {
    let body = std::fs::read_to_string(dir.join(file)).expect("read");
    body.lines()
        .position(|l| l.contains(text))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{text:?} not in {file}"))
}

/// Poll `get` (bounded) until `done` holds.
fn wait_for(what: &str, get: impl Fn() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broken_rollout_and_a_broken_template_cost_only_their_rollouts_until_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    recorded(&config);
    std::fs::write(config.join("good-a.yaml"), held("good-a")).expect("write");
    std::fs::write(config.join("good-b.yaml"), held("good-b")).expect("write");
    std::fs::write(
        config.join("typo.yaml"),
        held("typo").replace("weight: 10\n", "weight: ten\n"),
    )
    .expect("write");
    std::fs::write(
        config.join("tmpl.yaml"),
        common::fixture_with("invalid_spec/tmpl.yaml", &[("interval", "soon")]),
    )
    .expect("write");
    std::fs::write(
        config.join("uses.yaml"),
        common::fixture("invalid_spec/uses.yaml"),
    )
    .expect("write");
    let typo_line = line_of(&config, "typo.yaml", "weight: ten");
    let tmpl_line = line_of(&config, "tmpl.yaml", "interval: soon");

    // The server starts; the good rollouts run, the broken ones are invalid-spec.
    let s = serve(dir.path());
    s.wait_state("good-a", 1, "paused(step)");
    s.wait_state("good-b", 1, "paused(step)");
    let typo = s.rollout("typo");
    assert_eq!(typo["state"], "invalid-spec", "{typo}");
    let typo_problems = typo["invalidSpec"]["problems"].to_string();
    assert!(
        typo_problems.contains(&format!("typo.yaml:{typo_line}:15: spec.phases[0].weight:")),
        "{typo_problems}"
    );
    let uses = s.rollout("uses");
    assert_eq!(uses["state"], "invalid-spec", "{uses}");
    let uses_problems = uses["invalidSpec"]["problems"].to_string();
    assert!(
        uses_problems.contains(&format!(
            "tmpl.yaml:{tmpl_line}:17: spec.metrics[0].interval:"
        )),
        "the template's own problem, at its place: {uses_problems}"
    );
    assert!(!uses_problems.contains("typo.yaml"), "{uses_problems}");
    // Listed, counted, and in the configuration's status.
    let list = s.get("/api/v1/rollouts");
    let state_of = |name: &str| {
        list["rollouts"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["rollout"] == name))
            .map(|r| r["state"].clone())
    };
    assert_eq!(state_of("typo"), Some(json!("invalid-spec")), "{list}");
    assert_eq!(state_of("uses"), Some(json!("invalid-spec")), "{list}");
    assert_eq!(state_of("good-a"), Some(json!("paused(step)")), "{list}");
    assert!(
        s.metrics()
            .contains("rollgate_rollouts{state=\"invalid-spec\"} 2"),
        "{}",
        s.metrics()
    );
    let status = s.get("/api/v1/config");
    assert!(status["config"]["lastError"].is_null(), "{status}");
    assert_eq!(
        status["config"]["invalid"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["typo".to_string(), "uses".to_string()]),
        "{status}"
    );
    // Nothing to act on yet: said, not queued.
    let (code, body) = s.act("typo", "promote", Some(OPERATOR));
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("invalid-spec"), "{body}");
    // `get` on the store says the same, with the problems.
    let get = rollgate_in(
        dir.path(),
        &["get", "typo", "--server", &s.url, "--token", READER],
    );
    assert_eq!(get.code, 0, "{}", get.stderr);
    assert!(
        get.stdout.contains("invalid-spec") && get.stdout.contains("spec.phases[0].weight"),
        "{}",
        get.stdout
    );
    // No run yet: no empty strategy, phase or versions lines.
    assert!(
        get.stdout.contains("typo (no run yet)") && !get.stdout.contains("Versions:"),
        "{}",
        get.stdout
    );

    // `history` says it too, before any run.
    let history = rollgate_in(
        dir.path(),
        &["history", "typo", "--server", &s.url, "--token", READER],
    );
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(
        history.stdout.contains("invalid-spec since") && history.stdout.contains("weight"),
        "{}",
        history.stdout
    );

    // Each fix starts its rollout, and the event stream says so.
    let url = format!("{}/api/v1/events", s.url);
    let events = std::thread::spawn(move || {
        read_events(&url, Duration::from_secs(60), |events| {
            events
                .iter()
                .any(|e| e["rollout"] == "typo" && e["action"] == "spec-valid")
        })
    });
    s.wait_subscribers(1);
    std::fs::write(config.join("typo.yaml"), held("typo")).expect("write");
    s.wait_state("typo", 1, "paused(step)");
    let events = events.join().expect("the event reader");
    let fixed = events
        .iter()
        .find(|e| e["rollout"] == "typo" && e["action"] == "spec-valid")
        .expect("spec-valid");
    assert_eq!(fixed["stateBefore"], "invalid-spec", "{fixed}");
    assert_eq!(s.rollout("uses")["state"], "invalid-spec");
    std::fs::write(
        config.join("tmpl.yaml"),
        common::fixture_with("invalid_spec/tmpl.yaml", &[("interval", "1m")]),
    )
    .expect("write");
    s.wait_state("uses", 1, "progressing");
    s.wait_config("no rollout invalid", |v| {
        v["config"]["invalid"] == json!({})
    });

    // A run in progress whose documents break: it goes on with the configuration it
    // started with, the problems shown beside it; a resume, which re-reads them, is
    // refused while they do not load.
    std::fs::write(
        config.join("good-a.yaml"),
        held("good-a").replace("weight: 100\n", "weight: all\n"),
    )
    .expect("write");
    let a = wait_for(
        "good-a's problems",
        || s.rollout("good-a"),
        |v| v["invalidSpec"].is_object(),
    );
    assert_eq!(a["state"], "paused(step)", "{a}");
    let (code, body) = s.act("good-a", "resume", Some(OPERATOR));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.to_string().contains("do not load") && body.to_string().contains("weight"),
        "{body}"
    );
    let (code, body) = s.act("good-a", "promote", Some(OPERATOR));
    assert_eq!(code, 200, "{body}");
    // Its run ends on its own configuration; the rollout is then invalid-spec.
    let a = wait_for(
        "good-a's run to end",
        || s.rollout("good-a"),
        |v| v["finished"] == json!(false) && v["state"] == "invalid-spec",
    );
    assert_eq!(a["run"], 1, "{a}");
    assert_eq!(a["weight"], 100.0, "the run finished its phases: {a}");
    // The event stream was told.
    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_held_run_resumes_where_it_was_once_its_backend_loads_without_a_step_applied_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    recorded(&config);
    let log = dir.path().join("steps.log");
    std::fs::write(
        config.join("steps.yaml"),
        common::fixture_with(
            "invalid_spec/steps.yaml",
            &[("log", &log.display().to_string())],
        ),
    )
    .expect("write");
    {
        let s = serve(dir.path());
        s.wait_state("steps", 1, "paused(step)");
        // Killed by PID when dropped: no clean stop.
    }
    // The backend breaks while the server is down: after a restart the run cannot be set
    // up, so it is held, not driven.
    let good = std::fs::read_to_string(config.join("backends.yaml")).expect("read");
    std::fs::write(
        config.join("backends.yaml"),
        good.replace("error-ratio.om", "missing.om"),
    )
    .expect("write");
    let s = serve(dir.path());
    let steps = wait_for(
        "the held run",
        || s.rollout("steps"),
        |v| v["state"] == "invalid-spec",
    );
    assert_eq!(steps["run"], 1, "{steps}");
    assert!(steps["invalidSpec"]["heldRun"].is_number(), "{steps}");
    assert!(
        steps["invalidSpec"]["problems"]
            .to_string()
            .contains("missing.om"),
        "{steps}"
    );
    let (code, body) = s.act("steps", "promote", Some(OPERATOR));
    assert_eq!(code, 409, "a held run takes no action: {body}");

    // Fixed: the run resumes where it was (paused at its step), then finishes.
    std::fs::write(config.join("backends.yaml"), good).expect("write");
    s.wait_state("steps", 1, "paused(step)");
    let (code, body) = s.act("steps", "promote", Some(OPERATOR));
    assert_eq!(code, 200, "{body}");
    s.wait_state("steps", 1, "succeeded");
    let applied = std::fs::read_to_string(&log).expect("the target's log");
    let ids: Vec<&str> = applied
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "a step applied twice: {applied}");
    let weights: Vec<&str> = applied
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        weights.iter().filter(|w| **w == "10").count(),
        1,
        "weight 10 applied once, before the restart: {applied}"
    );
    assert_eq!(
        weights.iter().filter(|w| **w == "100").count(),
        2,
        "weight 100 applied, then finalized, after the fix: {applied}"
    );
    let audit = s.audit("steps", 1);
    let generations: Vec<String> = audit
        .iter()
        .filter(|e| e["action"] == "configuration")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        generations
            .iter()
            .any(|r| r.starts_with("configuration generation 1 → ")),
        "{audit:?}"
    );
}

#[test]
fn run_and_lint_report_each_invalid_rollout_and_run_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    recorded(&config);
    let applied = dir.path().join("applied");
    std::fs::write(
        config.join("good.yaml"),
        common::fixture_with(
            "files/rollout.yaml",
            &[
                ("name", "good"),
                ("applied", &applied.display().to_string()),
            ],
        ),
    )
    .expect("write");
    std::fs::write(
        config.join("typo.yaml"),
        held("typo").replace("weight: 10\n", "weight: ten\n"),
    )
    .expect("write");
    let typo_line = line_of(&config, "typo.yaml", "weight: ten");
    let at = format!("config/typo.yaml:{typo_line}:15: spec.phases[0].weight:");

    let lint = rollgate_in(dir.path(), &["lint", "config", "--format", "json"]);
    assert_eq!(lint.code, 1, "{}", lint.stderr);
    let v: Value = serde_json::from_str(&lint.stdout).expect("json");
    assert_eq!(
        v["rollouts"],
        json!([
            {"name": "good", "state": "ok", "problems": []},
            {"name": "typo", "state": "invalid-spec", "problems": v["rollouts"][1]["problems"]},
        ]),
        "{v}"
    );
    assert!(
        v["rollouts"][1]["problems"].to_string().contains(&at),
        "{v}"
    );

    let run = rollgate_in(
        dir.path(),
        &["run", "config", "--store", "s.db", "--clock", "simulated"],
    );
    assert_eq!(
        run.code, 4,
        "invalid input, after the others ran: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("rollout \"typo\" is invalid-spec") && run.stderr.contains(&at),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("good: succeeded"), "{}", run.stdout);
    assert!(applied.exists(), "the good rollout ran");
    let get = rollgate_in(
        dir.path(),
        &["get", "typo", "--store", "s.db", "--format", "json"],
    );
    assert_eq!(get.code, 0, "{}", get.stderr);
    let v: Value = serde_json::from_str(&get.stdout).expect("json");
    assert_eq!(v["state"], "invalid-spec", "{v}");
    assert!(
        v["invalidSpec"]["problems"]
            .to_string()
            .contains("spec.phases[0].weight")
    );

    // Fixed: the next run starts it, and it is no longer invalid.
    std::fs::write(
        config.join("typo.yaml"),
        held("typo").replace("      pause: {}\n", ""),
    )
    .expect("write");
    let run = rollgate_in(
        dir.path(),
        &["run", "config", "--store", "s.db", "--clock", "simulated"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("typo: succeeded"), "{}", run.stdout);
    let get = rollgate_in(
        dir.path(),
        &["get", "typo", "--store", "s.db", "--format", "json"],
    );
    let v: Value = serde_json::from_str(&get.stdout).expect("json");
    assert_eq!(v["state"], "succeeded", "{v}");
    assert!(v.get("invalidSpec").is_none(), "{v}");
}

#[test]
fn a_run_paused_by_a_wrong_backend_address_resumes_with_the_fixed_documents() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The query is `vector(0.01)`: any data will do.
    let prometheus = runtime.block_on(PromServer::start(
        "# TYPE up gauge\nup 1 1700000000\nup 1 1700000015\n# EOF\n",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let backend = |address: &str| {
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  prometheus:\n    address: {address}\n    timeout: 2s\n"
        )
    };
    // Nothing listens there.
    let wrong = format!("http://127.0.0.1:{}", common::free_port());
    std::fs::write(config.join("backends.yaml"), backend(&wrong)).expect("write");
    std::fs::write(
        config.join("live.yaml"),
        common::fixture("invalid_spec/live.yaml"),
    )
    .expect("write");
    let s = serve(dir.path());
    let paused = s.wait_state("live", 1, "paused(policy)");
    assert_eq!(paused["phaseName"], "canary", "{paused}");

    // The operator fixes the address and resumes: the run re-reads its documents.
    std::fs::write(config.join("backends.yaml"), backend(&prometheus.address)).expect("write");
    let (code, body) = s.act("live", "resume", Some(OPERATOR));
    assert_eq!(code, 200, "{body}");
    s.wait_state("live", 1, "succeeded");
    let audit = s.audit("live", 1);
    let reasons = |action: &str| -> Vec<String> {
        audit
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let adopted = reasons("configuration");
    assert_eq!(adopted.len(), 1, "{audit:?}");
    assert!(
        adopted[0].starts_with("configuration generation 1 → 2: the run adopted"),
        "{adopted:?}"
    );
    // The one run, re-entering its phase: measured against the new address this time.
    let (_, history) = s.read("/api/v1/rollouts/live/history");
    assert_eq!(
        history["runs"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    let passes: Vec<String> = reasons("metric-successful");
    assert!(
        passes.iter().any(|r| r.contains("ratio")),
        "measured after the resume: {audit:?}"
    );
    drop(runtime);
}
