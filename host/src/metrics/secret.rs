//! Credentials by reference: `env:NAME` or `file:PATH`, never inline.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, so it cannot leak through a
//! log line or an error by accident; [`redact`] scrubs known secrets out of text that came
//! from elsewhere (a backend's error body, for instance).
//!
//! A server that echoes a request rarely echoes it byte for byte, so a secret knows every
//! form it can take on the way back ([`Secret::forms`]): the value itself, JSON-escaped
//! (`\"`, `\\`, `\/`, `\u00e9`), percent-encoded (upper and lower hex, `+` for a space) and
//! HTML-escaped. A header built from a secret — `Basic base64(user:password)` — is a secret of
//! its own ([`Secret::derived`]), so its base64 is scrubbed too, with and without padding.
//!
//! Text from outside is scrubbed *before* it is cut: [`excerpt`] and [`excerpt_tail`] are
//! the one way an outside body becomes part of a message — redacted first, then cut at a
//! character boundary (never through a `[redacted]`), and, when what they were given had
//! already lost its start, with a leading piece of a secret scrubbed too.

use std::fmt;
use std::path::PathBuf;

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the rollgate process.
    Env(String),
    /// A file (its content, trailing newline trimmed).
    File(PathBuf),
}

impl SecretRef {
    /// Parse `env:NAME` or `file:PATH`; anything else is refused, so a credential can never
    /// be written inline in a spec.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        if let Some(name) = text.strip_prefix("env:") {
            if name.is_empty() {
                return Err("`env:` needs a variable name, e.g. env:PROM_TOKEN".into());
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, e.g. file:/run/secrets/token".into());
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        Err("credentials are given by reference only: write env:NAME or file:PATH, never the value itself".into())
    }

    /// Read the credential now.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set (or not UTF-8)"))?,
            SecretRef::File(path) => crate::files::read_text(path, &crate::files::SMALL_FILE)
                .map_err(|e| e.describe(path))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(Secret::derived(value))
    }

    fn describe(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("environment variable {n}"),
            SecretRef::File(p) => format!("file {}", p.display()),
        }
    }
}

/// A value that is either written literally or, as `env:NAME` / `file:PATH`, a secret:
/// `(value, is_secret)`. A secret is also pushed onto `secrets` so errors can be scrubbed
/// of it. A relative `file:` path resolves against `base` when given.
pub fn literal_or_secret(
    value: &str,
    base: Option<&std::path::Path>,
    secrets: &mut Vec<Secret>,
) -> Result<(String, bool), String> {
    if !(value.starts_with("env:") || value.starts_with("file:")) {
        return Ok((value.to_string(), false));
    }
    let reference = match (SecretRef::parse(value)?, base) {
        (SecretRef::File(p), Some(base)) if p.is_relative() => SecretRef::File(base.join(p)),
        (other, _) => other,
    };
    let secret = reference.resolve()?;
    let exposed = secret.expose().to_string();
    secrets.push(secret);
    Ok((exposed, true))
}

/// A credential's value, with every form it can take on the wire. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    /// The forms [`redact`] scrubs, longest first.
    forms: Vec<String>,
}

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shorter secrets (and forms) are not scrubbed: replacing every `ab` would wreck messages
/// and hide nothing worth hiding.
pub const MIN_REDACTED_CHARS: usize = 4;

impl Secret {
    /// A secret that is not read from a reference but built from one: the value of an
    /// `Authorization: Basic …` header, for instance.
    pub fn derived(value: String) -> Secret {
        let forms = wire_forms(&value);
        Secret { value, forms }
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Every form of the value [`redact`] scrubs, longest first.
    pub fn forms(&self) -> &[String] {
        &self.forms
    }
}

/// The forms a server may echo `value` in: as is, JSON-escaped, percent-encoded,
/// HTML-escaped (deduplicated, longest first, none shorter than [`MIN_REDACTED_CHARS`]).
fn wire_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    // JSON: serde's escaping, PHP's `\/`, and Python's ensure_ascii `\u00e9` (both cases).
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or_default()
        .to_string();
    forms.push(json.replace('/', "\\/"));
    let ascii = |upper: bool| -> String {
        json.chars()
            .map(|c| {
                if c.is_ascii() {
                    return c.to_string();
                }
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units)
                    .iter()
                    .map(|u| {
                        if upper {
                            format!("\\u{u:04X}")
                        } else {
                            format!("\\u{u:04x}")
                        }
                    })
                    .collect()
            })
            .collect()
    };
    for escaped in [ascii(false), ascii(true)] {
        forms.push(escaped.replace('/', "\\/"));
        forms.push(escaped);
    }
    forms.push(json);
    // Percent-encoding (RFC 3986 unreserved characters kept), upper and lower hex, and the
    // form encoding's `+` for a space.
    let mut upper = String::new();
    let mut lower = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            upper.push(char::from(b));
            lower.push(char::from(b));
        } else {
            upper.push_str(&format!("%{b:02X}"));
            lower.push_str(&format!("%{b:02x}"));
        }
    }
    forms.push(upper.replace("%20", "+"));
    forms.push(upper);
    forms.push(lower);
    // HTML: an error page quoting the request.
    let mut html = String::new();
    let mut html_hex = String::new();
    for c in value.chars() {
        let (a, b) = match c {
            '&' => ("&amp;", "&amp;"),
            '<' => ("&lt;", "&lt;"),
            '>' => ("&gt;", "&gt;"),
            '"' => ("&quot;", "&#34;"),
            '\'' => ("&#39;", "&#x27;"),
            _ => {
                html.push(c);
                html_hex.push(c);
                continue;
            }
        };
        html.push_str(a);
        html_hex.push_str(b);
    }
    forms.push(html);
    forms.push(html_hex);
    forms.retain(|f| f.chars().count() >= MIN_REDACTED_CHARS);
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The standard base64 of `bytes` (RFC 4648, with padding), as `Authorization: Basic` sends it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3).saturating_mul(4));
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The secret an `Authorization: Basic` header carries: `base64(user:password)`. Its forms
/// include the base64 without padding, which a server may echo trimmed.
pub fn basic_credential(user: &str, password: &Secret) -> Secret {
    let encoded = base64(format!("{user}:{}", password.expose()).as_bytes());
    let mut secret = Secret::derived(encoded.clone());
    let unpadded = encoded.trim_end_matches('=');
    if unpadded.len() != encoded.len() {
        secret.forms.extend(wire_forms(unpadded));
        secret
            .forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secret.forms.dedup();
    }
    secret
}

