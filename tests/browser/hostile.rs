//! Hostile text renders inert: markup in a plugin's message, the versions, an argument and
//! an operator's reason is shown as characters on the list and the detail page; no alert
//! opens, no `img` element is ever created, and no script error (a blocked inline handler
//! would be a CSP error in the console) happens.
//!
//! Rollout names cannot carry markup (1-63 of `a-z0-9-`, the spec's rule), so the payload
//! rides on what can: the test plugin `hostile` errors with a message quoting its `mode`,
//! which is the payload; the versions and the `service` argument are the payload too.

use super::driver::Browser;
use super::web::{PAYLOAD, Part, Web, page_text, script_errors, sign_in};
use crate::common::serve::OPERATOR;
use std::time::Duration;

/// The page shows `PAYLOAD` as text and nothing hostile happened.
fn assert_inert(b: &Browser, page: &str) {
    // As text, or as a tooltip (the list keeps a row's message in its state's title).
    b.wait(
        &format!("the payload as text on {page}"),
        Duration::from_secs(30),
        |b| {
            let titled = b.script(
                "return [...document.querySelectorAll('[title]')]\
                 .some(e => e.getAttribute('title').includes(arguments[0]));",
                vec![PAYLOAD.into()],
            );
            (page_text(b).contains(PAYLOAD) || titled == true).then_some(())
        },
    );
    let effects = b.hostile_effects();
    assert_eq!(effects.open_alert, None, "{page}: an alert opened");
    assert_eq!(
        effects.alerts,
        Vec::<String>::new(),
        "{page}: alert was called"
    );
    assert_eq!(
        (effects.imgs_added, effects.imgs_now),
        (0, 0),
        "{page}: an img element was created"
    );
    assert_eq!(script_errors(b), Vec::<String>::new(), "{page}");
}

#[test]
fn markup_in_a_plugin_message_versions_and_a_reason_renders_inert() {
    let Some(b) = Browser::start("markup_in_a_plugin_message_renders_inert") else {
        return;
    };
    let web = Web::start(&[Part::Echo("hostile", PAYLOAD), Part::Busy("busy")]);
    web.wait_states(&[("hostile", "paused(policy)"), ("busy", "progressing")]);
    let snapshot = web.snapshot("hostile");
    assert!(
        snapshot["message"]
            .as_str()
            .is_some_and(|m| m.contains(PAYLOAD)),
        "the plugin's message quotes the payload: {snapshot:#}"
    );
    assert_eq!(snapshot["stableVersion"], PAYLOAD);
    // An operator's reason is text of anyone's choosing too.
    let (status, v) = web.server.call(
        "POST",
        "/api/v2/rollouts/busy/pause",
        Some(OPERATOR),
        Some(&serde_json::json!({"reason": PAYLOAD}).to_string()),
    );
    assert_eq!(status, 200, "{v}");

    sign_in(&b, &web.ui, OPERATOR);
    b.goto(&format!("{}/", web.ui));
    b.find("tr[data-rollout=\"hostile\"]");
    assert_inert(&b, "the list");
    b.goto(&format!("{}/rollouts/hostile", web.ui));
    b.find("[data-phase=\"0\"]");
    assert_inert(&b, "hostile's detail");
    b.goto(&format!("{}/rollouts/busy", web.ui));
    b.find("[data-audit-seq]");
    assert_inert(&b, "busy's timeline");
}
