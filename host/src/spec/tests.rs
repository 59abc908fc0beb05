//! The loader against good and broken documents.

use super::*;
use serde_json::json;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// One file with all four kinds. Line numbers matter: the broken-document table points
/// into it.
fn good() -> String {
    format!(
        r#"apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: prometheus
spec:
  prometheus:
    address: http://127.0.0.1:9090
---
apiVersion: rollgate.dev/v1alpha1
kind: Plugin
metadata:
  name: latency-check
spec:
  source: plugins/latency.wasm
  sha256: sha256:{SHA_UPPER}
  limits: {{memory: 64Mi, timeout: 2s, fuel: 1000000, maxComponentBytes: 1048576}}
  allowedHosts: [api.example.com]
---
apiVersion: rollgate.dev/v1alpha1
kind: VerificationTemplate
metadata:
  name: error-rate
spec:
  args:
    - name: service
    - name: max-error-ratio
      value: "0.05"
    - name: window
      value: 1m
  metrics:
    - name: error-ratio
      provider:
        plugin: threshold
        backend: prometheus
        config:
          query: sum(rate(errors{{service="{{{{args.service}}}}"}}[{{{{ args.window }}}}]))
          max: "{{{{args.max-error-ratio}}}}"
          note: "max {{{{args.max-error-ratio}}}}"
      interval: 30s
      count: 5
---
apiVersion: rollgate.dev/v1alpha1
kind: Rollout
metadata:
  name: checkout
spec:
  stableVersion: v1
  canaryVersion: v2
  args: {{service: checkout, window: 5m}}
  target:
    exec: {{command: [./deploy.sh, --fast], workingDir: deploy}}
  strategy:
    canary: {{}}
  phases:
    - name: canary-10
      weight: 10
      pause: {{duration: 5m}}
      verification:
        templates:
          - name: error-rate
            args: {{max-error-ratio: "0.01"}}
        metrics:
          - name: latency
            provider:
              plugin: latency-check
              backend: prometheus
              config: {{service: "{{{{args.service}}}}"}}
    - name: full
      weight: 100
      pause: {{}}
      verification:
        templates: [error-rate]
      gates:
        - name: qa-signoff
          kind: confirm-promotion
          url: http://qa.internal/approve
  backgroundVerification:
    startingPhase: full
    metrics:
      - name: saturation
        provider: {{plugin: threshold, backend: prometheus}}
        interval: 1m
  progressDeadline: 10m
"#,
        SHA_UPPER = SHA.to_uppercase()
    )
}

fn file() -> PathBuf {
    PathBuf::from("specs/all.yaml")
}

