//! The web view at scale: `rollgate serve --ui-listen` over N synthetic rollouts (the
//! replay backend, the threshold plugin, every rollout verifying its first phase every
//! 10 s as in `benches/serve.rs`), read as a browser reads it — signed in with a token,
//! the session cookie on every request — while the fleet keeps measuring.
//!
//! It measures the server's own time, the `Server-Timing: app;dur=…` header of every JSON
//! answer, for three kinds of request:
//! - `list`: `/ui/api/overview` pages of 100 rows — the first, middle and last pages, a
//!   state filter, a name prefix, another period;
//! - `detail`: `/ui/api/rollouts/NAME` of rollouts with a series (each measured at least
//!   once);
//! - `detail-cap`: the detail of `capped`, whose two metrics are each at the series' cap of
//!   1,000 points. It gets there the honest way, through the engine: its first phase
//!   measures both metrics every 10 ms, `count: 1750` — the 1,001st point merges the
//!   oldest 500 into 250, and 1,750 measurements (1,000 + 3 × 250) end exactly at 1,000
//!   points, downsampled — then the run goes on to its last phase and succeeds.
//!
//! The first list request builds the list index and is reported apart (`cold`).
//! It prints p50/p99/max per kind and ends with one line for scripts:
//! `perf: ui n=20000 list-p99-ms=… detail-p99-ms=… detail-cap-ms=…` (detail-cap-ms is the
//! p99 of the capped detail). The targets: a list page under 300 ms, a detail under
//! 500 ms.
//!
//! `cargo bench --bench ui`; `ROLLGATE_BENCH_N=2000` for another N (default 20,000),
//! `ROLLGATE_BENCH_ROUNDS=20` requests per URL (default 20). The store is `sync=normal`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-reader-token-000001";

/// Points per metric of the capped rollout's series: the store's cap.
const CAP: usize = 1_000;

struct Server {
    child: Child,
    api: String,
    ui: String,
    _log: std::thread::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A threshold metric over the recording.
fn metric(name: &str, interval: &str, count: u32, indent: &str) -> String {
    format!(
        "{indent}- name: {name}\n\
         {indent}  provider:\n\
         {indent}    plugin: threshold\n\
         {indent}    backend: recorded\n\
         {indent}    config:\n\
         {indent}      backend: recorded\n\
         {indent}      query: http_error_ratio{{service=\"checkout\",track=\"canary\"}}\n\
         {indent}      window: 1m\n\
         {indent}      reduce: avg\n\
         {indent}      condition: \"< 0.05\"\n\
         {indent}      failCondition: \">= 0.1\"\n\
         {indent}  interval: {interval}\n\
         {indent}  count: {count}\n"
    )
}

fn config(dir: &Path, n: usize) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    std::fs::copy(examples.join("error-ratio.om"), dir.join("error-ratio.om")).expect("copy");
    std::fs::write(
        dir.join("backends.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: recorded\nspec:\n  replay:\n    file: error-ratio.om\n  shareWindow: 1s\n  maxConcurrency: 64\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("templates.yaml"),
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: VerificationTemplate\nmetadata:\n  name: error-ratio\nspec:\n  metrics:\n{}",
            metric("error-ratio", "10s", 100_000, "    ")
        ),
    )
    .expect("write");
    // A thousand rollouts a file: a spec file is read up to 4 MiB.
    for (file, chunk) in (0..n).collect::<Vec<_>>().chunks(1_000).enumerate() {
        let mut text = String::with_capacity(chunk.len() * 400);
        for i in chunk {
            text.push_str(&format!(
                "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: svc-{i:05}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: canary-10\n      weight: 10\n      verification:\n        templates: [error-ratio]\n    - name: full\n      weight: 100\n"
            ));
        }
        std::fs::write(dir.join(format!("rollouts-{file:03}.yaml")), text).expect("write");
    }
    let text = format!(
        "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: capped\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: canary-10\n      weight: 10\n      verification:\n        metrics:\n{}{}    - name: full\n      weight: 100\n",
        metric("error-ratio", "10ms", 1_750, "          "),
        metric("error-ratio-p", "10ms", 1_750, "          "),
    );
    std::fs::write(dir.join("capped.yaml"), text).expect("write");
}

