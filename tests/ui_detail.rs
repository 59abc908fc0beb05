//! The web view's detail document over a real run: the quickstart (examples/canary) run by
//! the real `rollgate run`, then read with `rollgate::ui::detail::document` from the store
//! file it wrote.

use crate::common;
use rollgate::store::Store;
use serde_json::Value;

#[test]
fn the_rolled_back_canary_says_why_with_its_numbers_and_its_points_match_its_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::quickstart(dir.path(), "s.db", &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let doc: Value = rt
        .block_on(async {
            let store = Store::open_existing(&dir.path().join("s.db")).await?;
            Ok::<_, rollgate::store::StoreError>(
                rollgate::ui::detail::document(&store, "payments", None).await,
            )
        })
        .expect("store")
        .expect("document");
    assert_eq!(doc["snapshot"]["state"], "rolled-back");
    let banner = &doc["banners"][0];
    assert_eq!(banner["kind"], "rolled-back", "{banner}");
    let text = banner["text"].as_str().expect("text");
    assert!(text.contains("failureLimit 0"), "{text}");
    let failures = banner["failures"].to_string();
    assert!(failures.contains("error-ratio"), "{failures}");
    // Every metric that has counts has exactly as many points (the run is short: nothing
    // was pruned), and the one that failed names the limit it crossed.
    let mut failed = 0;
    for m in doc["metrics"].as_array().expect("metrics") {
        let counts = &m["counts"];
        let total: u64 = ["pass", "fail", "inconclusive", "noData", "error"]
            .iter()
            .map(|k| counts[k].as_u64().expect("count"))
            .sum();
        assert_eq!(
            total,
            m["points"].as_array().expect("points").len() as u64,
            "{m}"
        );
        if m["status"] == "failed" {
            failed += 1;
            let tripped: Vec<&Value> = m["checklist"]
                .as_array()
                .expect("checklist")
                .iter()
                .filter(|c| c["tripped"] == true)
                .collect();
            assert_eq!(tripped.len(), 1, "{m}");
            assert!(
                tripped[0]["text"]
                    .as_str()
                    .expect("text")
                    .contains("> failureLimit 0")
            );
            assert!(
                m["points"]
                    .as_array()
                    .expect("points")
                    .iter()
                    .any(|p| p["verdict"] == "fail")
            );
        }
    }
    assert_eq!(failed, 1, "{}", doc["metrics"]);
    // A rolled-back run is retried, not paused.
    assert_eq!(doc["actions"]["retry"]["allowed"], true);
    assert_eq!(doc["actions"]["pause"]["allowed"], false);
    assert!(doc["timeline"].as_array().expect("timeline").len() > 3);
    let checkout = rt
        .block_on(async {
            let store = Store::open_existing(&dir.path().join("s.db")).await?;
            Ok::<_, rollgate::store::StoreError>(
                rollgate::ui::detail::document(&store, "checkout", None).await,
            )
        })
        .expect("store")
        .expect("document");
    assert_eq!(checkout["banners"][0]["kind"], "succeeded");
}