fn errors_of(text: &str) -> Vec<String> {
    match load_str(text, &file()) {
        Ok(_) => vec!["<loaded>".into()],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_good_file_resolves() {
    let bundle = load_str(&good(), &file()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(bundle.backends.len(), 1);
    assert_eq!(bundle.backends[0].0.metadata.name, "prometheus");
    assert_eq!(bundle.backends[0].1, file());

    let plugin = &bundle.plugins["latency-check"];
    assert_eq!(
        plugin.source,
        PluginSourceSpec::File(PathBuf::from("specs/plugins/latency.wasm"))
    );
    assert_eq!(plugin.sha256.as_deref(), Some(SHA));
    assert_eq!(plugin.limits.memory_bytes, Some(64 << 20));
    assert_eq!(plugin.limits.timeout_ms, Some(2_000));
    assert_eq!(plugin.limits.max_component_bytes, Some(1 << 20));
    assert_eq!(plugin.allowed_hosts, ["api.example.com"]);

    let template = &bundle.templates["error-rate"];
    assert_eq!(template.args["service"], None);
    assert_eq!(template.args["max-error-ratio"].as_deref(), Some("0.05"));
    assert_eq!(
        template.metrics[0].config["max"],
        json!("{{args.max-error-ratio}}"),
        "templates keep the unsubstituted form"
    );

    let rollout = &bundle.rollouts[0];
    assert_eq!(rollout.name, "checkout");
    assert_eq!(rollout.strategy, Strategy::Canary);
    assert_eq!(
        rollout.target,
        TargetSpec::Exec(ExecTargetSpec {
            command: vec!["./deploy.sh".into(), "--fast".into()],
            ready_command: None,
            timeout_ms: 300_000,
            env: BTreeMap::new(),
            working_dir: Some(PathBuf::from("deploy")),
        })
    );
    assert_eq!(rollout.progress_deadline_ms, Some(600_000));
    assert_eq!(rollout.failure_policy.plugin, "default-policy");
    assert_eq!(rollout.readiness, Readiness::default());
    assert_eq!(rollout.rollback, RollbackMode::Immediate);

    let first = &rollout.phases[0];
    assert_eq!(first.pause, Some(PauseSpec::Timed(300_000)));
    let names: Vec<&str> = first.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["error-ratio", "latency"],
        "templates first, then inline"
    );
    let er = &first.metrics[0];
    assert_eq!(er.template.as_deref(), Some("error-rate"));
    assert_eq!(
        er.config["max"],
        json!(0.01),
        "per-use arg, converted to a number"
    );
    assert_eq!(
        er.config["note"],
        json!("max 0.01"),
        "textual when not alone"
    );
    assert_eq!(
        er.config["query"],
        json!("sum(rate(errors{service=\"checkout\"}[5m]))"),
        "rollout args override template defaults"
    );
    assert_eq!(
        er.args,
        BTreeMap::from([
            ("max-error-ratio".to_string(), "0.01".to_string()),
            ("service".to_string(), "checkout".to_string()),
            ("window".to_string(), "5m".to_string()),
        ])
    );
    assert_eq!(er.backend.as_deref(), Some("prometheus"));
    assert_eq!(er.interval_ms, Some(30_000));
    assert_eq!(er.count, Some(5));
    // Defaults.
    assert_eq!(er.failure_limit, 0);
    assert_eq!(er.inconclusive_limit, 0);
    assert_eq!(er.consecutive_error_limit, 4);
    assert_eq!(er.no_data, NoDataAction::NoData);
    assert_eq!(er.no_data_limit, 0);
    assert_eq!(er.retention, 10);
    assert_eq!(er.initial_delay_ms, 0);
    assert!(!er.dry_run);

    let latency = &first.metrics[1];
    assert_eq!(latency.template, None);
    assert_eq!(latency.config, json!({"service": "checkout"}));
    assert_eq!(latency.interval_ms, None);
    assert_eq!(latency.count, None);

    let full = &rollout.phases[1];
    assert_eq!(full.pause, Some(PauseSpec::Indefinite));
    assert_eq!(
        full.metrics[0].config["max"],
        json!(0.05),
        "the template default when the use sets none"
    );
    assert_eq!(
        full.gates,
        [GateSpec {
            name: "qa-signoff".into(),
            kind: GateKind::ConfirmPromotion,
            url: "http://qa.internal/approve".into(),
            timeout_ms: 10_000,
            retries: 2,
            interval_ms: 30_000,
        }]
    );

    let background = rollout.background.as_ref().expect("background");
    assert_eq!(background.starting_phase, 1);
    assert_eq!(background.metrics[0].name, "saturation");
    assert_eq!(background.metrics[0].count, None, "background may run on");
}

#[test]
fn broken_documents_say_where_and_what() {
    let g = good();
    // (what, text, expected errors)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "yaml syntax",
            g.replace("  canaryVersion: v2", "  canaryVersion: [v2"),
            vec!["specs/all.yaml:49:7: illegal placement of ':' indicator"],
        ),
        (
            "unknown field in a nested metric",
            g.replace("      count: 5\n", "      count: 5\n      cont: 5\n"),
            vec![
                "specs/all.yaml:41:7: spec.metrics[0].cont: unknown field `cont`, expected one of name, provider, interval, count, initialDelay, failureLimit, inconclusiveLimit, consecutiveErrorLimit, consecutiveFailureLimit, consecutiveSuccessLimit, noData, noDataLimit, dryRun, measurementRetention",
            ],
        ),
        (
            "missing metadata.name",
            g.replace("  name: checkout\n", "  labels: {}\n"),
            vec!["specs/all.yaml:45:3: metadata: missing field `name`"],
        ),
        (
            "bad apiVersion",
            g.replacen("rollgate.dev/v1alpha1", "rollgate.dev/v9", 1),
            vec![
                "specs/all.yaml:1:13: apiVersion: apiVersion \"rollgate.dev/v9\" is not supported; use rollgate.dev/v1alpha1",
            ],
        ),
        (
            "unknown kind",
            g.replace("kind: Plugin", "kind: Plugn"),
            vec![
                "specs/all.yaml:10:7: kind: unknown kind \"Plugn\"; expected one of MetricBackend, Plugin, VerificationTemplate, Rollout",
                "specs/all.yaml:65:23: spec.phases[0].verification.metrics[0].provider.plugin: plugin \"latency-check\" not found; known plugins: baseline-ratio, burn-rate, canary-judge, default-policy, http-check, threshold",
            ],
        ),
        (
            "bad duration",
            g.replace("interval: 30s", "interval: 30x"),
            vec![
                "specs/all.yaml:39:17: spec.metrics[0].interval: invalid duration \"30x\": unknown unit \"x\" (use ms, s, m, h or d)",
            ],
        ),
        (
            "count without interval",
            g.replace("      interval: 30s\n", ""),
            vec![
                "specs/all.yaml:39:14: spec.metrics[0].count: count 5 needs an interval (the time between measurements), e.g. `interval: 30s`",
            ],
        ),
        (
            "unknown template",
            g.replace("templates: [error-rate]", "templates: [eror-rate]"),
            vec![
                "specs/all.yaml:72:21: spec.phases[1].verification.templates[0]: template \"eror-rate\" not found; known templates: error-rate",
            ],
        ),
        (
            "unknown plugin",
            g.replace("plugin: latency-check", "plugin: latency"),
            vec![
                "specs/all.yaml:65:23: spec.phases[0].verification.metrics[0].provider.plugin: plugin \"latency\" not found; known plugins: baseline-ratio, burn-rate, canary-judge, default-policy, http-check, latency-check, threshold",
            ],
        ),
        (
            "unknown backend",
            g.replace(
                "provider: {plugin: threshold, backend: prometheus}",
                "provider: {plugin: threshold, backend: prom}",
            ),
            vec![
                "specs/all.yaml:81:48: spec.backgroundVerification.metrics[0].provider.backend: backend \"prom\" not found; known backends: prometheus",
            ],
        ),
        (
            "unknown arg in config",
            g.replace(
                "note: \"max {{args.max-error-ratio}}\"",
                "note: \"{{args.nope}}\"",
            ),
            vec![
                "specs/all.yaml:38:17: spec.metrics[0].provider.config.note: unknown arg \"nope\" in {{args.nope}}; template \"error-rate\" declares: max-error-ratio, service, window",
            ],
        ),
        (
            "required arg not supplied",
            g.replace("service: checkout, window: 5m", "window: 5m")
                .replace("\"{{args.service}}\"}", "x}"),
            vec![
                "specs/all.yaml:60:13: spec.phases[0].verification.templates[0]: template \"error-rate\" needs arg \"service\": set it in the rollout's spec.args or in this reference's args",
                "specs/all.yaml:72:21: spec.phases[1].verification.templates[0]: template \"error-rate\" needs arg \"service\": set it in the rollout's spec.args or in this reference's args",
            ],
        ),
        (
            "duplicate metric from template and inline",
            g.replace("- name: latency", "- name: error-ratio"),
            vec![
                "specs/all.yaml:63:19: spec.phases[0].verification.metrics[0].name: metric \"error-ratio\" is defined twice in this verification: by template \"error-rate\" and inline",
            ],
        ),
        (
            "weight 120",
            g.replace("weight: 100", "weight: 120"),
            vec![
                "specs/all.yaml:69:15: spec.phases[1].weight: weight 120 is out of range; use 0 to 100 (percent)",
            ],
        ),
        (
            "decreasing canary weights",
            g.replace("weight: 100", "weight: 5"),
            vec![
                "specs/all.yaml:69:15: spec.phases[1].weight: weight 5 is below the previous phase's 10; canary weights may not decrease",
            ],
        ),
        (
            "blue-green last phase not 100",
            g.replace("canary: {}", "blueGreen: {}")
                .replace("weight: 10\n", "weight: 100\n")
                .replace("weight: 100\n      pause: {}", "weight: 0\n      pause: {}"),
            vec![
                "specs/all.yaml:69:15: spec.phases[1].weight: the last phase of a blue-green rollout must have weight 100 (cut over), not 0",
            ],
        ),
        (
            "two targets",
            g.replace("    exec: {command", "    none: {}\n    exec: {command"),
            vec![
                "specs/all.yaml:51:5: spec.target: the target sets exec and none; set exactly one of exec, webhook, none",
            ],
        ),
        (
            "duplicate rollout name",
            format!("{g}---\n{}", &g[g.rfind("apiVersion").unwrap_or(0)..]),
            vec![
                "specs/all.yaml:88:9: metadata.name: duplicate Rollout name \"checkout\": already declared at specs/all.yaml:45:9",
            ],
        ),
        (
            "sha256 missing for a file plugin",
            g.replace(&format!("  sha256: sha256:{}\n", SHA.to_uppercase()), ""),
            vec![
                "specs/all.yaml:14:11: spec.sha256: a plugin file must be pinned: add `sha256:` with the component's digest (`sha256sum plugins/latency.wasm`)",
            ],
        ),
        (
            "sha256 for a built-in",
            g.replace("source: plugins/latency.wasm", "source: builtin:threshold"),
            vec![
                "specs/all.yaml:15:11: spec.sha256: a built-in plugin is pinned by rollgate itself; remove sha256",
            ],
        ),
        (
            "oci source by tag only",
            g.replace(
                "source: plugins/latency.wasm",
                "source: oci://registry.example:5000/plugins/latency:v1",
            )
            .replace(&format!("  sha256: sha256:{}\n", SHA.to_uppercase()), ""),
            vec![
                "specs/all.yaml:14:11: spec.source: oci://registry.example:5000/plugins/latency:v1 is pinned by tag only, and a tag can move: pin the digest (`rollgate plugin pull oci://registry.example:5000/plugins/latency:v1` prints it) and write oci://registry.example:5000/plugins/latency@sha256:…",
            ],
        ),
        (
            "oci source with a sha256 too, and an inline password",
            g.replace(
                "source: plugins/latency.wasm",
                &format!("source: oci://registry.example/p/latency@sha256:{SHA}"),
            )
            .replace(
                "  allowedHosts: [api.example.com]\n",
                "  allowedHosts: [api.example.com]\n  auth: {username: env:U, password: hunter2}\n",
            ),
            vec![
                "specs/all.yaml:15:11: spec.sha256: an oci:// source is pinned by the digest in it; remove sha256",
                "specs/all.yaml:18:37: spec.auth.password: credentials are given by reference only: write env:NAME or file:PATH, never the value itself",
            ],
        ),
        (
            "registry settings on a file source",
            g.replace(
                "  allowedHosts: [api.example.com]\n",
                "  allowedHosts: [api.example.com]\n  insecure: true\n",
            ),
            vec![
                "specs/all.yaml:18:13: spec.insecure: only an oci:// source is pulled from a registry; remove it",
            ],
        ),
        (
            "plugin named like a built-in",
            g.replace("name: latency-check", "name: threshold")
                .replace("plugin: latency-check", "plugin: threshold"),
            vec![
                "specs/all.yaml:12:9: metadata.name: \"threshold\" is the name of a built-in plugin; choose another name",
            ],
        ),
        (
            "phase metric that never ends",
            g.replace(
                "              config: {service: \"{{args.service}}\"}",
                "              config: {service: \"{{args.service}}\"}\n            interval: 1m",
            ),
            vec![
                "specs/all.yaml:68:23: spec.phases[0].verification.metrics[0].interval: metric \"latency\" has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
            ],
        ),
        (
            "phase metric whose success streak may never come",
            g.replace(
                "              config: {service: \"{{args.service}}\"}",
                "              config: {service: \"{{args.service}}\"}\n            interval: 1m\n            consecutiveSuccessLimit: 3\n            failureLimit: -1",
            ),
            vec![
                "specs/all.yaml:68:23: spec.phases[0].verification.metrics[0].interval: metric \"latency\" has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
            ],
        ),
        (
            "a success streak ends a phase metric when failures are limited",
            g.replace(
                "              config: {service: \"{{args.service}}\"}",
                "              config: {service: \"{{args.service}}\"}\n            interval: 1m\n            consecutiveSuccessLimit: 3",
            ),
            vec!["<loaded>"],
        ),
        (
            "unknown starting phase",
            g.replace("startingPhase: full", "startingPhase: ful"),
            vec![
                "specs/all.yaml:78:20: spec.backgroundVerification.startingPhase: phase \"ful\" not found; phases: canary-10, full",
            ],
        ),
        (
            "bad gate url",
            g.replace(
                "url: http://qa.internal/approve",
                "url: qa.internal/approve",
            ),
            vec![
                "specs/all.yaml:76:16: spec.phases[1].gates[0].url: invalid URL \"qa.internal/approve\": use an http:// or https:// URL",
            ],
        ),
        (
            "bad name",
            g.replace("name: checkout", "name: Checkout"),
            vec![
                "specs/all.yaml:45:9: metadata.name: invalid name \"Checkout\": use 1-63 lowercase letters, digits or '-', starting with a letter and not ending with '-'",
            ],
        ),
        (
            "wrong type in the second phase",
            g.replace("weight: 100", "weight: all"),
            vec![
                "specs/all.yaml:69:15: spec.phases[1].weight: invalid floating point: expected a number",
            ],
        ),
        (
            "wrong type",
            g.replace("count: 5", "count: five"),
            vec![
                "specs/all.yaml:40:14: spec.metrics[0].count: invalid u32: expected a whole number, 0 or more",
            ],
        ),
        (
            "too many replicas",
            g.replace("    canary: {}", "    rolling: {replicas: 10001}"),
            vec![
                "specs/all.yaml:53:25: spec.strategy.rolling.replicas: 10001 replicas are too many; use 1 to 10000",
            ],
        ),
        (
            "replicas at the cap",
            g.replace("    canary: {}", "    rolling: {replicas: 10000}"),
            vec!["<loaded>"],
        ),
        (
            "too many webhook retries",
            g.replace(
                "    exec: {command: [./deploy.sh, --fast], workingDir: deploy}",
                "    webhook: {url: https://deploy.example/step, retries: 21}",
            ),
            vec![
                "specs/all.yaml:51:58: spec.target.webhook.retries: 21 is out of range; use 0 to 20",
            ],
        ),
        (
            "webhook retries at the cap",
            g.replace(
                "    exec: {command: [./deploy.sh, --fast], workingDir: deploy}",
                "    webhook: {url: https://deploy.example/step, retries: 20}",
            ),
            vec!["<loaded>"],
        ),
        (
            "too many gate retries",
            g.replace(
                "          url: http://qa.internal/approve\n",
                "          url: http://qa.internal/approve\n          retries: 1000000\n",
            ),
            vec![
                "specs/all.yaml:77:20: spec.phases[1].gates[0].retries: 1000000 is out of range; use 0 to 20",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, expected) in &cases {
        let got = errors_of(text);
        if got != *expected {
            failures.push(format!(
                "{what}:\n  got      {got:#?}\n  expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn variants_resolve_to_the_model() {
    let g = good();
    let rolling = g.replace(
        "    canary: {}",
        "    rolling: {replicas: 3, parallelism: 2, delayBetweenBatches: 5s}",
    );
    let r = &load_str(&rolling, &file()).expect("rolling")[..];
    assert_eq!(
        r.strategy,
        Strategy::Rolling {
            instances: vec![
                "instance-1".into(),
                "instance-2".into(),
                "instance-3".into()
            ],
            parallelism: 2,
            delay_between_batches_ms: 5_000,
        }
    );

    let webhook = g.replace(
        "    exec: {command: [./deploy.sh, --fast], workingDir: deploy}",
        "    webhook: {url: https://deploy.example/step, headers: {Authorization: env:TOKEN}}",
    ) + "  rollback: {mode: gradual, stepPause: 30s}\n  onDeadline: rollback\n  readiness: {timeout: 1m}\n  failurePolicy: {plugin: latency-check, config: {failed: rollback}}\n";
    let r = &load_str(&webhook, &file()).expect("webhook")[..];
    assert_eq!(
        r.target,
        TargetSpec::Webhook(WebhookTargetSpec {
            url: "https://deploy.example/step".into(),
            ready_url: None,
            timeout_ms: 10_000,
            retries: 3,
            retry_delay_ms: 1_000,
            headers: BTreeMap::from([("Authorization".to_string(), "env:TOKEN".to_string())]),
        })
    );
    assert_eq!(
        r.rollback,
        RollbackMode::Gradual {
            step_pause_ms: 30_000
        }
    );
    assert_eq!(r.on_deadline, DeadlineAction::Rollback);
    let reversal = webhook.replace(
        "rollback: {mode: gradual, stepPause: 30s}",
        "rollback: {mode: new-rollout}",
    );
    assert_eq!(
        load_str(&reversal, &file()).expect("new-rollout")[..].rollback,
        RollbackMode::NewRollout
    );
    // stepPause belongs to gradual alone, and the schema knows the mode too.
    let paced = webhook.replace("mode: gradual", "mode: new-rollout");
    let errors = errors_of(&paced);
    assert!(
        errors.len() == 1 && errors[0].contains("stepPause applies to `mode: gradual` only"),
        "{errors:?}"
    );
    for doc in as_json_documents(&reversal) {
        assert_eq!(schema_errors(&doc), Vec::<String>::new());
    }
    assert_eq!(
        r.readiness,
        Readiness {
            timeout_ms: 60_000,
            interval_ms: 2_000
        }
    );
    assert_eq!(
        r.failure_policy,
        PolicyRef {
            plugin: "latency-check".into(),
            config: json!({"failed": "rollback"}),
            config_at: r.failure_policy.config_at.clone(),
        }
    );
    // Where the configuration is written, for problems a plugin finds in it later.
    let at = r.failure_policy.config_at.clone().expect("config position");
    assert_eq!(
        (at.file.clone(), at.line, at.col, at.path.as_str()),
        (file(), 87, 50, "spec.failurePolicy.config")
    );

    let builtin = g
        .replace("source: plugins/latency.wasm", "source: builtin:threshold")
        .replace(&format!("  sha256: sha256:{}\n", SHA.to_uppercase()), "");
    let b = load_str(&builtin, &file()).expect("builtin");
    assert_eq!(
        b.plugins["latency-check"].source,
        PluginSourceSpec::Builtin("threshold".into())
    );
}

/// The one rollout of a bundle.
impl std::ops::Index<std::ops::RangeFull> for Bundle {
    type Output = RolloutSpec;
    fn index(&self, _: std::ops::RangeFull) -> &RolloutSpec {
        &self.rollouts[0]
    }
}

/// The template and the rollout of [`good`], in two files of a folder tree.
fn split_good(dir: &Path) -> (PathBuf, PathBuf) {
    let g = good();
    let at = g
        .find("apiVersion: rollgate.dev/v1alpha1\nkind: Rollout")
        .expect("rollout");
    let templates = dir.join("a-shared.yaml");
    let rollouts = dir.join("rollouts").join("checkout.yml");
    std::fs::create_dir_all(rollouts.parent().expect("parent")).expect("mkdir");
    std::fs::write(&templates, &g[..at]).expect("write");
    std::fs::write(&rollouts, &g[at..]).expect("write");
    (templates, rollouts)
}

#[test]
fn a_folder_loads_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (templates, rollouts) = split_good(dir.path());
    std::fs::write(dir.path().join("notes.txt"), "not yaml").expect("write");
    let bundle = load(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(bundle.rollouts.len(), 1);
    assert_eq!(bundle.rollouts[0].file, rollouts);
    assert_eq!(bundle.templates["error-rate"].file, templates);
    assert_eq!(
        bundle.rollouts[0].phases[0].metrics[0].template.as_deref(),
        Some("error-rate")
    );
    assert_eq!(
        bundle.plugins["latency-check"].source,
        PluginSourceSpec::File(dir.path().join("plugins/latency.wasm"))
    );
}

#[test]
fn a_relative_path_loads_as_absolute_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (templates, rollouts) = split_good(dir.path());
    let relative = crate::deliver::testing::relative_to_cwd(dir.path());
    let bundle = load(std::slice::from_ref(&relative)).unwrap_or_else(|e| panic!("{e:#?}"));
    // The same files, named absolutely: what a relative path inside them resolves against
    // no longer depends on the directory the command runs in later.
    let rollout = &bundle.rollouts[0].file;
    assert!(rollout.is_absolute(), "{}", rollout.display());
    assert_eq!(
        rollout.canonicalize().expect("exists"),
        rollouts.canonicalize().expect("exists")
    );
    let template = &bundle.templates["error-rate"].file;
    assert!(template.is_absolute(), "{}", template.display());
    assert_eq!(
        template.canonicalize().expect("exists"),
        templates.canonicalize().expect("exists")
    );
    let PluginSourceSpec::File(plugin) = &bundle.plugins["latency-check"].source else {
        panic!("{:?}", bundle.plugins["latency-check"].source);
    };
    assert!(plugin.is_absolute(), "{}", plugin.display());
    assert!(
        plugin.ends_with("plugins/latency.wasm"),
        "{}",
        plugin.display()
    );
    // One file named relatively too; `load_str` keeps the name it is given.
    let bundle = load(&[
        relative.join("rollouts/checkout.yml"),
        relative.join("a-shared.yaml"),
    ])
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(bundle.rollouts[0].file.is_absolute());
    let kept = load_str(&good(), &file()).expect("good");
    assert_eq!(kept.rollouts[0].file, file());
}

#[test]
fn a_symlinked_folder_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, rollouts) = split_good(dir.path());
    // A loop: rollouts/up -> .. ; following it would recurse until the stack overflows.
    std::os::unix::fs::symlink("..", dir.path().join("rollouts/up")).expect("symlink");
    // A symlinked file is still read.
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).expect("mkdir");
    std::os::unix::fs::symlink(&rollouts, linked.join("again.yaml")).expect("symlink");
    let errors = load(&[dir.path().to_path_buf()]).expect_err("the rollout twice");
    // Read once through the file link, once where it is — and nothing through `up`.
    let prefix = format!("{}/", dir.path().display());
    let got: Vec<String> = errors
        .iter()
        .map(|e| format!("{e}").replace(&prefix, ""))
        .collect();
    assert_eq!(
        got,
        [
            "rollouts/checkout.yml:4:9: metadata.name: duplicate Rollout name \"checkout\": already declared at linked/again.yaml:4:9"
        ]
    );
    std::fs::remove_file(linked.join("again.yaml")).expect("rm");
    let bundle = load(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(bundle.rollouts.len(), 1);
    assert_eq!(bundle.rollouts[0].file, rollouts);
}

#[test]
fn every_problem_of_a_load_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (templates, rollouts) = split_good(dir.path());
    let t = std::fs::read_to_string(&templates).expect("read");
    std::fs::write(&templates, t.replace("interval: 30s", "interval: 30x")).expect("write");
    let r = std::fs::read_to_string(&rollouts).expect("read");
    std::fs::write(
        &rollouts,
        r.replace("weight: 100", "weight: 120")
            .replace("startingPhase: full", "startingPhase: ful"),
    )
    .expect("write");
    let missing = dir.path().join("missing.yaml");
    let errors = load(&[dir.path().to_path_buf(), missing.clone()]).expect_err("invalid");
    let got: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}: {}",
                e.file.strip_prefix(dir.path()).unwrap_or(&e.file).display(),
                e.line,
                e.col,
                e.path
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "missing.yaml:0:0: ",
            "a-shared.yaml:39:17: spec.metrics[0].interval",
            "rollouts/checkout.yml:28:15: spec.phases[1].weight",
            "rollouts/checkout.yml:37:20: spec.backgroundVerification.startingPhase",
        ]
    );
    assert!(errors[0].message.starts_with("cannot read: "), "{errors:?}");
}

