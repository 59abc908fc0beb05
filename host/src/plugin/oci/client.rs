//! A small client of the OCI distribution API on the workspace's reqwest: manifests and
//! blobs by digest or tag (reads capped), the registry's auth challenge (`Basic`, or a
//! `Bearer` token from the realm it names, with the credentials when given), monolithic
//! blob upload and manifest upload for `rollgate plugin push|sign`.
//!
//! Credentials never appear in an error: each is a [`Secret`] and every text that came from
//! the registry is scrubbed of them before it is shown.

use super::{OciError, OciFailure};
use crate::metrics::secret::{self, Secret};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use std::sync::Mutex;
use std::time::Duration;

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Plain HTTP (a local registry); otherwise HTTPS.
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM), for a registry with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// Username and password, when the registry asks.
    pub credentials: Option<(Secret, Secret)>,
    /// The longest any one request (connect, headers and body) may take.
    pub timeout: Duration,
}

/// The most a manifest may weigh (the distribution spec recommends accepting 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The most of an error response read (only an excerpt of it is shown).
const MAX_ERROR_BYTES: usize = 64 << 10;
/// The most a token response may weigh.
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// The manifest media types asked for.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json;q=0.5, application/vnd.docker.distribution.manifest.list.v2+json;q=0.5";

/// One registry, one repository.
pub struct Registry {
    http: reqwest::Client,
    base: Url,
    repository: String,
    credentials: Option<(Secret, Secret)>,
    /// The `Authorization` value the last challenge led to.
    authorization: Mutex<Option<Secret>>,
    secrets: Vec<Secret>,
}

/// A manifest as fetched: its bytes, the media type the registry gave, its digest.
pub struct Fetched {
    /// The bytes, exactly as served.
    pub bytes: Vec<u8>,
    /// `Content-Type`.
    pub media_type: String,
}

