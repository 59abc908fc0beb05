//! Prometheus — and any Prometheus-compatible HTTP API (VictoriaMetrics, Thanos, Mimir) —
//! through the `prometheus-http-query` crate.
//!
//! The crate builds and sends the requests. Its typed `get()` drops two things operators
//! need, so responses are read with `get_raw()` and the envelope is decoded here, with the
//! crate's own `PromqlResult` type for the data:
//! - `warnings` (and `infos`) of a successful answer, e.g. "PromQL info: metric might not
//!   be a counter": kept in [`QueryResult::warnings`] and logged;
//! - `string` results (`query="version"`), which the crate cannot decode: a string that
//!   parses as a number becomes a one-point series, any other is a `bad-query` error.
//!
//! HTTP statuses are classified as the metrics module expects: 400/422 → bad-query (with
//! Prometheus' `errorType` and `error` verbatim), 401/403 → unauthorized, 429 →
//! rate-limited, 503 with `errorType` timeout or a client timeout → timeout, 5xx and
//! connection failures → unavailable.

use super::secret::{Secret, SecretRef, basic_credential, excerpt, literal_or_secret, redact};
use super::{
    Backend, BoxFuture, ERROR_BODY_CHARS, MAX_ANSWER_BYTES, QueryError, QueryErrorKind,
    QueryResult, Series, Window, answer_too_large, error_chain,
};
use prometheus_http_query::response::{Data, PromqlResult};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The operator's configuration of a Prometheus backend (`MetricBackend.spec.prometheus`).
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusConfig {
    /// Base URL of the HTTP API, with any path prefix (`http://mimir:8080/prometheus`).
    pub address: String,
    /// Request timeout (default `10s`); also sent to the server as the evaluation timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Extra headers (e.g. `X-Scope-OrgID`). A value `env:NAME` or `file:PATH` is read from
    /// there and treated as a secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Bearer token, by reference (`env:NAME` or `file:PATH`).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for `https` addresses.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl PrometheusConfig {
    /// A configuration for `address` with every option at its default.
    pub fn new(address: impl Into<String>) -> Self {
        PrometheusConfig {
            address: address.into(),
            timeout: None,
            headers: BTreeMap::new(),
            bearer_token: None,
            basic_auth: None,
            tls: None,
        }
    }
}

/// Basic authentication credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// The user name (literal, or a reference).
    pub username: String,
    /// The password, by reference only.
    pub password: String,
}

