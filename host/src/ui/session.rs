//! Sign-in, sessions, CSRF and who a request is.
//!
//! A person signs in with a token of the tokens file (`POST /login`, a form); the answer
//! sets the cookie `rollgate_session`: 256 random bits from the operating system, hex,
//! `HttpOnly; SameSite=Strict; Path=/`. The server keeps sessions in memory (a restart
//! signs everyone out), by the SHA-256 of the cookie, each with the identity, a CSRF token
//! (another 256 random bits) and the last use; a session unused for [`IDLE`] ends, and
//! `POST /logout` ends one at once. A token never travels in a URL and never reaches the
//! page: the page knows the user, the role and the CSRF token (`/ui/api/session`).
//!
//! Acting ([`actor`]) needs the CSRF token in `X-CSRF-Token` (a form from another site
//! cannot set a header), an `Origin`, when the browser sends one, equal to this origin,
//! and SameSite keeps the cookie off other sites' requests anyway. Scripts may send
//! `Authorization: Bearer TOKEN` to `/ui/api` instead of a cookie (no CSRF then: a
//! browser never adds that header by itself). Every refusal is logged (without secrets)
//! and counted in `rollgate_api_refused_total`.

use super::{UiState, effective_role, error};
use crate::api::{Identity, Role, constant_eq};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "rollgate_session";

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// At most this many sessions; signing in past it ends the least recently used.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    identity: Identity,
    csrf: String,
    last: Instant,
}

/// The sessions, by the SHA-256 of their cookie (the map never holds a cookie itself).
#[derive(Default)]
pub(super) struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// `bytes` random bytes from the operating system, as hex.
pub(super) fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

impl Sessions {
    /// A new session of `identity`: (cookie value, CSRF token).
    fn create(&self, identity: Identity) -> std::io::Result<(String, String)> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last) < IDLE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            hash(&id),
            Session {
                identity,
                csrf: csrf.clone(),
                last: now,
            },
        );
        Ok((id, csrf))
    }

    /// The live session of cookie `id` (its identity and CSRF token), marked used now.
    fn find(&self, id: &str) -> Option<(Identity, String)> {
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let key = hash(id);
        let now = Instant::now();
        let session = map.get_mut(&key)?;
        if now.duration_since(session.last) >= IDLE {
            map.remove(&key);
            return None;
        }
        session.last = now;
        Some((session.identity.clone(), session.csrf.clone()))
    }

    fn remove(&self, id: &str) -> bool {
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&hash(id)).is_some()
    }
}

/// How a request is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// The session cookie.
    Cookie,
    /// `Authorization: Bearer TOKEN` (scripts).
    Bearer,
    /// Nobody signs in here (`rollgate ui` without `--tokens`).
    Open,
}

/// Who asks (no `Debug`: it holds the CSRF token).
#[derive(Clone)]
pub(super) struct Viewer {
    /// The token's name; `None` where nobody signs in.
    pub user: Option<String>,
    /// What they may do here (read-only in a store view).
    pub role: Role,
    /// The session's CSRF token (cookie sessions only).
    pub csrf: Option<String>,
    /// How.
    pub via: Via,
}

/// The session cookie's value in the request, when it looks like one of ours.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Who the request is, or `None` when it must sign in first.
pub(super) fn viewer(state: &UiState, headers: &HeaderMap) -> Option<Viewer> {
    let Some(tokens) = state.inner.tokens.as_ref() else {
        return Some(Viewer {
            user: None,
            role: Role::Read,
            csrf: None,
            via: Via::Open,
        });
    };
    if let Some(id) = cookie(headers)
        && let Some((identity, csrf)) = state.inner.sessions.find(&id)
    {
        return Some(Viewer {
            user: Some(identity.name),
            role: effective_role(state, identity.role),
            csrf: Some(csrf),
            via: Via::Cookie,
        });
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)?;
    let identity = tokens.identify(bearer)?;
    Some(Viewer {
        user: Some(identity.name.clone()),
        role: effective_role(state, identity.role),
        csrf: None,
        via: Via::Bearer,
    })
}

/// A refusal: logged (who and why, never a secret), counted, answered as JSON.
pub(super) fn refuse(
    status: StatusCode,
    reason: &'static str,
    what: &str,
    who: &str,
    message: String,
) -> Response {
    crate::api::refused("web view", status, reason, what, who, message)
}

