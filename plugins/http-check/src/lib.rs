//! `http-check`: calls an HTTP endpoint through `wasi:http` and judges the answer.
//!
//! The host lets the component call only the hosts its `Plugin` document lists in
//! `spec.allowedHosts`; any other host is refused (`HTTP-request-denied`), and that, a
//! connection failure or a timeout is an **error** measurement, never a verdict. A status
//! outside `expectStatus` fails. With `field` (a JSON pointer), the body must be JSON and
//! the field must exist and not be null; it is compared with `equals`, or with `min` and
//! `max` when numeric. A null or non-JSON body never passes: without `field`, `json: true`
//! (the default) still requires a JSON body other than `null`.

use rollgate_plugin::duration::parse_ms;
use rollgate_plugin::prelude::*;
use serde_json::{Value, json};

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ world: "client", path: "wit", generate_all });
}

/// The operator's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// `http://` or `https://` URL; its host must be in the Plugin document's allowedHosts.
    pub url: String,
    /// Statuses that pass: numbers, or `2xx`-style classes (default `["2xx"]`).
    #[serde(default)]
    pub expect_status: Vec<StatusSpec>,
    /// JSON pointer of the field to judge, e.g. `/status` or `/checks/0/ok`.
    #[serde(default)]
    pub field: Option<String>,
    /// The field must equal this JSON value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// The field must be a number at least this.
    #[serde(default)]
    pub min: Option<f64>,
    /// The field must be a number at most this.
    #[serde(default)]
    pub max: Option<f64>,
    /// Without `field`: whether the body must still be JSON other than null (default true).
    #[serde(default)]
    pub json: Option<bool>,
    /// Longest wait for the connection and for the answer (default 5s; the plugin's own
    /// time limit caps it too).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A status or a class of statuses.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusSpec {
    /// One status, e.g. 204.
    Code(u16),
    /// A class, e.g. `2xx`.
    Class(String),
}

impl StatusSpec {
    fn matches(&self, status: u16) -> bool {
        match self {
            StatusSpec::Code(c) => *c == status,
            StatusSpec::Class(c) => c
                .strip_suffix("xx")
                .and_then(|d| d.parse::<u16>().ok())
                .is_some_and(|d| status / 100 == d),
        }
    }
}

/// The parts of a URL a request needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `true` for https.
    pub https: bool,
    /// host[:port].
    pub authority: String,
    /// /path?query.
    pub path: String,
}

/// Split an `http(s)://authority/path?query` URL.
pub fn target(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} needs a host (and no user info)"));
    }
    Ok(Target {
        https,
        authority: authority.to_string(),
        path,
    })
}

fn problems(c: &Config) -> Vec<ConfigError> {
    let mut p = Vec::new();
    if let Err(e) = target(&c.url) {
        p.push(ConfigError::new("/url", e));
    }
    for (i, s) in c.expect_status.iter().enumerate() {
        let ok = match s {
            StatusSpec::Code(code) => (100..=599).contains(code),
            StatusSpec::Class(_) => (1..=5).any(|d| s.matches(d * 100)),
        };
        if !ok {
            p.push(ConfigError::new(
                format!("/expectStatus/{i}"),
                "a status 100-599 or a class 1xx-5xx",
            ));
        }
    }
    if let Some(f) = &c.field
        && !(f.is_empty() || f.starts_with('/'))
    {
        p.push(ConfigError::new(
            "/field",
            "a JSON pointer starts with / (e.g. /status)",
        ));
    }
    if c.field.is_none() && (c.equals.is_some() || c.min.is_some() || c.max.is_some()) {
        p.push(ConfigError::new(
            "/field",
            "equals, min and max judge a field: name it",
        ));
    }
    if let Some(t) = &c.timeout
        && let Err(e) = parse_ms(t)
    {
        p.push(ConfigError::new("/timeout", e));
    }
    p
}

