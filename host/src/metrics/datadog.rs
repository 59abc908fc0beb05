//! Datadog, through the official `datadog-api-client` crate (feature `datadog`).
//!
//! - v2 timeseries query (`POST /api/v2/query/timeseries`, the default) or v1 query
//!   (`GET /api/v1/query`), per backend.
//! - `site` (e.g. `datadoghq.eu`) or a custom base `url` (a proxy, or a local stand-in).
//!   The crate panics on a site outside its list, so sites are routed through its
//!   enum-free server entry.
//! - API and application keys only by reference; checked to be valid header values here
//!   (the crate would panic on them otherwise), never logged or echoed.
//! - 429: retried by our own middleware, which waits for `X-RateLimit-Reset` (seconds until
//!   the limit resets; `Retry-After` as a fallback) plus jitter, within a total wait budget;
//!   after that, a `rate-limited` error.
//! - An answer's body is read through a cap ([`MAX_ANSWER_BYTES`]): the client crate reads
//!   bodies whole, so our middleware wraps each one in a limit that fails the read as soon as
//!   it passes the cap (`too-large`).
//! - An instant query asks for the last 5 minutes and keeps each series' newest non-null
//!   point (Datadog has no instant queries). Nulls are NaN.

use super::secret::{Secret, SecretRef, excerpt, redact};
use super::{
    Backend, BoxFuture, ERROR_BODY_CHARS, MAX_ANSWER_BYTES, QueryError, QueryErrorKind,
    QueryResult, Series, Window, answer_too_large, error_chain,
};
use datadog_api_client::datadog::{self, APIKey, Configuration};
use datadog_api_client::datadogV1::api_metrics::MetricsAPI as MetricsV1;
use datadog_api_client::datadogV2::api_metrics::MetricsAPI as MetricsV2;
use datadog_api_client::datadogV2::model::{
    MetricsDataSource, MetricsTimeseriesQuery, QueryFormula, TimeseriesFormulaQueryRequest,
    TimeseriesFormulaRequest, TimeseriesFormulaRequestAttributes, TimeseriesFormulaRequestType,
    TimeseriesQuery,
};
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lookback of an instant query.
const INSTANT_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Which query API to use.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST /api/v2/query/timeseries`.
    #[default]
    V2,
    /// `GET /api/v1/query`.
    V1,
}

/// The operator's configuration of a Datadog backend (`MetricBackend.spec.datadog`).
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatadogConfig {
    /// The Datadog site (`datadoghq.com`, `datadoghq.eu`, `us5.datadoghq.com`, ...).
    #[serde(default)]
    pub site: Option<String>,
    /// A custom base URL instead of a site (`https://proxy:8443`).
    #[serde(default)]
    pub url: Option<String>,
    /// API key, by reference (`env:DD_API_KEY`, `file:/run/secrets/dd-api-key`).
    pub api_key: String,
    /// Application key, by reference.
    pub application_key: String,
    /// `v2` (default) or `v1`.
    #[serde(default)]
    pub api: Api,
    /// Request timeout (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// How 429 answers are retried.
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// Retrying 429 answers.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    /// Retries after a 429 (default 3; 0 turns retries off).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// The most time spent waiting for rate limits per query (default `30s`).
    #[serde(default = "default_max_wait")]
    pub max_wait: String,
}

fn default_retries() -> u32 {
    3
}
fn default_max_wait() -> String {
    "30s".into()
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_retries: default_retries(),
            max_wait: default_max_wait(),
        }
    }
}

/// Waits out 429 answers as Datadog's rate-limit headers say.
struct RateLimitRetry {
    max_retries: u32,
    max_wait: Duration,
    seed: AtomicU64,
}

impl RateLimitRetry {
    /// Up to +25 % jitter, so that many rollouts limited at once do not retry in lockstep.
    fn jitter(&self, base: Duration) -> Duration {
        let mut x = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let fraction = (x % 1000) as f64 / 4000.0;
        base + base.mul_f64(fraction)
    }
}

