//! The web view end to end, over HTTP against the real binary: `rollgate serve --ui-listen`
//! (sign-in, sessions, CSRF, Origin, actions audited with the token's name, sign-out) and
//! `rollgate ui --store` (read-only, the list's tiles, rows, filters and pages). Cookies
//! are handled by hand and redirects are not followed, so every header is asserted.
//! The browser tests (Chromium) are elsewhere; these hold the server to its contract.

use crate::common;

use common::serve::{OPERATOR, READER, Serve, Server, read_events};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An answer: status, headers, body text.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The security headers every answer carries; JSON also no-store and Server-Timing.
    fn assert_secure(&self, what: &str) {
        assert_eq!(self.header("content-security-policy"), CSP, "{what}");
        assert_eq!(self.header("x-frame-options"), "DENY", "{what}");
        assert_eq!(self.header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(self.header("referrer-policy"), "no-referrer", "{what}");
        if self.header("content-type").starts_with("application/json") {
            assert_eq!(self.header("cache-control"), "no-store", "{what}");
            let timing = self.header("server-timing");
            let ms = timing
                .strip_prefix("app;dur=")
                .unwrap_or_else(|| panic!("{what}: {timing:?}"));
            assert!(
                ms.parse::<f64>().is_ok() && ms.split('.').nth(1).map(str::len) == Some(2),
                "{what}: {timing}"
            );
        }
    }
}

/// A client of one web view: no redirects followed, no cookie jar.
struct Client {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// A request's extras.
#[derive(Default)]
struct Req<'a> {
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    origin: Option<&'a str>,
    bearer: Option<&'a str>,
    form: Option<&'a str>,
    json: Option<&'a str>,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    fn send(&self, method: &str, path: &str, r: Req<'_>) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut b = if method == "GET" {
            self.http.get(&url)
        } else {
            self.http.post(&url)
        };
        if let Some(c) = r.cookie {
            b = b.header("cookie", format!("rollgate_session={c}"));
        }
        if let Some(c) = r.csrf {
            b = b.header("x-csrf-token", c);
        }
        if let Some(o) = r.origin {
            b = b.header("origin", o);
        }
        if let Some(t) = r.bearer {
            b = b.bearer_auth(t);
        }
        if let Some(f) = r.form {
            b = b
                .header("content-type", "application/x-www-form-urlencoded")
                .body(f.to_string());
        }
        if let Some(j) = r.json {
            b = b
                .header("content-type", "application/json")
                .body(j.to_string());
        }
        self.rt.block_on(async {
            let resp = b.send().await.expect("the web view answers");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap_or_default();
            Answer {
                status,
                headers,
                body,
            }
        })
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        self.send(
            "GET",
            path,
            Req {
                cookie,
                ..Req::default()
            },
        )
    }

    /// Sign in with `token`: the session cookie's value.
    fn sign_in(&self, token: &str) -> String {
        let a = self.send(
            "POST",
            "/login",
            Req {
                form: Some(&format!("token={token}&next=%2F")),
                ..Req::default()
            },
        );
        assert_eq!(a.status, 303, "{}", a.body);
        cookie_of(&a)
    }
}

/// The session cookie an answer sets, checked for its flags.
fn cookie_of(a: &Answer) -> String {
    let set = a.header("set-cookie");
    let value = set
        .strip_prefix("rollgate_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {set:?}"));
    assert_eq!(value.len(), 64, "{set}");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{set}");
    assert_eq!(
        set,
        format!("rollgate_session={value}; HttpOnly; SameSite=Strict; Path=/")
    );
    value.to_string()
}

/// The config of `serve.rs`: `held` waits at an indefinite phase pause.
fn held_config(dir: &Path) {
    let config = dir.join("config");
    std::fs::create_dir(&config).expect("mkdir");
    common::copy_example(
        "canary",
        &["backends.yaml", "templates.yaml", "error-ratio.om"],
        &config,
    );
    std::fs::write(
        config.join("rollouts.yaml"),
        common::fixture_with("serve/held.yaml", &[("name", "held")]),
    )
    .expect("write rollouts");
}