/// Judge a response.
pub fn judge(c: &Config, status: u16, body: &[u8]) -> Measurement {
    let classes = if c.expect_status.is_empty() {
        vec![StatusSpec::Class("2xx".into())]
    } else {
        c.expect_status.clone()
    };
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let details = json!({"status": status, "body": snippet});
    if !classes.iter().any(|s| s.matches(status)) {
        return Measurement::judge(
            false,
            f64::from(status),
            format!("status {status} is not expected ({classes:?})"),
        )
        .with_details(details);
    }
    let need_json = c.field.is_some() || c.json.unwrap_or(true);
    if !need_json {
        return Measurement::judge(true, f64::from(status), format!("status {status}"))
            .with_details(details);
    }
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Measurement::judge(
                false,
                f64::from(status),
                format!("status {status} but the body is not JSON: {e}"),
            )
            .with_details(details);
        }
    };
    if parsed.is_null() {
        return Measurement::judge(
            false,
            f64::from(status),
            format!("status {status} but the body is null"),
        )
        .with_details(details);
    }
    let Some(pointer) = &c.field else {
        return Measurement::judge(
            true,
            f64::from(status),
            format!("status {status}, a JSON body"),
        )
        .with_details(details);
    };
    let field = parsed.pointer(pointer).unwrap_or(&Value::Null);
    if field.is_null() {
        return Measurement::judge(
            false,
            f64::from(status),
            format!("field {pointer} is missing or null"),
        )
        .with_details(details);
    }
    let value = field.as_f64().unwrap_or(f64::from(status));
    let details = json!({"status": status, "field": pointer, "value": field});
    if let Some(want) = &c.equals
        && field != want
    {
        return Measurement::judge(
            false,
            value,
            format!("field {pointer} is {field}, expected {want}"),
        )
        .with_details(details);
    }
    if c.min.is_some() || c.max.is_some() {
        let Some(n) = field.as_f64() else {
            return Measurement::judge(
                false,
                value,
                format!("field {pointer} is {field}, not a number"),
            )
            .with_details(details);
        };
        if c.min.is_some_and(|m| n < m) || c.max.is_some_and(|m| n > m) {
            return Measurement::judge(
                false,
                n,
                format!(
                    "field {pointer} is {n}, outside [{}, {}]",
                    c.min.unwrap_or(f64::NEG_INFINITY),
                    c.max.unwrap_or(f64::INFINITY)
                ),
            )
            .with_details(details);
        }
    }
    Measurement::judge(
        true,
        value,
        format!("status {status}, field {pointer} is {field}"),
    )
    .with_details(details)
}

/// GET the target; the status and up to 1 MiB of body.
#[cfg(target_arch = "wasm32")]
fn get(t: &Target, timeout_ms: u64) -> Result<(u16, Vec<u8>), String> {
    use bindings::wasi::http::outgoing_handler;
    use bindings::wasi::http::types::{Fields, Method, OutgoingRequest, RequestOptions, Scheme};
    use bindings::wasi::io::streams::StreamError;
    const MAX_BODY: usize = 1 << 20;
    let headers = Fields::new();
    headers
        .append("accept", b"application/json")
        .map_err(|e| format!("header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&Method::Get)
        .map_err(|()| "method refused")?;
    request
        .set_scheme(Some(&if t.https { Scheme::Https } else { Scheme::Http }))
        .map_err(|()| "scheme refused")?;
    request
        .set_authority(Some(&t.authority))
        .map_err(|()| "authority refused")?;
    request
        .set_path_with_query(Some(&t.path))
        .map_err(|()| "path refused")?;
    let options = RequestOptions::new();
    let ns = timeout_ms.saturating_mul(1_000_000);
    let _ = options.set_connect_timeout(Some(ns));
    let _ = options.set_first_byte_timeout(Some(ns));
    let _ = options.set_between_bytes_timeout(Some(ns));
    let pending = outgoing_handler::handle(request, Some(options))
        .map_err(|e| format!("GET {}{}: {e:?}", t.authority, t.path))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(format!("GET {}{}: {e:?}", t.authority, t.path)),
        _ => return Err(format!("GET {}{}: no response", t.authority, t.path)),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "the body cannot be read")?;
    let stream = body.stream().map_err(|()| "the body cannot be read")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY {
                    return Err(format!("the body is over {MAX_BODY} bytes"));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the body failed: {}", e.to_debug_string()));
            }
        }
    }
    Ok((status, bytes))
}

