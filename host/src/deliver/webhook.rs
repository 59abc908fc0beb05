//! The `webhook` target: POST each step as JSON to the operator's deployment service.
//!
//! For teams whose deploy tooling is a service rather than a script. Every request carries
//! `Idempotency-Key: <step id>` (and `X-Rollgate-Lease-Epoch: <epoch>`, the delivering
//! runner's lease on the run), so a re-delivery after a crash is recognisable, and the
//! step itself is a desired state, so applying it twice is harmless anyway — which is what
//! makes retrying transient failures (5xx, 429, connection errors, timeouts) safe. A 4xx is
//! the service refusing the step: retrying would only repeat the refusal, so it fails at
//! once with the status and the body.
//!
//! The retries happen here, `target.webhook.retries` of them with a doubling delay; once
//! they are spent the error is final (`retryable: false`), so the engine does not multiply
//! them with retries of its own.
//!
//! The URL may carry credentials (`user:password@`, `?token=…`): logs and error messages
//! show it without the password and the query, and reqwest's errors are stripped of the
//! URL they carry.
//!
//! Header values may reference credentials (`env:NAME`, `file:PATH`); they are resolved
//! once when the target is built, marked sensitive, and scrubbed from any error text.

use super::{
    Applied, CAPTURE_BYTES, OUTPUT_TAIL_BYTES, Readiness, Step, Tail, Target, TargetError,
};
use crate::metrics::BoxFuture;
use crate::metrics::secret::{Secret, literal_or_secret, redact};
use crate::spec::model::WebhookTargetSpec;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::path::Path;
use std::time::Duration;

/// Longest wait between retries, whatever the backoff or a `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How much of a response body an error message quotes.
pub(crate) const ERROR_BODY_BYTES: usize = 1024;

/// The longest connect timeout (shorter when the request timeout is shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers rollgate sets itself; a spec may not override them.
const RESERVED: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    super::LEASE_EPOCH_HEADER,
];

/// POSTs steps to `target.webhook.url`, asks `target.webhook.readyUrl` for readiness.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    url: reqwest::Url,
    ready_url: Option<reqwest::Url>,
    client: reqwest::Client,
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
    headers: HeaderMap,
    secrets: Vec<Secret>,
}

/// How one request went.
enum Attempt {
    /// 2xx, with the body tail.
    Done(String),
    /// Worth another try (after the delay the server asked for, if any).
    Transient(String, Option<Duration>),
    /// Not worth another try.
    Refused(String),
}

impl WebhookTarget {
    /// Check the URLs, resolve header references (relative `file:` paths against
    /// `base_dir`) and build the HTTP client. Errors name the field.
    pub fn new(spec: &WebhookTargetSpec, base_dir: &Path) -> Result<WebhookTarget, String> {
        let url = parse_url(&spec.url).map_err(|e| format!("target.webhook.url: {e}"))?;
        let ready_url = spec
            .ready_url
            .as_deref()
            .map(parse_url)
            .transpose()
            .map_err(|e| format!("target.webhook.readyUrl: {e}"))?;
        if spec.timeout_ms == 0 {
            return Err("target.webhook.timeoutMs: must be more than 0".into());
        }
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &spec.headers {
            let field = format!("target.webhook.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{field}: not a valid HTTP header name"))?;
            if RESERVED.contains(&header.as_str()) {
                return Err(format!(
                    "{field}: rollgate sets this header itself; remove it"
                ));
            }
            let (value, sensitive) = literal_or_secret(value, Some(base_dir), &mut secrets)
                .map_err(|e| format!("{field}: {e}"))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!("{field}: the value contains characters not allowed in an HTTP header")
            })?;
            value.set_sensitive(sensitive);
            headers.append(header, value);
        }
        let timeout = Duration::from_millis(spec.timeout_ms);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            // A redirected POST turns into a GET: better to say so than to follow it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("target.webhook: cannot build the HTTP client: {e}"))?;
        Ok(WebhookTarget {
            url,
            ready_url,
            client,
            timeout,
            retries: spec.retries,
            retry_delay: Duration::from_millis(spec.retry_delay_ms),
            headers,
            secrets,
        })
    }

    fn error(&self, message: String, retryable: bool) -> TargetError {
        TargetError {
            target: self.describe(),
            message: redact(&message, &self.secrets),
            retryable,
        }
    }

    async fn post_once(&self, headers: &HeaderMap, body: &[u8]) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .headers(headers.clone())
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let e = e.without_url();
                let why = describe_error(&e, self.timeout);
                return if e.is_builder() {
                    Attempt::Refused(why)
                } else {
                    Attempt::Transient(why, None)
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let tail = body_tail(&mut response).await;
        if status.is_success() {
            return Attempt::Done(tail.excerpt(OUTPUT_TAIL_BYTES, &self.secrets));
        }
        let mut message = status_message(status, &tail, &self.secrets);
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            message.push_str(&format!(
                " (redirected to {location}; point target.webhook.url at the final address)"
            ));
        }
        if is_transient(status) {
            let honoured = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            );
            Attempt::Transient(message, retry_after.filter(|_| honoured))
        } else {
            Attempt::Refused(message)
        }
    }
}

