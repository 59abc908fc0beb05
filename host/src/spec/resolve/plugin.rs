//! `Plugin` documents: where the component comes from, its pin, its limits and the hosts
//! it may reach; and references to plugins by name.

use super::source::Src;
use super::{Loader, list};
use crate::spec::docs::{self, P};
use crate::spec::model::{OciSpec, PluginLimits, PluginSourceSpec, PluginSpec};

impl Loader {
    pub(super) fn plugin_exists(&mut self, src: &Src, p: &P<String>, path: &str) {
        if !self.plugin_names.contains(&p.value) {
            let message = format!(
                "plugin {:?} not found; known plugins: {}",
                p.value,
                list(&self.plugin_names)
            );
            self.errors.push(src.err(p, path, message));
        }
    }

    pub(super) fn plugin(
        &mut self,
        src: &Src,
        name: &P<String>,
        doc: &docs::PluginDoc,
    ) -> Option<PluginSpec> {
        let before = self.errors.len();
        let builtins: Vec<&str> = crate::plugin::BUILTIN.iter().map(|(n, _)| *n).collect();
        if builtins.contains(&name.value.as_str()) {
            self.errors.push(src.err(
                name,
                "metadata.name",
                format!(
                    "{:?} is the name of a built-in plugin; choose another name",
                    name.value
                ),
            ));
        }
        let source = self.plugin_source(src, doc, &builtins)?;
        let sha256 = self.plugin_pin(src, doc, &source);
        let limits = match &doc.limits {
            Some(l) => self.plugin_limits(src, l),
            None => PluginLimits::default(),
        };
        let allowed_hosts = self.allowed_hosts(src, doc);
        let oci = self.plugin_oci(src, doc, &source);
        (self.errors.len() == before).then(|| PluginSpec {
            name: name.value.clone(),
            source,
            sha256,
            limits,
            allowed_hosts,
            file: src.file.clone(),
            oci,
        })
    }

    /// `spec.source`: a built-in (by name or `builtin:NAME`) or a component file relative
    /// to the document's folder; `None` after reporting.
    fn plugin_source(
        &mut self,
        src: &Src,
        doc: &docs::PluginDoc,
        builtins: &[&str],
    ) -> Option<PluginSourceSpec> {
        let text = doc.source.value.trim();
        if let Some(b) = text.strip_prefix("builtin:") {
            if builtins.contains(&b) {
                Some(PluginSourceSpec::Builtin(b.to_string()))
            } else {
                self.errors.push(src.err(
                    &doc.source,
                    "spec.source",
                    format!(
                        "unknown built-in plugin {b:?}; built-ins: {}",
                        list(builtins)
                    ),
                ));
                None
            }
        } else if builtins.contains(&text) {
            Some(PluginSourceSpec::Builtin(text.to_string()))
        } else if text.starts_with("oci://") {
            match crate::plugin::oci::OciRef::parse(text) {
                Ok(r) if r.digest.is_none() => {
                    self.errors.push(src.err(
                        &doc.source,
                        "spec.source",
                        format!(
                            "{text} is pinned by tag only, and a tag can move: pin the digest (`rollgate plugin pull {text}` prints it) and write oci://{}/{}@sha256:…",
                            r.registry, r.repository
                        ),
                    ));
                    None
                }
                Ok(r) => Some(PluginSourceSpec::Oci(r.to_string())),
                Err(e) => {
                    self.errors.push(src.err(&doc.source, "spec.source", e));
                    None
                }
            }
        } else if text.is_empty() {
            self.errors.push(src.err(
                &doc.source,
                "spec.source",
                "empty source: name a built-in plugin or a component file",
            ));
            None
        } else {
            Some(PluginSourceSpec::File(src.base.join(text)))
        }
    }

