//! The HTTP edge of server mode: the JSON API under `/api/v1` and `/api/v2`, the event
//! streams, `/metrics`, `/healthz` and `/readyz`.
//!
//! Two versions answer side by side, on the same routes: v1 is frozen (its shapes stay
//! byte for byte what tools were written against), v2 ([`v2`], shapes in
//! [`crate::server::v2`]) names metric counts, structures failures and carries target
//! progress. Actions, documents and the configuration answer the same under both.
//!
//! It only translates: requests become calls on [`Fleet`] (the rollouts) and
//! [`crate::server::views`] (what the store holds), answers become JSON. Every request to
//! `/api/v1` needs a bearer token from the tokens file ([`Tokens`]); reading needs any
//! valid token, acting and applying documents need an operator's. A refused request is
//! answered 401 (no or unknown token) or 403 (read-only token), logged with what was asked
//! and counted in `rollgate_api_refused_total`; the actor of an action is the token's
//! identity, never something the request says about itself.
//!
//! Files: `mod.rs` the router, authentication, the v1 routes and the event streams; `v2.rs`
//! the `/api/v2` routes whose answers changed.

mod runners;
mod v2;

use crate::engine::Action;
use crate::engine::clock::now_ms;
use crate::engine::runner::RunnerView;
use crate::server::views::{self, HistoryError};
use crate::server::{Event, Fleet};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read rollouts, history, events and the configuration status.
    Read,
    /// Also act on rollouts and apply documents.
    Operator,
}

impl Role {
    /// `read-only` or `operator`, as the tokens file and answers spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read-only",
            Role::Operator => "operator",
        }
    }
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name audited as the actor.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// The bearer tokens the API accepts, from a file of lines `TOKEN ROLE NAME` (`ROLE` is
/// `read-only` or `operator`; blank lines and `#` comments are ignored).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, Identity>,
}

impl Tokens {
    /// Parse a tokens file's text; errors name `file:line` and what to write instead.
    pub fn parse(text: &str, file: &FsPath) -> Result<Tokens, String> {
        let mut by_token = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", file.display(), i + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [token, role, name] = parts[..] else {
                return Err(format!(
                    "{at}: expected `TOKEN ROLE NAME` (ROLE is read-only or operator), found {} field(s)",
                    parts.len()
                ));
            };
            let role = match role {
                "read-only" | "read" | "reader" => Role::Read,
                "operator" => Role::Operator,
                // Not quoted: with the columns swapped this would be the token.
                _ => {
                    return Err(format!(
                        "{at}: the second column is not a role; write read-only or operator (a line is TOKEN ROLE NAME)"
                    ));
                }
            };
            if token.len() < 16 {
                // The name is not quoted: with the columns swapped it would be the token.
                return Err(format!(
                    "{at}: the token (the first column) is {} characters; use at least 16 (e.g. `openssl rand -hex 24`)",
                    token.len()
                ));
            }
            let identity = Identity {
                name: name.to_string(),
                role,
            };
            if by_token.insert(token.to_string(), identity).is_some() {
                return Err(format!("{at}: this token is already listed above"));
            }
        }
        if by_token.is_empty() {
            return Err(format!(
                "{}: no token; add lines `TOKEN ROLE NAME`",
                file.display()
            ));
        }
        Ok(Tokens { by_token })
    }

    /// Read and parse a tokens file.
    pub fn load(file: &FsPath) -> Result<Tokens, String> {
        let text = crate::files::read_text(file, &crate::files::SMALL_FILE)
            .map_err(|e| format!("{}: the tokens file: {e}", file.display()))?;
        Tokens::parse(&text, file)
    }

    /// Who holds `token`, if it is listed (compared in constant time).
    pub fn identify(&self, token: &str) -> Option<&Identity> {
        // Compare every listed token in constant time, so timing does not tell how much of
        // a guess was right.
        let mut found = None;
        for (t, id) in &self.by_token {
            if constant_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(id);
            }
        }
        found
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone)]
struct AppState {
    fleet: Fleet,
    tokens: Arc<Tokens>,
}

