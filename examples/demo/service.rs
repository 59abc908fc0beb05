//! `rollgate-demo`: the moving parts of `examples/demo`, so the whole loop of a rollout can
//! run on one machine with real processes and a real Prometheus.
//!
//! - `rollgate-demo service`: one version of a small HTTP service. `GET /` answers after a
//!   latency (±25 % jitter) and fails with HTTP 500 at a configured error rate; `GET
//!   /metrics` exposes `demo_http_requests_total{app,track,version,status}` and the latency
//!   histogram `demo_http_request_duration_seconds{app,track,version}` for Prometheus. A *bad*
//!   version can turn bad only once the canary weight (read from the weight file the exec
//!   target writes) reaches a phase: that is how the demo's bad canary looks healthy at
//!   10 % and fails at 25 %.
//! - `rollgate-demo traffic`: a steady load split between the stable and the canary URL by
//!   the weight in the weight file, exactly (every 100 requests, `weight` go to the canary).
//!
//! Both print `listening on …`/`sending …` once and then run until they are killed.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "rollgate-demo",
    about = "The demo service and its traffic driver"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one version of the demo service.
    Service(ServiceArgs),
    /// Send a steady load split between stable and canary by the current weight.
    Traffic(TrafficArgs),
}

#[derive(Debug, Args, Clone)]
struct ServiceArgs {
    /// Where to listen (`127.0.0.1:0` picks a free port and prints it).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The application's name (a label on every metric).
    #[arg(long)]
    app: String,
    /// This instance's version (a label on every metric).
    #[arg(long)]
    version: String,
    /// `stable` or `canary` (a label on every metric: what the queries select on).
    #[arg(long)]
    track: String,
    /// Share of requests answered 500 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Typical latency, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The weight file the exec target writes (for --bad-from-weight).
    #[arg(long)]
    weight_file: Option<PathBuf>,
    /// Turn bad once the weight reaches this (percent).
    #[arg(long)]
    bad_from_weight: Option<f64>,
    /// The error rate once bad.
    #[arg(long, default_value_t = 0.3)]
    bad_error_rate: f64,
    /// The latency once bad, in milliseconds.
    #[arg(long, default_value_t = 120)]
    bad_latency_ms: u64,
}

#[derive(Debug, Args)]
struct TrafficArgs {
    /// The stable version's URL.
    #[arg(long)]
    stable: String,
    /// The canary version's URL.
    #[arg(long)]
    canary: String,
    /// The weight file the exec target writes (percent of traffic to the canary; missing: 0).
    #[arg(long)]
    weight_file: PathBuf,
    /// Requests a second.
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
}

/// Latency buckets, in seconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct Counts {
    by_status: BTreeMap<u16, u64>,
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

struct Service {
    args: ServiceArgs,
    counts: Mutex<Counts>,
    seed: AtomicU64,
}

impl Service {
    /// A uniform number in [0, 1) (xorshift; the demo needs spread, not secrecy).
    fn uniform(&self) -> f64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bad(&self) -> bool {
        let (Some(file), Some(from)) = (&self.args.weight_file, self.args.bad_from_weight) else {
            return false;
        };
        read_weight(file) >= from
    }
}

/// The weight in the file, 0 when it is missing or unreadable.
fn read_weight(file: &Path) -> f64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|w| w.is_finite())
        .map_or(0.0, |w| w.clamp(0.0, 100.0))
}

async fn root(State(s): State<Arc<Service>>) -> impl IntoResponse {
    let started = Instant::now();
    let (rate, latency) = if s.bad() {
        (s.args.bad_error_rate, s.args.bad_latency_ms)
    } else {
        (s.args.error_rate, s.args.latency_ms)
    };
    let jitter = 0.75 + 0.5 * s.uniform();
    tokio::time::sleep(Duration::from_secs_f64(latency as f64 / 1000.0 * jitter)).await;
    let status = if s.uniform() < rate {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let seconds = started.elapsed().as_secs_f64();
    {
        let mut c = s.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.by_status.entry(status.as_u16()).or_default() += 1;
        if c.buckets.is_empty() {
            c.buckets = vec![0; BUCKETS.len()];
        }
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            c.buckets[i] += 1;
        }
        c.sum += seconds;
        c.count += 1;
    }
    (status, format!("{} {}\n", s.args.app, s.args.version))
}

