//! The replay backend's OpenMetrics recordings (`name{label="v"} value timestamp` lines),
//! then queried before and after alignment onto the rollout's clock, as `run` and `serve`
//! do. Comment lines `# query: SELECTOR` in the input add queries (the parser ignores
//! comments), so the fuzzer also explores selectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::metrics::replay::{RecordingError, Replay};

fuzz_target!(|data: &[u8]| {
    let Some(text) = rollgate_fuzz::text(data) else {
        return;
    };
    let replay = match Replay::from_openmetrics(text) {
        Ok(replay) => replay,
        Err(e) => {
            check_error(&e, text);
            return;
        }
    };
    let mut queries: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# query: "))
        .map(str::to_string)
        .collect();
    // Every metric name the text mentions, as a plain selector.
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if !name.is_empty() && !queries.contains(&name) && queries.len() < 8 {
            queries.push(name);
        }
    }
    queries.truncate(8);
    rollgate_fuzz::exercise_replay(replay, &queries);
});

/// A refusal says what; when it is about a line, that line exists and the column is on it.
fn check_error(e: &RecordingError, text: &str) {
    assert!(!e.message.trim().is_empty(), "an empty error");
    if e.line > 0 {
        let line = text
            .lines()
            .nth(e.line - 1)
            .unwrap_or_else(|| panic!("line {} of {} lines: {e}", e.line, text.lines().count()));
        assert!(
            e.col >= 1 && e.col <= line.chars().count().max(1),
            "column {} of a {}-character line: {e}",
            e.col,
            line.chars().count()
        );
    }
}