/// The router of the whole API.
pub fn router(fleet: Fleet, tokens: Tokens) -> Router {
    let state = AppState {
        fleet,
        tokens: Arc::new(tokens),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/rollouts", get(list))
        .route("/api/v1/rollouts/{name}", get(one))
        .route("/api/v1/rollouts/{name}/history", get(history))
        .route("/api/v1/rollouts/{name}/{action}", post(act))
        .route("/api/v1/events", get(events))
        .route("/api/v1/documents", post(apply))
        .route("/api/v1/config", get(config))
        .route("/api/v1/runners", get(runners::list))
        .route("/api/v2/rollouts", get(v2::list))
        .route("/api/v2/rollouts/{name}", get(v2::one))
        .route("/api/v2/rollouts/{name}/history", get(v2::history))
        .route("/api/v2/rollouts/{name}/series", get(v2::series))
        .route("/api/v2/rollouts/{name}/{action}", post(act))
        .route("/api/v2/events", get(v2::events))
        .route("/api/v2/documents", post(apply))
        .route("/api/v2/config", get(config))
        .route("/api/v2/runners", get(runners::list))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(catch_panics))
        .with_state(state)
}

/// A panic while answering is a 500 with a JSON error, not a dropped connection, and is
/// recorded like any task's panic ([`crate::server::supervise`]): logged, counted, and
/// `/readyz` answers 503 from then on.
async fn catch_panics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    answer_panics(
        "api",
        "rollgate panicked while answering this request (a bug; please report it, with the server's log); the server now reports not ready",
        request,
        next,
    )
    .await
}

/// Run `next` for `request`; a panic is recorded under `edge`
/// ([`crate::server::supervise::catching`]) and answered 500 with `message`.
pub(crate) async fn answer_panics(
    edge: &'static str,
    message: &'static str,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let what = format!("{} {}", request.method(), request.uri().path());
    match crate::server::supervise::catching(edge, &what, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// A refused request of `edge` (`API`, `web view`): logged with what was asked, who asked
/// and why (never a secret), counted in `rollgate_api_refused_total`, answered as JSON.
pub(crate) fn refused(
    edge: &str,
    status: StatusCode,
    reason: &'static str,
    what: &str,
    who: &str,
    message: String,
) -> Response {
    tracing::warn!(
        request = what,
        who,
        reason,
        "{edge} request refused: {message}"
    );
    crate::telemetry::global().count("rollgate_api_refused_total", &[("reason", reason)], 1);
    error(status, message)
}

/// A JSON error answer `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; the API lives under /api/v2 (and /api/v1, frozen): rollouts, rollouts/NAME, rollouts/NAME/history, rollouts/NAME/series (v2), rollouts/NAME/ACTION, events, documents, config",
    )
}

/// Check the request's token for `need`; a refusal is logged and counted.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    need: Role,
    what: &str,
) -> Result<Identity, Box<Response>> {
    let refuse = |status: StatusCode, reason: &'static str, message: String, who: &str| {
        Box::new(refused("API", status, reason, what, who, message))
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "no-token",
            format!("{what} needs a bearer token (Authorization: Bearer TOKEN)"),
            "anonymous",
        ));
    };
    let Some(identity) = state.tokens.identify(token) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unknown-token",
            format!("{what}: the token is not in the server's tokens file"),
            "unknown",
        ));
    };
    if identity.role < need {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "read-only",
            format!(
                "{what} needs an operator token; {:?} has a {} token",
                identity.name,
                identity.role.name()
            ),
            &identity.name,
        ));
    }
    Ok(identity.clone())
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// Ready or not, nothing more: the endpoint needs no token, and a configuration problem or
/// a panic message can quote files, paths and variable names (`GET /api/v1/config` shows
/// them to a token holder).
async fn readyz(State(s): State<AppState>) -> Response {
    let ready = s.fleet.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let states = s.fleet.states();
    let by_state = crate::engine::state::State::NAMES
        .iter()
        .chain(&[views::UNREADABLE, views::INVALID_SPEC])
        .map(|name| {
            (
                crate::telemetry::labels(&[("state", name)]),
                states.get(*name).copied().unwrap_or(0) as f64,
            )
        })
        .collect();
    let status = s.fleet.config_status();
    let runners = runners::metric_families(s.fleet.store()).await;
    let mut gauges = vec![
        (
            "rollgate_rollouts",
            "Rollouts by the state of their latest run.",
            by_state,
        ),
        (
            "rollgate_rollouts_driven",
            "Runs with a driver task now.",
            vec![(vec![], s.fleet.driving() as f64)],
        ),
        (
            "rollgate_event_subscribers",
            "Subscribers of the event stream now.",
            vec![(vec![], s.fleet.subscribers() as f64)],
        ),
        (
            "rollgate_notifications_pending",
            "Webhook notifications in the store's outbox not yet delivered or given up on (every runner's), at the last look.",
            vec![(vec![], s.fleet.notifier().pending() as f64)],
        ),
        (
            "rollgate_config_generation",
            "Configurations applied since start.",
            vec![(vec![], status.generation as f64)],
        ),
        (
            "rollgate_config_last_reload_failed",
            "1 when the last configuration change was refused (the previous one runs).",
            vec![(vec![], f64::from(u8::from(status.last_error.is_some())))],
        ),
    ];
    gauges.extend(runners);
    let text = crate::telemetry::global().render(&gauges);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Only rollouts in this state (`paused` matches every paused state).
    state: Option<String>,
    /// Only rollouts whose name starts with this.
    prefix: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "listing rollouts") {
        return *r;
    }
    let listed = match listed(&s, &q).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let items: Vec<_> = listed
        .into_iter()
        .map(|(p, runner)| {
            let mut item = json!({
                "rollout": p.rollout, "run": p.run, "state": p.state, "phase": p.phase_name,
                "phaseIndex": p.phase, "phaseCount": p.phase_count, "weight": p.weight,
                "message": p.message,
            });
            if let Some(runner) = runner {
                item["runner"] = json!(runner);
            }
            item
        })
        .collect();
    Json(json!({ "rollouts": items })).into_response()
}