/// Replace every form of every secret in `text` with `[redacted]`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut forms: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.forms.iter().map(String::as_str))
        .collect();
    // Longest first, so a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_string();
    for form in forms {
        if out.contains(form) {
            out = out.replace(form, REDACTED);
        }
    }
    out
}

/// Scrub a piece of a secret at the start of `text`, which lost what came before it: the
/// longest end of a form (at least [`MIN_REDACTED_CHARS`] characters) that `text` begins with.
fn redact_cut_start(text: &str, secrets: &[Secret]) -> String {
    let mut longest = 0;
    for form in secrets.iter().flat_map(|s| s.forms.iter()) {
        for (start, _) in form.char_indices().skip(1) {
            let end = &form[start..];
            if end.len() <= longest {
                break;
            }
            if end.chars().count() >= MIN_REDACTED_CHARS && text.starts_with(end) {
                longest = end.len();
                break;
            }
        }
    }
    if longest == 0 {
        text.to_string()
    } else {
        format!("{REDACTED}{}", &text[longest..])
    }
}

/// The `[redacted]` markers of `text`, as byte ranges.
fn markers(text: &str) -> Vec<std::ops::Range<usize>> {
    text.match_indices(REDACTED)
        .map(|(at, m)| at..at + m.len())
        .collect()
}

/// The start of a body from outside (a backend's or a service's answer) for a message:
/// as text (invalid UTF-8 replaced), trimmed, every secret redacted, *then* cut to
/// `max_chars` characters with `…` — so no cut can leave a piece of a secret behind, and a
/// cut never splits a character or a `[redacted]`.
pub fn excerpt(body: &[u8], max_chars: usize, secrets: &[Secret]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = redact(text.trim(), secrets);
    let Some((mut cut, _)) = text.char_indices().nth(max_chars) else {
        return text;
    };
    if let Some(m) = markers(&text)
        .into_iter()
        .find(|m| m.start < cut && cut < m.end)
    {
        cut = m.end;
    }
    if cut >= text.len() {
        return text;
    }
    format!("{}…", &text[..cut])
}

