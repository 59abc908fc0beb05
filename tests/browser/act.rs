//! Acting from the web view in a real browser: an operator pauses with a reason (the page
//! changes, the audit log names the token's identity), a refused action shows the engine's
//! reason; a read-only viewer gets no controls and a forged request with its cookie is
//! refused.

use super::driver::Browser;
use super::web::{Part, Web, page_fetch, script_errors, sign_in};
use crate::common::serve::{OPERATOR, READER};
use std::time::Duration;

/// Click action `action`'s button, give `reason`, confirm; returns the dialog's outcome
/// (`data-outcome`) and text.
fn act(b: &Browser, action: &str, reason: &str) -> (String, String) {
    let css = format!("button[data-action=\"{action}\"]");
    b.wait(&format!("{action} enabled"), Duration::from_secs(30), |b| {
        (b.attrs(&css, "disabled") == [None]).then_some(())
    });
    b.click_css(&css);
    let field = b.find("#confirm textarea[name=reason]");
    b.send_keys(&field, reason);
    b.click_css("#confirm button[data-confirm]");
    let outcome = b.find("#confirm [data-outcome]");
    let kind = b.wait("the outcome", Duration::from_secs(30), |b| {
        b.attr(&outcome, "data-outcome").filter(|o| !o.is_empty())
    });
    (kind, b.text(&outcome))
}

#[test]
fn an_operator_pauses_from_the_page_and_a_refusal_shows_the_engines_reason() {
    let Some(b) = Browser::start("an_operator_pauses_from_the_page") else {
        return;
    };
    let web = Web::start(&[Part::Busy("busy"), Part::Busy("busy-2")]);
    web.wait_states(&[("busy", "progressing"), ("busy-2", "progressing")]);
    sign_in(&b, &web.ui, OPERATOR);

    b.goto(&format!("{}/rollouts/busy", web.ui));
    let (outcome, text) = act(&b, "pause", "checking the dashboards");
    assert_eq!(outcome, "applied", "{text}");
    // The page shows the new state by itself.
    b.find("[data-banner=\"paused\"]");
    let v = web.server.wait_state("busy", 1, "paused(manual)");
    assert_eq!(v["state"], "paused(manual)");
    let audit = web.audit("busy", 1);
    let pause = audit
        .iter()
        .rev()
        .find(|a| a["action"] == "pause")
        .unwrap_or_else(|| panic!("no pause in {audit:#?}"));
    assert_eq!(
        pause["actor"], "alice",
        "the token's name, from the session"
    );
    assert_eq!(pause["reason"], "checking the dashboards");
    // The token and the session id never reach the audit log.
    let all = serde_json::to_string(&audit).expect("json");
    assert!(!all.contains(OPERATOR));

    // Someone else pauses busy-2 while the operator's dialog is open: the engine refuses
    // the second pause, and the dialog says why in the engine's words.
    b.goto(&format!("{}/rollouts/busy-2", web.ui));
    let css = "button[data-action=\"pause\"]";
    b.wait("pause enabled", Duration::from_secs(30), |b| {
        (b.attrs(css, "disabled") == [None]).then_some(())
    });
    b.click_css(css);
    let field = b.find("#confirm textarea[name=reason]");
    let (status, v) = web.server.act("busy-2", "pause", Some(OPERATOR));
    assert_eq!(status, 200, "{v}");
    web.server.wait_state("busy-2", 1, "paused(manual)");
    b.send_keys(&field, "me too");
    b.click_css("#confirm button[data-confirm]");
    let outcome = b.find("#confirm [data-outcome]");
    let kind = b.wait("the outcome", Duration::from_secs(30), |b| {
        b.attr(&outcome, "data-outcome").filter(|o| !o.is_empty())
    });
    let text = b.text(&outcome);
    let (status, refusal) = web.server.act("busy-2", "pause", Some(OPERATOR));
    assert_eq!(status, 409, "{refusal}");
    let reason = refusal["error"].as_str().expect("the engine's reason");
    assert_eq!(kind, "refused", "{text}");
    assert!(text.contains(reason), "{text:?} shows {reason:?}");
    let pauses = web
        .audit("busy-2", 1)
        .iter()
        .filter(|a| a["action"] == "pause")
        .count();
    assert_eq!(pauses, 1, "only the first pause applied");
    assert_eq!(script_errors(&b), Vec::<String>::new());
}

#[test]
fn a_read_only_viewer_has_no_controls_and_a_forged_request_with_its_cookie_is_refused() {
    let Some(b) = Browser::start("a_read_only_viewer_has_no_controls") else {
        return;
    };
    let web = Web::start(&[Part::Busy("busy")]);
    web.wait_states(&[("busy", "progressing")]);
    sign_in(&b, &web.ui, READER);
    b.goto(&format!("{}/rollouts/busy", web.ui));
    b.find("[data-phase=\"0\"]");
    assert_eq!(
        b.count("button[data-action]"),
        0,
        "no action control in the DOM"
    );
    assert_eq!(b.count("#confirm button[data-confirm]"), 0);

    // The page's own context: its cookie, its origin, even its session's CSRF token.
    let (status, session) = page_fetch(&b, "/ui/api/session", "{credentials: 'same-origin'}");
    assert_eq!(status, 200, "{session}");
    let csrf = session["csrf"].as_str().unwrap_or_default().to_string();
    let (status, body) = page_fetch(
        &b,
        "/ui/api/rollouts/busy/pause",
        &format!(
            "{{method: 'POST', credentials: 'same-origin', headers: {{'Content-Type': \
             'application/json', 'X-CSRF-Token': {csrf:?}}}, body: JSON.stringify({{reason: 'forged'}})}}"
        ),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(web.server.rollout("busy")["state"], "progressing");
    assert!(web.audit("busy", 1).iter().all(|a| a["action"] != "pause"));
}
