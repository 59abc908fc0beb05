//! `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`: where a component is published.

use std::fmt;

/// A parsed `oci://` reference. A plugin source must carry a digest; `rollgate plugin pull`
/// also takes a tag alone (and prints its digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// `host[:port]`.
    pub registry: String,
    /// `path/to/repo` (lowercase).
    pub repository: String,
    /// The tag, when written.
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`, when written.
    pub digest: Option<String>,
}

impl OciRef {
    /// Parse `oci://REGISTRY/REPO[:TAG][@sha256:HEX]`; the error says what is wrong and
    /// how it should look.
    pub fn parse(text: &str) -> Result<OciRef, String> {
        let shape = "expected oci://REGISTRY/REPOSITORY@sha256:DIGEST (e.g. oci://registry.example:5000/plugins/latency@sha256:…)";
        let rest = text
            .trim()
            .strip_prefix("oci://")
            .ok_or_else(|| format!("{text:?} is not an oci:// reference; {shape}"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?} names no repository; {shape}"))?;
        if registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(format!("{text:?}: invalid registry {registry:?}; {shape}"));
        }
        let (name, digest) = match path.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest)?)),
            None => (path, None),
        };
        // A tag's colon comes after the last slash (a registry port's is before the first).
        let last = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match name[last..].split_once(':') {
            Some((_, tag)) => {
                let cut = last + name[last..].find(':').unwrap_or(0);
                (&name[..cut], Some(tag.to_string()))
            }
            None => (name, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                    })
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            });
        if !repo_ok {
            return Err(format!(
                "{text:?}: invalid repository {repository:?}: lowercase letters, digits, `.`, `_`, `-` and `/`"
            ));
        }
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(format!(
                    "{text:?}: invalid tag {tag:?}: letters, digits, `.`, `_`, `-`, at most 128"
                ));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "{text:?} names neither a tag nor a digest; {shape}"
            ));
        }
        Ok(OciRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when known, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository at `digest` (no tag).
    pub fn at_digest(&self, digest: &str) -> OciRef {
        OciRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    /// `REGISTRY/REPO`, as cosign's payload names the image.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 hex digits, lowercased.
pub fn parse_digest(text: &str) -> Result<String, String> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| {
        format!("digest {text:?}: expected sha256: and 64 hex digits (only sha256 is supported)")
    })?;
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(format!(
            "digest {text:?}: expected sha256: and 64 hex digits"
        ))
    }
}

/// The sha256 digest of `bytes`, as `sha256:<hex>`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_registry_port_repository_tag_and_digest() {
        let r = OciRef::parse(&format!("oci://127.0.0.1:5000/plugins/latency:1.2@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "plugins/latency");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.reference(), D);
        assert_eq!(
            r.to_string(),
            format!("oci://127.0.0.1:5000/plugins/latency:1.2@{D}")
        );
        let t = OciRef::parse("oci://ghcr.io/acme/latency:v1").unwrap();
        assert_eq!(t.tag.as_deref(), Some("v1"));
        assert_eq!(t.digest, None);
        assert_eq!(t.reference(), "v1");
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        for bad in [
            "ghcr.io/acme/x@sha256:00",
            "oci://ghcr.io",
            "oci://ghcr.io/acme/x",
            "oci://ghcr.io/Acme/x:v1",
            "oci://ghcr.io/acme/x@md5:00",
            "oci://ghcr.io/acme/x@sha256:0123",
            "oci://ghcr.io/acme/x:-v1",
            "oci:///acme/x:v1",
        ] {
            assert!(OciRef::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