/// Seconds to wait, from `X-RateLimit-Reset` or `Retry-After`.
fn reset_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["x-ratelimit-reset", "retry-after"]
        .iter()
        .find_map(|name| {
            let v = headers
                .get(*name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()?;
            (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(3600.0)))
        })
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for RateLimitRetry {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let Some(retry) = req.try_clone() else {
                return next.run(req, extensions).await;
            };
            let response = next.clone().run(retry, extensions).await?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                || attempt >= self.max_retries
            {
                return Ok(response);
            }
            let wait = self.jitter(
                reset_after(response.headers())
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(50)),
            );
            if started.elapsed() + wait > self.max_wait {
                return Ok(response);
            }
            attempt += 1;
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "datadog rate limit (429): waiting before retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Wraps every answer's body in a limit of `cap` bytes: the client crate reads a body whole
/// (`text()`), and a broken proxy or hostile server must not make it buffer without bound.
/// A body over the cap fails its read with `LengthLimitError`, which [`Datadog::classify`]
/// names as too large.
struct CapAnswers {
    cap: usize,
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for CapAnswers {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = next.run(req, extensions).await?;
        Ok(capped(response, self.cap))
    }
}

/// `response` with its body limited to `cap` bytes; status, version, headers, URL and
/// extensions kept.
fn capped(response: reqwest::Response, cap: usize) -> reqwest::Response {
    use reqwest::ResponseBuilderExt;
    let url = response.url().clone();
    let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    let mut out = http::Response::new(reqwest::Body::wrap(http_body_util::Limited::new(body, cap)));
    *out.status_mut() = parts.status;
    *out.version_mut() = parts.version;
    *out.headers_mut() = parts.headers;
    *out.extensions_mut() = parts.extensions;
    // The URL travels as reqwest's own (private) extension, set through its builder.
    if let Some(url) = http::Response::builder().url(url).extensions_mut() {
        out.extensions_mut().extend(std::mem::take(url));
    }
    reqwest::Response::from(out)
}

