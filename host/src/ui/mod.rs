//! The web view: pages for people over what the store holds, served by `rollgate serve
//! --ui-listen ADDR` (beside the API, on its own port, able to act) and by `rollgate ui
//! --store FILE` (over a store `rollgate run` wrote, read-only).
//!
//! Every byte it serves is in the binary: the HTML shells, scripts and styles under
//! `host/ui/` are embedded ([`ASSETS`]); the pages carry no data, their scripts fetch JSON
//! from `/ui/api`. Every answer carries the security headers ([`secure`]): a CSP that
//! allows only this origin's scripts and styles (no inline code, no external URL), no
//! framing, no sniffing, no referrer; JSON answers are never cached and say how long they
//! took (`Server-Timing`).
//!
//! Who may see and do what ([`session`]): with a tokens file, a person signs in with a
//! token and gets a session cookie (HttpOnly, SameSite=Strict, random, kept in memory);
//! pages redirect to `/login` without one, `/ui/api` answers 401. Acting needs an
//! operator's session, the session's CSRF token in `X-CSRF-Token` and, when the browser
//! sends an `Origin`, this origin. Over a store ([`Backing::Store`]) nobody acts; without
//! a tokens file nobody signs in and everyone reads (loopback only: `rollgate ui` refuses
//! another address without `--tokens`).
//!
//! Files: `mod.rs` the router, [`UiState`], the headers, pages and assets, the action
//! route; `session.rs` sign-in, sessions, CSRF, who a request is; `list.rs` the list index
//! and `/ui/api/overview`; `detail.rs` `/ui/api/rollouts/NAME`; `events.rs` the change
//! stream `/ui/api/events`.

pub mod detail;
pub mod diff;
mod events;
mod list;
mod session;
pub mod yaml;

use crate::api::error;
use crate::api::{Role, Tokens};
use crate::server::Fleet;
use crate::store::Store;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Instant;

/// What the web view reads (and, for a server, acts on).
pub enum Backing {
    /// `rollgate serve`: the fleet (its store, its event stream, its actions).
    Serve(Fleet),
    /// `rollgate ui --store FILE`: a store written by `rollgate run`, read-only.
    Store(Store),
}

impl Backing {
    /// The store the views read.
    pub fn store(&self) -> &Store {
        match self {
            Backing::Serve(fleet) => fleet.store(),
            Backing::Store(store) => store,
        }
    }

    /// `serve` or `store`, as `/ui/api/session` says.
    pub fn mode(&self) -> &'static str {
        match self {
            Backing::Serve(_) => "serve",
            Backing::Store(_) => "store",
        }
    }
}

struct Inner {
    backing: Backing,
    /// `None`: nobody signs in and everyone reads (`rollgate ui` without `--tokens`).
    tokens: Option<Tokens>,
    sessions: session::Sessions,
    list: list::ListIndex,
    /// Set when the process stops, so that event streams end and a graceful shutdown
    /// does not wait for browsers to go away.
    closing: tokio::sync::watch::Sender<bool>,
}

/// The web view's state; cheap to clone.
#[derive(Clone)]
pub struct UiState {
    inner: Arc<Inner>,
}

impl UiState {
    /// The web view of a server: sign-in with the server's tokens, operators act.
    pub fn serve(fleet: Fleet, tokens: Tokens) -> UiState {
        UiState::new(Backing::Serve(fleet), Some(tokens))
    }

    /// The web view of a store: read-only; sign-in only with `tokens`.
    pub fn store(store: Store, tokens: Option<Tokens>) -> UiState {
        UiState::new(Backing::Store(store), tokens)
    }

    fn new(backing: Backing, tokens: Option<Tokens>) -> UiState {
        UiState {
            inner: Arc::new(Inner {
                backing,
                tokens,
                sessions: session::Sessions::default(),
                list: list::ListIndex::default(),
                closing: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Build the list index in the background now (one read of every rollout's latest
    /// run: about a second at 20,000 rollouts), so the first person to open the list does
    /// not wait for it. A failure is only logged: the first request reads again.
    pub fn warm(&self) {
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = state.inner.list.warm(state.store_ref()).await {
                tracing::warn!("web view: reading the rollouts for the list failed: {e}");
            }
        });
    }

    /// End every event stream now and refuse new ones: call it when the process stops.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    fn backing(&self) -> &Backing {
        &self.inner.backing
    }

    fn store_ref(&self) -> &Store {
        self.inner.backing.store()
    }
}

/// The router of the web view (pages, assets, `/ui/api`).
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(index_page))
        .route("/rollouts/{name}", get(rollout_page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(asset))
        .route("/ui/api/session", get(session::info))
        .route("/ui/api/overview", get(list::overview))
        .route("/ui/api/rollouts/{name}", get(detail_route))
        .route("/ui/api/rollouts/{name}/{action}", post(act))
        .route("/ui/api/events", get(events::stream))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(catch_panics))
        .layer(axum::middleware::from_fn(secure))
        .with_state(state)
}

