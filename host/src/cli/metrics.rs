//! `rollgate metrics query|record`.
//!
//! - `query`: run one query on a declared backend, now or at/over given times, and print
//!   the normalised result. Exit 0 data, 2 no data, 3 query failed, 4 invalid input.
//! - `record`: capture a query's range from a backend into a recording the `replay`
//!   backend serves (merged into the file if it exists). Exit 0, 3 query failed, 4 invalid
//!   input.

use super::time::parse_time;
use super::{Format, Out, exit};
use crate::engine::clock::now_ms;
use crate::metrics::replay::Recording;
use crate::metrics::{Backends, DataStatus, Query, Window, config, record};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Run one query on a backend and print the series.
    Query(QueryArgs),
    /// Record a query's range from a backend into a file for the replay backend.
    Record(RecordArgs),
}

// Which query to run on which declared backend (the flags `query` and `record` share).
#[derive(Debug, Args)]
pub struct BackendQuery {
    /// YAML files with MetricBackend documents.
    #[arg(long = "backends", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// The backend's name (metadata.name).
    #[arg(long)]
    backend: String,
    /// The query, in the backend's language.
    #[arg(long)]
    query: String,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    on: BackendQuery,
    /// Evaluate at this time (default now).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    at: Option<String>,
    /// Evaluate over a range from this time...
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// ...to this time.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Resolution of a range (default: range / 60, at least 1s).
    #[arg(long)]
    step: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    on: BackendQuery,
    /// Start of the range.
    #[arg(long)]
    from: String,
    /// End of the range (default now).
    #[arg(long, default_value = "now")]
    to: String,
    /// Resolution (default: range / 60, at least 1s).
    #[arg(long)]
    step: Option<String>,
    /// The recording to write (rollgate JSON); merged into if it exists.
    #[arg(long)]
    out: PathBuf,
}

pub async fn run(cmd: MetricsCommand) -> u8 {
    let mut out = Out::default();
    let code = match cmd {
        MetricsCommand::Query(args) => query(args, &mut out).await,
        MetricsCommand::Record(args) => record_cmd(args, &mut out).await,
    };
    out.flush();
    code
}

/// The backends of `--backends` files; on problems, print each (`rollgate: …`) and give
/// `None`.
pub(super) fn load_backends(files: &[PathBuf], out: &mut Out) -> Option<Backends> {
    match backends_of(files) {
        Ok(b) => Some(b),
        Err(problems) => {
            for p in problems {
                out.err(format!("rollgate: {p}"));
            }
            None
        }
    }
}

/// Read `--backends` files (or folders) with the spec loader, as `lint` and `run` read
/// specs, and build every backend they declare, as the engine's setup does. The files
/// hold MetricBackend documents only. Every problem is given: the loader's at
/// `file:line:col`, a build's as `file: MetricBackend "NAME": field: what`.
fn backends_of(files: &[PathBuf]) -> Result<Backends, Vec<String>> {
    let bundle = crate::spec::load(files)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let at = |file: &Path, name: &str| {
        format!(
            "{}: MetricBackend {name:?}",
            crate::spec::shown_path(file).display()
        )
    };
    let mut problems = Vec::new();
    let others = bundle
        .plugins
        .values()
        .map(|p| ("Plugin", &p.name, &p.file))
        .chain(
            bundle
                .templates
                .values()
                .map(|t| ("VerificationTemplate", &t.name, &t.file)),
        )
        .chain(
            bundle
                .rollouts
                .iter()
                .map(|r| ("Rollout", &r.name, &r.file)),
        );
    for (kind, name, file) in others {
        problems.push(format!(
            "{}: kind {kind:?} where a MetricBackend was expected",
            at(file, name)
        ));
    }
    let mut backends = Backends::new();
    for (doc, file) in &bundle.backends {
        // Relative to the current directory when below it, as the files were named: a
        // build error quotes the paths it tried.
        let base = crate::spec::shown_path(file.parent().unwrap_or(Path::new(".")));
        match config::build(doc, &base) {
            Ok((backend, options)) => backends.insert(doc.metadata.name.clone(), backend, options),
            Err(message) => problems.push(format!("{}: {message}", at(file, &doc.metadata.name))),
        }
    }
    if problems.is_empty() {
        Ok(backends)
    } else {
        Err(problems)
    }
}

