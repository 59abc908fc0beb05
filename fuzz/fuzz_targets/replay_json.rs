//! The replay backend's JSON recordings (what `rollgate metrics record` writes), parsed as
//! `Replay::open` does, then every recorded query asked before and after alignment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::metrics::replay::{Recording, Replay};

fuzz_target!(|data: &[u8]| {
    let Some(text) = rollgate_fuzz::text(data) else {
        return;
    };
    let Ok(recording) = serde_json::from_str::<Recording>(text) else {
        return;
    };
    // What `metrics record` writes back must read again as the same recording.
    let written = serde_json::to_string(&recording).expect("a recording serialises");
    let back: Recording = serde_json::from_str(&written)
        .unwrap_or_else(|e| panic!("a written recording does not read back: {e}\n{written}"));
    assert_eq!(
        serde_json::to_string(&back).expect("serialises"),
        written,
        "a recording changes when read back"
    );
    let replay = match Replay::from_recording(&recording) {
        Ok(replay) => replay,
        Err(e) => {
            assert!(!e.trim().is_empty(), "an empty error");
            return;
        }
    };
    let mut queries: Vec<String> = recording
        .queries
        .iter()
        .map(|q| q.query.clone())
        .take(8)
        .collect();
    queries.push("not recorded".into());
    rollgate_fuzz::exercise_replay(replay, &queries);
});
