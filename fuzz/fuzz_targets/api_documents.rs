//! `POST /api/v1/documents`: the body an operator token sends. What the server does with it
//! before any file is written (the file name from the first document), then the body loaded
//! as the file it would become, `<config>/api/<name>`, and its backends built as `serve`'s
//! reload builds them (a replay recording aligned to now). The configuration folder does not
//! exist: nothing is written, and a relative recording path finds no file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::server::{Refused, api_file_name};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // axum's `String` extractor refuses a body that is not UTF-8 (400) before the handler.
    let Some(text) = rollgate_fuzz::text(data) else {
        return;
    };
    let name = match api_file_name(text) {
        Ok(name) => name,
        Err(Refused(problems)) => {
            assert!(!problems.is_empty(), "a refusal without a problem");
            assert!(
                problems.iter().all(|p| !p.trim().is_empty()),
                "an empty problem"
            );
            return;
        }
    };
    // The file stays inside `<config>/api/`, whatever the document's kind and name.
    let stem = name
        .strip_suffix(".yaml")
        .unwrap_or_else(|| panic!("{name:?} is not a .yaml file"));
    assert!(
        stem.contains('-')
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "{name:?} is not a safe file name"
    );
    let file = Path::new("/rollgate-fuzz/config/api").join(&name);
    let Some(bundle) = rollgate_fuzz::check_spec(text, &file) else {
        return;
    };
    if let Err(problems) = rollgate::engine::setup::backends(&bundle, Some(rollgate_fuzz::NOW_MS)) {
        assert!(!problems.is_empty(), "a refused setup without a problem");
        for p in &problems {
            assert!(
                !p.message.trim().is_empty(),
                "a problem says nothing: {p:?}"
            );
        }
    }
});