/// TLS settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Default, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Accept any certificate. For tests only; logged as a warning.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A configured Prometheus backend.
pub struct Prometheus {
    client: prometheus_http_query::Client,
    timeout: Duration,
    secrets: Vec<Secret>,
}

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| format!("{what} contains characters not allowed in an HTTP header"))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Prometheus {
    /// Build the client: resolve credentials, load the CA file. Errors name the field.
    pub fn new(config: &PrometheusConfig) -> Result<Prometheus, String> {
        let url = reqwest::Url::parse(&config.address)
            .map_err(|e| format!("address {:?} is not a URL: {e}", config.address))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "address {:?}: the scheme must be http or https",
                config.address
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("address: credentials in the URL are not allowed; use basicAuth with env:/file: references".into());
        }
        let timeout = match &config.timeout {
            Some(t) => Duration::from_millis(
                rollgate_duration::parse_ms(t).map_err(|e| format!("timeout: {e}"))?,
            ),
            None => Duration::from_secs(10),
        };
        if timeout.is_zero() {
            return Err("timeout must be longer than 0".into());
        }
        let mut secrets = Vec::new();
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let (value, _) = literal_or_secret(value, None, &mut secrets)
                .map_err(|e| format!("headers.{name}: {e}"))?;
            headers.insert(header, sensitive(&value, &format!("headers.{name}"))?);
        }
        if let Some(token) = &config.bearer_token {
            let secret = SecretRef::parse(token)
                .and_then(|r| r.resolve())
                .map_err(|e| format!("bearerToken: {e}"))?;
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", secret.expose()), "bearerToken")?,
            );
            secrets.push(secret);
        }
        if let Some(basic) = &config.basic_auth {
            if config.bearer_token.is_some() {
                return Err("set either bearerToken or basicAuth, not both".into());
            }
            let (user, _) = literal_or_secret(&basic.username, None, &mut secrets)
                .map_err(|e| format!("basicAuth.username: {e}"))?;
            let password = SecretRef::parse(&basic.password)
                .and_then(|r| r.resolve())
                .map_err(|e| format!("basicAuth.password: {e}"))?;
            // The header's base64 is a secret of its own: a server echoing the header
            // would otherwise give the password away in a form `redact` does not know.
            let credential = basic_credential(&user, &password);
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Basic {}", credential.expose()), "basicAuth")?,
            );
            secrets.push(password);
            secrets.push(credential);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers);
        if let Some(tls) = &config.tls {
            if let Some(ca) = &tls.ca_file {
                let pem = crate::files::read_bytes(
                    std::path::Path::new(ca),
                    &crate::files::SMALL_FILE,
                )
                .map_err(|e| format!("tls.caFile: {}", e.describe(std::path::Path::new(ca))))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    format!("tls.caFile: {ca} is not a PEM certificate bundle: {e}")
                })?;
                if certs.is_empty() {
                    return Err(format!("tls.caFile: {ca} holds no certificate"));
                }
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            if tls.insecure_skip_verify {
                tracing::warn!(address = %config.address, "TLS certificate verification is off for this backend");
                builder = builder.danger_accept_invalid_certs(true);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let client = prometheus_http_query::Client::from(http, &config.address)
            .map_err(|e| format!("address {:?}: {e}", config.address))?;
        Ok(Prometheus {
            client,
            timeout,
            secrets,
        })
    }

    async fn run(
        &self,
        backend: &str,
        query: &str,
        window: Window,
    ) -> Result<QueryResult, QueryError> {
        let err =
            |kind, message: String| QueryError::new(kind, backend, redact(&message, &self.secrets));
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let sent = match window {
            Window::Instant(at_ms) => {
                self.client
                    .query(query)
                    .at(at_ms.div_euclid(1000))
                    .timeout(timeout_ms)
                    .get_raw()
                    .await
            }
            Window::Range {
                start_ms,
                end_ms,
                step_ms,
            } => {
                self.client
                    .query_range(
                        query,
                        start_ms.div_euclid(1000),
                        end_ms.div_euclid(1000),
                        (step_ms as f64 / 1000.0).max(0.001),
                    )
                    .timeout(timeout_ms)
                    .get_raw()
                    .await
            }
        };
        let response = sent.map_err(|e| {
            let source =
                std::error::Error::source(&e).and_then(|s| s.downcast_ref::<reqwest::Error>());
            match source {
                Some(r) if r.is_timeout() => err(
                    QueryErrorKind::Timeout,
                    format!("no answer within {:?}: {}", self.timeout, error_chain(r)),
                ),
                Some(r) if r.is_connect() => err(
                    QueryErrorKind::Unavailable,
                    format!("cannot connect: {}", error_chain(r)),
                ),
                Some(r) => err(QueryErrorKind::Unavailable, error_chain(r)),
                None => err(QueryErrorKind::Other, e.to_string()),
            }
        })?;
        let status = response.status();
        let body = read_capped(response, MAX_ANSWER_BYTES).await.map_err(|e| {
            let Some(e) = e else {
                return err(QueryErrorKind::TooLarge, answer_too_large(MAX_ANSWER_BYTES));
            };
            if e.is_timeout() {
                err(
                    QueryErrorKind::Timeout,
                    format!("no complete answer within {:?}", self.timeout),
                )
            } else {
                err(
                    QueryErrorKind::Unavailable,
                    format!("reading the answer: {}", error_chain(&e)),
                )
            }
        })?;
        decode(status.as_u16(), &body, &self.secrets).map_err(|(kind, message)| err(kind, message))
    }
}