fn serve(dir: &Path, n: usize) -> (Server, Duration) {
    std::fs::write(dir.join("tokens"), format!("{TOKEN} read-only bench\n")).expect("tokens");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--db")
        .arg(format!(
            "sqlite:{}?sync=normal",
            dir.join("state.db").display()
        ))
        .args(["--listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0"])
        .args(["--reload-interval", "1h"])
        .arg("--tokens")
        .arg(dir.join("tokens"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("ROLLGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollgate serve starts");
    let pipe = child.stderr.take().expect("stderr");
    // Read standard error to its end on a thread (a full pipe would stop the server).
    let (tx, rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut api, mut ui) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("serve was not ready in 15 minutes"));
        if let Some(rest) = line.split("listening on ").nth(1) {
            api = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.split("web view on ").nth(1) {
            ui = Some(rest.trim().to_string());
        }
        if line.contains("ready:") {
            let want = format!("ready: {} rollout(s)", n + 1);
            assert!(line.contains(&want), "not every rollout loaded: {line}");
            break;
        }
        if line.contains("WARN") || line.contains("ERROR") {
            eprintln!("{line}");
        }
        if line.contains("not serving") || line.contains("cannot listen") {
            panic!("serve refused to start: {line}");
        }
    }
    let server = Server {
        child,
        api: api.expect("serve said where the API listens"),
        ui: ui.expect("serve said where the web view listens (--ui-listen)"),
        _log: log,
    };
    (server, started.elapsed())
}

/// A blocking HTTP client with the session cookie, on a small runtime of its own.
struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    cookie: String,
}

impl Client {
    fn new() -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            cookie: String::new(),
        }
    }

    /// `POST /login` with the token: keep the session cookie the 303 sets.
    fn sign_in(&mut self, ui: &str) {
        let response = self.rt.block_on(async {
            self.http
                .post(format!("{ui}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={TOKEN}"))
                .send()
                .await
                .expect("POST /login")
        });
        assert_eq!(response.status().as_u16(), 303, "sign-in answered");
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("rollgate_session="))
            .and_then(|v| v.split(';').next())
            .expect("a session cookie");
        self.cookie = cookie.to_string();
    }

    /// GET `url` with the session: (status, the server's own time in ms, the wall time in
    /// ms, the body).
    fn get(&self, url: &str) -> (u16, Option<f64>, f64, String) {
        self.rt.block_on(async {
            let t = Instant::now();
            let response = self
                .http
                .get(url)
                .header("cookie", &self.cookie)
                .send()
                .await
                .expect("GET");
            let status = response.status().as_u16();
            let server = response
                .headers()
                .get("server-timing")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("dur=").nth(1))
                .and_then(|v| v.split([';', ',']).next())
                .and_then(|v| v.trim().parse().ok());
            let body = response.text().await.unwrap_or_default();
            (status, server, t.elapsed().as_secs_f64() * 1e3, body)
        })
    }

    /// GET `url` on the API with the bearer token: the body as JSON.
    fn api(&self, url: &str) -> serde_json::Value {
        self.rt.block_on(async {
            let response = self
                .http
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("GET");
            response.json().await.unwrap_or_default()
        })
    }
}

/// Nearest-rank quantile of sorted figures.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Default)]
struct Figures {
    server: Vec<f64>,
    wall: Vec<f64>,
}

impl Figures {
    fn add(&mut self, server: Option<f64>, wall: f64) {
        self.server.push(server.expect("a Server-Timing header"));
        self.wall.push(wall);
    }

    fn row(&mut self, kind: &str) -> f64 {
        self.server.sort_by(f64::total_cmp);
        self.wall.sort_by(f64::total_cmp);
        let s = &self.server;
        println!(
            "| {kind} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.len(),
            quantile(s, 0.5),
            quantile(s, 0.99),
            s.last().copied().unwrap_or(f64::NAN),
            quantile(&self.wall, 0.99),
        );
        quantile(s, 0.99)
    }
}