async fn metrics(State(s): State<Arc<Service>>) -> impl IntoResponse {
    let c = s.counts.lock().unwrap_or_else(|e| e.into_inner());
    let labels = format!(
        "app=\"{}\",track=\"{}\",version=\"{}\"",
        s.args.app, s.args.track, s.args.version
    );
    let mut out = String::new();
    out.push_str("# HELP demo_http_requests_total Requests answered, by status.\n");
    out.push_str("# TYPE demo_http_requests_total counter\n");
    // Both statuses always exist, so a rate over them is 0, not "no data", before the
    // first error.
    for status in [200u16, 500] {
        let n = c.by_status.get(&status).copied().unwrap_or(0);
        out.push_str(&format!(
            "demo_http_requests_total{{{labels},status=\"{status}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP demo_http_request_duration_seconds Time to answer.\n");
    out.push_str("# TYPE demo_http_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cumulative += c.buckets.get(i).copied().unwrap_or(0);
        out.push_str(&format!(
            "demo_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}\n"
        ));
    }
    out.push_str(&format!(
        "demo_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
        c.count
    ));
    out.push_str(&format!(
        "demo_http_request_duration_seconds_sum{{{labels}}} {}\n",
        c.sum
    ));
    out.push_str(&format!(
        "demo_http_request_duration_seconds_count{{{labels}}} {}\n",
        c.count
    ));
    ([("content-type", "text/plain; version=0.0.4")], out)
}

async fn service(args: ServiceArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.error_rate) || !(0.0..=1.0).contains(&args.bad_error_rate) {
        return Err("--error-rate and --bad-error-rate are shares between 0 and 1".into());
    }
    if !matches!(args.track.as_str(), "stable" | "canary") {
        return Err(format!("--track {:?}: use stable or canary", args.track));
    }
    if args.bad_from_weight.is_some() && args.weight_file.is_none() {
        return Err("--bad-from-weight needs --weight-file (where the weight is read)".into());
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1;
    let state = Arc::new(Service {
        args: args.clone(),
        counts: Mutex::new(Counts::default()),
        seed: AtomicU64::new(seed),
    });
    let app = Router::new()
        .route("/", get(root))
        .route("/metrics", get(metrics))
        .with_state(state);
    println!(
        "{} {} listening on http://{address}",
        args.app, args.version
    );
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("serving: {e}"))
}

async fn traffic(args: TrafficArgs) -> Result<(), String> {
    if !(args.rps > 0.0 && args.rps <= 10_000.0) {
        return Err("--rps must be between 0 and 10000".into());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "sending {} requests a second to {} and {} by the weight in {}",
        args.rps,
        args.stable,
        args.canary,
        args.weight_file.display()
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bresenham: the canary gets exactly `weight` of every 100 requests.
    let mut owed = 0.0;
    loop {
        tick.tick().await;
        owed += read_weight(&args.weight_file) / 100.0;
        let url = if owed >= 1.0 {
            owed -= 1.0;
            args.canary.clone()
        } else {
            args.stable.clone()
        };
        let client = client.clone();
        tokio::spawn(async move {
            // A failed request is what the service measures, not the driver's concern.
            let _ = client.get(url).send().await;
        });
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Service(a) => service(a).await,
        Command::Traffic(a) => traffic(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollgate-demo: {e}");
            std::process::ExitCode::from(4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_read_clamped_and_default_to_zero() {
        let dir = std::env::temp_dir().join(format!("rollgate-demo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("weight");
        // (file content, weight read)
        for (text, want) in [("25\n", 25.0), ("150", 100.0), ("-3", 0.0), ("x", 0.0)] {
            std::fs::write(&file, text).expect("write");
            assert_eq!(read_weight(&file), want, "{text:?}");
        }
        assert_eq!(read_weight(&dir.join("missing")), 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