/// Start, end and step of a range, checked.
fn range(from: &str, to: &str, step: Option<&str>, out: &mut Out) -> Option<(i64, i64, u64)> {
    let now = now_ms();
    let parsed = parse_time(from, now).and_then(|f| Ok((f, parse_time(to, now)?)));
    let (start, end) = match parsed {
        Ok(r) => r,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return None;
        }
    };
    if end < start {
        out.err(format!("rollgate: --to ({to}) is before --from ({from})"));
        return None;
    }
    let step = match step {
        Some(s) => match rollgate_duration::parse_ms(s) {
            Ok(0) | Err(_) => {
                out.err(format!(
                    "rollgate: --step {s:?}: give a duration longer than 0, e.g. 15s"
                ));
                return None;
            }
            Ok(ms) => ms,
        },
        None => (((end - start) / 60) as u64).max(1000),
    };
    Some((start, end, step))
}

async fn query(args: QueryArgs, out: &mut Out) -> u8 {
    let Some(backends) = load_backends(&args.on.files, out) else {
        return exit::INVALID_INPUT;
    };
    let window = match (&args.from, &args.to) {
        (Some(from), Some(to)) => match range(from, to, args.step.as_deref(), out) {
            Some((start_ms, end_ms, step_ms)) => Window::Range {
                start_ms,
                end_ms,
                step_ms,
            },
            None => return exit::INVALID_INPUT,
        },
        _ => match parse_time(args.at.as_deref().unwrap_or("now"), now_ms()) {
            Ok(t) => Window::Instant(t),
            Err(e) => {
                out.err(format!("rollgate: {e}"));
                return exit::INVALID_INPUT;
            }
        },
    };
    let q = Query {
        backend: args.on.backend.clone(),
        query: args.on.query.clone(),
        window,
    };
    let result = match backends.fetch(&q).await {
        Ok(r) => r,
        Err(e) => {
            match args.format {
                Format::Json => out.line(
                    json!({"ok": false, "error": {"kind": e.kind.name(), "retryable": e.kind.retryable(), "backend": e.backend, "message": e.message}})
                        .to_string(),
                ),
                Format::Human => out.err(format!(
                    "rollgate: {e} ({}{})",
                    e.kind.name(),
                    if e.kind.retryable() { ", retryable" } else { "" }
                )),
            }
            return exit::PLUGIN_ERROR;
        }
    };
    let status = result.status();
    match args.format {
        Format::Json => {
            let series: Vec<_> = result
                .series
                .iter()
                .map(crate::metrics::replay::RecordedSeries::from)
                .collect();
            out.line(
                json!({
                    "ok": true,
                    "status": if status == DataStatus::Ok { "ok" } else { "no-data" },
                    "series": series,
                    "warnings": result.warnings,
                })
                .to_string(),
            );
        }
        Format::Human => {
            out.line(format!(
                "{}: {} series, {} points, {}",
                q.backend,
                result.series.len(),
                result.points(),
                if status == DataStatus::Ok {
                    "ok"
                } else {
                    "no data"
                }
            ));
            for s in &result.series {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
                out.line(format!(
                    "  {{{}}}  last {last}  ({} points)",
                    labels.join(", "),
                    s.points.len()
                ));
            }
            for w in &result.warnings {
                out.line(format!("  warning: {w}"));
            }
        }
    }
    if status == DataStatus::Ok {
        exit::OK
    } else {
        exit::NO_DATA
    }
}

