//! Helpers shared by the end-to-end tests: running the binary ([`rollgate`] and its
//! variants), the examples and fixtures copied into temp folders ([`example`],
//! [`canary_copy`], [`fixture`]), a plugin host and metrics from memory for library-level
//! tests, a real Prometheus ([`PromServer`]), and the stand-in HTTP servers ([`StandIn`],
//! [`Blackhole`]). `rollgate serve` has its harness in [`serve`].
#![allow(dead_code)]

// A path relative to this file: the benches include this file with `#[path]` too.
#[path = "common/serve.rs"]
pub mod serve;

use rollgate::metrics::{BoxFuture, MetricsSource, Query, QueryError, Series};
use rollgate::plugin::types::RolloutContext;
use rollgate::plugin::{ComponentCache, HostConfig, PluginHost};
use std::sync::Mutex;

/// What a run of the `rollgate` binary did.
pub struct Run {
    /// Its exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Run the real `rollgate` binary with `args` (in the current folder) to completion, with a
/// fresh plugin cache; bounded, so a hang fails the test instead of CI.
pub fn rollgate(args: &[&str]) -> Run {
    rollgate_at(None, args, &[])
}

/// The JSON Schema of an API v2 document (`RolloutStatus`, `RolloutHistory`,
/// `RolloutList`, `RolloutEvent`) as `rollgate schema NAME` publishes it, compiled.
pub fn api_schema(name: &str) -> jsonschema::Validator {
    let run = rollgate(&["schema", name]);
    assert_eq!(run.code, 0, "rollgate schema {name}: {}", run.stderr);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON schema");
    jsonschema::validator_for(&schema).expect("a valid JSON schema")
}

/// `doc` is valid against `schema` (every error listed otherwise).
pub fn assert_valid(schema: &jsonschema::Validator, doc: &serde_json::Value) {
    let errors: Vec<String> = schema
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\nin {doc:#}");
}

/// [`rollgate`] in the folder `dir`.
pub fn rollgate_in(dir: &std::path::Path, args: &[&str]) -> Run {
    rollgate_at(Some(dir), args, &[])
}

/// [`rollgate_in`] with extra environment variables.
pub fn rollgate_env(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    rollgate_at(Some(dir), args, env)
}

fn rollgate_at(dir: Option<&std::path::Path>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    cmd.args(args)
        .envs(env.iter().copied())
        .env("ROLLGATE_CACHE_DIR", cache.path())
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("rollgate runs");
    // Read both pipes while the child runs: a child writing more than a pipe holds would
    // otherwise block forever.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    use std::io::Read as _;
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rollgate {args:?} did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The repository's `examples/` folder.
pub fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `examples/NAME` in the repository.
pub fn example(name: &str) -> std::path::PathBuf {
    examples().join(name)
}

/// The quickstart's run: `rollgate run examples/canary --store STORE` on the simulated
/// clock from 2026-01-01, in `dir`, with extra environment variables (checkout succeeds,
/// payments rolls back: exit code 5).
pub fn quickstart(dir: &std::path::Path, store: &str, env: &[(&str, &str)]) -> Run {
    let canary = example("canary").display().to_string();
    rollgate_env(
        dir,
        &[
            "run",
            &canary,
            "--store",
            store,
            "--clock",
            "simulated",
            "--start",
            "2026-01-01T00:00:00Z",
        ],
        env,
    )
}

/// Copy `files` of `examples/NAME` into the folder `into`.
pub fn copy_example(name: &str, files: &[&str], into: &std::path::Path) {
    let from = example(name);
    for f in files {
        std::fs::copy(from.join(f), into.join(f)).expect("copy the example");
    }
}

/// The canary example (every file of it) in a fresh folder, with `edit` (file, from, to)
/// applied once to one of its files; `from` must be in the file.
pub fn canary_copy(edit: Option<(&str, &str, &str)>) -> tempfile::TempDir {
    let canary = example("canary");
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&canary).expect("canary") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    if let Some((file, from, to)) = edit {
        let target = dir.path().join(file);
        let text = std::fs::read_to_string(&target).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&target, text.replacen(from, to, 1)).expect("write");
    }
    dir
}

/// The text of `tests/fixtures/PATH`.
pub fn fixture(path: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// [`fixture`] with each `{KEY}` in it replaced by its value (every key must be there).
pub fn fixture_with(path: &str, values: &[(&str, &str)]) -> String {
    let mut text = fixture(path);
    for (key, value) in values {
        let mark = format!("{{{key}}}");
        assert!(text.contains(&mark), "{path} has no {mark}");
        text = text.replace(&mark, value);
    }
    text
}

/// A registry holding one backend under `name`.
pub fn one_backend(
    name: &str,
    backend: std::sync::Arc<dyn rollgate::metrics::Backend>,
    options: rollgate::metrics::BackendOptions,
) -> std::sync::Arc<rollgate::metrics::Backends> {
    let mut backends = rollgate::metrics::Backends::new();
    backends.insert(name, backend, options);
    std::sync::Arc::new(backends)
}

/// Run a helper tool to completion; panic with its stderr and `hint` if it fails.
pub fn run_tool(cmd: &mut std::process::Command, hint: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run ({hint}): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host with no disk cache (tests that need the cache set their own).
pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        ..HostConfig::default()
    })
    .expect("plugin host starts")
}

