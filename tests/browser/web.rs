//! What the web view's browser tests share: a `rollgate serve --ui-listen 127.0.0.1:0` over
//! rollouts made from `tests/fixtures/browser/` (and `serve/`), the UI's address read from
//! its log, signing in through the real `/login` form, and the API answers the pages are
//! compared with.

use super::driver::Browser;
use crate::common;
use crate::common::serve::{OPERATOR, Serve, Server};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The text a hostile plugin, version or reason carries into the pages.
pub const PAYLOAD: &str = "<img src=x onerror=alert(1)>";

/// One rollout of the test's configuration: which fixture, under which name.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    /// `serve/held.yaml`: holds at an indefinite pause (paused(step)).
    Held(&'a str),
    /// `serve/busy.yaml`: verifies once a minute (progressing for minutes).
    Busy(&'a str),
    /// `browser/live.yaml`: measures every second for an hour (progressing).
    Live(&'a str),
    /// `browser/steady.yaml`: three passing measurements a second apart, then succeeded.
    Steady(&'a str),
    /// `browser/quick.yaml`: no verification, succeeded at once.
    Quick(&'a str),
    /// `browser/doomed.yaml`: its one measurement fails, rolled back by the policy.
    Doomed(&'a str),
    /// `browser/echo.yaml`: the test plugin `hostile` fails three times a second apart
    /// with an error quoting its mode, then the policy pauses it (paused(policy)); the
    /// mode, the versions and an argument are the given text.
    Echo(&'a str, &'a str),
}

/// Write the configuration folder `dir` holding `parts` (with the canary example's recorded
/// backend and templates, and the test plugin `hostile`).
pub fn config(dir: &Path, parts: &[Part]) {
    use sha2::Digest as _;
    common::copy_example(
        "canary",
        &["backends.yaml", "templates.yaml", "error-ratio.om"],
        dir,
    );
    let plugin = rollgate_test_plugins::HOSTILE;
    let sha = hex::encode(sha2::Sha256::digest(
        std::fs::read(plugin).expect("the hostile test plugin is built"),
    ));
    let mut text =
        common::fixture_with("browser/plugin.yaml", &[("plugin", plugin), ("sha", &sha)]);
    for part in parts {
        let (file, name, payload) = match *part {
            Part::Held(n) => ("serve/held.yaml", n, None),
            Part::Busy(n) => ("serve/busy.yaml", n, None),
            Part::Live(n) => ("browser/live.yaml", n, None),
            Part::Steady(n) => ("browser/steady.yaml", n, None),
            Part::Quick(n) => ("browser/quick.yaml", n, None),
            Part::Doomed(n) => ("browser/doomed.yaml", n, None),
            Part::Echo(n, p) => ("browser/echo.yaml", n, Some(p)),
        };
        text.push_str("---\n");
        text.push_str(&match payload {
            // YAML single quotes: a quote is written twice.
            Some(p) => {
                common::fixture_with(file, &[("name", name), ("payload", &p.replace('\'', "''"))])
            }
            None => common::fixture_with(file, &[("name", name)]),
        });
    }
    std::fs::write(dir.join("rollouts.yaml"), text).expect("write rollouts");
}

/// A `rollgate serve` with its web view, over a configuration of [`Part`]s.
pub struct Web {
    pub server: Server,
    /// The web view's address: `http://127.0.0.1:PORT`.
    pub ui: String,
    _dir: tempfile::TempDir,
}

impl Web {
    pub fn start(parts: &[Part]) -> Web {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("mkdir");
        config(&config_dir, parts);
        let server = Serve::new(dir.path())
            .args(&["--ui-listen", "127.0.0.1:0"])
            .start();
        let ui = ui_url(&server.log(), &server.url).unwrap_or_else(|| {
            panic!(
                "serve said nowhere where its web view listens:\n{}",
                server.log()
            )
        });
        Web {
            server,
            ui,
            _dir: dir,
        }
    }

    /// The v2 list's rollouts.
    pub fn rollouts(&self) -> Vec<Value> {
        let (status, v) = self.server.read("/api/v2/rollouts");
        assert_eq!(status, 200, "{v}");
        v["rollouts"].as_array().cloned().unwrap_or_default()
    }

    /// The v2 snapshot of rollout `name`.
    pub fn snapshot(&self, name: &str) -> Value {
        let (status, v) = self.server.read(&format!("/api/v2/rollouts/{name}"));
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The v2 history (audit log) of run `run` of rollout `name`.
    pub fn audit(&self, name: &str, run: i64) -> Vec<Value> {
        let (status, v) = self
            .server
            .read(&format!("/api/v2/rollouts/{name}/history?run={run}"));
        assert_eq!(status, 200, "{v}");
        v["audit"].as_array().cloned().unwrap_or_default()
    }

    /// Wait (bounded) until every rollout named has left its first moments: `state` for each.
    pub fn wait_states(&self, want: &[(&str, &str)]) {
        for (name, state) in want {
            self.server.wait_state(name, 1, state);
        }
    }
}

/// The web view's address in a log: the `http://…` of a line that speaks of the web view
/// (`ui`), other than the API's own address.
pub fn ui_url(log: &str, api: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("listening on") || l.contains("ui") || l.contains("web view"))
        .filter_map(|l| l.split("http://").nth(1))
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
                .unwrap_or(rest.len());
            format!("http://{}", &rest[..end])
        })
        .find(|url| url != api)
}

/// Sign in on the web view at `ui` through its `/login` form with `token`; returns once the
/// browser is back on a page of the view.
pub fn sign_in(b: &Browser, ui: &str, token: &str) {
    b.goto(&format!("{ui}/login"));
    let field = b.find("input[name=token]");
    b.send_keys(&field, token);
    b.click_css("form button[type=submit], form input[type=submit]");
    b.wait("the sign-in to land", Duration::from_secs(30), |b| {
        let url = b.url();
        (!url.contains("/login")).then_some(())
    });
    let session = b.script_async(
        "const done = arguments[arguments.length - 1]; \
         fetch('/ui/api/session', {credentials: 'same-origin'}).then(r => r.json()).then(done, e => done(String(e)));",
        vec![],
    );
    let (user, role) = if token == OPERATOR {
        ("alice", "operator")
    } else {
        ("bob", "read-only")
    };
    assert_eq!(session["user"], user, "{session}");
    assert_eq!(session["role"], role, "{session}");
}

/// `fetch` from the page's own JavaScript (its cookie, its origin): (status, body as JSON or
/// text). `init` is the `fetch` options object, as JavaScript.
pub fn page_fetch(b: &Browser, path: &str, init: &str) -> (u16, Value) {
    let v = b.script_async(
        &format!(
            "const done = arguments[arguments.length - 1]; \
             fetch(arguments[0], {init}).then(async r => {{ \
               const text = await r.text(); \
               let body; try {{ body = JSON.parse(text); }} catch (_) {{ body = text; }} \
               done([r.status, body]); \
             }}, e => done([0, String(e)]));"
        ),
        vec![Value::String(path.to_string())],
    );
    (
        u16::try_from(v[0].as_u64().unwrap_or(0)).unwrap_or(0),
        v[1].clone(),
    )
}

/// The page's visible text.
pub fn page_text(b: &Browser) -> String {
    b.script("return document.body.innerText;", vec![])
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Console errors of the page that are not expected network answers (a 401/403/409 a test
/// provokes is logged by the browser as a failed resource).
pub fn script_errors(b: &Browser) -> Vec<String> {
    b.console_errors()
        .into_iter()
        .filter(|e| !e.contains("Failed to load resource"))
        .collect()
}

/// Where the tests write their screenshots: `target/screenshots/`.
pub fn screenshots() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("screenshots")
}

/// `rollgate ui --store FILE --listen 127.0.0.1:0` (no tokens: everyone reads, nobody
/// acts), killed by PID on drop.
pub struct StoreView {
    child: std::process::Child,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl StoreView {
    pub fn start(store: &Path) -> StoreView {
        use std::io::BufRead as _;
        let cache = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .arg("ui")
            .arg("--store")
            .arg(store)
            .args(["--listen", "127.0.0.1:0"])
            .env("ROLLGATE_CACHE_DIR", cache.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("rollgate ui starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut view = StoreView {
            child,
            url: String::new(),
            log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while view.url.is_empty() {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        view.url = rest.trim().to_string();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("rollgate ui exited:\n{}", view.log())
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rollgate ui did not say where it listens in 60 s:\n{}",
                view.log()
            );
        }
        view
    }

    /// Its log (standard error) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for StoreView {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