/// Whether `e` (or an error it wraps) is a body read stopped by [`CapAnswers`].
fn over_cap(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A configured Datadog backend.
pub struct Datadog {
    v1: MetricsV1,
    v2: MetricsV2,
    api: Api,
    timeout: Duration,
    secrets: Vec<Secret>,
    /// The most bytes of an answer read ([`MAX_ANSWER_BYTES`]; smaller in tests).
    cap: usize,
}

fn key(reference: &str, field: &str) -> Result<Secret, String> {
    let secret = SecretRef::parse(reference)
        .and_then(|r| r.resolve())
        .map_err(|e| format!("{field}: {e}"))?;
    if reqwest::header::HeaderValue::from_str(secret.expose()).is_err() {
        return Err(format!(
            "{field}: the key contains characters not allowed in an HTTP header"
        ));
    }
    Ok(secret)
}

impl Datadog {
    /// Build the client. Errors name the field.
    pub fn new(config: &DatadogConfig) -> Result<Datadog, String> {
        Self::with_cap(config, MAX_ANSWER_BYTES)
    }

    /// [`Datadog::new`] reading at most `cap` bytes of an answer.
    fn with_cap(config: &DatadogConfig, cap: usize) -> Result<Datadog, String> {
        let timeout = match &config.timeout {
            Some(t) => Duration::from_millis(
                rollgate_duration::parse_ms(t).map_err(|e| format!("timeout: {e}"))?,
            ),
            None => Duration::from_secs(10),
        };
        if timeout.is_zero() {
            return Err("timeout must be longer than 0".into());
        }
        let max_wait = Duration::from_millis(
            rollgate_duration::parse_ms(&config.rate_limit.max_wait)
                .map_err(|e| format!("rateLimit.maxWait: {e}"))?,
        );
        let api_key = key(&config.api_key, "apiKey")?;
        let app_key = key(&config.application_key, "applicationKey")?;

        // Never let the client read DD_API_KEY / DD_APP_KEY / DD_SITE from our environment.
        let mut dd = Configuration::new();
        dd.set_auth_key(
            "apiKeyAuth",
            APIKey {
                key: api_key.expose().to_string(),
                prefix: String::new(),
            },
        );
        dd.set_auth_key(
            "appKeyAuth",
            APIKey {
                key: app_key.expose().to_string(),
                prefix: String::new(),
            },
        );
        dd.set_retry(false, 0);
        match (&config.site, &config.url) {
            (Some(_), Some(_)) => return Err("set either site or url, not both".into()),
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(format!("url {url:?}: use http(s)://host[:port]"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err("url: credentials in the URL are not allowed; use apiKey and applicationKey".into());
                }
                let mut name = parsed.host_str().unwrap_or_default().to_string();
                if let Some(port) = parsed.port() {
                    name = format!("{name}:{port}");
                }
                let path = parsed.path().trim_end_matches('/');
                name.push_str(path);
                dd.server_index = 1;
                dd.server_variables
                    .insert("protocol".into(), parsed.scheme().to_string());
                dd.server_variables.insert("name".into(), name);
            }
            (site, None) => {
                let site = site.clone().unwrap_or_else(|| "datadoghq.com".into());
                if site.is_empty()
                    || !site
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    return Err(format!(
                        "site {site:?} is not a host name such as datadoghq.eu"
                    ));
                }
                // Index 2 is https://{subdomain}.{site} without the crate's (panicking) site list.
                dd.server_index = 2;
                dd.server_variables.insert("site".into(), site);
                dd.server_variables.insert("subdomain".into(), "api".into());
            }
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let client = reqwest_middleware::ClientBuilder::new(http)
            .with(RateLimitRetry {
                max_retries: config.rate_limit.max_retries,
                max_wait,
                seed: AtomicU64::new(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(7),
                ),
            })
            .with(CapAnswers { cap })
            .build();
        Ok(Datadog {
            v1: MetricsV1::with_client_and_config(dd.clone(), client.clone()),
            v2: MetricsV2::with_client_and_config(dd, client),
            api: config.api,
            timeout,
            secrets: vec![api_key, app_key],
            cap,
        })
    }

    fn classify<T>(&self, backend: &str, e: datadog::Error<T>) -> QueryError {
        let err =
            |kind, message: String| QueryError::new(kind, backend, redact(&message, &self.secrets));
        let transport = |e: &reqwest::Error| {
            if over_cap(e) {
                err(QueryErrorKind::TooLarge, answer_too_large(self.cap))
            } else if e.is_timeout() {
                err(
                    QueryErrorKind::Timeout,
                    format!("no answer within {:?}", self.timeout),
                )
            } else if e.is_connect() {
                err(
                    QueryErrorKind::Unavailable,
                    format!("cannot connect: {}", error_chain(e)),
                )
            } else {
                err(QueryErrorKind::Unavailable, error_chain(e))
            }
        };
        match e {
            datadog::Error::ResponseError(r) => {
                let message = datadog_errors(&r.content, &self.secrets);
                let text = format!("HTTP {}: {message}", r.status);
                let kind = match r.status.as_u16() {
                    400 | 404 | 422 => QueryErrorKind::BadQuery,
                    401 | 403 => QueryErrorKind::Unauthorized,
                    408 => QueryErrorKind::Timeout,
                    429 => QueryErrorKind::RateLimited,
                    500..=599 => QueryErrorKind::Unavailable,
                    _ => QueryErrorKind::Other,
                };
                err(kind, text)
            }
            datadog::Error::Reqwest(e) => transport(&e),
            datadog::Error::ReqwestMiddleware(reqwest_middleware::Error::Reqwest(e)) => {
                transport(&e)
            }
            datadog::Error::ReqwestMiddleware(e) => err(QueryErrorKind::Unavailable, e.to_string()),
            datadog::Error::Serde(e) => err(
                QueryErrorKind::Other,
                format!("the answer is not Datadog API JSON: {e}"),
            ),
            other => err(QueryErrorKind::Other, other.to_string()),
        }
    }

    async fn run(
        &self,
        backend: &str,
        query: &str,
        window: Window,
    ) -> Result<QueryResult, QueryError> {
        let (from_ms, to_ms, interval, instant) = match window {
            Window::Instant(t) => (t - INSTANT_LOOKBACK_MS, t, None, true),
            Window::Range {
                start_ms,
                end_ms,
                step_ms,
            } => (start_ms, end_ms, i64::try_from(step_ms).ok(), false),
        };
        let mut series = match self.api {
            Api::V2 => {
                let mut metrics_query =
                    MetricsTimeseriesQuery::new(MetricsDataSource::METRICS, query.to_string());
                metrics_query.name = Some("a".into());
                let mut attributes = TimeseriesFormulaRequestAttributes::new(
                    from_ms,
                    vec![TimeseriesQuery::MetricsTimeseriesQuery(Box::new(
                        metrics_query,
                    ))],
                    to_ms,
                );
                attributes.formulas = Some(vec![QueryFormula::new("a".into())]);
                attributes.interval = interval;
                let body = TimeseriesFormulaQueryRequest::new(TimeseriesFormulaRequest::new(
                    attributes,
                    TimeseriesFormulaRequestType::TIMESERIES_REQUEST,
                ));
                let response = self
                    .v2
                    .query_timeseries_data(body)
                    .await
                    .map_err(|e| self.classify(backend, e))?;
                if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
                    let errors = excerpt(errors.as_bytes(), ERROR_BODY_CHARS, &self.secrets);
                    return Err(QueryError::new(QueryErrorKind::BadQuery, backend, errors));
                }
                let attributes = response.data.and_then(|d| d.attributes);
                let Some(attributes) = attributes else {
                    return Ok(QueryResult::default());
                };
                let times = attributes.times.unwrap_or_default();
                let values = attributes.values.unwrap_or_default();
                attributes
                    .series
                    .unwrap_or_default()
                    .iter()
                    .zip(values)
                    .map(|(s, values)| Series {
                        labels: tags(s.group_tags.as_deref().unwrap_or_default()),
                        points: times
                            .iter()
                            .zip(values)
                            .map(|(t, v)| (*t, v.unwrap_or(f64::NAN)))
                            .collect(),
                    })
                    .collect::<Vec<_>>()
            }
            Api::V1 => {
                let response = self
                    .v1
                    .query_metrics(
                        from_ms.div_euclid(1000),
                        to_ms.div_euclid(1000),
                        query.to_string(),
                    )
                    .await
                    .map_err(|e| self.classify(backend, e))?;
                if response.status.as_deref() == Some("error") {
                    let message = match response.error {
                        Some(e) => excerpt(e.as_bytes(), ERROR_BODY_CHARS, &self.secrets),
                        None => "the query failed".into(),
                    };
                    return Err(QueryError::new(QueryErrorKind::BadQuery, backend, message));
                }
                response
                    .series
                    .unwrap_or_default()
                    .iter()
                    .map(|s| Series {
                        labels: tags(s.tag_set.as_deref().unwrap_or_default()),
                        points: s
                            .pointlist
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|p| match p.as_slice() {
                                [Some(t), v] => Some((*t as i64, v.unwrap_or(f64::NAN))),
                                _ => None,
                            })
                            .collect(),
                    })
                    .collect::<Vec<_>>()
            }
        };
        if instant {
            for s in &mut series {
                let last = s.points.iter().rev().find(|p| !p.1.is_nan()).map(|p| p.1);
                s.points = last.map(|v| vec![(to_ms, v)]).unwrap_or_default();
            }
            series.retain(|s| !s.points.is_empty());
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult {
            series,
            warnings: Vec::new(),
        })
    }
}