/// Wait (bounded) until `capped` succeeded with both series at the cap.
fn wait_capped(client: &Client, api: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let snap = client.api(&format!("{api}/api/v2/rollouts/capped"));
        if snap["state"] == "succeeded" {
            let series = client.api(&format!("{api}/api/v2/rollouts/capped/series"));
            let points: Vec<usize> = series["metrics"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|s| s["points"].as_array().map_or(0, Vec::len))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(points, [CAP, CAP], "the capped rollout's series: {series}");
            return series;
        }
        assert!(
            Instant::now() < deadline,
            "capped did not succeed in 30 minutes: {snap}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("ROLLGATE_BENCH_N")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("ROLLGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    config(&dir.path().join("config"), n);
    let (server, startup) = serve(dir.path(), n);
    let mut client = Client::new();
    client.sign_in(&server.ui);
    let capped = wait_capped(&client, &server.api);
    println!(
        "{n} rollouts + capped ({} points in {} series, downsampled: {}); ready in {:.1} s; {rounds} requests per URL",
        2 * CAP,
        capped["metrics"].as_array().map_or(0, Vec::len),
        capped["metrics"][0]["downsampled"],
        startup.as_secs_f64()
    );

    let ui = &server.ui;
    // The first list request builds the index: apart.
    let (status, cold, cold_wall, body) =
        client.get(&format!("{ui}/ui/api/overview?page=1&pageSize=100"));
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let pages = overview["pages"].as_u64().unwrap_or(1);
    assert_eq!(
        overview["total"].as_u64(),
        Some(n as u64 + 1),
        "{}",
        overview["total"]
    );
    let prefix = if n > 10_000 { "svc-1" } else { "svc-0" };
    let lists = [
        "page=1&pageSize=100".to_string(),
        format!("page={}&pageSize=100", pages.div_ceil(2)),
        format!("page={pages}&pageSize=100"),
        "page=1&pageSize=100&state=progressing".to_string(),
        "page=3&pageSize=100&state=progressing&period=all".to_string(),
        format!("page=2&pageSize=100&prefix={prefix}"),
        "page=1&pageSize=100&period=7d&state=attention".to_string(),
    ];
    let details: Vec<String> = [0, n / 4, n / 2, n.saturating_sub(1)]
        .iter()
        .map(|i| format!("svc-{i:05}"))
        .collect();
    let (mut list, mut detail, mut cap) =
        (Figures::default(), Figures::default(), Figures::default());
    // Interleaved, so the fleet's background load weighs on every kind alike.
    for _ in 0..rounds {
        for q in &lists {
            let (status, server, wall, body) = client.get(&format!("{ui}/ui/api/overview?{q}"));
            assert_eq!(status, 200, "{q}: {body}");
            list.add(server, wall);
        }
        for name in &details {
            let (status, server, wall, body) = client.get(&format!("{ui}/ui/api/rollouts/{name}"));
            assert_eq!(status, 200, "{name}: {body}");
            detail.add(server, wall);
        }
        let (status, server, wall, body) = client.get(&format!("{ui}/ui/api/rollouts/capped"));
        assert_eq!(status, 200, "capped: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let charted: usize = doc["metrics"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["points"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(charted, 2 * CAP, "the capped detail charts every point");
        cap.add(server, wall);
    }
    println!(
        "list index built by the first request: {:.1} ms server (wall {cold_wall:.1} ms)",
        cold.unwrap_or(f64::NAN)
    );
    println!("| kind | requests | p50 ms | p99 ms | max ms | wall p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let list_p99 = list.row("list (100 rows)");
    let detail_p99 = detail.row("detail");
    let cap_p99 = cap.row("detail, 2 × 1,000 points");
    println!(
        "perf: ui n={n} list-p99-ms={list_p99:.1} detail-p99-ms={detail_p99:.1} detail-cap-ms={cap_p99:.1}"
    );
}