#[test]
fn substitution_table() {
    let args = BTreeMap::from([
        ("n".to_string(), "0.05".to_string()),
        ("b".to_string(), "true".to_string()),
        ("s".to_string(), "checkout".to_string()),
        ("i".to_string(), " 12 ".to_string()),
    ]);
    let cases = [
        (json!("{{args.n}}"), json!(0.05)),
        (json!("{{ args.n }}"), json!(0.05)),
        (json!("{{args.b}}"), json!(true)),
        (json!("{{args.i}}"), json!(12)),
        (json!("{{args.s}}"), json!("checkout")),
        (json!(" {{args.n}}"), json!(" 0.05")),
        (json!("x{{args.n}}{{args.s}}"), json!("x0.05checkout")),
        (json!("{{args.unknown}}"), json!("{{args.unknown}}")),
        (json!("{{ other }}"), json!("{{ other }}")),
        (
            json!({"a": ["{{args.s}}", 1]}),
            json!({"a": ["checkout", 1]}),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            super::resolve::substitute_value(&input, &args),
            expected,
            "{input}"
        );
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Ok(250));
    assert_eq!(parse_duration("30s"), Ok(30_000));
    assert_eq!(parse_duration("5m"), Ok(300_000));
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
    assert!(parse_duration("30x").is_err());
    assert!(parse_duration("30").is_err());
}