/// A URL as logs and messages show it: without the password and the query, which may
/// hold credentials (`https://bot@deploy.example/steps`).
pub(crate) fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A URL the client can use: absolute, http or https.
fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: only http and https URLs are supported"));
    }
    Ok(url)
}

/// Statuses worth retrying: the server is overloaded, restarting or asked us to slow down.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `Retry-After` in seconds (the HTTP-date form is ignored), capped at [`MAX_RETRY_DELAY`].
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_DELAY))
}

/// The delay before retry number `attempt + 1`: `first`, doubling, capped at `cap`.
pub(crate) fn backoff(first: Duration, attempt: u32, cap: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.min(20)).min(cap)
}

/// Read a response body, keeping its tail; a body that breaks off keeps what arrived.
pub(crate) async fn body_tail(response: &mut reqwest::Response) -> Tail {
    let mut tail = Tail::new(CAPTURE_BYTES);
    while let Ok(Some(chunk)) = response.chunk().await {
        tail.push(&chunk);
    }
    tail
}

/// `HTTP 503: <body tail>` (or just `HTTP 503` for an empty body), `secrets` redacted
/// before the body is cut.
pub(crate) fn status_message(status: StatusCode, body: &Tail, secrets: &[Secret]) -> String {
    let text = body.excerpt(ERROR_BODY_BYTES, secrets);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {text}", status.as_u16())
    }
}

/// A request error in words: timeouts say how long, others list their causes (reqwest's
/// own message alone is only "error sending request"). The URL reqwest puts in its
/// message is shown without password and query (better: pass an error already stripped
/// with [`reqwest::Error::without_url`]; the caller names the URL itself).
pub(crate) fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}ms", timeout.as_millis());
    }
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &shown(url));
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

impl Target for WebhookTarget {
    fn describe(&self) -> String {
        format!("webhook {}", shown(&self.url))
    }

