//! HTTP gates: an outside system (a change calendar, a load test, a person behind a
//! button) confirms or holds a rollout by answering a POST.
//!
//! A gate is *open* only on a 2xx answer. Everything else — a 4xx, a 5xx that outlasted
//! the retries, a timeout, a refused connection — keeps it *closed*, so a gate that cannot
//! be reached never lets a rollout through by accident. What it means to be open (confirm,
//! or for `rollback` gates, request a rollback) is the engine's business, not this module's.
//! Transient failures are retried a few times with a short backoff so that one dropped
//! connection does not pause a rollout for a whole gate interval.

use crate::deliver::webhook::{body_tail, describe_error, is_transient, status_message};
use crate::spec::model::GateSpec;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use std::time::Duration;

/// The first retry's delay; doubling after that.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest delay between retries.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How much of an open gate's body is kept.
const BODY_BYTES: usize = 4 * 1024;

/// A gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAnswer {
    /// 2xx: the tail of the response body (may explain the decision).
    Open(String),
    /// Anything else: why (status and body, or the connection error).
    Closed(String),
}

/// Ask `gate` by POSTing `payload` as JSON to its URL. Retries connection errors,
/// timeouts, 5xx (and 429/408) up to `gate.retries` times, 200 ms apart doubling up to 2 s;
/// a 4xx is an answer and is not retried. Never fails: a gate that cannot be asked is
/// closed.
pub async fn ask(
    client: &reqwest::Client,
    gate: &GateSpec,
    payload: &serde_json::Value,
) -> GateAnswer {
    let body = match serde_json::to_vec(payload) {
        Ok(b) => b,
        Err(e) => return GateAnswer::Closed(format!("cannot serialise the gate payload: {e}")),
    };
    let timeout = Duration::from_millis(gate.timeout_ms.max(1));
    let mut attempt = 0u32;
    loop {
        let (why, transient) = match ask_once(client, &gate.url, timeout, &body).await {
            Ok(open) => return GateAnswer::Open(open),
            Err(failed) => failed,
        };
        if !transient || attempt >= gate.retries {
            return GateAnswer::Closed(if attempt == 0 {
                why
            } else {
                format!("{why} (after {} attempts)", attempt + 1)
            });
        }
        let delay = crate::deliver::webhook::backoff(FIRST_RETRY, attempt, MAX_RETRY);
        tracing::debug!(gate = %gate.name, attempt = attempt + 1, "gate request failed, retrying: {why}");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// One request: `Ok(body tail)` when open, else `Err((why, worth retrying))`.
async fn ask_once(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    body: &[u8],
) -> Result<String, (String, bool)> {
    let sent = client
        .post(url)
        .timeout(timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body.to_vec())
        .send()
        .await;
    // Messages end up in the audit log: no password or query (they may hold a token).
    let url = match reqwest::Url::parse(url) {
        Ok(u) => crate::deliver::webhook::shown(&u),
        Err(_) => url.to_string(),
    };
    let mut response = match sent {
        Ok(r) => r,
        // A malformed URL will not get better by asking again.
        Err(e) if e.is_builder() => {
            return Err((
                format!(
                    "cannot ask {url}: {}",
                    describe_error(&e.without_url(), timeout)
                ),
                false,
            ));
        }
        Err(e) => {
            return Err((
                format!(
                    "cannot reach {url}: {}",
                    describe_error(&e.without_url(), timeout)
                ),
                true,
            ));
        }
    };
    let status = response.status();
    let tail = body_tail(&mut response).await;
    if status.is_success() {
        Ok(tail.text(BODY_BYTES))
    } else {
        // A gate carries no configured secret (its URL is written in the spec).
        Err((status_message(status, &tail, &[]), is_transient(status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::testing::{Reply, Server, refused_url, reply};
    use crate::spec::model::GateKind;

    fn gate(url: String, retries: u32, timeout_ms: u64) -> GateSpec {
        GateSpec {
            name: "calendar".into(),
            kind: GateKind::ConfirmPromotion,
            url,
            timeout_ms,
            retries,
            interval_ms: 60_000,
        }
    }

    #[tokio::test]
    async fn answers_by_status_retrying_only_transient_failures() {
        // (replies, retries, expected answer prefix (open?, text), requests made)
        let cases: Vec<(Vec<Reply>, u32, bool, &str, usize)> = vec![
            (vec![reply(200, "go ahead")], 2, true, "go ahead", 1),
            (vec![reply(204, "")], 0, true, "", 1),
            (
                vec![reply(403, "change freeze")],
                3,
                false,
                "HTTP 403: change freeze",
                1,
            ),
            (vec![reply(500, "oops"), reply(200, "ok")], 2, true, "ok", 2),
            (
                vec![reply(502, "a"), reply(503, "b"), reply(200, "late")],
                2,
                true,
                "late",
                3,
            ),
            (
                vec![reply(503, "busy"), reply(503, "still busy")],
                1,
                false,
                "HTTP 503: still busy (after 2 attempts)",
                2,
            ),
            (
                vec![reply(500, "no retries")],
                0,
                false,
                "HTTP 500: no retries",
                1,
            ),
        ];
        let client = reqwest::Client::new();
        for (replies, retries, open, text, requests) in cases {
            let server = Server::start(replies.clone()).await;
            let payload = serde_json::json!({"rollout": "web", "phase": "p1", "weight": 20});
            let answer = ask(
                &client,
                &gate(server.url("/gate"), retries, 5_000),
                &payload,
            )
            .await;
            let want = if open {
                GateAnswer::Open(text.into())
            } else {
                GateAnswer::Closed(text.into())
            };
            assert_eq!(answer, want, "{replies:?}");
            let got = server.received();
            assert_eq!(got.len(), requests, "{replies:?}");
            for r in &got {
                assert_eq!(r.method, "POST");
                assert_eq!(r.path, "/gate");
                assert_eq!(r.header("content-type"), Some("application/json"));
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body, payload);
            }
        }
    }

    #[tokio::test]
    async fn unreachable_slow_or_malformed_gates_are_closed() {
        let client = reqwest::Client::new();
        let payload = serde_json::json!({});

        // Credentials in the URL never reach the message (it goes to the audit log).
        let secret = refused_url()
            .await
            .replacen("http://", "http://bot:secret@", 1)
            + "/gate?token=abc";
        match ask(&client, &gate(secret, 0, 2_000), &payload).await {
            GateAnswer::Closed(why) => {
                assert!(
                    why.starts_with("cannot reach http://bot@127.0.0.1:"),
                    "{why}"
                );
                assert!(!why.contains("secret") && !why.contains("abc"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let refused = ask(&client, &gate(refused_url().await, 1, 2_000), &payload).await;
        match refused {
            GateAnswer::Closed(why) => {
                assert!(why.starts_with("cannot reach http://127.0.0.1:"), "{why}");
                assert!(why.ends_with("(after 2 attempts)"), "{why}");
            }
            other => panic!("{other:?}"),
        }

        let server = Server::start(vec![Reply::Hang]).await;
        let slow = ask(&client, &gate(server.url("/"), 0, 200), &payload).await;
        assert_eq!(
            slow,
            GateAnswer::Closed(format!(
                "cannot reach {}: timed out after 200ms",
                server.url("/")
            ))
        );

        let bad = ask(&client, &gate("not a url".into(), 3, 1_000), &payload).await;
        match bad {
            GateAnswer::Closed(why) => {
                assert!(why.starts_with("cannot ask not a url"), "{why}");
                assert!(!why.contains("attempts"), "not retried: {why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