    /// `spec.sha256`: required for a file (64 hex digits, lowercased), refused for a
    /// built-in.
    fn plugin_pin(
        &mut self,
        src: &Src,
        doc: &docs::PluginDoc,
        source: &PluginSourceSpec,
    ) -> Option<String> {
        match (source, &doc.sha256) {
            (PluginSourceSpec::Builtin(_), Some(s)) => {
                self.errors.push(src.err(
                    s,
                    "spec.sha256",
                    "a built-in plugin is pinned by rollgate itself; remove sha256",
                ));
                None
            }
            (PluginSourceSpec::Builtin(_), None) | (PluginSourceSpec::Oci(_), None) => None,
            (PluginSourceSpec::Oci(_), Some(s)) => {
                self.errors.push(src.err(
                    s,
                    "spec.sha256",
                    "an oci:// source is pinned by the digest in it; remove sha256",
                ));
                None
            }
            (PluginSourceSpec::File(_), None) => {
                let text = doc.source.value.trim();
                self.errors.push(src.err(
                    &doc.source,
                    "spec.sha256",
                    format!(
                        "a plugin file must be pinned: add `sha256:` with the component's digest (`sha256sum {text}`)"
                    ),
                ));
                None
            }
            (PluginSourceSpec::File(_), Some(s)) => {
                let hex = s.value.trim();
                let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    Some(hex.to_ascii_lowercase())
                } else {
                    self.errors.push(src.err(
                        s,
                        "spec.sha256",
                        "invalid sha256: expected 64 hex digits (optionally prefixed with `sha256:`)",
                    ));
                    None
                }
            }
        }
    }

    /// `spec.auth`, `spec.tls`, `spec.insecure`, `spec.pullTimeout`, `spec.verify`: for an
    /// `oci://` source only.
    fn plugin_oci(
        &mut self,
        src: &Src,
        doc: &docs::PluginDoc,
        source: &PluginSourceSpec,
    ) -> Option<OciSpec> {
        if !matches!(source, PluginSourceSpec::Oci(_)) {
            let fields = [
                doc.auth
                    .as_ref()
                    .map(|a| ("spec.auth", a.username.line, a.username.col)),
                doc.tls
                    .as_ref()
                    .map(|t| ("spec.tls", t.ca_file.line, t.ca_file.col)),
                doc.insecure
                    .as_ref()
                    .map(|i| ("spec.insecure", i.line, i.col)),
                doc.pull_timeout
                    .as_ref()
                    .map(|t| ("spec.pullTimeout", t.line, t.col)),
                doc.verify.as_ref().map(|v| {
                    (
                        "spec.verify",
                        v.cosign.public_key.line,
                        v.cosign.public_key.col,
                    )
                }),
            ];
            for (field, line, col) in fields.into_iter().flatten() {
                let at = P {
                    value: (),
                    line,
                    col,
                };
                self.errors.push(src.err(
                    &at,
                    field,
                    "only an oci:// source is pulled from a registry; remove it",
                ));
            }
            return None;
        }
        let mut oci = OciSpec::default();
        if let Some(auth) = &doc.auth {
            for (p, field, slot) in [
                (&auth.username, "spec.auth.username", &mut oci.username),
                (&auth.password, "spec.auth.password", &mut oci.password),
            ] {
                match crate::metrics::secret::SecretRef::parse(p.value.trim()) {
                    Ok(crate::metrics::secret::SecretRef::File(path)) => {
                        *slot = Some(format!("file:{}", src.base.join(path).display()));
                    }
                    Ok(_) => *slot = Some(p.value.trim().to_string()),
                    Err(e) => self.errors.push(src.err(p, field, e)),
                }
            }
        }
        if let Some(tls) = &doc.tls {
            oci.ca_file = Some(src.base.join(tls.ca_file.value.trim()));
        }
        if let Some(insecure) = &doc.insecure {
            oci.insecure = insecure.value;
            if insecure.value && doc.tls.is_some() {
                self.errors.push(src.err(
                    insecure,
                    "spec.insecure",
                    "insecure (plain HTTP) and tls.caFile contradict each other; remove one",
                ));
            }
        }
        if let Some(t) = &doc.pull_timeout {
            oci.timeout_ms = self
                .positive_duration(src, t, "spec.pullTimeout")
                .and_then(|n| {
                    self.capped(
                        src,
                        t,
                        "spec.pullTimeout",
                        n,
                        crate::plugin::limits::ceiling::TIMEOUT_MS,
                        "ms",
                    )
                });
        }
        if let Some(verify) = &doc.verify {
            let key = &verify.cosign.public_key;
            match key.value.trim().strip_prefix("file:") {
                Some(path) if !path.is_empty() => oci.cosign_key = Some(src.base.join(path)),
                _ => self.errors.push(src.err(
                    key,
                    "spec.verify.cosign.publicKey",
                    "write the public key's file as file:PATH (e.g. file:cosign.pub)",
                )),
            }
        }
        Some(oci)
    }

    /// `spec.limits`: each limit checked against its ceiling.
    fn plugin_limits(&mut self, src: &Src, l: &docs::LimitsDoc) -> PluginLimits {
        use crate::plugin::limits::ceiling;
        let mut limits = PluginLimits::default();
        if let Some(m) = &l.memory {
            limits.memory_bytes = self.size(src, m, "spec.limits.memory").and_then(|n| {
                self.capped(
                    src,
                    m,
                    "spec.limits.memory",
                    n,
                    ceiling::MEMORY_BYTES,
                    "bytes",
                )
            });
        }
        if let Some(t) = &l.timeout {
            limits.timeout_ms = self
                .positive_duration(src, t, "spec.limits.timeout")
                .and_then(|n| {
                    self.capped(src, t, "spec.limits.timeout", n, ceiling::TIMEOUT_MS, "ms")
                });
        }
        if let Some(t) = &l.query_timeout {
            limits.query_timeout_ms = self
                .positive_duration(src, t, "spec.limits.queryTimeout")
                .and_then(|n| {
                    self.capped(
                        src,
                        t,
                        "spec.limits.queryTimeout",
                        n,
                        ceiling::TIMEOUT_MS,
                        "ms",
                    )
                });
        }
        if let Some(f) = &l.fuel {
            if f.value == 0 {
                self.errors
                    .push(src.err(f, "spec.limits.fuel", "must be at least 1"));
            }
            limits.fuel = Some(f.value);
        }
        if let Some(b) = &l.max_result_bytes {
            limits.max_result_bytes = self
                .capped(
                    src,
                    b,
                    "spec.limits.maxResultBytes",
                    b.value,
                    ceiling::RESULT_BYTES,
                    "bytes",
                )
                .and_then(|n| usize::try_from(n).ok());
        }
        if let Some(b) = &l.max_component_bytes {
            limits.max_component_bytes = self
                .size(src, b, "spec.limits.maxComponentBytes")
                .and_then(|n| {
                    self.capped(
                        src,
                        b,
                        "spec.limits.maxComponentBytes",
                        n,
                        ceiling::COMPONENT_BYTES,
                        "bytes",
                    )
                })
                .and_then(|n| usize::try_from(n).ok());
        }
        limits
    }

    /// `spec.allowedHosts`: host names only (no scheme, no path).
    fn allowed_hosts(&mut self, src: &Src, doc: &docs::PluginDoc) -> Vec<String> {
        let mut allowed_hosts = Vec::new();
        for (i, h) in doc.allowed_hosts.iter().enumerate() {
            let host = h.value.trim();
            if host.is_empty() || host.contains("://") || host.contains('/') {
                self.errors.push(src.err(
                    h,
                    format!("spec.allowedHosts[{i}]"),
                    format!(
                        "invalid host {:?}: write a host name like api.example.com",
                        h.value
                    ),
                ));
            } else {
                allowed_hosts.push(host.to_string());
            }
        }
        allowed_hosts
    }
}