/// The end of a body from outside for a message: its last `max_bytes` bytes (from a
/// character boundary), every secret redacted *before* the cut, `…` in front when anything
/// was cut. `truncated` says the body had already lost its start (a capped capture): a
/// piece of a secret it may begin with is redacted too.
pub fn excerpt_tail(bytes: &[u8], max_bytes: usize, truncated: bool, secrets: &[Secret]) -> String {
    // A capture that lost its start may begin inside a character: start at the next one.
    let mut from = 0;
    while truncated && from < bytes.len().min(3) && (bytes[from] & 0b1100_0000) == 0b1000_0000 {
        from += 1;
    }
    let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default());
    let mut text = redact(&text, secrets);
    if truncated {
        text = redact_cut_start(&text, secrets);
    }
    let mut start = text.len().saturating_sub(max_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if let Some(m) = markers(&text)
        .into_iter()
        .find(|m| m.start < start && start < m.end)
    {
        start = m.start;
    }
    if truncated || start > 0 {
        format!("…{}", &text[start..])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_only() {
        assert_eq!(
            SecretRef::parse("env:TOKEN"),
            Ok(SecretRef::Env("TOKEN".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/a/b"),
            Ok(SecretRef::File("/a/b".into()))
        );
        for bad in ["hunter2", "env:", "file:", "ENV:X"] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_read_and_values_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let secret = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(
            redact("auth failed for s3cr3t-value at x", &[secret]),
            "auth failed for [redacted] at x"
        );
        let missing = SecretRef::File(dir.path().join("nope"))
            .resolve()
            .unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            SecretRef::File(path)
                .resolve()
                .unwrap_err()
                .contains("is empty")
        );
        let unset = SecretRef::Env("ROLLGATE_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(
            unset.contains("ROLLGATE_SURELY_UNSET_VAR is not set"),
            "{unset}"
        );
    }

    fn secret(value: &str) -> Secret {
        Secret::derived(value.to_string())
    }

    #[test]
    fn every_wire_form_is_redacted() {
        let s = secret("p/a+s s\"é&x");
        // (how a server echoes it, as it appears in the body)
        let echoes = [
            "p/a+s s\"é&x",               // verbatim
            "p/a+s s\\\"é&x",             // JSON
            "p\\/a+s s\\\"é&x",           // JSON, PHP's escaped slash
            "p/a+s s\\\"\\u00e9&x",       // JSON, ensure_ascii
            "p/a+s s\\\"\\u00E9&x",       // JSON, upper-case hex
            "p%2Fa%2Bs%20s%22%C3%A9%26x", // percent-encoded
            "p%2fa%2bs%20s%22%c3%a9%26x", // lower-case hex
            "p%2Fa%2Bs+s%22%C3%A9%26x",   // form-encoded
            "p/a+s s&quot;é&amp;x",       // HTML
            "p/a+s s&#34;é&amp;x",        // HTML, numeric
        ];
        for echo in echoes {
            let text = format!("denied: {echo} (try again)");
            assert_eq!(
                redact(&text, std::slice::from_ref(&s)),
                "denied: [redacted] (try again)",
                "{echo}"
            );
        }
        // Too short to scrub without wrecking every message.
        assert_eq!(redact("a ab abc", &[secret("abc")]), "a ab abc");
    }

    #[test]
    fn basic_credentials_are_secrets_with_and_without_padding() {
        assert_eq!(base64(b"user:pa55"), "dXNlcjpwYTU1");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        let password = secret("hunter2!");
        let basic = basic_credential("ops", &password);
        assert_eq!(basic.expose(), "b3BzOmh1bnRlcjIh");
        let padded = basic_credential("op", &password);
        assert_eq!(padded.expose(), "b3A6aHVudGVyMiE=");
        let secrets = [password, basic, padded];
        for echo in [
            "Basic b3BzOmh1bnRlcjIh",
            "Basic b3A6aHVudGVyMiE=",
            "Basic b3A6aHVudGVyMiE",
            "Basic b3A6aHVudGVyMiE%3D",
            "user ops:hunter2!",
        ] {
            let out = redact(echo, &secrets);
            assert!(
                !out.contains("b3") && !out.contains("hunter2") && out.contains(REDACTED),
                "{echo} -> {out}"
            );
        }
    }

    #[test]
    fn outside_bodies_are_redacted_before_they_are_cut() {
        let s = secret("SECRETVALUE123");
        let secrets = std::slice::from_ref(&s);
        // The secret straddles the cut at 10 characters.
        let body = b"  0123456SECRETVALUE123 tail  ";
        assert_eq!(excerpt(body, 10, secrets), "0123456[redacted]…");
        assert_eq!(excerpt(body, 7, secrets), "0123456…");
        assert_eq!(excerpt(body, 100, secrets), "0123456[redacted] tail");
        // Characters, not bytes: never half a character.
        assert_eq!(excerpt("ééé".as_bytes(), 2, &[]), "éé…");
        assert_eq!(excerpt(b"\xff\xfe", 10, &[]), "\u{fffd}\u{fffd}");
        // The tail: the cut through the secret keeps the marker whole.
        let tail = excerpt_tail(b"head SECRETVALUE123 end", 8, false, secrets);
        assert_eq!(tail, "…[redacted] end");
        // A capture that lost its start begins with the end of a secret.
        assert_eq!(
            excerpt_tail(b"VALUE123 and more", 100, true, secrets),
            "…[redacted] and more"
        );
        assert_eq!(
            excerpt_tail(b"123 and more", 100, true, secrets),
            "…123 and more",
            "three characters say nothing"
        );
        assert_eq!(
            excerpt_tail(&"\u{e9}x".as_bytes()[1..], 10, true, &[]),
            "…x"
        );
        // Every prefix of the secret at the cut stays hidden, wherever the cut falls.
        let body = format!("{}SECRETVALUE123{}", "a".repeat(290), "b".repeat(40));
        for max in 285..320 {
            let out = excerpt(body.as_bytes(), max, secrets);
            for len in 4..=14 {
                assert!(!out.contains(&"SECRETVALUE123"[..len]), "{max}: {out}");
            }
        }
    }
}