impl Registry {
    /// A client of `registry`'s `repository`.
    pub fn new(registry: &str, repository: &str, access: &Access) -> Result<Registry, OciError> {
        let scheme = if access.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{registry}/"))
            .map_err(|e| pull_failed(format!("registry {registry:?} is not a host[:port]: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(access.timeout.min(Duration::from_secs(10)))
            .timeout(access.timeout)
            // A registry redirects blob reads to storage; a few hops, no more.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &access.ca_file {
            let pem = crate::files::read_bytes(ca, &crate::files::SMALL_FILE)
                .map_err(|e| pull_failed(format!("tls.caFile: {}", e.describe(ca))))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                pull_failed(format!(
                    "tls.caFile: {} is not a PEM certificate bundle: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(pull_failed(format!(
                    "tls.caFile: {} holds no certificate",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| pull_failed(format!("cannot build the HTTP client: {e}")))?;
        let mut secrets = Vec::new();
        if let Some((user, password)) = &access.credentials {
            secrets.push(password.clone());
            secrets.push(secret::basic_credential(user.expose(), password));
        }
        Ok(Registry {
            http,
            base,
            repository: repository.to_string(),
            credentials: access.credentials.clone(),
            authorization: Mutex::new(None),
            secrets,
        })
    }

    fn url(&self, path: &str) -> Result<Url, OciError> {
        self.base
            .join(&format!("v2/{}/{path}", self.repository))
            .map_err(|e| pull_failed(format!("cannot build the URL for {path}: {e}")))
    }

    /// Text from the registry, scrubbed of the credentials and cut.
    /// (The token the credentials bought is scrubbed too.)
    fn said(&self, body: &[u8]) -> String {
        let mut secrets = self.secrets.clone();
        if let Ok(a) = self.authorization.lock()
            && let Some(a) = a.as_ref()
        {
            secrets.push(a.clone());
            if let Some((_, token)) = a.expose().split_once(' ') {
                secrets.push(Secret::derived(token.to_string()));
            }
        }
        secret::excerpt(body, 300, &secrets)
    }

    /// Send a request, answering one auth challenge (`401`) if there is one.
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(reqwest::header::HeaderName, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, OciError> {
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), url.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let authorization = self.authorization.lock().map(|a| a.clone()).unwrap_or(None);
            if let Some(a) = &authorization {
                let mut value = HeaderValue::from_str(a.expose()).map_err(|_| {
                    pull_failed("the registry's token is not a header value".into())
                })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(|e| self.network(&url, e))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let granted = self.answer(&challenge).await?;
            if let Ok(mut a) = self.authorization.lock() {
                *a = Some(granted);
            }
        }
        Err(pull_failed("unreachable: the auth loop ended".into()))
    }

    /// What to send after a `401` with this `WWW-Authenticate`.
    async fn answer(&self, challenge: &str) -> Result<Secret, OciError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = self.credentials.as_ref().ok_or_else(|| {
                pull_failed(
                    "the registry asks for credentials: add auth.username and auth.password (env:NAME or file:PATH)".into(),
                )
            })?;
            let credential = secret::basic_credential(user.expose(), password);
            return Ok(Secret::derived(format!("Basic {}", credential.expose())));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(pull_failed(format!(
                "the registry answered 401 with an auth challenge rollgate does not speak ({:?}); it speaks Basic and Bearer",
                scheme
            )));
        }
        let params = challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| pull_failed("the registry's Bearer challenge names no realm".into()))?;
        let mut url = Url::parse(&realm)
            .map_err(|e| pull_failed(format!("the token realm {realm:?} is not a URL: {e}")))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && self.base.scheme() == "http") {
            return Err(pull_failed(format!(
                "the token realm {realm} is not HTTPS; refusing to send credentials there"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in &params {
                if k == "service" || k == "scope" {
                    query.append_pair(k, v);
                }
            }
        }
        let mut request = self.http.get(url.clone());
        if let Some((user, password)) = &self.credentials {
            let credential = secret::basic_credential(user.expose(), password);
            let mut value = HeaderValue::from_str(&format!("Basic {}", credential.expose()))
                .map_err(|_| {
                    pull_failed(
                        "auth.username or auth.password holds characters a header cannot carry"
                            .into(),
                    )
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| self.network(&url, e))?;
        let status = response.status();
        let body = read_capped(response, MAX_TOKEN_BYTES, "a token response")
            .await
            .map_err(|e| self.body_error(&url, e))?;
        if !status.is_success() {
            return Err(pull_failed(format!(
                "the token service {} refused: HTTP {status}{}; check auth.username and auth.password",
                url.origin().ascii_serialization(),
                suffix(&self.said(&body))
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| pull_failed(format!("the token service's answer is not a token: {e}")))?;
        let token = token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| pull_failed("the token service's answer holds no token".into()))?;
        Ok(Secret::derived(format!("Bearer {token}")))
    }

    fn network(&self, url: &Url, e: reqwest::Error) -> OciError {
        let what = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "request failed".to_string()
        };
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        let hint = if self.base.scheme() == "https" && !e.is_timeout() {
            " (a local registry speaking plain HTTP needs `insecure: true` (`--insecure`), a private CA `tls.caFile` (`--ca-file`))"
        } else {
            ""
        };
        pull_failed(secret::redact(
            &format!(
                "{} {what}{chain}; is the registry up and reachable{}?{hint}",
                url.origin().ascii_serialization(),
                if e.is_timeout() {
                    " within the pull timeout"
                } else {
                    ""
                }
            ),
            &self.secrets,
        ))
    }

    fn body_error(&self, url: &Url, e: BodyError) -> OciError {
        match e {
            BodyError::Network(e) => self.network(url, e),
            BodyError::TooLarge { what, limit } => OciError {
                failure: OciFailure::PullFailed,
                message: format!("{what} from {url} is over {limit} bytes"),
            },
        }
    }

    /// A manifest by tag or digest.
    pub async fn manifest(&self, reference: &str) -> Result<Fetched, OciError> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let response = self
            .send(
                Method::GET,
                url.clone(),
                &[(ACCEPT, MANIFEST_TYPES.to_string())],
                None,
            )
            .await?;
        let status = response.status();
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, "a manifest")
            .await
            .map_err(|e| self.body_error(&url, e))?;
        if status == StatusCode::NOT_FOUND {
            return Err(OciError {
                failure: OciFailure::NotFound,
                message: format!(
                    "no manifest {reference} in {}/{}{}",
                    self.base.authority(),
                    self.repository,
                    suffix(&self.said(&bytes))
                ),
            });
        }
        if !status.is_success() {
            return Err(self.refused("reading the manifest", status, &bytes));
        }
        Ok(Fetched { bytes, media_type })
    }

    /// A blob by digest, at most `limit` bytes (`component-too-large` past it).
    pub async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, OciError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let response = self.send(Method::GET, url.clone(), &[], None).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(self
                .refused_response(&format!("reading blob {digest}"), response)
                .await);
        }
        read_capped(response, limit, "the blob").await.map_err(|e| match e {
            BodyError::TooLarge { limit, .. } => OciError {
                failure: OciFailure::ComponentTooLarge,
                message: format!(
                    "blob {digest} is over the limit of {limit} bytes; raise limits.maxComponentBytes if it is trusted"
                ),
            },
            other => self.body_error(&url, other),
        })
    }

    /// [`Registry::refused`] for a response not yet read: its body (capped) says why.
    async fn refused_response(&self, doing: &str, response: reqwest::Response) -> OciError {
        let status = response.status();
        let body = read_capped(response, MAX_ERROR_BYTES, "an error")
            .await
            .unwrap_or_default();
        self.refused(doing, status, &body)
    }

    fn refused(&self, doing: &str, status: StatusCode, body: &[u8]) -> OciError {
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                "; check auth.username and auth.password and that they may pull this repository"
            }
            _ => "",
        };
        pull_failed(format!(
            "{doing} from {}/{}: HTTP {status}{}{hint}",
            self.base.authority(),
            self.repository,
            suffix(&self.said(body))
        ))
    }