/// A reader of `/ui/api`: anyone signed in (or anyone, where nobody signs in); else 401.
pub(super) fn reader(state: &UiState, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
    viewer(state, headers).ok_or_else(|| {
        Box::new(error(
            StatusCode::UNAUTHORIZED,
            "sign in first: open /login (scripts: Authorization: Bearer TOKEN)",
        ))
    })
}

/// Whether the request's `Origin` (when it has one) is this web view's own.
///
/// The pages answer with `Referrer-Policy: no-referrer`, under which a browser sends
/// `Origin: null` with a form's POST even to the page's own origin (the Fetch standard's
/// rule for requests that are not CORS: the sign-in and sign-out forms). Such a request is
/// ours only when the browser also says `Sec-Fetch-Site: same-origin` (a header no page
/// can set); another site can make its Origin `null` as well, but not that.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if origin.as_bytes() == b"null" {
        return headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes() == b"same-origin");
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let origin = origin.as_bytes();
    origin == format!("http://{host}").as_bytes() || origin == format!("https://{host}").as_bytes()
}

/// An operator allowed to act now: signed in (401), from this origin, with the session's
/// CSRF token, in a server's web view, with an operator's role (403 each).
pub(super) fn actor(
    state: &UiState,
    headers: &HeaderMap,
    what: &str,
) -> Result<Viewer, Box<Response>> {
    let Some(viewer) = viewer(state, headers) else {
        return Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "ui-no-session",
            what,
            "anonymous",
            "sign in first: open /login".into(),
        )));
    };
    let who = viewer.user.clone().unwrap_or_else(|| "anonymous".into());
    if !same_origin(headers) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "ui-foreign-origin",
            what,
            &who,
            "refused: the request comes from another site (its Origin is not this web view)".into(),
        )));
    }
    if viewer.via == Via::Cookie {
        let sent = headers
            .get("x-csrf-token")
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let want = viewer.csrf.as_deref().unwrap_or_default().as_bytes();
        if want.is_empty() || !constant_eq(sent, want) {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "ui-csrf",
                what,
                &who,
                "refused: the X-CSRF-Token header is missing or wrong (reload the page)".into(),
            )));
        }
    }
    if let super::Backing::Store(_) = state.backing() {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "ui-store-mode",
            what,
            &who,
            "this web view shows a store (rollgate ui --store): it never acts; act with `rollgate ACTION NAME --store FILE`, or through a server".into(),
        )));
    }
    if viewer.role < Role::Operator {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "read-only",
            what,
            &who,
            format!("{what} needs an operator; {who} may only read here"),
        )));
    }
    Ok(viewer)
}