/// The Content-Security-Policy of every answer: this origin's scripts, styles, images
/// and fetches only; no inline code, no plugins, no framing, no base or form elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The security headers on every answer; JSON (everything under `/ui/api`) also
/// `Cache-Control: no-store` and `Server-Timing: app;dur=MS`.
async fn secure(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = request.uri().path().starts_with("/ui/api/");
    let started = Instant::now();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if api || json {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
            headers.insert("server-timing", v);
        }
    }
    response
}

/// A panic while answering is a 500, recorded like the API's ([`crate::server::supervise`]).
async fn catch_panics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    crate::api::answer_panics(
        "ui",
        "rollgate panicked while answering this request (a bug; please report it, with the log)",
        request,
        next,
    )
    .await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/ui/api/") {
        error(
            StatusCode::NOT_FOUND,
            "no such endpoint; the web view's JSON lives under /ui/api: session, overview, rollouts/NAME, rollouts/NAME/ACTION, events",
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found; the rollouts are at /\n",
        )
            .into_response()
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every embedded file under `/assets/`: (name, content type, bytes). One line per file.
const ASSETS: &[(&str, &str, &str)] = &[
    ("common.js", JS, include_str!("../../ui/common.js")),
    ("list.js", JS, include_str!("../../ui/list.js")),
    ("login.js", JS, include_str!("../../ui/login.js")),
    ("app.css", CSS, include_str!("../../ui/app.css")),
    ("chart.js", JS, include_str!("../../ui/chart.js")),
    ("detail.js", JS, include_str!("../../ui/detail.js")),
    ("detail.css", CSS, include_str!("../../ui/detail.css")),
];

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const ROLLOUT_HTML: &str = include_str!("../../ui/rollout.html");
const LOGIN_HTML: &str = include_str!("../../ui/login.html");

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such asset\n",
        )
            .into_response(),
    }
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A page: its shell to a viewer, else the way to sign in (and back).
fn page(
    state: &UiState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    shell: &'static str,
) -> Response {
    match session::viewer(state, headers) {
        Some(_) => html(shell),
        None => {
            let next = uri.path_and_query().map_or("/", |p| p.as_str());
            session::redirect(&format!("/login?next={}", session::encode(next)))
        }
    }
}

async fn index_page(
    State(s): State<UiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    page(&s, &headers, &uri, INDEX_HTML)
}

async fn rollout_page(
    State(s): State<UiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    page(&s, &headers, &uri, ROLLOUT_HTML)
}

#[derive(Debug, serde::Deserialize)]
struct DetailQuery {
    run: Option<String>,
}

async fn detail_route(
    State(s): State<UiState>,
    Path(name): Path<String>,
    Query(q): Query<DetailQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = session::reader(&s, &headers) {
        return *r;
    }
    let run = match q.run.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "run: not a run number; use ?run=N with N ≥ 1 (or leave it out for the latest run)",
            );
        }
    };
    match detail::document(s.store_ref(), &name, run).await {
        Ok(doc) => Json(doc).into_response(),
        Err((code, message)) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        ),
    }
}

/// `POST /ui/api/rollouts/NAME/ACTION`: an operator's session (or bearer token) with the
/// CSRF header, from this origin, with a reason; then exactly what the API runs.
async fn act(
    State(s): State<UiState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let what = format!("{action} on {name:?} through the web view");
    let viewer = match session::actor(&s, &headers, &what) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Backing::Serve(fleet) = s.backing() else {
        return error(StatusCode::FORBIDDEN, "a store view never acts");
    };
    let reason = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned));
    match reason {
        Some(r) if !r.trim().is_empty() && r.chars().count() <= 1000 => {}
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be JSON {\"reason\": \"why\"} with a reason of 1 to 1000 characters (it goes into the audit log)",
            );
        }
    }
    let Some(user) = viewer.user.as_deref() else {
        return error(StatusCode::FORBIDDEN, "acting needs a signed-in operator");
    };
    crate::api::perform_action(fleet, &name, &action, user, &body).await
}

/// The role of a viewer in this web view: a store view never acts.
fn effective_role(state: &UiState, role: Role) -> Role {
    match state.backing() {
        Backing::Serve(_) => role,
        Backing::Store(_) => Role::Read,
    }
}
