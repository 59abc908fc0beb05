//! The list page in a real browser: every rollout has its row, the tiles show what the API
//! says, and a filter written in the URL filters.

use super::driver::Browser;
use super::web::{Part, Web, script_errors, sign_in};
use crate::common::serve::READER;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const TERMINAL: [&str; 4] = ["succeeded", "rolled-back", "aborted", "failed"];

/// The names of the rows on the page, once it has as many as `n`.
fn rows(b: &Browser, n: usize) -> BTreeSet<String> {
    b.wait(&format!("{n} rows"), Duration::from_secs(30), |b| {
        let found = b.attrs("tr[data-rollout]", "data-rollout");
        (found.len() == n).then_some(found)
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The `data-value` of tile `name`, as a number (`None` when the tile shows none).
fn tile(b: &Browser, name: &str) -> Option<f64> {
    let css = format!("[data-tile=\"{name}\"]");
    b.find(&css);
    b.attrs(&css, "data-value")
        .into_iter()
        .next()
        .flatten()
        .and_then(|v| v.parse().ok())
}

/// What the tiles must show, from the v2 list and snapshots: (progressing, attention,
/// rolled back, success ratio, median duration of the ended runs).
fn expected_tiles(web: &Web, list: &[Value]) -> (f64, f64, f64, Option<f64>, Option<f64>) {
    let state = |r: &Value| r["state"].as_str().unwrap_or_default().to_string();
    let count = |f: &dyn Fn(&Value) -> bool| list.iter().filter(|r| f(r)).count() as f64;
    let progressing = count(&|r| state(r) == "progressing");
    let attention = count(&|r| {
        state(r).starts_with("paused") || state(r) == "invalid-spec" || r["runner"]["stale"] == true
    });
    let rolled_back = count(&|r| state(r) == "rolled-back");
    let ended: Vec<&Value> = list
        .iter()
        .filter(|r| TERMINAL.contains(&state(r).as_str()))
        .collect();
    let succeeded = ended.iter().filter(|r| state(r) == "succeeded").count();
    let ratio = (!ended.is_empty()).then(|| succeeded as f64 / ended.len() as f64);
    let mut durations: Vec<i64> = ended
        .iter()
        .map(|r| {
            let s = web.snapshot(r["rollout"].as_str().unwrap_or_default());
            s["updatedMs"].as_i64().unwrap_or(0) - s["createdMs"].as_i64().unwrap_or(0)
        })
        .collect();
    durations.sort_unstable();
    let median = match durations.len() {
        0 => None,
        n if n % 2 == 1 => Some(durations[n / 2] as f64),
        n => Some((durations[n / 2 - 1] + durations[n / 2]) as f64 / 2.0),
    };
    (progressing, attention, rolled_back, ratio, median)
}

#[test]
fn the_list_shows_every_rollout_its_tiles_match_the_api_and_a_filter_in_the_url_filters() {
    let Some(b) = Browser::start("the_list_shows_every_rollout") else {
        return;
    };
    let web = Web::start(&[
        Part::Held("held-a"),
        Part::Busy("busy-a"),
        Part::Busy("busy-b"),
        Part::Quick("quick"),
        Part::Doomed("doomed"),
        Part::Echo("erratic", "no-such-mode"),
    ]);
    web.wait_states(&[
        ("held-a", "paused(step)"),
        ("busy-a", "progressing"),
        ("busy-b", "progressing"),
        ("quick", "succeeded"),
        ("doomed", "rolled-back"),
        ("erratic", "paused(policy)"),
    ]);
    sign_in(&b, &web.ui, READER);
    b.goto(&format!("{}/", web.ui));
    let list = web.rollouts();
    let names: BTreeSet<String> = list
        .iter()
        .map(|r| r["rollout"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 6, "{list:#?}");
    assert_eq!(rows(&b, names.len()), names);

    let (progressing, attention, rolled_back, ratio, median) = expected_tiles(&web, &list);
    assert_eq!(
        (progressing, attention, rolled_back),
        (2.0, 2.0, 1.0),
        "the fixture's own counts"
    );
    assert_eq!(tile(&b, "progressing"), Some(progressing));
    assert_eq!(tile(&b, "attention"), Some(attention));
    assert_eq!(tile(&b, "rolled-back"), Some(rolled_back));
    let shown = tile(&b, "success-ratio").expect("a ratio: two runs ended");
    assert!(
        (shown - ratio.expect("ended runs")).abs() < 0.001,
        "success ratio {shown} vs {ratio:?}"
    );
    let shown = tile(&b, "median-duration").expect("a median: two runs ended");
    let median = median.expect("ended runs");
    assert!(
        (shown - median).abs() <= 1000.0,
        "median duration {shown} ms vs the API's {median} ms"
    );
    assert_eq!(script_errors(&b), Vec::<String>::new());

    // A filter written in the URL filters the rows (and a fresh load keeps it).
    b.goto(&format!("{}/?state=paused", web.ui));
    assert_eq!(
        rows(&b, 2),
        BTreeSet::from(["held-a".to_string(), "erratic".to_string()])
    );
    b.goto(&format!("{}/?prefix=busy-", web.ui));
    assert_eq!(
        rows(&b, 2),
        BTreeSet::from(["busy-a".to_string(), "busy-b".to_string()])
    );
    b.goto(&format!("{}/?state=rolled-back", web.ui));
    assert_eq!(rows(&b, 1), BTreeSet::from(["doomed".to_string()]));
    assert_eq!(script_errors(&b), Vec::<String>::new());
}