#[cfg(not(target_arch = "wasm32"))]
fn get(_: &Target, _: u64) -> Result<(u16, Vec<u8>), String> {
    Err("wasi:http is only available inside the component".into())
}

/// The provider.
pub struct HttpCheck;

impl Verifier for HttpCheck {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        problems(config)
    }

    fn measure(config: Config, _ctx: &Context) -> Result<Measurement, String> {
        let t = target(&config.url)?;
        let timeout = match &config.timeout {
            Some(text) => parse_ms(text)?,
            None => 5_000,
        };
        let (status, body) = get(&t, timeout)?;
        Ok(judge(&config, status, &body))
    }
}

rollgate_plugin::export_verifier!(HttpCheck);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Value) -> Config {
        let mut base = json!({"url": "http://127.0.0.1:8080/health"});
        if let (Some(b), Some(v)) = (base.as_object_mut(), v.as_object()) {
            b.extend(v.clone());
        }
        serde_json::from_value(base).expect("config")
    }

    #[test]
    fn statuses_and_bodies() {
        let c = config(json!({}));
        assert_eq!(judge(&c, 200, br#"{"ok": true}"#).verdict, Verdict::Pass);
        assert_eq!(judge(&c, 503, br#"{"ok": true}"#).verdict, Verdict::Fail);
        // Null or non-JSON bodies never pass.
        assert_eq!(judge(&c, 200, b"null").verdict, Verdict::Fail);
        assert_eq!(judge(&c, 200, b"<html>ok</html>").verdict, Verdict::Fail);
        assert_eq!(judge(&c, 200, b"").verdict, Verdict::Fail);
        let plain = config(json!({"json": false, "expectStatus": [204, "3xx"]}));
        assert_eq!(judge(&plain, 204, b"").verdict, Verdict::Pass);
        assert_eq!(judge(&plain, 302, b"").verdict, Verdict::Pass);
        assert_eq!(judge(&plain, 200, b"").verdict, Verdict::Fail);
    }

    #[test]
    fn fields() {
        let eq = config(json!({"field": "/status", "equals": "up"}));
        assert_eq!(
            judge(&eq, 200, br#"{"status": "up"}"#).verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge(&eq, 200, br#"{"status": "down"}"#).verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&eq, 200, br#"{"status": null}"#).verdict,
            Verdict::Fail
        );
        assert_eq!(judge(&eq, 200, br#"{}"#).verdict, Verdict::Fail);
        let range = config(json!({"field": "/errors/ratio", "max": 0.05}));
        let m = judge(&range, 200, br#"{"errors": {"ratio": 0.01}}"#);
        assert_eq!((m.verdict, m.value), (Verdict::Pass, Some(0.01)));
        assert_eq!(
            judge(&range, 200, br#"{"errors": {"ratio": 0.5}}"#).verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&range, 200, br#"{"errors": {"ratio": "low"}}"#).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn urls_and_configuration() {
        assert_eq!(
            target("https://api.example.com:8443/v1/health?deep=1"),
            Ok(Target {
                https: true,
                authority: "api.example.com:8443".into(),
                path: "/v1/health?deep=1".into()
            })
        );
        assert_eq!(target("http://h?x=1").map(|t| t.path), Ok("/?x=1".into()));
        assert!(target("ftp://h/").is_err());
        assert!(target("http://user@h/").is_err());
        let bad = config(
            json!({"url": "h/x", "expectStatus": [99, "7xx"], "field": "status", "timeout": "soon"}),
        );
        let paths: Vec<String> = HttpCheck::check(&bad).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "/url",
                "/expectStatus/0",
                "/expectStatus/1",
                "/field",
                "/timeout"
            ]
        );
    }
}
