//! A small W3C WebDriver client over reqwest: a real headless Chromium driven by Debian's
//! `chromedriver` (packages `chromium` and `chromium-driver`, installed by `.ci/run`).
//!
//! [`Browser::start`] starts `chromedriver --port=FREE` in a temp folder, in a process group
//! of its own, waits (bounded) until its `/status` says ready, and opens a session: headless,
//! no sandbox (the tests run as root), a fixed 1400×1000 window, a fresh profile, alerts left
//! open (`unhandledPromptBehavior: ignore`, so [`Browser::alert`] sees them) and the
//! console kept ([`Browser::console`]). A script installed before every page's own scripts
//! (through Chromium's DevTools `Page.addScriptToEvaluateOnNewDocument`) counts each `img`
//! element ever added to the page and each `alert` call ([`Browser::hostile_effects`]).
//! Dropping the [`Browser`] deletes the session and kills chromedriver's process group by
//! its PID (chromedriver and the Chromium processes it started; never by name).
//!
//! Like the serve harness, the client is async reqwest driven from a current-thread runtime
//! of its own: the tests stay plain `#[test]` functions. Every wait has a deadline.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key of an element reference in W3C WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Installed before any script of every page: counts `img` elements ever added and `alert`
/// calls (the alert still opens, so the WebDriver alert check sees it too).
const WATCH: &str = r#"
(() => {
  window.__rgImgs = 0;
  window.__rgAlerts = [];
  const count = (node) => {
    if (node.nodeType !== 1) return;
    if (node.tagName === 'IMG' || node.tagName === 'img') window.__rgImgs += 1;
    window.__rgImgs += node.getElementsByTagName('img').length;
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) count(n);
  }).observe(document, {childList: true, subtree: true});
  const original = window.alert;
  window.alert = function (message) {
    window.__rgAlerts.push(String(message));
    return original.apply(this, arguments);
  };
})();
"#;

/// An element found on the page (its WebDriver reference).
#[derive(Clone, Debug)]
pub struct Element(String);

/// A WebDriver error: its `error` code and message.
#[derive(Debug)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.message.lines().next().unwrap_or_default();
        write!(f, "{} ({}): {first}", self.error, self.status)
    }
}

/// What a page did that a hostile text could make it do.
#[derive(Debug, PartialEq, Eq)]
pub struct Effects {
    /// The text of the alert open now, if any.
    pub open_alert: Option<String>,
    /// `img` elements added since the page started (per the watch script).
    pub imgs_added: u64,
    /// `img` elements in the document now.
    pub imgs_now: u64,
    /// Messages `alert` was called with.
    pub alerts: Vec<String>,
}

/// Where chromedriver is: `$CHROMEDRIVER`, else `chromedriver` on the PATH.
fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
}