/// `["version:canary", "env:prod"]` → sorted label pairs.
fn tags(tags: &[String]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = tags
        .iter()
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    labels.sort();
    labels
}

/// Datadog's error body, `{"errors": ["..."]}`, as one line; anything else verbatim. Either
/// way an [`excerpt`]: the keys redacted, then cut.
fn datadog_errors(content: &str, secrets: &[Secret]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<serde_json::Value>,
    }
    let text = match serde_json::from_str::<Errors>(content) {
        Ok(e) => e
            .errors
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => content.to_string(),
    };
    excerpt(text.as_bytes(), ERROR_BODY_CHARS, secrets)
}

impl Backend for Datadog {
    fn kind(&self) -> &'static str {
        "datadog"
    }

    fn query<'a>(
        &'a self,
        backend: &'a str,
        query: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<QueryResult, QueryError>> {
        Box::pin(self.run(backend, query, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_capped_body_reads_to_the_cap_and_fails_past_it() {
        let answer = |body: &'static str| {
            use reqwest::ResponseBuilderExt;
            let url =
                reqwest::Url::parse("http://dd.example:8126/api/v2/query/timeseries").expect("url");
            reqwest::Response::from(
                http::Response::builder()
                    .status(201)
                    .header("x-seen", "yes")
                    .url(url)
                    .body(body)
                    .expect("response"),
            )
        };
        let at_cap = capped(answer("0123456789"), 10);
        assert_eq!(at_cap.status(), 201);
        assert_eq!(at_cap.headers()["x-seen"], "yes");
        assert_eq!(
            at_cap.url().as_str(),
            "http://dd.example:8126/api/v2/query/timeseries"
        );
        assert_eq!(at_cap.text().await.expect("at the cap"), "0123456789");
        let e = capped(answer("0123456789"), 9)
            .text()
            .await
            .expect_err("one byte over the cap");
        assert!(over_cap(&e), "{e:?}");
        let other = reqwest::Client::new()
            .get("http://127.0.0.1:1/")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        assert!(!over_cap(&other));
    }

    /// Serves `body` to every request on a free loopback port, with or without a
    /// Content-Length (without: the body ends when the connection closes).
    async fn serve(body: String, with_length: bool) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The request's headers, then as many body bytes as it declares.
                let body_len = loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let declared = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break end + 4 + declared;
                    }
                };
                while request.len() < body_len {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let length = if with_length {
                    format!("content-length: {}\r\n", body.len())
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n"
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_too_large_and_one_within_it_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (api, app) = (dir.path().join("api"), dir.path().join("app"));
        std::fs::write(&api, "api-key-1").expect("write");
        std::fs::write(&app, "app-key-2").expect("write");
        // A valid v2 answer, padded with JSON whitespace to 4,000 bytes.
        let mut body = serde_json::json!({"data": {"type": "timeseries_response", "id": "0",
            "attributes": {"series": [{"group_tags": ["version:canary"], "query_index": 0, "unit": null}],
                "times": [1_700_000_000_000i64], "values": [[0.25]]}}})
        .to_string();
        let pad = 4000usize.saturating_sub(body.len());
        body.push_str(&" ".repeat(pad));
        assert_eq!(body.len(), 4000);
        let window = Window::Instant(1_700_000_000_000);
        for with_length in [false, true] {
            let (url, task) = serve(body.clone(), with_length).await;
            let config = DatadogConfig {
                site: None,
                url: Some(url),
                api_key: format!("file:{}", api.display()),
                application_key: format!("file:{}", app.display()),
                api: Api::V2,
                timeout: Some("5s".into()),
                rate_limit: RateLimit::default(),
            };
            let small = Datadog::with_cap(&config, 3999).expect("config");
            let e = small
                .query("dd", "avg:errors{*}", window)
                .await
                .expect_err("4,000 bytes over a cap of 3,999");
            assert_eq!(e.kind, QueryErrorKind::TooLarge, "{e}");
            assert!(
                e.to_string().contains("larger than 3999 bytes"),
                "with_length={with_length}: {e}"
            );
            let enough = Datadog::with_cap(&config, 4000).expect("config");
            let read = enough
                .query("dd", "avg:errors{*}", window)
                .await
                .expect("4,000 bytes within a cap of 4,000");
            assert_eq!(read.series.len(), 1);
            assert_eq!(read.series[0].points, vec![(1_700_000_000_000, 0.25)]);
            task.abort();
        }
    }

    #[test]
    fn rate_limit_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(reset_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(reset_after(&h), Some(Duration::from_secs(2)));
        h.insert("x-ratelimit-reset", "0.5".parse().unwrap());
        assert_eq!(
            reset_after(&h),
            Some(Duration::from_millis(500)),
            "the Datadog header wins"
        );
        h.insert("x-ratelimit-reset", "soon".parse().unwrap());
        assert_eq!(
            reset_after(&h),
            Some(Duration::from_secs(2)),
            "garbage falls back"
        );
        let r = RateLimitRetry {
            max_retries: 1,
            max_wait: Duration::ZERO,
            seed: AtomicU64::new(1),
        };
        for _ in 0..100 {
            let j = r.jitter(Duration::from_secs(4));
            assert!(
                j >= Duration::from_secs(4) && j <= Duration::from_secs(5),
                "{j:?}"
            );
        }
    }

    #[test]
    fn tags_and_errors() {
        assert_eq!(
            tags(&["version:canary".into(), "env:prod:eu".into(), "bare".into()]),
            vec![
                ("bare".into(), "".into()),
                ("env".into(), "prod:eu".into()),
                ("version".into(), "canary".into())
            ]
        );
        assert_eq!(
            datadog_errors(r#"{"errors": ["Forbidden", "bad key"]}"#, &[]),
            "Forbidden; bad key"
        );
        assert_eq!(
            datadog_errors("<html>oops</html>", &[]),
            "<html>oops</html>"
        );
        // A key echoed across the cut is redacted whole.
        let secret = crate::metrics::secret::Secret::derived("dd-api-key-0123456789".into());
        let body = format!(
            r#"{{"errors": ["{}bad key: dd-api-key-0123456789"]}}"#,
            "x".repeat(280)
        );
        let message = datadog_errors(&body, &[secret]);
        assert!(
            message.ends_with("bad key: [redacted]") && !message.contains("dd-api"),
            "{message}"
        );
    }
}
