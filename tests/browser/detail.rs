//! The detail page in a real browser: its phases, one chart point per measurement coloured by
//! its verdict (as many of each verdict as the API counts), and a new measurement appearing
//! live, without a reload.

use super::driver::Browser;
use super::web::{Part, Web, script_errors, sign_in};
use crate::common::serve::READER;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const VERDICTS: [(&str, &str); 5] = [
    ("pass", "pass"),
    ("fail", "fail"),
    ("inconclusive", "inconclusive"),
    ("noData", "no-data"),
    ("error", "error"),
];

/// Circles per verdict in the chart of metric `key` (`p0/NAME`…).
fn circles(b: &Browser, key: &str) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    let css = format!("svg[data-metric=\"{key}\"] circle[data-verdict]");
    for verdict in b.attrs(&css, "data-verdict").into_iter().flatten() {
        *by.entry(verdict).or_insert(0) += 1;
    }
    by
}

/// The API's measurement counts of metric `name` in `snapshot`, keyed like the circles.
fn counts(snapshot: &Value, name: &str) -> BTreeMap<String, u64> {
    let metric = snapshot["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no metric {name} in {snapshot:#}"));
    VERDICTS
        .iter()
        .filter_map(|(api, page)| {
            let n = metric["counts"][api].as_u64().unwrap_or(0);
            (n > 0).then(|| (page.to_string(), n))
        })
        .collect()
}

/// The API's series of metric `metric` of phase `phase` (`/api/v2/rollouts/NAME/series`):
/// points per verdict.
fn series(web: &Web, name: &str, phase: i64, metric: &str) -> BTreeMap<String, u64> {
    let (status, v) = web.server.read(&format!("/api/v2/rollouts/{name}/series"));
    assert_eq!(status, 200, "{v}");
    let found = v["metrics"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["phaseIndex"] == phase && m["metric"] == metric)
        })
        .unwrap_or_else(|| panic!("no series {phase}/{metric} in {v:#}"));
    let mut by = BTreeMap::new();
    for p in found["points"].as_array().into_iter().flatten() {
        let verdict = p["verdict"].as_str().unwrap_or_default().to_string();
        *by.entry(verdict).or_insert(0) += 1;
    }
    by
}

/// Open `/rollouts/NAME` and wait until its title and every phase of the API are there.
fn open(b: &Browser, web: &Web, name: &str) -> Value {
    b.goto(&format!("{}/rollouts/{name}", web.ui));
    let snapshot = web.snapshot(name);
    let phases = snapshot["phases"].as_array().map_or(0, Vec::len);
    assert!(phases > 0, "{snapshot:#}");
    b.wait("the title", Duration::from_secs(30), |b| {
        b.texts("h1[data-title]")
            .iter()
            .any(|t| t.contains(name))
            .then_some(())
    });
    let shown = b.wait(&format!("{phases} phases"), Duration::from_secs(30), |b| {
        let indexes = b.attrs("[data-phase]", "data-phase");
        (indexes.len() == phases).then(|| (indexes, b.texts("[data-phase]")))
    });
    for (i, (index, text)) in shown.0.iter().zip(&shown.1).enumerate() {
        let want = snapshot["phases"][i]["name"].as_str().unwrap_or_default();
        assert_eq!(index.as_deref(), Some(i.to_string().as_str()));
        assert!(text.contains(want), "phase {i} is {want}: {text:?}");
    }
    snapshot
}

#[test]
fn a_detail_page_charts_every_measurement_by_verdict_and_a_new_one_appears_live() {
    let Some(b) = Browser::start("a_detail_page_charts_every_measurement") else {
        return;
    };
    let web = Web::start(&[
        Part::Steady("steady"),
        Part::Echo("erratic", "no-such-mode"),
        Part::Live("live"),
    ]);
    web.wait_states(&[("steady", "succeeded"), ("erratic", "paused(policy)")]);
    sign_in(&b, &web.ui, READER);

    // Finished measuring: the chart has exactly the API's points, verdict by verdict.
    for (name, key, metric, want) in [
        ("steady", "p0/error-ratio", "error-ratio", ("pass", 3)),
        ("erratic", "p0/echo", "echo", ("error", 3)),
    ] {
        let snapshot = open(&b, &web, name);
        let api = counts(&snapshot, metric);
        assert_eq!(
            api,
            BTreeMap::from([(want.0.to_string(), want.1)]),
            "{name}"
        );
        let shown = b.wait(&format!("{name}'s chart"), Duration::from_secs(30), |b| {
            let c = circles(b, key);
            (c.values().sum::<u64>() == want.1).then_some(c)
        });
        assert_eq!(shown, api, "{name}: circles per verdict");
        assert_eq!(series(&web, name, 0, metric), api, "{name}: the series");
        assert_eq!(script_errors(&b), Vec::<String>::new(), "{name}");
    }

    // Measuring every second: new points appear without a reload.
    web.server.wait_state("live", 1, "progressing");
    open(&b, &web, "live");
    let key = "p0/error-ratio";
    let first = b.wait("live's first points", Duration::from_secs(30), |b| {
        let n: u64 = circles(b, key).values().sum();
        (n > 0).then_some(n)
    });
    b.script("window.__rgNotReloaded = true;", vec![]);
    let later = b.wait("a new point, live", Duration::from_secs(30), |b| {
        let n: u64 = circles(b, key).values().sum();
        (n > first).then_some(n)
    });
    assert_eq!(
        b.script("return window.__rgNotReloaded === true;", vec![]),
        true,
        "the page was reloaded to show the new point"
    );
    // Every point shown is a measurement the API has counted (the page may lag, never lead).
    let api: u64 = counts(&web.snapshot("live"), "error-ratio").values().sum();
    assert!(later <= api, "{later} points shown, {api} measured");
    assert!(circles(&b, key).keys().all(|v| v == "pass"));
    assert_eq!(script_errors(&b), Vec::<String>::new());
}
