//! How long the CI dry-runs take for an hour of recorded metrics: `rollgate verify
//! --replay` (three metrics measured every 15 s for an hour: 720 plugin measurements) and
//! `rollgate replay` (a four-phase rollout over the same hour, every phase verified every
//! 15 s: 717 measurements and a policy decision after each). The real binary is run, plugins from a warm compile cache, as CI would run it.
//! Prints wall times (median of 7 runs after a warm-up), then one line a script can read,
//! `perf: dry-run verify-ms=… replay-ms=…`. Run with
//! `cargo bench -p rollgate --bench dry_run`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T0: i64 = 1_767_225_600;
const RUNS: usize = 7;

fn recording(dir: &Path) {
    let mut om = String::from("# TYPE http_error_ratio gauge\n");
    for (i, t) in (T0..=T0 + 3600).step_by(15).enumerate() {
        let v = 0.01 + (i % 7) as f64 * 0.001;
        for service in ["checkout", "payments", "search"] {
            om.push_str(&format!(
                "http_error_ratio{{service=\"{service}\"}} {v} {t}\n"
            ));
        }
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.join("hour.om"), om).expect("write recording");
}

fn metric(service: &str, count: u32) -> String {
    format!(
        r#"          - name: {service}
            provider:
              plugin: threshold
              backend: prom
              config:
                backend: prom
                query: 'http_error_ratio{{service="{service}"}}'
                window: 1m
                reduce: avg
                condition: "< 0.05"
            interval: 15s
            count: {count}
"#
    )
}

fn specs(dir: &Path) {
    let all = |count| {
        ["checkout", "payments", "search"]
            .iter()
            .map(|s| metric(s, count))
            .collect::<String>()
    };
    let phase = |name: &str, weight: u32, count: u32| {
        format!(
            "    - name: {name}\n      weight: {weight}\n      verification:\n        metrics:\n{}",
            all(count)
        )
    };
    let rollout = |name: &str, phases: String| {
        format!(
            r#"---
apiVersion: rollgate.dev/v1alpha1
kind: Rollout
metadata:
  name: {name}
spec:
  stableVersion: v1
  canaryVersion: v2
  target:
    none: {{}}
  strategy:
    canary: {{}}
  phases:
{phases}"#
        )
    };
    let text = format!(
        r#"apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: prom
spec:
  replay:
    file: hour.om
{}{}"#,
        rollout("hour", phase("hour", 10, 240)),
        rollout(
            "quarters",
            [
                phase("q1", 10, 60),
                phase("q2", 25, 60),
                phase("q3", 50, 60),
                phase("q4", 100, 59),
            ]
            .concat()
        ),
    );
    std::fs::write(dir.join("specs.yaml"), text).expect("write specs");
}

fn time(args: &[&str], cache: &Path, expect: i32) -> Duration {
    let mut runs = Vec::new();
    for i in 0..=RUNS {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .env("ROLLGATE_CACHE_DIR", cache)
            .output()
            .expect("rollgate runs");
        let took = t.elapsed();
        assert_eq!(
            out.status.code(),
            Some(expect),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i > 0 {
            runs.push(took);
        }
    }
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    recording(dir.path());
    specs(dir.path());
    let d = dir.path().to_string_lossy().into_owned();
    let om = dir.path().join("hour.om").to_string_lossy().into_owned();
    let verify = time(
        &["verify", &d, "--replay", &om, "--rollout", "hour"],
        &cache,
        0,
    );
    let replay = time(
        &["replay", &d, "--metrics", &om, "--rollout", "quarters"],
        &cache,
        0,
    );
    println!("dry runs over an hour of recorded metrics (median of {RUNS}, whole process)");
    println!(
        "  verify --replay: 3 metrics x 240 measurements = 720   {:>8.1} ms",
        verify.as_secs_f64() * 1000.0
    );
    println!(
        "  replay: 4 phases x 3 metrics, 1 h simulated = 717 measurements {:>8.1} ms",
        replay.as_secs_f64() * 1000.0
    );
    println!(
        "perf: dry-run verify-ms={:.1} replay-ms={:.1}",
        verify.as_secs_f64() * 1000.0,
        replay.as_secs_f64() * 1000.0
    );
}
