//! `serve --tokens FILE`: lines `TOKEN ROLE NAME`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::api::Tokens;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(text) = rollgate_fuzz::text(data) else {
        return;
    };
    let file = Path::new("/rollgate-fuzz/tokens");
    let Err(e) = Tokens::parse(text, file) else {
        // Accepted: at least one line is a token line.
        assert!(
            text.lines()
                .map(str::trim)
                .any(|l| !l.starts_with('#') && l.split_whitespace().count() == 3),
            "a tokens file without a `TOKEN ROLE NAME` line was accepted"
        );
        return;
    };
    // Every refusal names the file, and the line when it is about one.
    let rest = e
        .strip_prefix("/rollgate-fuzz/tokens:")
        .unwrap_or_else(|| panic!("the error does not start with the file: {e}"));
    let Some((digits, message)) = rest.split_once(':') else {
        return;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    let n: usize = digits.parse().expect("digits");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        n >= 1 && n <= lines.len(),
        "line {n} of {}: {e}",
        lines.len()
    );
    // The refused line's token (its first field) is a secret: the message never quotes it,
    // unless the same text is in the line's name or role (which it may quote). Only tokens of
    // a valid length (16+) are checked, so the message's own words cannot match by chance.
    let fields: Vec<&str> = lines[n - 1].split_whitespace().collect();
    if let Some((token, others)) = fields.split_first()
        && token.len() >= 16
        && !others.iter().any(|f| format!("{f:?}").contains(token))
    {
        assert!(
            !message.contains(token),
            "the error quotes the token {token:?}: {e}"
        );
    }
});