/// `GET /ui/api/session`.
pub(super) async fn info(State(s): State<UiState>, headers: HeaderMap) -> Response {
    let viewer = match reader(&s, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    Json(json!({
        "user": viewer.user,
        "role": viewer.role.name(),
        "csrf": viewer.csrf,
        "mode": s.backing().mode(),
        "signInRequired": s.inner.tokens.is_some(),
    }))
    .into_response()
}

/// A 303 to `location` (a local path).
pub(super) fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Percent-encode `text` for a query value (unreserved characters and `/` stay).
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of field `name` of an `application/x-www-form-urlencoded` body (`None` when
/// absent or not UTF-8).
pub(super) fn form_field(body: &[u8], name: &str) -> Option<String> {
    fn decode(part: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hexes = part.get(i + 1..i + 3)?;
                    let text = std::str::from_utf8(hexes).ok()?;
                    out.push(u8::from_str_radix(text, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        let key = decode(kv.next()?)?;
        (key == name).then(|| decode(kv.next().unwrap_or_default()))?
    })
}

/// Where to go after signing in: a local path (`/…`, not `//…` nor `/\…`), else `/`.
fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

/// `GET /login`: the sign-in page (or `/` where nobody signs in).
pub(super) async fn login_page(State(s): State<UiState>) -> Response {
    if s.inner.tokens.is_none() {
        return redirect("/");
    }
    super::html(super::LOGIN_HTML)
}

/// `POST /login` with the form `token=…&next=…`.
pub(super) async fn login(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(tokens) = s.inner.tokens.as_ref() else {
        return redirect("/");
    };
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "ui-foreign-origin",
            "signing in",
            "anonymous",
            "refused: the sign-in form was posted from another site".into(),
        );
    }
    let next = form_field(&body, "next");
    let next = local_next(next.as_deref()).to_string();
    let token = form_field(&body, "token").unwrap_or_default();
    let Some(identity) = tokens.identify(token.trim()).cloned() else {
        tracing::warn!("web view sign-in refused: the token is not in the tokens file");
        crate::telemetry::global().count(
            "rollgate_api_refused_total",
            &[("reason", "ui-bad-token")],
            1,
        );
        let back = if next == "/" {
            "/login?failed=1".to_string()
        } else {
            format!("/login?failed=1&next={}", encode(&next))
        };
        return redirect(&back);
    };
    let name = identity.name.clone();
    let (id, _) = match s.inner.sessions.create(identity) {
        Ok(created) => created,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read random bytes for a session from /dev/urandom: {e}"),
            );
        }
    };
    tracing::info!(user = %name, "signed in to the web view");
    let mut r = redirect(&next);
    if let Ok(v) =
        HeaderValue::from_str(&format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout`: with the CSRF token (header `X-CSRF-Token` or form field `csrf`), ends
/// the session; clears the cookie and goes to `/login`.
pub(super) async fn logout(
    State(s): State<UiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(id) = cookie(&headers)
        && let Some((identity, csrf)) = s.inner.sessions.find(&id)
    {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| form_field(&body, "csrf"))
            .unwrap_or_default();
        if !same_origin(&headers) || !constant_eq(sent.as_bytes(), csrf.as_bytes()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "ui-csrf",
                "signing out",
                &identity.name,
                "refused: signing out needs the page's CSRF token, from this site".into(),
            );
        }
        s.inner.sessions.remove(&id);
        tracing::info!(user = %identity.name, "signed out of the web view");
    }
    let mut r = redirect("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rollgate_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_and_next_paths() {
        let body = b"token=abc%2Bdef+g&next=%2Frollouts%2Fx%3Frun%3D2&csrf=";
        assert_eq!(form_field(body, "token").as_deref(), Some("abc+def g"));
        assert_eq!(
            form_field(body, "next").as_deref(),
            Some("/rollouts/x?run=2")
        );
        assert_eq!(form_field(body, "csrf").as_deref(), Some(""));
        assert_eq!(form_field(body, "nope"), None);
        assert_eq!(form_field(b"token=%zz", "token"), None);
        assert_eq!(form_field(b"token=%f", "token"), None);
        for (next, want) in [
            (Some("/rollouts/a"), "/rollouts/a"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
            (None, "/"),
        ] {
            assert_eq!(local_next(next), want, "{next:?}");
        }
        assert_eq!(encode("/rollouts/a b?run=1"), "/rollouts/a%20b%3Frun%3D1");
    }

    #[test]
    fn an_origin_is_ours_when_it_names_this_host_or_is_null_from_this_origin() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        for (pairs, ours) in [
            (&[][..], true),
            (&[("origin", "http://127.0.0.1:8080")][..], true),
            (&[("origin", "http://127.0.0.1:9090")][..], false),
            // A form posted under Referrer-Policy: no-referrer (Chromium, Firefox).
            (
                &[("origin", "null"), ("sec-fetch-site", "same-origin")][..],
                true,
            ),
            (
                &[("origin", "null"), ("sec-fetch-site", "same-site")][..],
                false,
            ),
            (
                &[("origin", "null"), ("sec-fetch-site", "cross-site")][..],
                false,
            ),
            (&[("origin", "null")][..], false),
        ] {
            assert_eq!(same_origin(&headers(pairs)), ours, "{pairs:?}");
        }
    }

    #[test]
    fn sessions_are_random_found_and_removed() {
        let sessions = Sessions::default();
        let alice = Identity {
            name: "alice".into(),
            role: Role::Operator,
        };
        let (a, csrf_a) = sessions.create(alice.clone()).expect("random");
        let (b, _) = sessions.create(alice).expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(a, csrf_a);
        assert_eq!(
            sessions.find(&a).map(|(i, c)| (i.name, c)),
            Some(("alice".into(), csrf_a))
        );
        assert!(sessions.remove(&a));
        assert!(sessions.find(&a).is_none());
        assert!(sessions.find(&b).is_some());
    }
}