pub fn context(now_ms: i64) -> RolloutContext {
    RolloutContext {
        rollout: "checkout".into(),
        phase: "canary-10".into(),
        phase_index: 0,
        phase_count: 3,
        weight: 10.0,
        stable_version: "1.0.0".into(),
        canary_version: "1.1.0".into(),
        now_ms,
        phase_started_ms: now_ms - 60_000,
        metric: "error-rate".into(),
        measurement_index: 0,
        args: vec![],
    }
}

/// Metrics from memory: returns `series` for every query and records the queries.
pub struct StaticMetrics {
    pub series: Vec<Series>,
    pub seen: Mutex<Vec<Query>>,
    pub delay: std::time::Duration,
}

impl StaticMetrics {
    pub fn new(series: Vec<Series>) -> Self {
        StaticMetrics {
            series,
            seen: Mutex::new(Vec::new()),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl MetricsSource for StaticMetrics {
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        Box::pin(async move {
            self.seen.lock().expect("lock").push(query.clone());
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(self.series.clone())
        })
    }
}

pub fn series(values: &[f64]) -> Series {
    Series {
        labels: vec![("job".into(), "checkout".into())],
        points: values
            .iter()
            .enumerate()
            .map(|(i, v)| (1_700_000_000_000 + i as i64 * 1000, *v))
            .collect(),
    }
}

/// A real Prometheus (Debian's `prometheus` package) on a free 127.0.0.1 port, serving
/// exactly the OpenMetrics data it was started with. Killed by PID when dropped.
pub struct PromServer {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PromServer {
    /// Backfill `openmetrics` with promtool and start Prometheus on it.
    pub async fn start(openmetrics: &str) -> PromServer {
        Self::start_with(openmetrics, &[]).await
    }

    /// Like `start`, serving HTTPS with a certificate for 127.0.0.1 signed by a test CA;
    /// returns the server and the CA's PEM file.
    pub async fn start_tls(
        openmetrics: &str,
    ) -> (PromServer, std::path::PathBuf, tempfile::TempDir) {
        let certs = tempfile::tempdir().expect("tempdir");
        let d = certs.path();
        let (ca, cert, key) = test_certificates(d);
        let web = d.join("web.yml");
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("web config");
        let flag = format!("--web.config.file={}", web.display());
        let server = Self::launch(openmetrics, &[&flag], Some(&ca)).await;
        (server, ca, certs)
    }

    /// Like `start`, with extra server flags.
    pub async fn start_with(openmetrics: &str, flags: &[&str]) -> PromServer {
        Self::launch(openmetrics, flags, None).await
    }

    async fn launch(openmetrics: &str, flags: &[&str], ca: Option<&std::path::Path>) -> PromServer {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data.om");
        std::fs::write(&data, openmetrics).expect("write data");
        let tsdb = dir.path().join("tsdb");
        run_tool(
            Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&data)
                .arg(&tsdb),
            "install Debian's prometheus package, as .ci/run does",
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").expect("write config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (install Debian's prometheus package, as .ci/run does)");
        let scheme = if ca.is_some() { "https" } else { "http" };
        let mut server = PromServer {
            child,
            address: format!("{scheme}://127.0.0.1:{port}"),
            _dir: dir,
        };
        let mut client = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).expect("ca");
            client =
                client.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
        }
        server.wait_ready(client.build().expect("client")).await;
        server
    }

    async fn wait_ready(&mut self, client: reqwest::Client) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited early: {status}");
            }
            let ready = client
                .get(format!("{}/-/ready", self.address))
                .timeout(std::time::Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A TCP server that accepts connections and never answers, to provoke client timeouts.
/// Stops when dropped.
pub struct Blackhole {
    pub address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        Blackhole { address, stop }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One request the Datadog stand-in received.
#[derive(Debug, Clone)]
pub struct DdRequest {
    pub method: String,
    pub path: String,
    pub query: std::collections::BTreeMap<String, String>,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: serde_json::Value,
    pub at: std::time::Instant,
}

/// A reply: status, extra headers, body.
pub type DdReply = (u16, Vec<(String, String)>, String);

type Responder = Box<dyn Fn(&DdRequest, usize) -> DdReply + Send + Sync>;

/// A local HTTP stand-in. As the Datadog API (the SaaS cannot be reached from here) it
/// follows the documented wire format: `POST /api/v2/query/timeseries` and
/// `GET /api/v1/query`, authenticated by the `DD-API-KEY` and `DD-APPLICATION-KEY` headers
/// (403 otherwise). Open, it answers anything (to see what a client sends). `respond` gets
/// each valid request and its index. Stops when dropped.
pub struct StandIn {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<DdRequest>>>,
    task: tokio::task::JoinHandle<()>,
    /// The runtime it runs on when it was started by [`StandIn::open_blocking`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl StandIn {
    /// The Datadog API: checks the keys and the documented request format.
    pub async fn datadog(
        api_key: &str,
        app_key: &str,
        respond: impl Fn(&DdRequest, usize) -> DdReply + Send + Sync + 'static,
    ) -> StandIn {
        Self::start(Some((api_key.to_string(), app_key.to_string())), respond).await
    }

    /// Any HTTP API: answers every request with `respond`, recording it.
    pub async fn open(
        respond: impl Fn(&DdRequest, usize) -> DdReply + Send + Sync + 'static,
    ) -> StandIn {
        Self::start(None, respond).await
    }

    /// [`StandIn::open`] for a test without a runtime: it runs on a runtime of its own.
    pub fn open_blocking(
        respond: impl Fn(&DdRequest, usize) -> DdReply + Send + Sync + 'static,
    ) -> StandIn {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut stand_in = runtime.block_on(Self::open(respond));
        stand_in.runtime = Some(runtime);
        stand_in
    }

    async fn start(
        keys: Option<(String, String)>,
        respond: impl Fn(&DdRequest, usize) -> DdReply + Send + Sync + 'static,
    ) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keys = std::sync::Arc::new(keys);
        let respond: std::sync::Arc<Responder> = std::sync::Arc::new(Box::new(respond));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, keys, respond) = (seen.clone(), keys.clone(), respond.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, seen, keys, respond).await;
                });
            }
        });
        StandIn {
            url,
            requests,
            task,
            runtime: None,
        }
    }

    pub fn seen(&self) -> Vec<DdRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    seen: std::sync::Arc<std::sync::Mutex<Vec<DdRequest>>>,
    keys: std::sync::Arc<Option<(String, String)>>,
    respond: std::sync::Arc<Responder>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: std::collections::BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..(head_end + length).min(buf.len())])
            .unwrap_or(serde_json::Value::Null);
    let (path, query_string) = target.split_once('?').unwrap_or((&target, ""));
    let query = query_string
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let request = DdRequest {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
        at: std::time::Instant::now(),
    };
    let forbidden = keys.as_ref().as_ref().is_some_and(|(api, app)| {
        request.headers.get("dd-api-key") != Some(api)
            || request.headers.get("dd-application-key") != Some(app)
    });
    let problem = if keys.is_some() {
        invalid(&request)
    } else {
        None
    };
    let (status, extra, body) = if forbidden {
        (403, vec![], r#"{"errors":["Forbidden"]}"#.to_string())
    } else if let Some(problem) = problem {
        (
            400,
            vec![],
            serde_json::json!({"errors": [problem]}).to_string(),
        )
    } else {
        let index = {
            let mut seen = seen.lock().expect("lock");
            seen.push(request.clone());
            seen.len() - 1
        };
        respond(&request, index)
    };
    let mut response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// What Datadog would refuse as malformed, per its API reference.
fn invalid(r: &DdRequest) -> Option<String> {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/v2/query/timeseries") => {
            let data = &r.body["data"];
            let a = &data["attributes"];
            if data["type"] != "timeseries_request" {
                return Some("data.type must be timeseries_request".into());
            }
            if !a["from"].is_i64() || !a["to"].is_i64() {
                return Some("attributes.from and attributes.to are required (ms)".into());
            }
            let q = &a["queries"][0];
            if q["data_source"] != "metrics" || !q["query"].is_string() {
                return Some("queries[0] needs data_source metrics and a query".into());
            }
            None
        }
        ("GET", "/api/v1/query") => {
            for p in ["from", "to", "query"] {
                if !r.query.contains_key(p) {
                    return Some(format!("missing parameter {p}"));
                }
            }
            None
        }
        _ => Some(format!("no such endpoint {} {}", r.method, r.path)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A v2 timeseries answer: one entry per (group tags, values), at `times`.
pub fn dd_v2_body(times: &[i64], series: &[(&[&str], Vec<Option<f64>>)]) -> String {
    serde_json::json!({
        "data": {
            "type": "timeseries_response",
            "id": "0",
            "attributes": {
                "series": series.iter().map(|(tags, _)| serde_json::json!({"group_tags": tags, "query_index": 0, "unit": null})).collect::<Vec<_>>(),
                "times": times,
                "values": series.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            }
        }
    })
    .to_string()
}

/// A real OCI registry (Debian's `docker-registry` package, distribution 2.8) on a free
/// 127.0.0.1 port, its storage and config in a temp dir; killed by PID when dropped.
pub struct RegistryServer {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The CA to trust when it serves HTTPS.
    pub ca: Option<std::path::PathBuf>,
    dir: tempfile::TempDir,
}

/// How to start a [`RegistryServer`].
#[derive(Default)]
pub struct RegistryOptions {
    /// htpasswd users (user, password), stored bcrypt-hashed by `htpasswd -B`.
    pub users: Vec<(String, String)>,
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a test CA.
    pub tls: bool,
    /// Token auth: (realm URL, service, issuer, PEM bundle of the certificates that sign
    /// tokens) — the registry answers `401 Bearer realm=…` and trusts tokens they sign.
    pub token: Option<(String, String, String, std::path::PathBuf)>,
}

impl RegistryServer {
    /// `None` (after saying so loudly) when `docker-registry` is not installed and
    /// `ROLLGATE_REQUIRE_REGISTRY` is unset; panics when it is set (CI) or the server does not
    /// come up.
    pub fn start(test: &str, options: RegistryOptions) -> Option<RegistryServer> {
        use std::process::{Command, Stdio};
        let binary = std::path::Path::new("/usr/bin/docker-registry");
        if !binary.exists() {
            assert!(
                std::env::var_os("ROLLGATE_REQUIRE_REGISTRY").is_none(),
                "ROLLGATE_REQUIRE_REGISTRY is set but docker-registry is not installed (Debian's docker-registry package, as .ci/run installs)"
            );
            eprintln!(
                "!!! skipping: docker-registry not installed — {test} did not run (install Debian's docker-registry package, as .ci/run does)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rollgate-test-secret\n",
            d.join("storage").display()
        );
        let mut ca = None;
        if options.tls {
            let (ca_file, cert, key) = test_certificates(d);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca = Some(ca_file);
        }
        if !options.users.is_empty() {
            let htpasswd = d.join("htpasswd");
            for (i, (user, password)) in options.users.iter().enumerate() {
                let mut cmd = Command::new("htpasswd");
                if i == 0 {
                    cmd.arg("-c");
                }
                run_tool(
                    cmd.args(["-B", "-b"])
                        .arg(&htpasswd)
                        .arg(user)
                        .arg(password),
                    "Debian's apache2-utils package (htpasswd), as .ci/run installs",
                );
            }
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rollgate-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Some((realm, service, issuer, bundle)) = &options.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
        let config_file = d.join("config.yml");
        std::fs::write(&config_file, config).expect("write the registry config");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("registry.log")).expect("log file"))
            .spawn()
            .expect("docker-registry starts");
        let mut server = RegistryServer {
            child,
            host: format!("127.0.0.1:{port}"),
            ca,
            dir,
        };
        server.wait_ready();
        Some(server)
    }

    /// The registry's own log (its access log is off).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited early: {status}: {}", self.log());
            }
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry not listening within 30 s: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stop it now (by PID) and wait for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where it stores repository `repo`'s blobs and manifests.
    pub fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("storage/docker/registry/v2")
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A P-256 key (`NAME.key`, PKCS#8) and a self-signed certificate for it (`NAME.crt`,
/// `subject`, two days) in `d`, made by openssl.
pub fn self_signed_p256(d: &std::path::Path, name: &str, subject: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    run_tool(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &key])
            .args(["-out", &crt, "-days", "2", "-subj", subject])
            .current_dir(d),
        "Debian's openssl package",
    );
}

/// A test CA and a certificate for 127.0.0.1 it signed, in `d`: (ca.crt, server.crt, server.key).
pub fn test_certificates(
    d: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        run_tool(
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(d),
            "Debian's openssl package",
        )
    };
    self_signed_p256(d, "ca", "/CN=rollgate test CA");
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (d.join("ca.crt"), d.join("server.crt"), d.join("server.key"))
}