    fn apply<'a>(
        &'a self,
        step: &'a Step,
        epoch: Option<i64>,
    ) -> BoxFuture<'a, Result<Applied, TargetError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(step)
                .map_err(|e| self.error(format!("cannot serialise the step: {e}"), false))?;
            let key = HeaderValue::from_str(&step.id).map_err(|_| {
                self.error(
                    format!("step id {:?} cannot be sent as an Idempotency-Key", step.id),
                    false,
                )
            })?;
            let mut headers = self.headers.clone();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(HeaderName::from_static("idempotency-key"), key);
            if let Some(epoch) = epoch {
                headers.insert(
                    HeaderName::from_static(super::LEASE_EPOCH_HEADER),
                    HeaderValue::from(epoch),
                );
            }
            let mut attempt = 0u32;
            loop {
                match self.post_once(&headers, &body).await {
                    Attempt::Done(output) => {
                        return Ok(Applied {
                            output: redact(&output, &self.secrets),
                        });
                    }
                    Attempt::Refused(message) => return Err(self.error(message, false)),
                    Attempt::Transient(message, asked) => {
                        if attempt >= self.retries {
                            let tries = attempt + 1;
                            let plural = if tries == 1 { "" } else { "s" };
                            // Final: target.webhook.retries were this target's retries;
                            // the engine must not retry on top of them.
                            return Err(self.error(
                                format!("{message} (after {tries} attempt{plural})"),
                                false,
                            ));
                        }
                        // Real time on purpose: this paces requests to a real service.
                        let delay = asked
                            .unwrap_or_else(|| backoff(self.retry_delay, attempt, MAX_RETRY_DELAY));
                        tracing::warn!(
                            target_url = %shown(&self.url),
                            step = %step.id,
                            attempt = attempt + 1,
                            delay_ms = delay.as_millis() as u64,
                            "webhook failed, retrying: {}",
                            redact(&message, &self.secrets)
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                }
            }
        })
    }

    fn ready<'a>(&'a self, _step: &'a Step) -> BoxFuture<'a, Result<Readiness, TargetError>> {
        Box::pin(async move {
            let Some(url) = &self.ready_url else {
                return Ok(Readiness::Ready);
            };
            let sent = self
                .client
                .get(url.clone())
                .timeout(self.timeout)
                .headers(self.headers.clone())
                .send()
                .await;
            let mut response = match sent {
                Ok(r) => r,
                // The service may be restarting with the new version: not ready yet.
                Err(e) => {
                    let why = describe_error(&e.without_url(), self.timeout);
                    return Ok(Readiness::NotReady(redact(
                        &format!(
                            "cannot reach {} (target.webhook.readyUrl): {why}",
                            shown(url)
                        ),
                        &self.secrets,
                    )));
                }
            };
            let status = response.status();
            let tail = body_tail(&mut response).await;
            Ok(if status.is_success() {
                Readiness::Ready
            } else {
                Readiness::NotReady(status_message(status, &tail, &self.secrets))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::testing::{Reply, Server, refused_url, reply, step};
    use std::collections::BTreeMap;

    fn spec(url: String) -> WebhookTargetSpec {
        WebhookTargetSpec {
            url,
            ready_url: None,
            timeout_ms: 5_000,
            retries: 0,
            retry_delay_ms: 1,
            headers: BTreeMap::new(),
        }
    }

    /// Bounded: a test that would wait out a long backoff fails instead of hanging.
    async fn apply(target: &WebhookTarget) -> Result<Applied, TargetError> {
        tokio::time::timeout(Duration::from_secs(20), target.apply(&step(), Some(7)))
            .await
            .expect("apply finished in time")
    }

    #[tokio::test]
    async fn posts_the_step_with_its_idempotency_key_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cr3t-token\n").unwrap();
        let server = Server::start(vec![reply(200, "weight set")]).await;
        let mut s = spec(server.url("/steps"));
        s.headers
            .insert("Authorization".into(), "file:token".into());
        s.headers.insert("X-Path".into(), "env:PATH".into());
        s.headers.insert("X-Team".into(), "payments".into());
        let target = WebhookTarget::new(&s, dir.path()).unwrap();
        assert_eq!(apply(&target).await.unwrap().output, "weight set");

        let got = server.received();
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/steps"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("idempotency-key"), Some("web#1/3-update-batch"));
        assert_eq!(r.header("x-rollgate-lease-epoch"), Some("7"));
        assert_eq!(r.header("authorization"), Some("s3cr3t-token"));
        let path = std::env::var("PATH").unwrap();
        assert_eq!(r.header("x-path"), Some(path.as_str()));
        assert_eq!(r.header("x-team"), Some("payments"));
        assert_eq!(r.body, serde_json::to_vec(&step()).unwrap());
        // The credential does not show in the target's Debug output.
        assert!(!format!("{target:?}").contains("s3cr3t-token"));
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let retry_after_0 = |status| {
            Reply::Status(
                status,
                vec![("Retry-After".into(), "0".into())],
                "slow down".into(),
            )
        };
        // (replies, retries, retry delay ms, Ok(output) | Err((message, retryable)), requests)
        type Want = Result<&'static str, (&'static str, bool)>;
        let cases: Vec<(Vec<Reply>, u32, u64, Want, usize)> = vec![
            (
                vec![reply(500, "a"), reply(500, "b"), reply(200, "ok")],
                3,
                1,
                Ok("ok"),
                3,
            ),
            (
                vec![reply(400, "weight must be <= 100")],
                3,
                1,
                Err(("HTTP 400: weight must be <= 100", false)),
                1,
            ),
            (vec![reply(409, "")], 3, 1, Err(("HTTP 409", false)), 1),
            // Retry-After wins over a one-minute backoff.
            (
                vec![retry_after_0(429), reply(200, "ok")],
                1,
                60_000,
                Ok("ok"),
                2,
            ),
            (
                vec![retry_after_0(503), reply(204, "")],
                1,
                60_000,
                Ok(""),
                2,
            ),
            (
                vec![
                    reply(503, "busy 1"),
                    reply(502, "busy 2"),
                    reply(503, "busy 3"),
                ],
                2,
                1,
                // Final once its own retries are spent: the engine does not retry again.
                Err(("HTTP 503: busy 3 (after 3 attempts)", false)),
                3,
            ),
            (
                vec![reply(500, "boom")],
                0,
                1,
                Err(("HTTP 500: boom (after 1 attempt)", false)),
                1,
            ),
            (
                vec![Reply::Status(
                    301,
                    vec![("Location".into(), "https://deploy.example/steps".into())],
                    String::new(),
                )],
                2,
                1,
                Err((
                    "HTTP 301 (redirected to https://deploy.example/steps; point target.webhook.url at the final address)",
                    false,
                )),
                1,
            ),
        ];
        for (replies, retries, delay, want, requests) in cases {
            let server = Server::start(replies.clone()).await;
            let mut s = spec(server.url("/"));
            s.retries = retries;
            s.retry_delay_ms = delay;
            let target = WebhookTarget::new(&s, Path::new("")).unwrap();
            let got = apply(&target)
                .await
                .map(|a| a.output)
                .map_err(|e| (e.message, e.retryable));
            let want = want
                .map(str::to_string)
                .map_err(|(m, r)| (m.to_string(), r));
            assert_eq!(got, want, "{replies:?}");
            assert_eq!(server.received().len(), requests, "{replies:?}");
        }
    }

    #[tokio::test]
    async fn connection_errors_and_timeouts_are_retried_here_then_final() {
        let mut s = spec(refused_url().await);
        s.retries = 1;
        let err = apply(&WebhookTarget::new(&s, Path::new("")).unwrap())
            .await
            .unwrap_err();
        assert!(!err.retryable, "{err}");
        assert!(err.message.ends_with("(after 2 attempts)"), "{err}");

        let server = Server::start(vec![Reply::Hang, Reply::Hang]).await;
        let mut s = spec(server.url("/"));
        s.timeout_ms = 200;
        s.retries = 1;
        let err = apply(&WebhookTarget::new(&s, Path::new("")).unwrap())
            .await
            .unwrap_err();
        assert!(!err.retryable, "{err}");
        assert_eq!(err.message, "timed out after 200ms (after 2 attempts)");
        assert_eq!(server.received().len(), 2);
    }

    /// Log lines written while a future runs, as text.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    #[tokio::test]
    async fn credentials_in_the_url_stay_out_of_errors_and_logs() {
        use tracing::instrument::WithSubscriber;
        let closed = refused_url().await;
        // `http://127.0.0.1:PORT/` → `http://user:secret@127.0.0.1:PORT/steps?token=abc`
        let url = format!(
            "{}steps?token=abc",
            closed.replacen("http://", "http://user:secret@", 1)
        );
        assert!(
            url.contains("user:secret@") && url.ends_with("?token=abc"),
            "{url}"
        );
        let mut s = spec(url.clone());
        s.retries = 1;
        s.ready_url = Some(url);
        let target = WebhookTarget::new(&s, Path::new("")).unwrap();
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let err = apply(&target)
            .with_subscriber(subscriber)
            .await
            .unwrap_err();
        let ready = match target.ready(&step()).await.unwrap() {
            Readiness::NotReady(why) => why,
            other => panic!("{other:?}"),
        };
        let logs = logs.text();
        assert!(logs.contains("webhook failed, retrying"), "{logs}");
        for (what, text) in [
            ("error", err.to_string()),
            ("readiness", ready.clone()),
            ("log", logs.clone()),
        ] {
            assert!(!text.contains("secret"), "{what}: {text}");
            assert!(!text.contains("abc"), "{what}: {text}");
            assert!(!text.contains("token"), "{what}: {text}");
        }
        // Still says where: the host and path, and what failed.
        let host = closed
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        assert!(err.target.contains(&host), "{err}");
        assert!(ready.starts_with("cannot reach http://user@"), "{ready}");
        assert!(ready.contains("(target.webhook.readyUrl)"), "{ready}");
        assert!(err.message.ends_with("(after 2 attempts)"), "{err}");
    }

    #[tokio::test]
    async fn secrets_echoed_by_the_server_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cr3t-token").unwrap();
        let server = Server::start(vec![reply(401, "bad token s3cr3t-token")]).await;
        let mut s = spec(server.url("/"));
        s.headers
            .insert("Authorization".into(), "file:token".into());
        let err = apply(&WebhookTarget::new(&s, dir.path()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.message, "HTTP 401: bad token [redacted]");
    }

    #[tokio::test]
    async fn a_secret_across_the_cut_of_an_error_body_leaves_no_piece() {
        let dir = tempfile::tempdir().unwrap();
        let token = "tok/en+value-0123456789";
        std::fs::write(dir.path().join("token"), token).unwrap();
        // The secret straddles the 1 KiB cut of the message, raw and JSON-escaped.
        for echoed in [token.to_string(), token.replace('/', "\\/")] {
            let body = format!(
                r#"{{"error":"bad {echoed}","pad":"{}"}}"#,
                "y".repeat(ERROR_BODY_BYTES - 20)
            );
            let server = Server::start(vec![reply(403, &body)]).await;
            let mut s = spec(server.url("/"));
            s.headers.insert("X-Token".into(), "file:token".into());
            let err = apply(&WebhookTarget::new(&s, dir.path()).unwrap())
                .await
                .unwrap_err();
            assert!(err.message.starts_with("HTTP 403: …[redacted]"), "{err}");
            for len in 4..token.len() {
                for piece in [&token[..len], &token[token.len() - len..]] {
                    assert!(!err.message.contains(piece), "{piece:?} in {}", err.message);
                }
            }
        }
    }

    #[tokio::test]
    async fn readiness_asks_the_ready_url() {
        let none = WebhookTarget::new(&spec("http://127.0.0.1:9/".into()), Path::new("")).unwrap();
        assert_eq!(none.ready(&step()).await.unwrap(), Readiness::Ready);

        let server = Server::start(vec![reply(503, "warming up\n"), reply(200, "ok")]).await;
        let mut s = spec("http://127.0.0.1:9/".into());
        s.ready_url = Some(server.url("/healthz"));
        s.headers.insert("X-Team".into(), "payments".into());
        let target = WebhookTarget::new(&s, Path::new("")).unwrap();
        assert_eq!(
            target.ready(&step()).await.unwrap(),
            Readiness::NotReady("HTTP 503: warming up".into())
        );
        assert_eq!(target.ready(&step()).await.unwrap(), Readiness::Ready);
        let got = server.received();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("GET", "/healthz")
        );
        assert_eq!(got[0].header("x-team"), Some("payments"));

        s.ready_url = Some(refused_url().await);
        let target = WebhookTarget::new(&s, Path::new("")).unwrap();
        match target.ready(&step()).await.unwrap() {
            Readiness::NotReady(why) => assert!(why.starts_with("cannot reach"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn specs_are_checked_when_built() {
        let ok = "http://deploy.example/steps".to_string();
        let with_header = |name: &str, value: &str| {
            let mut s = spec(ok.clone());
            s.headers.insert(name.into(), value.into());
            s
        };
        let cases: Vec<(WebhookTargetSpec, &str)> = vec![
            (
                spec("deploy.example".into()),
                "target.webhook.url: \"deploy.example\" is not a URL",
            ),
            (
                spec("ftp://deploy.example/".into()),
                "target.webhook.url: \"ftp://deploy.example/\": only http and https",
            ),
            (
                WebhookTargetSpec {
                    ready_url: Some("::".into()),
                    ..spec(ok.clone())
                },
                "target.webhook.readyUrl:",
            ),
            (
                WebhookTargetSpec {
                    timeout_ms: 0,
                    ..spec(ok.clone())
                },
                "target.webhook.timeoutMs",
            ),
            (
                with_header("bad header", "x"),
                "target.webhook.headers.bad header: not a valid",
            ),
            (
                with_header("Idempotency-Key", "x"),
                "target.webhook.headers.Idempotency-Key: rollgate sets",
            ),
            (
                with_header("X-Rollgate-Lease-Epoch", "1"),
                "target.webhook.headers.X-Rollgate-Lease-Epoch: rollgate sets",
            ),
            (
                with_header("Content-Type", "text/plain"),
                "target.webhook.headers.Content-Type: rollgate sets",
            ),
            (
                with_header("Authorization", "env:ROLLGATE_SURELY_UNSET_VAR"),
                "target.webhook.headers.Authorization: environment variable ROLLGATE_SURELY_UNSET_VAR is not set",
            ),
            (
                with_header("Authorization", "file:/nonexistent/token"),
                "target.webhook.headers.Authorization: cannot read /nonexistent/token",
            ),
            (
                with_header("X-Bad", "line\nbreak"),
                "target.webhook.headers.X-Bad: the value contains",
            ),
        ];
        for (s, want) in cases {
            let err = WebhookTarget::new(&s, Path::new("/srv")).unwrap_err();
            assert!(err.starts_with(want), "{want:?}: {err}");
        }
        let t = WebhookTarget::new(
            &spec("https://bot:pw@deploy.example/steps?token=x".into()),
            Path::new(""),
        )
        .unwrap();
        assert_eq!(t.describe(), "webhook https://bot@deploy.example/steps");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let first = Duration::from_millis(500);
        let cap = Duration::from_secs(3);
        for (attempt, want_ms) in [(0, 500), (1, 1_000), (2, 2_000), (3, 3_000), (40, 3_000)] {
            assert_eq!(
                backoff(first, attempt, cap),
                Duration::from_millis(want_ms),
                "{attempt}"
            );
        }
    }
}