/// The web view's address from the server's log.
fn ui_url(s: &Server) -> String {
    let log = s.log();
    log.lines()
        .find_map(|l| l.split("rollgate serve: web view on ").nth(1))
        .unwrap_or_else(|| panic!("no web view line:\n{log}"))
        .trim()
        .to_string()
}

#[test]
fn serve_web_view_signs_in_acts_with_csrf_and_signs_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    held_config(dir.path());
    let s = Serve::new(dir.path())
        .args(&["--ui-listen", "127.0.0.1:0"])
        .start();
    s.wait_state("held", 1, "paused(step)");
    let ui = Client::new(&ui_url(&s));

    // Pages redirect without a session, keeping where they were going; assets and the
    // sign-in page are public; every answer has the security headers.
    let a = ui.get("/", None);
    assert_eq!((a.status, a.header("location")), (303, "/login?next=/"));
    a.assert_secure("redirect");
    let a = ui.get("/rollouts/held?run=1", None);
    assert_eq!(a.header("location"), "/login?next=/rollouts/held%3Frun%3D1");
    let a = ui.get("/login", None);
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").starts_with("text/html"));
    assert!(a.body.contains("action=\"/login\""), "{}", a.body);
    a.assert_secure("login page");
    for (file, kind) in [
        ("common.js", "text/javascript"),
        ("list.js", "text/javascript"),
        ("app.css", "text/css"),
    ] {
        let a = ui.get(&format!("/assets/{file}"), None);
        assert_eq!(a.status, 200, "{file}");
        assert!(a.header("content-type").starts_with(kind), "{file}");
        assert_eq!(a.header("cache-control"), "no-cache", "{file}");
        // No external URL (the SVG namespace is a name, not a fetch), never innerHTML.
        let body = a.body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("innerHTML") && !body.contains("http://") && !body.contains("https://"),
            "{file}"
        );
        a.assert_secure(file);
    }
    assert_eq!(ui.get("/assets/nope.js", None).status, 404);
    let a = ui.get("/ui/api/session", None);
    assert_eq!(a.status, 401);
    assert!(a.json()["error"].is_string());
    a.assert_secure("401");

    // A bad token goes back to the sign-in page, without a cookie.
    let a = ui.send(
        "POST",
        "/login",
        Req {
            form: Some("token=not-a-listed-token-at-all"),
            ..Req::default()
        },
    );
    assert_eq!((a.status, a.header("location")), (303, "/login?failed=1"));
    assert_eq!(a.header("set-cookie"), "");
    // Only a local path is followed after signing in.
    let a = ui.send(
        "POST",
        "/login",
        Req {
            form: Some(&format!("token={READER}&next=%2F%2Fevil.example")),
            ..Req::default()
        },
    );
    assert_eq!(a.header("location"), "/");
    let a = ui.send(
        "POST",
        "/login",
        Req {
            form: Some(&format!("token={READER}&next=%2Frollouts%2Fheld")),
            ..Req::default()
        },
    );
    assert_eq!(a.header("location"), "/rollouts/held");
    let bob = cookie_of(&a);
    // A sign-in form posted from another site is refused.
    let a = ui.send(
        "POST",
        "/login",
        Req {
            form: Some(&format!("token={READER}")),
            origin: Some("http://evil.example"),
            ..Req::default()
        },
    );
    assert_eq!(a.status, 403);

    // The session knows the user and role; the page is served.
    let a = ui.get("/ui/api/session", Some(&bob));
    assert_eq!(a.status, 200);
    a.assert_secure("session");
    let v = a.json();
    assert_eq!(
        (v["user"].as_str(), v["role"].as_str(), v["mode"].as_str()),
        (Some("bob"), Some("read-only"), Some("serve"))
    );
    assert_eq!(v["signInRequired"], true);
    let bob_csrf = v["csrf"].as_str().expect("csrf").to_string();
    assert_eq!(bob_csrf.len(), 64);
    let a = ui.get("/", Some(&bob));
    assert_eq!(a.status, 200);
    assert!(a.body.contains("/assets/list.js"));
    let a = ui.get("/ui/api/overview", Some(&bob));
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["total"], 1);
    assert_eq!(v["rows"][0]["rollout"], "held");
    assert_eq!(v["rows"][0]["state"], "paused(step)");
    assert_eq!(v["tiles"]["attentionBy"]["paused"], 1);
    // Scripts may use a bearer token instead.
    assert_eq!(
        ui.send(
            "GET",
            "/ui/api/overview",
            Req {
                bearer: Some(READER),
                ..Req::default()
            }
        )
        .status,
        200
    );

    // A read-only session may not act, even with its CSRF token.
    let act = |cookie: &str, csrf: Option<&str>, origin: Option<&str>, json: &str| {
        ui.send(
            "POST",
            "/ui/api/rollouts/held/promote",
            Req {
                cookie: Some(cookie),
                csrf,
                origin,
                json: Some(json),
                ..Req::default()
            },
        )
    };
    let reason = r#"{"reason": "numbers look fine"}"#;
    let a = act(&bob, Some(&bob_csrf), None, reason);
    assert_eq!(a.status, 403, "{}", a.body);
    a.assert_secure("403");

    let alice = ui.sign_in(OPERATOR);
    let v = ui.get("/ui/api/session", Some(&alice)).json();
    assert_eq!(
        (v["user"].as_str(), v["role"].as_str()),
        (Some("alice"), Some("operator"))
    );
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    assert_ne!(csrf, bob_csrf);
    let own = ui.base.clone();
    // Without the CSRF header, with a wrong one, from another origin, as a cross-site
    // form: 403, and nothing reaches the rollout.
    assert_eq!(act(&alice, None, Some(&own), reason).status, 403);
    assert_eq!(act(&alice, Some(&bob_csrf), Some(&own), reason).status, 403);
    assert_eq!(
        act(&alice, Some(&csrf), Some("http://evil.example"), reason).status,
        403
    );
    let a = ui.send(
        "POST",
        "/ui/api/rollouts/held/promote",
        Req {
            cookie: Some(&alice),
            origin: Some("http://evil.example"),
            form: Some("reason=pwned"),
            ..Req::default()
        },
    );
    assert_eq!(a.status, 403);
    assert_eq!(
        ui.send(
            "POST",
            "/ui/api/rollouts/held/promote",
            Req {
                json: Some(reason),
                ..Req::default()
            }
        )
        .status,
        401
    );
    // A reason is required.
    let a = act(&alice, Some(&csrf), Some(&own), r#"{"reason": "  "}"#);
    assert_eq!(a.status, 400, "{}", a.body);
    let audit = s.audit("held", 1);
    assert!(!audit.iter().any(|e| e["action"] == "promote"), "{audit:?}");
    let log = s.log();
    assert!(log.contains("web view request refused"), "{log}");
    assert!(
        log.contains("reason=\"ui-csrf\"") && log.contains("reason=\"ui-foreign-origin\""),
        "{log}"
    );

    // Now properly: the change comes down the event stream, the action is audited as
    // alice, and the answer is the API's.
    let events_url = format!("{}/ui/api/events?rollout=held", ui.base);
    let reader = std::thread::spawn(move || {
        read_events(&events_url, Duration::from_secs(60), |events| {
            events
                .iter()
                .any(|e| e["rollout"] == "held" && e["kind"] == "decision")
        })
    });
    s.wait_subscribers(1);
    let a = act(&alice, Some(&csrf), Some(&own), reason);
    assert!(matches!(a.status, 200 | 202), "{}: {}", a.status, a.body);
    let v = a.json();
    assert_eq!(
        (v["rollout"].as_str(), v["action"].as_str()),
        (Some("held"), Some("promote"))
    );
    let events = reader.join().expect("events");
    assert!(
        events
            .iter()
            .all(|e| e["rollout"] == "held" && e["run"] == 1),
        "{events:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = s.audit("held", 1);
        if let Some(e) = audit.iter().find(|e| e["action"] == "promote") {
            assert_eq!(e["actor"], "alice", "{e}");
            assert_eq!(e["reason"], "numbers look fine", "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "no promote in {audit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Sign-out needs the CSRF token; then the old cookie is worth nothing.
    let a = ui.send(
        "POST",
        "/logout",
        Req {
            cookie: Some(&alice),
            ..Req::default()
        },
    );
    assert_eq!(a.status, 403);
    let a = ui.send(
        "POST",
        "/logout",
        Req {
            cookie: Some(&alice),
            form: Some(&format!("csrf={csrf}")),
            ..Req::default()
        },
    );
    assert_eq!((a.status, a.header("location")), (303, "/login"));
    assert!(
        a.header("set-cookie").contains("Max-Age=0"),
        "{:?}",
        a.headers
    );
    assert_eq!(ui.get("/ui/api/session", Some(&alice)).status, 401);
    assert_eq!(ui.get("/", Some(&alice)).status, 303);
    assert_eq!(act(&alice, Some(&csrf), Some(&own), reason).status, 401);
    // bob is still signed in.
    assert_eq!(ui.get("/ui/api/session", Some(&bob)).status, 200);

    // No secret reaches the log.
    let log = s.log();
    for secret in [OPERATOR, READER, &alice, &bob, &csrf, &bob_csrf] {
        assert!(!log.contains(secret), "a secret is in the log:\n{log}");
    }
}

/// `rollgate ui`, killed by PID on drop.
struct UiProcess {
    child: Child,
    url: String,
}

impl Drop for UiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ui(args: &[&str]) -> UiProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("ui")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollgate ui starts");
    let pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("rollgate ui says where it listens");
    let url = line
        .strip_prefix("rollgate ui: listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    UiProcess { child, url }
}

/// The quickstart (checkout succeeds, payments rolls back) and `held`, paused at an
/// indefinite pause, run into `dir/r.db`.
fn three_runs(dir: &Path) -> String {
    let held = "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: held\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {}\n  strategy:\n    canary: {}\n  phases:\n    - {name: canary-10, weight: 10, pause: {}}\n    - {name: full, weight: 100}\n";
    let config = common::canary_copy(None);
    let rollouts = config.path().join("rollouts.yaml");
    let mut text = std::fs::read_to_string(&rollouts).expect("read");
    text.push_str(held);
    std::fs::write(&rollouts, text).expect("write");
    let store = dir.join("r.db").display().to_string();
    let run = common::rollgate(&[
        "run",
        &config.path().display().to_string(),
        "--store",
        &store,
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(run.code, 8, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("held: paused(step)"), "{}", run.stdout);
    store
}

#[test]
fn store_view_lists_tiles_rows_pages_and_never_acts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = three_runs(dir.path());
    let p = start_ui(&["--store", &store, "--listen", "127.0.0.1:0"]);
    let ui = Client::new(&p.url);

    // Nobody signs in: everyone reads.
    let v = ui.get("/ui/api/session", None).json();
    assert_eq!(
        v,
        serde_json::json!({"user": null, "role": "read-only", "csrf": null, "mode": "store", "signInRequired": false})
    );
    assert_eq!(ui.get("/", None).status, 200);
    assert_eq!(ui.get("/rollouts/held", None).status, 200);
    assert_eq!(ui.get("/login", None).header("location"), "/");

    let overview = |query: &str| {
        let a = ui.get(&format!("/ui/api/overview{query}"), None);
        a.assert_secure(query);
        (a.status, a.json())
    };
    let (status, v) = overview("?period=all");
    assert_eq!(status, 200, "{v}");
    let t = &v["tiles"];
    assert_eq!(t["progressing"], 0, "{t}");
    assert_eq!(t["attention"], 1, "{t}");
    assert_eq!(
        t["attentionBy"],
        serde_json::json!({"paused": 1, "invalidSpec": 0, "staleRunner": 0})
    );
    assert_eq!(t["rolledBack"], 1, "{t}");
    assert_eq!(t["rolledBackBy"]["verification"], 1, "{t}");
    assert_eq!(
        (t["succeeded"].as_u64(), t["ended"].as_u64()),
        (Some(1), Some(2)),
        "{t}"
    );
    assert_eq!(t["successRatio"], 0.5);
    assert!(t["medianDurationMs"].as_i64().is_some_and(|d| d > 0), "{t}");
    let names = |v: &Value| -> Vec<String> {
        v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["rollout"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&v), ["checkout", "held", "payments"]);
    let rows = v["rows"].as_array().expect("rows");
    let held = &rows[1];
    assert_eq!(held["state"], "paused(step)");
    assert_eq!(held["attention"], "paused");
    assert_eq!(
        (
            held["phase"].as_str(),
            held["phaseIndex"].as_u64(),
            held["phaseCount"].as_u64()
        ),
        (Some("canary-10"), Some(0), Some(2))
    );
    assert_eq!(held["weight"], 10.0);
    assert_eq!(held["finished"], false);
    assert_eq!(rows[0]["state"], "succeeded");
    assert_eq!(rows[0]["strategy"], "canary");
    assert_eq!(rows[0]["lastActor"], "rollgate");
    assert_eq!(rows[2]["state"], "rolled-back");
    // The runs ended on 2026-01-01 (the simulated clock): not in the last 24 hours.
    let (_, v) = overview("");
    assert_eq!(v["period"], "24h");
    assert_eq!(v["tiles"]["ended"], 0);
    assert_eq!(v["tiles"]["successRatio"], Value::Null);
    assert_eq!(v["tiles"]["attention"], 1, "now, whatever the period");
    // Filters and pages.
    assert_eq!(names(&overview("?state=paused").1), ["held"]);
    assert_eq!(names(&overview("?state=unfinished").1), ["held"]);
    assert_eq!(names(&overview("?state=rolled-back").1), ["payments"]);
    assert_eq!(names(&overview("?prefix=pay").1), ["payments"]);
    let (_, v) = overview("?pageSize=1&page=2");
    assert_eq!(
        (names(&v), v["pages"].as_u64(), v["total"].as_u64()),
        (vec!["held".to_string()], Some(3), Some(3))
    );
    for (query, names_it) in [
        ("?state=bogus", "state:"),
        ("?period=2h", "period:"),
        ("?pageSize=501", "pageSize:"),
        ("?page=0", "page:"),
    ] {
        let (status, v) = overview(query);
        assert_eq!(status, 400, "{query}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.starts_with(names_it)),
            "{query}: {v}"
        );
    }

    // A store view never acts.
    let a = ui.send(
        "POST",
        "/ui/api/rollouts/held/resume",
        Req {
            json: Some(r#"{"reason": "go"}"#),
            ..Req::default()
        },
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("never acts"))
    );

    // With --tokens: sign-in first, and an operator still only reads.
    let tokens = common::serve::write_tokens(dir.path());
    let p2 = start_ui(&[
        "--store",
        &store,
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        &tokens.display().to_string(),
    ]);
    let ui2 = Client::new(&p2.url);
    assert_eq!(ui2.get("/", None).status, 303);
    assert_eq!(ui2.get("/ui/api/overview", None).status, 401);
    let alice = ui2.sign_in(OPERATOR);
    let v = ui2.get("/ui/api/session", Some(&alice)).json();
    assert_eq!(
        (v["user"].as_str(), v["role"].as_str(), v["mode"].as_str()),
        (Some("alice"), Some("read-only"), Some("store"))
    );
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    let a = ui2.send(
        "POST",
        "/ui/api/rollouts/held/resume",
        Req {
            cookie: Some(&alice),
            csrf: Some(&csrf),
            json: Some(r#"{"reason": "go"}"#),
            ..Req::default()
        },
    );
    assert_eq!(a.status, 403, "{}", a.body);

    // SIGTERM stops it cleanly.
    let mut p = p;
    let pid = i32::try_from(p.child.id()).expect("pid");
    // SAFETY: signalling the child this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = p.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "rollgate ui ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn ui_refuses_a_public_address_without_tokens_and_a_missing_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("none.db").display().to_string();
    let run = common::rollgate(&["ui", "--store", &store, "--listen", "0.0.0.0:0"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a loopback address") && run.stderr.contains("--tokens"),
        "{}",
        run.stderr
    );
    let run = common::rollgate(&["ui", "--store", &store, "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("no such file"), "{}", run.stderr);

    // A taken port: the error names the option and the address.
    let quick = common::quickstart(dir.path(), "s.db", &[]);
    assert_eq!(quick.code, 5, "{}", quick.stderr);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = taken.local_addr().expect("address").to_string();
    let store = dir.path().join("s.db").display().to_string();
    let run = common::rollgate(&["ui", "--store", &store, "--listen", &at]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("--listen {at}: cannot listen there")),
        "{}",
        run.stderr
    );
}