/// The rollouts a list request asks for, with their last progress and, for an unfinished
/// run a runner claimed, who drives it and whether its runner still beats (v1 and v2 list
/// the same rollouts; only their shape differs).
async fn listed(
    s: &AppState,
    q: &ListQuery,
) -> Result<Vec<(crate::engine::Progress, Option<RunnerView>)>, Response> {
    let drivers = s
        .fleet
        .store()
        .drivers()
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let now = now_ms();
    Ok(s.fleet
        .rollouts()
        .into_iter()
        .filter(|(_, p)| {
            q.state.as_deref().is_none_or(|want| {
                p.state == want || (want == "paused" && p.state.starts_with("paused("))
            }) && q
                .prefix
                .as_deref()
                .is_none_or(|pre| p.rollout.starts_with(pre))
        })
        .map(|(id, p)| {
            let runner = drivers.get(&id).map(|r| RunnerView::of(r, now));
            (p, runner)
        })
        .collect())
}

async fn one(State(s): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading a rollout") {
        return *r;
    }
    match views::snapshot(s.fleet.store(), &name).await {
        Ok(Some(snap)) => Json(snap).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no rollout named {name:?}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    run: Option<i64>,
}

async fn history(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading a rollout's history") {
        return *r;
    }
    match views::history(s.fleet.store(), &name, q.run).await {
        Ok(h) => Json(h).into_response(),
        Err(e) => history_error(&name, q.run, e),
    }
}

/// Why a history cannot be shown, as an answer.
fn history_error(name: &str, run: Option<i64>, e: HistoryError) -> Response {
    match e {
        HistoryError::NoRollout => {
            error(StatusCode::NOT_FOUND, format!("no rollout named {name:?}"))
        }
        HistoryError::NoRun(runs) => {
            let known: Vec<String> = runs.iter().map(ToString::to_string).collect();
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "{name:?} has no run {} (runs: {})",
                    run.unwrap_or_default(),
                    known.join(", ")
                ),
            )
        }
        HistoryError::Store(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ActBody {
    #[serde(default)]
    reason: String,
}

async fn act(
    State(s): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let what = format!("{action} on {name:?}");
    let identity = match authorize(&s, &headers, Role::Operator, &what) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    perform_action(&s.fleet, &name, &action, &identity.name, &body).await
}

/// Run operator action `action` (its name, from the path) on rollout `name` as `actor`
/// with the request body `body` (`{"reason": "..."}` or empty) and answer as
/// `POST /api/v2/rollouts/NAME/ACTION` does: 200 applied, 201 a new run, 202 queued, the
/// engine's refusal with its status. The caller has checked who asks; the web view's
/// action route answers with exactly this.
pub async fn perform_action(
    fleet: &Fleet,
    name: &str,
    action: &str,
    actor: &str,
    body: &[u8],
) -> Response {
    let action = match Action::parse(action) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let body: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be JSON like {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    match fleet.act(name, action, actor, &body.reason).await {
        Ok(v) => {
            tracing::info!(rollout = %name, action = action.name(), actor = %actor, "action requested");
            // Retry, and a rollback after success, create a run.
            let status = if action == Action::Retry || v.get("reverses").is_some() {
                StatusCode::CREATED
            } else if v["outcome"] == "applied" {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, Json(v)).into_response()
        }
        Err((code, message)) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        ),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    rollout: Option<String>,
}

async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "streaming events") {
        return *r;
    }
    event_stream(&s, q, sse_event)
}

