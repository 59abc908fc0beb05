//! `rollgate serve` for the tests: the real binary on a free loopback port, the API spoken
//! with reqwest, the server's log kept and readable line by line. Every server is killed by
//! PID when its [`Server`] is dropped, and every wait is bounded.
//!
//! ```ignore
//! let s = Serve::new(dir.path()).args(&["--notify", &url]).start();
//! s.wait_state("busy", 1, "progressing");
//! let (status, body) = s.act("busy", "pause", Some(OPERATOR));
//! ```

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator's token in [`write_tokens`]'s file (identity `alice`).
pub const OPERATOR: &str = "operator-token-0000000001";
/// The read-only token in [`write_tokens`]'s file (identity `bob`).
pub const READER: &str = "reader-token-00000000001";

/// Write the tokens file `dir/tokens` and return its path: the operator's token on its
/// first line (so that a problem quoting that line would show it), then the read-only one,
/// then a comment line (comments are allowed).
pub fn write_tokens(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("{OPERATOR} operator alice\n{READER} read-only bob\n# test tokens\n"),
    )
    .expect("tokens");
    tokens
}

/// How to start `rollgate serve`: the plugin cache (`cache/`) and tokens file
/// ([`write_tokens`]) in `dir`; by default the store `dir/state.db`, the configuration
/// folder `dir/config`, the log at `rollgate=info`, a reload check every 200 ms.
pub struct Serve {
    dir: PathBuf,
    config: PathBuf,
    db: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: String,
    reload_interval: String,
}

impl Serve {
    pub fn new(dir: &Path) -> Serve {
        Serve {
            dir: dir.to_path_buf(),
            config: dir.join("config"),
            db: format!("sqlite:{}", dir.join("state.db").display()),
            args: Vec::new(),
            env: Vec::new(),
            log: "rollgate=info".into(),
            reload_interval: "200ms".into(),
        }
    }

    /// Another configuration folder.
    pub fn config(mut self, config: &Path) -> Serve {
        self.config = config.to_path_buf();
        self
    }

    /// Another store (`--db`): a SQLite file (`sqlite:PATH`) or a `postgres://` URL — the
    /// same for several servers that share one store.
    pub fn db(mut self, db: &str) -> Serve {
        self.db = db.into();
        self
    }

    /// Extra arguments.
    pub fn args(mut self, args: &[&str]) -> Serve {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Extra environment variables.
    pub fn env(mut self, env: &[(&str, &str)]) -> Serve {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// The `ROLLGATE_LOG` filter.
    pub fn log(mut self, filter: &str) -> Serve {
        self.log = filter.into();
        self
    }

    /// The `--reload-interval`.
    pub fn reload_interval(mut self, every: &str) -> Serve {
        self.reload_interval = every.into();
        self
    }

    /// Start it and return once it says it is ready; panic with its log if it exits first.
    pub fn start(self) -> Server {
        self.try_start()
            .unwrap_or_else(|log| panic!("serve refused to start: {log}"))
    }

    /// Start it and return once it says it is ready, or `Err(its log)` when it exits first.
    pub fn try_start(self) -> Result<Server, String> {
        let tokens = write_tokens(&self.dir);
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--db")
            .arg(&self.db)
            .args(["--listen", "127.0.0.1:0", "--reload-interval"])
            .arg(&self.reload_interval)
            .arg("--tokens")
            .arg(&tokens)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(&self.args)
            .env("ROLLGATE_LOG", &self.log)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rollgate serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        {
            let pipe = child.stderr.take().expect("stderr");
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            child,
            url: String::new(),
            log,
            lines,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match server.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        server.url = rest.trim().to_string();
                    }
                    if line.contains("rollgate serve: ready:") {
                        assert!(!server.url.is_empty(), "serve said where it listens");
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = server.child.wait();
                    return Err(server.log());
                }
            }
        }
        panic!(
            "serve neither became ready nor exited in 120 s:\n{}",
            server.log()
        );
    }
}