/// The body of `response`, chunk by chunk, refused (`Err(None)`) as soon as it grows past
/// `cap` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, Option<reqwest::Error>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turn an HTTP status and body of the Prometheus API into a result or a classified error.
/// Every piece of the body that reaches a message or a warning is an [`excerpt`]: the
/// backend's secrets redacted, then cut.
fn decode(
    status: u16,
    body: &[u8],
    secrets: &[Secret],
) -> Result<QueryResult, (QueryErrorKind, String)> {
    let cut = |text: &str| excerpt(text.as_bytes(), ERROR_BODY_CHARS, secrets);
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let success = (200..300).contains(&status);
    if !success || envelope.as_ref().is_some_and(|e| e.status != "success") {
        let (error_type, message) = match &envelope {
            Some(e) => (
                cut(e.error_type.as_deref().unwrap_or_default()),
                cut(e.error.as_deref().unwrap_or_default()),
            ),
            None => (String::new(), excerpt(body, ERROR_BODY_CHARS, secrets)),
        };
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let status_text = format!("{status} {reason}").trim_end().to_string();
        let text = if error_type.is_empty() {
            format!("HTTP {status_text}: {message}")
        } else {
            format!("HTTP {status_text}: {error_type}: {message}")
        };
        let kind = match status {
            400 | 422 => QueryErrorKind::BadQuery,
            401 | 403 => QueryErrorKind::Unauthorized,
            404 => QueryErrorKind::BadQuery,
            429 => QueryErrorKind::RateLimited,
            503 if error_type == "timeout" => QueryErrorKind::Timeout,
            500..=599 => QueryErrorKind::Unavailable,
            _ if error_type == "bad_data" => QueryErrorKind::BadQuery,
            _ if error_type == "timeout" => QueryErrorKind::Timeout,
            _ => QueryErrorKind::Other,
        };
        let hint = if status == 404 {
            " (is the address the API's base URL, with any path prefix?)"
        } else {
            ""
        };
        return Err((kind, format!("{text}{hint}")));
    }
    let Some(envelope) = envelope else {
        return Err((
            QueryErrorKind::Other,
            format!(
                "the answer is not Prometheus API JSON: {}",
                excerpt(body, ERROR_BODY_CHARS, secrets)
            ),
        ));
    };
    let warnings = envelope
        .warnings
        .iter()
        .chain(&envelope.infos)
        .map(|w| cut(w.as_str()))
        .collect();
    let data = envelope.data.unwrap_or(serde_json::Value::Null);
    let series = if data.get("resultType").and_then(|t| t.as_str()) == Some("string") {
        string_result(&data, secrets).map_err(|m| (QueryErrorKind::BadQuery, m))?
    } else {
        let result: PromqlResult = serde_json::from_value(data).map_err(|e| {
            (
                QueryErrorKind::Other,
                format!("cannot decode the result: {e}"),
            )
        })?;
        normalise(result.into_inner().0)
    };
    Ok(QueryResult { series, warnings })
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn labels(metric: &std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = metric.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    l.sort();
    l
}

fn normalise(data: Data) -> Vec<Series> {
    let mut series: Vec<Series> = match data {
        Data::Vector(v) => v
            .iter()
            .map(|iv| Series {
                labels: labels(iv.metric()),
                points: vec![(ms(iv.sample().timestamp()), iv.sample().value())],
            })
            .collect(),
        Data::Matrix(m) => m
            .iter()
            .map(|rv| Series {
                labels: labels(rv.metric()),
                points: rv
                    .samples()
                    .iter()
                    .map(|s| (ms(s.timestamp()), s.value()))
                    .collect(),
            })
            .collect(),
        Data::Scalar(s) => vec![Series {
            labels: Vec::new(),
            points: vec![(ms(s.timestamp()), s.value())],
        }],
    };
    // The API's order is not stable; sorted series make results comparable and replayable.
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
}

/// `{"resultType": "string", "result": [<time>, "<text>"]}`.
fn string_result(data: &serde_json::Value, secrets: &[Secret]) -> Result<Vec<Series>, String> {
    let pair = data.get("result").and_then(|r| r.as_array());
    let (time, text) = match pair.map(|p| p.as_slice()) {
        Some([t, s]) => (t.as_f64(), s.as_str()),
        _ => (None, None),
    };
    let (Some(time), Some(text)) = (time, text) else {
        return Err("the query returned a malformed string result".into());
    };
    match text.trim().parse::<f64>() {
        Ok(v) => Ok(vec![Series {
            labels: Vec::new(),
            points: vec![(ms(time), v)],
        }]),
        Err(_) => Err(format!(
            "the query returned the string {:?}, not a number; a verification needs a numeric result",
            excerpt(text.as_bytes(), ERROR_BODY_CHARS, secrets)
        )),
    }
}

impl Backend for Prometheus {
    fn kind(&self) -> &'static str {
        "prometheus"
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

    #[tokio::test]
    async fn answers_over_the_cap_are_refused_not_buffered() {
        let answer = |n: usize| reqwest::Response::from(http::Response::new(vec![b'x'; n]));
        assert!(matches!(read_capped(answer(1001), 1000).await, Err(None)));
        let body = read_capped(answer(1000), 1000).await.expect("at the cap");
        assert_eq!(body.len(), 1000);
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let config = |f: &dyn Fn(&mut PrometheusConfig)| {
            let mut c = PrometheusConfig::new("http://127.0.0.1:9090");
            f(&mut c);
            Prometheus::new(&c).err().unwrap_or_default()
        };
        type Change = Box<dyn Fn(&mut PrometheusConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.address = "not a url".into()), "is not a URL"),
            (
                Box::new(|c| c.address = "ftp://x".into()),
                "scheme must be http or https",
            ),
            (
                Box::new(|c| c.address = "http://u:p@x".into()),
                "credentials in the URL",
            ),
            (Box::new(|c| c.timeout = Some("soon".into())), "timeout:"),
            (
                Box::new(|c| c.bearer_token = Some("abc123".into())),
                "bearerToken: credentials are given by reference only",
            ),
            (
                Box::new(|c| c.bearer_token = Some("env:ROLLGATE_TEST_UNSET_TOKEN".into())),
                "bearerToken: environment variable ROLLGATE_TEST_UNSET_TOKEN is not set",
            ),
            (
                Box::new(|c| {
                    c.basic_auth = Some(BasicAuth {
                        username: "u".into(),
                        password: "plain".into(),
                    })
                }),
                "basicAuth.password: credentials are given by reference only",
            ),
            (
                Box::new(|c| {
                    c.tls = Some(TlsConfig {
                        ca_file: Some("/no/such/ca.pem".into()),
                        insecure_skip_verify: false,
                    })
                }),
                "tls.caFile: cannot read /no/such/ca.pem",
            ),
            (
                Box::new(|c| {
                    c.headers.insert("bad header".into(), "x".into());
                }),
                "not a valid header name",
            ),
        ];
        for (change, expected) in cases {
            let e = config(&*change);
            assert!(e.contains(expected), "{e:?} does not contain {expected:?}");
        }
        assert_eq!(config(&|_| {}), "", "the plain config is valid");
    }

    #[test]
    fn envelopes_are_decoded_with_warnings_and_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"b":"2","a":"1"},"value":[1700000000.25,"+Inf"]}]},"warnings":["PromQL warning: x"],"infos":["PromQL info: y"]}"#;
        let r = decode(200, ok, &[]).unwrap();
        assert_eq!(r.warnings, ["PromQL warning: x", "PromQL info: y"]);
        assert_eq!(
            r.series,
            vec![Series {
                labels: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
                points: vec![(1_700_000_000_250, f64::INFINITY)],
            }]
        );
        let cases: [(u16, &[u8], QueryErrorKind, &str); 6] = [
            (
                400,
                br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
                QueryErrorKind::BadQuery,
                "HTTP 400 Bad Request: bad_data: parse error",
            ),
            (
                503,
                br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#,
                QueryErrorKind::Timeout,
                "query timed out",
            ),
            (
                503,
                b"upstream down",
                QueryErrorKind::Unavailable,
                "HTTP 503 Service Unavailable: upstream down",
            ),
            (401, b"", QueryErrorKind::Unauthorized, "HTTP 401"),
            (429, b"slow down", QueryErrorKind::RateLimited, "slow down"),
            (
                200,
                b"<html>",
                QueryErrorKind::Other,
                "not Prometheus API JSON",
            ),
        ];
        for (status, body, kind, text) in cases {
            let (k, m) = decode(status, body, &[]).unwrap_err();
            assert_eq!(k, kind, "{status}: {m}");
            assert!(m.contains(text), "{status}: {m}");
        }
    }

    #[test]
    fn string_results() {
        let ok = serde_json::json!({"resultType": "string", "result": [1700000000.5, "0.25"]});
        assert_eq!(
            string_result(&ok, &[]).unwrap(),
            vec![Series {
                labels: vec![],
                points: vec![(1_700_000_000_500, 0.25)]
            }]
        );
        let text = serde_json::json!({"resultType": "string", "result": [1700000000, "hello"]});
        assert!(
            string_result(&text, &[])
                .unwrap_err()
                .contains("\"hello\", not a number")
        );
    }
}
