//! Forms on another origin (the same host, another port: pages of a std TcpListener thread)
//! posting with the signed-in operator's cookie: an action is refused (403) and changes
//! nothing; a sign-in with another token (login CSRF) is refused (403) and the operator
//! stays signed in as themselves. Each form is posted twice: with the browser's default
//! referrer policy (Origin: the other port) and under `no-referrer` (Origin: null, which
//! the web view's own forms send too; only `Sec-Fetch-Site` tells them apart).

use super::driver::Browser;
use super::site::Site;
use super::web::{Part, Web, page_fetch, sign_in};
use crate::common::serve::{OPERATOR, READER};
use std::time::Duration;

/// A page that posts a form with `fields` to `action` as soon as it loads; `quiet` adds a
/// `no-referrer` policy.
fn form_page(action: &str, fields: &[(&str, &str)], quiet: bool) -> String {
    let meta = if quiet {
        "<meta name=referrer content=no-referrer>"
    } else {
        ""
    };
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=hidden name={k} value=\"{v}\">"))
        .collect();
    format!(
        "<!doctype html>{meta}<form method=post action=\"{action}\">{inputs}</form>\
         <script src=/submit.js></script>"
    )
}

/// Open the other site's `page`, wait for its form's answer from the web view at `target`;
/// returns the answer's HTTP status.
fn post_from(b: &Browser, site: &Site, page: &str, target: &str) -> u64 {
    b.goto(&format!("{}{page}", site.url));
    b.wait(&format!("{page}'s answer"), Duration::from_secs(30), |b| {
        b.url().starts_with(target).then_some(())
    });
    b.wait("the answer's status", Duration::from_secs(10), |b| {
        b.script(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return n && n.responseStatus ? n.responseStatus : null;",
            vec![],
        )
        .as_u64()
    })
}

#[test]
fn forms_on_another_origin_cannot_act_or_sign_in_with_the_operators_cookie() {
    let Some(b) = Browser::start("forms_on_another_origin_cannot_act") else {
        return;
    };
    let web = Web::start(&[Part::Busy("busy")]);
    web.wait_states(&[("busy", "progressing")]);
    sign_in(&b, &web.ui, OPERATOR);
    // Another origin on the same host: the same site, so a SameSite=Strict cookie does go
    // along; the Origin check and the CSRF token are what refuse these.
    let action = format!("{}/ui/api/rollouts/busy/pause", web.ui);
    let login = format!("{}/login", web.ui);
    let pause = [("reason", "cross-site")];
    let sign_in_as_bob = [("token", READER), ("next", "/")];
    let evil = Site::start(vec![
        ("/pause", "text/html", form_page(&action, &pause, false)),
        (
            "/pause-quiet",
            "text/html",
            form_page(&action, &pause, true),
        ),
        (
            "/login",
            "text/html",
            form_page(&login, &sign_in_as_bob, false),
        ),
        (
            "/login-quiet",
            "text/html",
            form_page(&login, &sign_in_as_bob, true),
        ),
        (
            "/submit.js",
            "text/javascript",
            "document.forms[0].submit();".to_string(),
        ),
    ]);
    for page in ["/pause", "/pause-quiet"] {
        assert_eq!(post_from(&b, &evil, page, &action), 403, "{page}");
    }
    for page in ["/login", "/login-quiet"] {
        assert_eq!(post_from(&b, &evil, page, &login), 403, "{page}");
    }
    let paths: Vec<String> = evil.hits().into_iter().map(|h| h.path).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/submit.js").count(),
        4,
        "{paths:?}"
    );
    assert_eq!(web.server.rollout("busy")["state"], "progressing");
    assert!(web.audit("busy", 1).iter().all(|a| a["action"] != "pause"));
    // Still the operator, not the token the other site tried to sign in with.
    b.goto(&format!("{}/", web.ui));
    b.find("tr[data-rollout=\"busy\"]");
    let (status, session) = page_fetch(&b, "/ui/api/session", "{credentials: 'same-origin'}");
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (&session["user"], &session["role"]),
        (&"alice".into(), &"operator".into())
    );
}
