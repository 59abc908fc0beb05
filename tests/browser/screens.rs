//! The store's web view of the quickstart (`examples/canary`, run by `rollgate run` on the
//! simulated clock, then shown by `rollgate ui --store`): read-only for everyone, and the
//! screenshots of the list and of the rolled-back canary's page (target/screenshots/; the
//! README shows copies from docs/screenshots/).

use super::driver::Browser;
use super::web::{StoreView, page_fetch, screenshots, script_errors};
use crate::common;
use std::time::Duration;

#[test]
fn the_store_view_of_the_quickstart_is_read_only_and_is_screenshotted() {
    let Some(b) = Browser::start("the_store_view_of_the_quickstart") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("rollgate.db");
    let run = common::quickstart(dir.path(), &store.to_string_lossy(), &[]);
    assert_eq!(
        run.code, 5,
        "payments rolls back: {}{}",
        run.stdout, run.stderr
    );
    let view = StoreView::start(&store);

    // Every period: the quickstart ran on the simulated clock, on 2026-01-01.
    b.goto(&format!("{}/?period=all", view.url));
    b.wait("both rollouts", Duration::from_secs(30), |b| {
        (b.count("tr[data-rollout]") == 2).then_some(())
    });
    b.find("tr[data-rollout=\"payments\"]");
    b.find("tr[data-rollout=\"checkout\"]");
    let (status, session) = page_fetch(&b, "/ui/api/session", "{credentials: 'same-origin'}");
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (&session["user"], &session["role"], &session["mode"]),
        (
            &serde_json::Value::Null,
            &"read-only".into(),
            &"store".into()
        )
    );
    for (tile, want) in [
        ("rolled-back", "1"),
        ("success-ratio", "0.5"),
        ("progressing", "0"),
    ] {
        let el = b.find(&format!("[data-tile=\"{tile}\"]"));
        let shown: Option<f64> = b.attr(&el, "data-value").and_then(|v| v.parse().ok());
        assert_eq!(shown, want.parse().ok(), "tile {tile}");
    }
    let shots = screenshots();
    let (width, _) = b.screenshot(&shots.join("list.png"));
    assert_eq!(width, 1400);

    b.goto(&format!("{}/rollouts/payments", view.url));
    b.find("[data-banner=\"rolled-back\"]");
    b.wait("payments' chart", Duration::from_secs(30), |b| {
        (b.count("svg[data-metric] circle[data-verdict=\"fail\"]") > 0).then_some(())
    });
    assert_eq!(
        b.count("button[data-action]"),
        0,
        "the store view never acts"
    );
    let (status, body) = page_fetch(
        &b,
        "/ui/api/rollouts/payments/retry",
        "{method: 'POST', credentials: 'same-origin', headers: {'Content-Type': \
         'application/json'}, body: JSON.stringify({reason: 'x'})}",
    );
    assert_eq!(status, 403, "{body}");
    // The whole page (up to 2,400 px): the failed chart of canary-50 is far down.
    let height = b
        .script("return document.documentElement.scrollHeight;", vec![])
        .as_u64()
        .unwrap_or(1000)
        .clamp(1000, 2400);
    b.cdp(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    let (_, shot_height) = b.screenshot(&shots.join("rollout.png"));
    assert_eq!(u64::from(shot_height), height);
    b.cdp(
        "Emulation.clearDeviceMetricsOverride",
        serde_json::json!({}),
    );
    assert_eq!(script_errors(&b), Vec::<String>::new(), "{}", view.log());
}