/// A headless Chromium session; deleted, and chromedriver's process group killed, on drop.
pub struct Browser {
    child: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Browser {
    /// A browser, or `None` when chromedriver is not installed and
    /// `ROLLGATE_REQUIRE_BROWSER` is not set (a developer machine: the test says so loudly
    /// and passes). CI sets `ROLLGATE_REQUIRE_BROWSER=1`, so there a missing browser fails.
    pub fn start(test: &str) -> Option<Browser> {
        let Some(driver) = chromedriver() else {
            let required = std::env::var_os("ROLLGATE_REQUIRE_BROWSER")
                .is_some_and(|v| !v.is_empty() && v != "0");
            assert!(
                !required,
                "{test}: ROLLGATE_REQUIRE_BROWSER is set but chromedriver is not installed \
                 (install Debian's chromium and chromium-driver, as .ci/run does, or set \
                 CHROMEDRIVER to its path)"
            );
            eprintln!(
                "\n!!! SKIPPED {test}: no chromedriver on the PATH (install Debian's chromium \
                 and chromium-driver, as .ci/run does; set ROLLGATE_REQUIRE_BROWSER=1 to \
                 make this a failure) !!!\n"
            );
            return None;
        };
        Some(Self::launch(&driver))
    }

    fn launch(driver: &Path) -> Browser {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::common::free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("log");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: the drop kills chromedriver and every Chromium
            // process it started by this group's id.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", driver.display()));
        let mut browser = Browser {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: reqwest::Client::builder()
                .timeout(COMMAND_TIMEOUT)
                .build()
                .expect("client"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            dir,
        };
        browser.wait_ready();
        browser.open_session();
        browser
    }

    /// Wait (bounded) until chromedriver's `/status` says it is ready.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited early ({status}):\n{}",
                    self.driver_log()
                );
            }
            let url = format!("{}/status", self.base);
            let ready = self.rt.block_on(async {
                match self
                    .client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    Ok(r) => r.json::<Value>().await.ok(),
                    Err(_) => None,
                }
            });
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 30 s:\n{}",
                self.driver_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn open_session(&mut self) {
        let profile = self.dir.path().join("profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1400,1000".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
        ];
        let mut options = json!({"args": args});
        if let Some(binary) = std::env::var_os("CHROMIUM") {
            options["binary"] = json!(binary.to_string_lossy());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": options,
        }}});
        let answer = self
            .raw("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", self.driver_log()));
        self.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {answer}"))
            .to_string();
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": WATCH}),
        );
    }

    /// chromedriver's own log so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// One WebDriver request: `Ok(value)` or the WebDriver error.
    pub fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self
                .client
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        self.rt.block_on(async {
            let resp = request.send().await.map_err(|e| WdError {
                status: 0,
                error: "transport".into(),
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                Ok(v["value"].clone())
            } else {
                Err(WdError {
                    status,
                    error: v["value"]["error"].as_str().unwrap_or("?").to_string(),
                    message: v["value"]["message"].as_str().unwrap_or("").to_string(),
                })
            }
        })
    }

    /// A command of this session (`path` after `/session/ID`); panics on an error.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.raw(method, &full, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// A Chrome DevTools command through chromedriver.
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
    }

    /// Go to `url` (returns once the page has loaded).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// The page's URL now.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching the CSS selector `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting (bounded) for it to appear.
    pub fn find(&self, css: &str) -> Element {
        self.wait(&format!("an element {css}"), Duration::from_secs(30), |b| {
            b.find_all(css).into_iter().next()
        })
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.find_all(css).len()
    }

    /// The element's rendered text.
    pub fn text(&self, el: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", el.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element's attribute `name` (or property of that name), `None` when absent.
    pub fn attr(&self, el: &Element, name: &str) -> Option<String> {
        let v = self.cmd("GET", &format!("/element/{}/attribute/{name}", el.0), None);
        v.as_str().map(str::to_string)
    }

    /// The attribute `name` of every element matching `css`, read at one instant (in one
    /// script: a page that redraws cannot make a reference stale in between).
    pub fn attrs(&self, css: &str, name: &str) -> Vec<Option<String>> {
        let v = self.script(
            "return [...document.querySelectorAll(arguments[0])]\
             .map(e => e.getAttribute(arguments[1]));",
            vec![css.into(), name.into()],
        );
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// The rendered text of every element matching `css`, read at one instant.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let v = self.script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);",
            vec![css.into()],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Click the first element matching `css`, finding it again when the page redrew it
    /// between the finding and the click (bounded).
    pub fn click_css(&self, css: &str) {
        self.wait(&format!("a click on {css}"), Duration::from_secs(30), |b| {
            let el = b.find_all(css).into_iter().next()?;
            let path = format!("/session/{}/element/{}/click", b.session, el.0);
            match b.raw("POST", &path, Some(json!({}))) {
                Ok(_) => Some(()),
                Err(e) if e.error == "stale element reference" => None,
                Err(e) => panic!("WebDriver click on {css}: {e}"),
            }
        });
    }

    /// Click the element.
    pub fn click(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    /// Type `text` into the element.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({"text": text})),
        );
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its result.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Run `script` asynchronously: it ends by calling `arguments[arguments.length - 1]`
    /// with its result (e.g. after a `fetch`).
    pub fn script_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Poll `check` every 50 ms until it gives a value; panics with `what` (and the page's
    /// console) after `within`.
    pub fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; the page is at {} and its console says {:#?}",
                self.url(),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Save a screenshot of the window as a PNG at `path`; returns its (width, height).
    pub fn screenshot(&self, path: &Path) -> (u32, u32) {
        let encoded = self.cmd("GET", "/screenshot", None);
        let png = decode_base64(encoded.as_str().expect("a base64 screenshot"))
            .expect("the screenshot is base64");
        let size = png_size(&png).expect("the screenshot is a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot folder");
        }
        std::fs::write(path, &png).expect("write the screenshot");
        size
    }

    /// The text of the alert open now, `None` when there is none.
    pub fn alert(&self) -> Option<String> {
        let path = format!("/session/{}/alert/text", self.session);
        match self.raw("GET", &path, None) {
            Ok(v) => Some(v.as_str().unwrap_or_default().to_string()),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("WebDriver alert/text: {e}"),
        }
    }

    /// What a hostile text could have made this page do: an open alert, `img` elements added
    /// (ever, and now), `alert` calls. An open alert is dismissed after being read.
    pub fn hostile_effects(&self) -> Effects {
        let open_alert = self.alert();
        if open_alert.is_some() {
            let path = format!("/session/{}/alert/dismiss", self.session);
            let _ = self.raw("POST", &path, Some(json!({})));
        }
        let v = self.script(
            "return [window.__rgImgs, document.getElementsByTagName('img').length, \
             window.__rgAlerts || null];",
            vec![],
        );
        Effects {
            open_alert,
            imgs_added: v[0].as_u64().expect("the watch script ran on this page"),
            imgs_now: v[1].as_u64().unwrap_or(0),
            alerts: v[2]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| m.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The browser console's entries since the last call: (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        let path = format!("/session/{}/se/log", self.session);
        let Ok(v) = self.raw("POST", &path, Some(json!({"type": "browser"}))) else {
            return Vec::new();
        };
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The console's errors since the last call (a CSP violation, an uncaught exception, a
    /// failed request), the favicon's 404 aside.
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|(level, message)| level == "SEVERE" && !message.contains("favicon.ico"))
            .map(|(_, message)| message)
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let client = &self.client;
            let _ = self.rt.block_on(async {
                client
                    .delete(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
            });
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling the process group this test started (chromedriver's PID
            // is its group's id, set by `process_group(0)`).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// Standard base64 (with or without padding); `None` on any other character.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A PNG's (width, height) from its IHDR chunk; `None` when it is not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((word(16), word(20)))
}