/// The server-sent events of every commit from now on (of one rollout, if asked), each
/// rendered by `render`; a subscriber that falls behind is told how many it missed.
fn event_stream(s: &AppState, q: EventsQuery, render: fn(&Event) -> sse::Event) -> Response {
    let rx = s.fleet.subscribe();
    let filter = q.rollout;
    let stream = futures::stream::unfold((rx, filter), move |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if filter.as_ref().is_some_and(|f| *f != e.rollout) {
                        continue;
                    }
                    let item = render(&e);
                    return Some((Ok::<_, Infallible>(item), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Say so instead of silently skipping: the client should re-read state.
                    let item = sse::Event::default()
                        .event("lagged")
                        .data(json!({ "skipped": n }).to_string());
                    return Some((Ok(item), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn sse_event(e: &Event) -> sse::Event {
    sse::Event::default()
        .id(e.seq.to_string())
        .event(e.kind)
        .data(serde_json::to_string(e).unwrap_or_default())
}

async fn apply(State(s): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let identity = match authorize(&s, &headers, Role::Operator, "applying documents") {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match s.fleet.apply(&body).await {
        Ok(file) => {
            tracing::info!(actor = %identity.name, file = %file.display(), "documents applied");
            let status = s.fleet.config_status();
            (
                StatusCode::OK,
                Json(json!({ "applied": file.display().to_string(), "config": status })),
            )
                .into_response()
        }
        Err(refused) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "the documents were refused; the running configuration is unchanged",
                "problems": refused.0,
            })),
        )
            .into_response(),
    }
}

async fn config(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading the configuration status") {
        return *r;
    }
    Json(json!({
        "config": s.fleet.config_status(),
        "rollouts": s.fleet.configured(),
        "ready": s.fleet.is_ready(),
        "panics": crate::server::supervise::panicked(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_files_are_checked_line_by_line() {
        let f = FsPath::new("tokens");
        let ok = Tokens::parse(
            "# who may do what\n0123456789abcdef0 operator alice\n\nfedcba98765432100 read-only bob\n",
            f,
        )
        .expect("valid");
        assert_eq!(
            ok.identify("0123456789abcdef0"),
            Some(&Identity {
                name: "alice".into(),
                role: Role::Operator
            })
        );
        assert_eq!(
            ok.identify("fedcba98765432100").map(|i| i.role),
            Some(Role::Read)
        );
        assert_eq!(ok.identify("0123456789abcdef"), None);
        // (text, the error's start)
        let cases = [
            (
                "0123456789abcdef0 operator\n",
                "tokens:1: expected `TOKEN ROLE NAME`",
            ),
            (
                "0123456789abcdef0 admin carol\n",
                "tokens:1: the second column is not a role",
            ),
            (
                "short operator dave\n",
                "tokens:1: the token (the first column) is 5 characters",
            ),
            (
                "0123456789abcdef0 operator a\n0123456789abcdef0 read-only b\n",
                "tokens:2: this token is already listed",
            ),
            ("# nothing\n", "tokens: no token"),
        ];
        for (text, want) in cases {
            let e = Tokens::parse(text, f).expect_err(text);
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        // Columns in the wrong order: the error never shows the token.
        for text in [
            "operator 0123456789abcdef0123 alice\n",
            "alice operator 0123456789abcdef0123\n",
        ] {
            let e = Tokens::parse(text, f).expect_err(text);
            assert!(!e.contains("0123456789abcdef0123"), "{text:?}: {e}");
        }
    }
}