/// A running `rollgate serve`, killed by PID on drop.
pub struct Server {
    child: Child,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Its log (standard error) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait (bounded) for a log line containing `text`, reading lines as they come.
    pub fn wait_line(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200))
                && line.contains(text)
            {
                return line;
            }
        }
        panic!("no log line with {text:?} in 60 s:\n{}", self.log());
    }

    /// `method path` with `token` and `body`: (status, body text).
    pub fn call_text(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let mut r = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url),
        };
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        self.rt.block_on(async {
            let resp = r.send().await.expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    /// [`Server::call_text`], the body as JSON (a JSON string when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = self.call_text(method, path, token, body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path` with the read-only token: (status, body as JSON).
    pub fn read(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(READER), None)
    }

    /// `GET path` with the read-only token: (status, body text).
    pub fn read_text(&self, path: &str) -> (u16, String) {
        self.call_text("GET", path, Some(READER), None)
    }

    /// `GET path` with the read-only token: the body, whatever the status.
    pub fn get(&self, path: &str) -> Value {
        self.read(path).1
    }

    /// The view of rollout `name` (it must exist).
    pub fn rollout(&self, name: &str) -> Value {
        let (status, v) = self.read(&format!("/api/v1/rollouts/{name}"));
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Wait (bounded) until rollout `name` is in `state` (run `run`).
    pub fn wait_state(&self, name: &str, run: i64, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A rollout that is not in the store yet is waited for too.
            let (status, v) = self.read(&format!("/api/v1/rollouts/{name}"));
            assert!(status == 200 || status == 404, "{status}: {v}");
            if v["state"] == state && v["run"] == run {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {state} (run {run}): {v}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until every rollout named is `succeeded` in run 1.
    pub fn wait_succeeded(&self, names: &[&str]) {
        for name in names {
            self.wait_state(name, 1, "succeeded");
        }
    }

    /// Wait (bounded) until `done` holds for `GET /api/v1/config`'s answer.
    pub fn wait_config(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get("/api/v1/config");
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened: {v}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The audit log of run `run` of rollout `name`.
    pub fn audit(&self, name: &str, run: i64) -> Vec<Value> {
        let (status, v) = self.read(&format!("/api/v1/rollouts/{name}/history?run={run}"));
        assert_eq!(status, 200, "{v}");
        v["audit"].as_array().cloned().unwrap_or_default()
    }

    /// An operator action on rollout `name`, with the reason "test".
    pub fn act(&self, name: &str, action: &str, token: Option<&str>) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/rollouts/{name}/{action}"),
            token,
            Some(r#"{"reason": "test"}"#),
        )
    }

    /// Apply a document through the API with the operator's token: (status, body text).
    pub fn apply(&self, text: &str) -> (u16, String) {
        self.call_text("POST", "/api/v1/documents", Some(OPERATOR), Some(text))
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        self.rt.block_on(async {
            self.client
                .get(format!("{}/metrics", self.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text")
        })
    }

    /// How many event streams are open, per `/metrics` (0 when it cannot be read).
    pub fn subscribers(&self) -> u64 {
        let request = self.client.get(format!("{}/metrics", self.url));
        let text = self.rt.block_on(async {
            match request.send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        });
        text.lines()
            .find_map(|l| l.strip_prefix("rollgate_event_subscribers "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Wait (bounded) until `n` event streams are open: a stream carries what happens
    /// after it starts, so a test acts only then.
    pub fn wait_subscribers(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.subscribers() < n {
            assert!(
                Instant::now() < deadline,
                "the event stream never subscribed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Send `signal` (SIGKILL, SIGSTOP, SIGCONT…) to it, by its PID.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Wait (bounded) until it exited (after a SIGKILL).
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not exit in 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ask the server to stop (SIGTERM) and wait (bounded) for it to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve ignored SIGTERM for 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Read the server-sent events at `url` (with the read-only token) until `done` says so;
/// panics when `within` passes first or the stream ends.
pub fn read_events(url: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(READER)
            .send()
            .await
            .expect("event stream");
        assert_eq!(resp.status().as_u16(), 200);
        let mut events = Vec::new();
        let mut buf = String::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let chunk = tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("events within {within:?}"))
                .expect("read the stream");
            let Some(chunk) = chunk else {
                panic!("the stream ended early: {events:?}");
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block = buf[..end].to_string();
                buf.drain(..end + 2);
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ")
                        && let Ok(v) = serde_json::from_str::<Value>(data)
                    {
                        events.push(v);
                    }
                }
            }
            if done(&events) {
                return events;
            }
        }
    })
}
