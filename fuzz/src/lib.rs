//! What the fuzz targets share: turning bytes into text the way rollgate receives it, and
//! the invariants every spec load and every replay backend must keep, whatever the input.
//!
//! Only invariants that really hold are asserted: a failed assertion is a bug in rollgate
//! (or a wrong invariant here), never noise.

use rollgate::metrics::replay::{LOOKBACK_MS, Replay};
use rollgate::metrics::{Backend, Window};
use rollgate::spec::{Bundle, RolloutSpec, SpecError};
use std::path::Path;

/// A "now" on the rollout's clock (2026-01-01T00:00:00Z), as `serve` aligns recordings.
pub const NOW_MS: i64 = 1_767_225_600_000;

/// The input as text, as rollgate reads a file (`read_to_string`): `None` when it is not
/// UTF-8 (rollgate refuses such a file before parsing it).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Load `text` as the spec file `file` and check what every load must keep:
/// - a refusal has at least one problem; each names `file`, says what is wrong, and points
///   at a line and column inside the text (1-based; the loader only reports 0 for a file it
///   could not read, and this one was read);
/// - a loaded rollout survives the store: `run` and `serve` save it as JSON and a restart
///   reads it back, so it must serialise, deserialise and serialise again to the same JSON.
///
/// And the same text loaded rollout by rollout (`rollgate serve`, `run`, `lint`) keeps:
/// - every problem of the whole load, given to a rollout or to no rollout, none lost, each
///   well placed; nothing when the whole load is clean;
/// - a rollout either loads or is invalid, never both; a clean load loads the same
///   rollouts.
pub fn check_spec(text: &str, file: &Path) -> Option<Bundle> {
    let whole = rollgate::spec::load_str(text, file);
    let each = rollgate::spec::load_each_str(text, file);
    let lines = yaml_lines(text);
    for r in &each.bundle.rollouts {
        assert!(
            !each.invalid.contains_key(&r.name),
            "rollout {:?} both loads and is invalid",
            r.name
        );
    }
    let given = each.all_problems();
    for e in &given {
        check_spec_error(e, file, lines);
    }
    match whole {
        Ok(bundle) => {
            assert!(
                each.is_clean(),
                "a clean load has problems rollout by rollout: {given:?}"
            );
            let names = |b: &Bundle| {
                b.rollouts
                    .iter()
                    .map(|r| r.name.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&bundle), names(&each.bundle));
            for rollout in &bundle.rollouts {
                check_stored(rollout);
            }
            Some(bundle)
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused load reports no problem");
            for e in &errors {
                if e.not_shown().is_some() {
                    continue;
                }
                check_spec_error(e, file, lines);
                assert!(
                    given.contains(e),
                    "a problem is lost rollout by rollout: {e}"
                );
            }
            None
        }
    }
}

/// Lines as YAML counts them (and so the loader's positions): `\r\n`, `\r` and `\n` each
/// end one. `str::lines` does not count a lone `\r` (see `fuzz/artifacts-known/spec_load`).
pub fn yaml_lines(text: &str) -> usize {
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    breaks + 1
}

fn check_spec_error(e: &SpecError, file: &Path, lines: usize) {
    assert_eq!(e.file, file, "a problem names another file: {e}");
    assert!(
        !e.message.trim().is_empty(),
        "a problem says nothing: {e:?}"
    );
    assert!(
        e.line >= 1 && e.col >= 1,
        "a problem in text that was read has no position: {e}"
    );
    // A YAML error may point one line past the last (at the end of the input).
    assert!(
        e.line <= lines + 1,
        "a problem points past the text ({lines} lines): {e}"
    );
    let shown = e.to_string();
    let at = format!("{}:{}:{}: ", file.display(), e.line, e.col);
    assert!(
        shown.starts_with(&at),
        "a problem is not shown as {at:?}: {shown}"
    );
}

fn check_stored(rollout: &RolloutSpec) {
    let json = serde_json::to_string(rollout)
        .unwrap_or_else(|e| panic!("rollout {:?} cannot be stored: {e}", rollout.name));
    let back: RolloutSpec = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!(
            "rollout {:?} is stored as JSON that a restart cannot read: {e}\n{json}",
            rollout.name
        )
    });
    let again = serde_json::to_string(&back).expect("serialises once, serialises twice");
    assert_eq!(
        json, again,
        "rollout {:?} changes when the store reads it back",
        rollout.name
    );
}

/// Query a replay backend the way verifications do and check every answer, before and after
/// aligning it onto the rollout's clock (as `run`, `serve` and `replay` do).
pub fn exercise_replay(replay: Replay, queries: &[String]) {
    let (first, last) = replay.span_ms();
    assert!(first <= last, "the span is reversed: {first}..{last}");
    query_around(&replay, queries, first, last);
    let aligned = match replay.aligned_to(NOW_MS) {
        Ok(aligned) => aligned,
        Err(e) => {
            // Refused only when the shifted recording would leave the years 1 to 9999.
            let shifted_last = i128::from(NOW_MS) + i128::from(last) - i128::from(first);
            assert!(
                shifted_last > i128::from(rollgate::metrics::replay::MAX_TIME_MS),
                "alignment refused a recording that fits: {e}"
            );
            return;
        }
    };
    let (a_first, a_last) = aligned.span_ms();
    assert_eq!(
        a_first, NOW_MS,
        "the first sample is not at the alignment origin"
    );
    assert_eq!(
        i128::from(a_last) - i128::from(a_first),
        i128::from(last) - i128::from(first),
        "alignment changed the recording's length"
    );
    query_around(&aligned, queries, a_first, a_last);
}

/// Instant queries at the span's edges and just outside, and a range over the whole span.
fn query_around(replay: &Replay, queries: &[String], first: i64, last: i64) {
    let width = i128::from(last) - i128::from(first);
    // At most ~64 steps, so a query's cost does not depend on the recording's span.
    let step = u64::try_from(width / 64).unwrap_or(u64::MAX).max(1);
    let mut windows = vec![
        Window::Instant(first),
        Window::Instant(last),
        Window::Range {
            start_ms: first,
            end_ms: last,
            step_ms: step,
        },
    ];
    if let Some(before) = first.checked_sub(1) {
        windows.push(Window::Instant(before));
    }
    if let Some(after) = last.checked_add(LOOKBACK_MS + 1) {
        windows.push(Window::Instant(after));
    }
    for query in queries {
        for &window in &windows {
            let answer = futures::executor::block_on(replay.query("fuzz", query, window));
            let Ok(result) = answer else {
                continue;
            };
            for series in &result.series {
                assert!(
                    !series.points.is_empty(),
                    "a series without points: {series:?}"
                );
                check_points(&series.points, window);
            }
            if let Window::Instant(t) = window
                && t < first
            {
                assert!(
                    result.series.is_empty(),
                    "{query:?} answers before the recording's first sample"
                );
            }
        }
    }
}

fn check_points(points: &[(i64, f64)], window: Window) {
    match window {
        Window::Instant(t) => {
            assert_eq!(
                points.len(),
                1,
                "an instant query gives one point per series"
            );
            assert_eq!(points[0].0, t, "an instant query answers at another time");
        }
        Window::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let mut previous = None;
            for &(t, _) in points {
                assert!(
                    start_ms <= t && t <= end_ms,
                    "a point outside its range: {t}"
                );
                let offset = i128::from(t) - i128::from(start_ms);
                assert_eq!(
                    offset % i128::from(step_ms),
                    0,
                    "a point off the step grid: {t}"
                );
                assert!(previous < Some(t), "range points out of order at {t}");
                previous = Some(t);
            }
        }
    }
}