#[test]
fn schemas_cover_every_kind_and_refuse_unknown_fields() {
    let schemas = json_schemas();
    assert_eq!(
        schemas.keys().copied().collect::<Vec<_>>(),
        ["MetricBackend", "Plugin", "Rollout", "VerificationTemplate"]
    );
    for (kind, schema) in &schemas {
        assert_eq!(schema["additionalProperties"], json!(false), "{kind}");
        assert_eq!(schema["properties"]["kind"]["const"], json!(kind), "{kind}");
        assert_eq!(
            schema["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema"),
            "{kind}"
        );
    }
    let text = schemas["Rollout"].to_string();
    assert!(text.contains("backgroundVerification"), "{text}");
    assert!(text.contains("consecutiveSuccessLimit"), "{text}");
}

/// The documents of a YAML text as JSON values, as a schema validator sees them.
fn as_json_documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text).expect("YAML")
}

fn schema_errors(doc: &serde_json::Value) -> Vec<String> {
    let schemas = json_schemas();
    let kind = doc["kind"].as_str().expect("kind");
    let validator = jsonschema::validator_for(&schemas[kind]).expect("a valid JSON Schema");
    validator
        .iter_errors(doc)
        .map(|e| format!("{kind} {}: {e}", e.instance_path()))
        .collect()
}