async fn record_cmd(args: RecordArgs, out: &mut Out) -> u8 {
    let Some(backends) = load_backends(&args.on.files, out) else {
        return exit::INVALID_INPUT;
    };
    let Some((start, end, step)) = range(&args.from, &args.to, args.step.as_deref(), out) else {
        return exit::INVALID_INPUT;
    };
    let mut recording = match crate::files::read_text(&args.out, &crate::files::RECORDING) {
        Ok(text) => match serde_json::from_str::<Recording>(&text) {
            Ok(r) => r,
            Err(e) => {
                out.err(format!(
                    "rollgate: {} exists but is not a rollgate recording ({e}); choose another --out",
                    args.out.display()
                ));
                return exit::INVALID_INPUT;
            }
        },
        Err(crate::files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Recording {
                version: 1,
                queries: Vec::new(),
            }
        }
        Err(e) => {
            out.err(format!("rollgate: {}", e.describe_as("--out", &args.out)));
            return exit::INVALID_INPUT;
        }
    };
    let recorded = match record::record(
        &backends,
        &args.on.backend,
        &args.on.query,
        start,
        end,
        step,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    let (series, points) = (
        recorded.series.len(),
        recorded
            .series
            .iter()
            .map(|s| s.points.len())
            .sum::<usize>(),
    );
    record::merge(&mut recording, recorded);
    let text = match serde_json::to_string_pretty(&recording) {
        Ok(t) => t,
        Err(e) => {
            out.err(format!("rollgate: cannot encode the recording: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    let tmp = args.out.with_extension("json.tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &args.out)) {
        out.err(format!(
            "rollgate: cannot write {}: {e}",
            args.out.display()
        ));
        return exit::INVALID_INPUT;
    }
    out.line(format!(
        "recorded {series} series, {points} points of {:?} from {} into {}",
        args.on.query,
        args.on.backend,
        args.out.display()
    ));
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: prom
spec:
  prometheus:
    address: http://127.0.0.1:9090
    timeout: 5s
  maxConcurrency: 4
---
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: recorded
spec:
  replay:
    file: rec.om
"#;

    /// The problems of `text` as a `--backends` file of a fresh folder (holding `rec.om`),
    /// each with the folder's path taken out.
    fn problems(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec.om"), "up 1 1700000000\n").unwrap();
        let file = dir.path().join("b.yaml");
        std::fs::write(&file, text).unwrap();
        let folder = format!("{}/", dir.path().display());
        backends_of(&[file])
            .err()
            .expect("problems")
            .into_iter()
            .map(|p| p.replace(&folder, ""))
            .collect()
    }

    #[test]
    fn documents_load_and_build() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec.om"), "up 1 1700000000\n").unwrap();
        let file = dir.path().join("backends.yaml");
        std::fs::write(&file, GOOD).unwrap();
        let backends = backends_of(std::slice::from_ref(&file)).expect("valid");
        assert_eq!(backends.names(), ["prom", "recorded"]);
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            (
                GOOD.replace("timeout: 5s", "timout: 5s"),
                "b.yaml:9:5: ",
                "unknown field `timout`",
            ),
            (
                GOOD.replace("maxConcurrency: 4", "maxConcurrency: four"),
                "b.yaml:10:19: ",
                "",
            ),
            (
                GOOD.replace(
                    "v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom",
                    "v9\nkind: MetricBackend\nmetadata:\n  name: prom",
                ),
                "b.yaml:2:13: ",
                "apiVersion \"rollgate.dev/v9\" is not supported",
            ),
            (
                GOOD.replace("name: prom", "name: Prom_1"),
                "b.yaml:5:9: ",
                "invalid name \"Prom_1\"",
            ),
        ];
        for (text, location, message) in cases {
            let problems = problems(&text);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with(location), "{problems:?}");
            assert!(problems[0].contains(message), "{problems:?}");
        }
    }

    #[test]
    fn only_backends() {
        let text = GOOD.to_string()
            + "---\napiVersion: rollgate.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: mine\nspec:\n  source: builtin:threshold\n";
        assert_eq!(
            problems(&text),
            ["b.yaml: MetricBackend \"mine\": kind \"Plugin\" where a MetricBackend was expected"]
        );
    }

    #[test]
    fn datadog_backends_need_the_feature_or_build() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k-1234").unwrap();
        let file = dir.path().join("dd.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: dd\nspec:\n  datadog:\n    site: datadoghq.eu\n    apiKey: file:{k}\n    applicationKey: file:{k}\n",
                k = key.display()
            ),
        )
        .unwrap();
        let result = backends_of(&[file]);
        #[cfg(feature = "datadog")]
        assert_eq!(result.expect("builds").names(), ["dd"]);
        #[cfg(not(feature = "datadog"))]
        {
            let errors = result.err().expect("refused");
            assert!(
                errors[0].contains(
                    "dd.yaml: MetricBackend \"dd\": spec.datadog: this rollgate was built without Datadog support; build it with `--features datadog`"
                ),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn build_errors_name_backend_and_field() {
        let text = GOOD
            .replace("timeout: 5s", "timeout: 5s\n    bearerToken: hunter2")
            .replace("file: rec.om", "file: x.om");
        let problems = problems(&text);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("b.yaml: MetricBackend \"prom\": spec.prometheus.bearerToken: credentials are given by reference only"), "{problems:?}");
        assert!(
            problems[1]
                .starts_with("b.yaml: MetricBackend \"recorded\": spec.replay.file: cannot read"),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|t| t.contains("hunter2")),
            "the inline secret is never echoed: {problems:?}"
        );
    }

    #[test]
    fn a_backend_is_declared_once() {
        let text = GOOD.to_string()
            + "---\napiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  replay:\n    file: rec.om\n";
        let problems = problems(&text);
        assert_eq!(
            problems,
            [
                "b.yaml:23:9: metadata.name: duplicate MetricBackend name \"prom\": already declared at b.yaml:5:9"
            ]
        );
    }
}
