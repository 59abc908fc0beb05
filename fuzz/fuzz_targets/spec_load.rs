//! The spec loader (`rollgate lint`, `run`, `serve`): one file's YAML text, any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(text) = rollgate_fuzz::text(data) else {
        return;
    };
    // An absolute path that does not exist: the loader reads nothing else (plugin files and
    // recordings are only opened later, when a rollout is set up).
    rollgate_fuzz::check_spec(text, Path::new("/rollgate-fuzz/specs/fuzz.yaml"));
});
