//! The command line's client of a `rollgate serve` API (`--server URL`): `get`, `history`
//! and the actions ask the server instead of opening a store file. `get` and `history` read
//! `/api/v2` (the shapes they print with `--format json`); actions post to `/api/v1` (the
//! same answers under both).
//!
//! Exit codes follow the local commands: a refused token, an unknown rollout or a bad
//! request is 4, an action the rollout's state does not allow is 1, a server that cannot be
//! reached or fails is 3.

use super::exit;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A server and the token to show it.
pub struct Remote {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// A failed request: the exit code and what to tell the user.
#[derive(Debug)]
pub struct RemoteError {
    /// The exit code.
    pub code: u8,
    /// The message.
    pub message: String,
}

impl Remote {
    /// A client of `url` (`http://127.0.0.1:8080`), with `token` or `$ROLLGATE_TOKEN`.
    pub fn new(url: &str, token: Option<&str>) -> Remote {
        let token = token
            .map(str::to_string)
            .or_else(|| std::env::var("ROLLGATE_TOKEN").ok())
            .filter(|t| !t.trim().is_empty());
        Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    fn request(&self, method: reqwest::Method, api: &str, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .client
            .request(method, format!("{}{api}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET `path` under `/api/v2` (the shapes `get` and `history` print) as JSON.
    pub async fn get_v2<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        self.send(self.request(reqwest::Method::GET, "/api/v2", path))
            .await
    }

    /// POST a JSON body to `path` (under `/api/v1`).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, RemoteError> {
        self.send(
            self.request(reqwest::Method::POST, "/api/v1", path)
                .json(body),
        )
        .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RemoteError> {
        let response = request.send().await.map_err(|e| RemoteError {
            code: exit::PLUGIN_ERROR,
            message: format!("cannot reach the server at {}: {e}", self.base),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| RemoteError {
            code: exit::PLUGIN_ERROR,
            message: format!("the server at {} broke off its answer: {e}", self.base),
        })?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            let code = match status.as_u16() {
                409 => exit::PROBLEMS,
                400..=499 => exit::INVALID_INPUT,
                _ => exit::PLUGIN_ERROR,
            };
            let hint = match status.as_u16() {
                401 => " (give a token with --token or $ROLLGATE_TOKEN)",
                403 => " (this needs an operator token)",
                _ => "",
            };
            return Err(RemoteError {
                code,
                message: format!("server: {message}{hint}"),
            });
        }
        serde_json::from_str(&text).map_err(|e| RemoteError {
            code: exit::PLUGIN_ERROR,
            message: format!("the server's answer is not what rollgate expects: {e}"),
        })
    }
}

/// Percent-encode a path segment (a rollout's name).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
