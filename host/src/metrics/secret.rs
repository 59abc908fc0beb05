//! Credentials by reference: `env:NAME` or `file:PATH`, never inline.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, so it cannot leak through a
//! log line or an error by accident; [`redact`] scrubs known secret values out of text that
//! came from elsewhere (a backend's error message, for instance).

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
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(Secret(value))
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

/// A credential's value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replace every occurrence of a secret's value in `text` with `[redacted]`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.0.len() >= 4 {
            out = out.replace(&s.0, "[redacted]");
        }
    }
    out
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
}