/// The MetricBackend schema is derived from the structs the loader parses backends into:
/// what one refuses, the other does too.
#[test]
fn the_backend_schema_is_the_parsers() {
    let backend = |spec: serde_json::Value| {
        json!({
            "apiVersion": "rollgate.dev/v1alpha1",
            "kind": "MetricBackend",
            "metadata": {"name": "b"},
            "spec": spec,
        })
    };
    let ok = backend(json!({"prometheus": {"address": "http://x", "tls": {"caFile": "ca.pem"}}}));
    assert_eq!(schema_errors(&ok), Vec::<String>::new());
    for bad in [
        json!({"prometheus": {"address": "http://x", "timout": "5s"}}),
        json!({"prometheus": {"timeout": "5s"}}),
        json!({"prometheus": {"address": "http://x", "basicAuth": {"username": "u"}}}),
        json!({"replay": {"file": "r.om", "extra": 1}}),
        json!({"replay": {"file": "r.om"}, "maxConcurrency": "eight"}),
    ] {
        assert!(!schema_errors(&backend(bad.clone())).is_empty(), "{bad}");
    }
    // Datadog's settings are known to a build with the feature; to others the section is
    // free-form (the loader refuses it with the fix).
    let datadog =
        backend(json!({"datadog": {"apiKey": "env:K", "applicationKey": "env:A", "sight": "eu"}}));
    assert_eq!(
        schema_errors(&datadog).is_empty(),
        cfg!(not(feature = "datadog"))
    );
}