    /// Upload `bytes` as a blob (skipped when the registry has it); its digest.
    pub async fn push_blob(&self, bytes: &[u8]) -> Result<String, OciError> {
        let digest = super::reference::digest_of(bytes);
        let head = self
            .send(
                Method::HEAD,
                self.url(&format!("blobs/{digest}"))?,
                &[],
                None,
            )
            .await?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = self
            .send(
                Method::POST,
                self.url("blobs/uploads/")?,
                &[],
                Some(Vec::new()),
            )
            .await?;
        let status = start.status();
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status != StatusCode::ACCEPTED {
            return Err(self.refused_response("starting an upload", start).await);
        }
        let location = location.ok_or_else(|| {
            pull_failed("the registry started an upload without a Location".into())
        })?;
        let mut url = self
            .base
            .join(&location)
            .map_err(|e| pull_failed(format!("upload Location {location:?}: {e}")))?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .send(
                Method::PUT,
                url,
                &[(CONTENT_TYPE, "application/octet-stream".to_string())],
                Some(bytes.to_vec()),
            )
            .await?;
        if put.status() != StatusCode::CREATED {
            return Err(self.refused_response("uploading a blob", put).await);
        }
        Ok(digest)
    }

    /// Upload a manifest under `reference` (a tag or its digest); its digest.
    pub async fn push_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, OciError> {
        let digest = super::reference::digest_of(bytes);
        let response = self
            .send(
                Method::PUT,
                self.url(&format!("manifests/{reference}"))?,
                &[(CONTENT_TYPE, media_type.to_string())],
                Some(bytes.to_vec()),
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self
                .refused_response("uploading the manifest", response)
                .await);
        }
        Ok(digest)
    }
}

fn pull_failed(message: String) -> OciError {
    OciError {
        failure: OciFailure::PullFailed,
        message,
    }
}

fn suffix(said: &str) -> String {
    let said = said.trim();
    if said.is_empty() {
        String::new()
    } else {
        format!(" ({said})")
    }
}

enum BodyError {
    Network(reqwest::Error),
    TooLarge { what: &'static str, limit: usize },
}

/// A response body of at most `limit` bytes, refused as soon as it says or shows more.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = response.content_length()
        && len > u64::try_from(limit).unwrap_or(u64::MAX)
    {
        return Err(BodyError::TooLarge { what, limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Network)? {
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge { what, limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `key="value", key=value` pairs of an auth challenge.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::challenge_params;

    #[test]
    fn reads_a_bearer_challenge() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        assert_eq!(
            challenge_params("realm=x, service=y"),
            vec![("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
    }
}