/// What the loader accepts, the published schemas accept: the test file and every example.
#[test]
fn the_schemas_accept_what_the_loader_accepts() {
    let mut texts = vec![("good()".to_string(), good())];
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for entry in walk(&examples) {
        if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&entry).expect("read example");
            texts.push((entry.display().to_string(), text));
        }
    }
    assert!(
        texts.len() > 3,
        "the examples were not found under {}",
        examples.display()
    );
    let mut checked = 0;
    for (name, text) in &texts {
        for doc in as_json_documents(text) {
            assert_eq!(schema_errors(&doc), Vec::<String>::new(), "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} documents checked");
}

/// Mistakes the loader refuses, the schemas refuse too, so an editor flags them first.
#[test]
fn the_schemas_refuse_what_the_loader_refuses() {
    let cases = [
        // An unknown field in the spec.
        (
            "spec:\n  stableVersion: v1\n",
            "spec:\n  stableVersion: v1\n  colour: blue\n",
        ),
        // A misspelt strategy.
        ("    canary: {}\n", "    canery: {}\n"),
        // A weight that is not a number.
        ("weight: 10\n", "weight: ten\n"),
    ];
    let rollout = r#"apiVersion: rollgate.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  stableVersion: v1
  canaryVersion: v2
  target:
    none: {}
  strategy:
    canary: {}
  phases:
    - name: p10
      weight: 10
"#;
    assert_eq!(
        schema_errors(&as_json_documents(rollout)[0]),
        Vec::<String>::new()
    );
    assert_eq!(errors_of(rollout), vec!["<loaded>".to_string()]);
    for (from, to) in cases {
        assert!(rollout.contains(from), "{from:?}");
        let broken = rollout.replacen(from, to, 1);
        assert_ne!(
            errors_of(&broken),
            vec!["<loaded>".to_string()],
            "the loader took {to:?}"
        );
        assert!(
            !schema_errors(&as_json_documents(&broken)[0]).is_empty(),
            "the schema took {to:?}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn errors_name_files_relative_to_the_current_directory_when_below_it() {
    let cwd = std::env::current_dir().expect("cwd");
    let error = |file: PathBuf| SpecError {
        file,
        line: 3,
        col: 4,
        path: "spec".into(),
        message: "m".into(),
    };
    let outside = PathBuf::from("/elsewhere/specs/b.yaml");
    let shortened = super::shorten(vec![
        error(cwd.join("specs/a.yaml")),
        error(outside.clone()),
    ]);
    assert_eq!(shortened[0].to_string(), "specs/a.yaml:3:4: spec: m");
    assert_eq!(shortened[1].file, outside);
}

#[test]
fn every_yaml_line_break_counts_as_one_line() {
    // The same broken document with \n, \r\n and lone \r line breaks: the problem is on
    // line 8 each time (lone CRs once gave line numbers past the end of the file).
    let lines = [
        "apiVersion: rollgate.dev/v1alpha1",
        "kind: MetricBackend",
        "metadata:",
        "  name: prom",
        "---",
        "apiVersion: rollgate.dev/v1alpha1",
        "kind: VerificationTemplate",
        "bogus: 1",
    ];
    for newline in ["\n", "\r\n", "\r"] {
        let text = lines.join(newline) + newline;
        let errors = errors_of(&text);
        assert!(
            errors.iter().any(|e| e.contains(":8:1:")),
            "{newline:?}: {errors:?}"
        );
        for e in &errors {
            let line: usize = e
                .strip_prefix("specs/all.yaml:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!((1..=8).contains(&line), "{newline:?}: {e}");
        }
    }
}
