//! Server-side references in documents applied through the API.
//!
//! An operator token may add documents (`POST /api/v1/documents`), but it is not a login on
//! the server: a document it applies must not make the server read a file, an environment
//! variable or run a program that the configuration folder's own documents do not already
//! use — else a token could send `env:AWS_SECRET_ACCESS_KEY` as a bearer token to an address
//! of its choosing, or read the tokens file as a "recording". What counts as a reference:
//!
//! | document | field | reference |
//! |---|---|---|
//! | MetricBackend | `spec.prometheus.bearerToken`, `.basicAuth.username`, `.basicAuth.password`, `.headers.*`; `spec.datadog.apiKey`, `.applicationKey` | `env:NAME`, `file:PATH` (a relative path: against the server's working directory, as the backend reads it) |
//! | MetricBackend | `spec.prometheus.tls.caFile` | `file:PATH` (relative: the working directory) |
//! | MetricBackend | `spec.replay.file` | `file:PATH` (relative: the document's folder) |
//! | Plugin | `spec.source` (not a built-in, not `oci://`) | `file:PATH` (relative: the document's folder) |
//! | Plugin | `spec.auth.username`, `.password` | `env:NAME`, `file:PATH` (relative: the document's folder) |
//! | Plugin | `spec.tls.caFile`, `spec.verify.cosign.publicKey` | `file:PATH` (relative: the document's folder) |
//! | Rollout | `spec.target.exec.command`, `.readyCommand` | `exec:["program","arg",…]` (the argv as JSON) |
//! | Rollout | `spec.target.exec.workingDir` | `file:DIR` (relative: the document's folder) |
//! | Rollout | `spec.target.webhook.headers.*` | `env:NAME`, `file:PATH` (relative: the document's folder) |
//!
//! Paths are compared as text after being made absolute and lexically normalised (`.` and
//! `..` folded), never by looking at the file system: whether a reference is allowed must
//! not depend on whether the file or the variable exists, or the answer would tell. The
//! folder's own documents are the running configuration's documents outside
//! `<config>/api/` (where applied documents are written); their exec targets also use the
//! working directory they run in when they do not name one. The server operator allows more
//! with `rollgate serve --api-allow-ref REF`.

use crate::spec::docs::{Node, P};
use crate::spec::model::{Bundle, PluginSourceSpec, TargetSpec};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// One reference found in documents' text, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The reference as compared: `env:NAME`, `file:/abs/path`, `exec:[…]`.
    pub reference: String,
    /// The field, like `spec.prometheus.bearerToken`.
    pub field: String,
    /// 1-based line in the text.
    pub line: u64,
    /// 1-based column.
    pub col: u64,
}

/// `path` made absolute against `base` (or the working directory) and lexically
/// normalised, without touching the file system.
fn normalise(path: &Path, base: Option<&Path>) -> PathBuf {
    let joined = match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    };
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn file_ref(path: &Path, base: Option<&Path>) -> String {
    format!("file:{}", normalise(path, base).display())
}

fn exec_ref(argv: &[String]) -> String {
    format!("exec:{}", serde_json::to_string(argv).unwrap_or_default())
}

/// A credential field's value as a reference: `env:NAME` as written, `file:PATH` normalised
/// (relative against `base`, or the working directory); a literal is none.
fn secret_ref(value: &str, base: Option<&Path>) -> Option<String> {
    if value.starts_with("env:") {
        return Some(value.to_string());
    }
    value
        .strip_prefix("file:")
        .map(|path| file_ref(Path::new(path), base))
}

/// Canonical text of a `--api-allow-ref` value: `env:NAME`, `file:PATH` (relative to the
/// working directory) or `exec:["program","arg",…]`.
pub fn parse_allowed(text: &str) -> Result<String, String> {
    if let Some(name) = text.strip_prefix("env:") {
        if name.is_empty() {
            return Err("`env:` needs a variable name, e.g. env:PROM_TOKEN".into());
        }
        return Ok(text.to_string());
    }
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` needs a path, e.g. file:/run/secrets/token".into());
        }
        return Ok(file_ref(Path::new(path), None));
    }
    if let Some(argv) = text.strip_prefix("exec:") {
        let argv: Vec<String> = serde_json::from_str(argv).map_err(|_| {
            "`exec:` needs the command as a JSON array, e.g. exec:[\"sh\",\"deploy.sh\"]"
                .to_string()
        })?;
        if argv.is_empty() {
            return Err("`exec:` needs at least a program".into());
        }
        return Ok(exec_ref(&argv));
    }
    Err("a reference is env:NAME, file:PATH or exec:[\"program\",\"arg\",…]".into())
}

/// A scalar as the typed loader would read it into a string.
fn scalar(node: &P<Node>) -> Option<String> {
    match &node.value {
        Node::String(s) => Some(s.clone()),
        Node::Number(n) => Some(n.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        Node::Null | Node::Seq(_) | Node::Map(_) => None,
    }
}

/// Every value under `key` of a mapping — all of them when a key is repeated, and those
/// a `<<` merge brings in — so that nothing the loader might read is missed.
fn children<'a>(node: &'a P<Node>, key: &str) -> Vec<&'a P<Node>> {
    let mut out = Vec::new();
    if let Node::Map(entries) = &node.value {
        for (k, v) in entries {
            if k.value == key {
                out.push(v);
            } else if k.value == "<<" {
                let merged: Vec<&P<Node>> = match &v.value {
                    Node::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for m in merged {
                    out.extend(children(m, key));
                }
            }
        }
    }
    out
}

/// The values at `path` below `node`, with their field paths.
fn at<'a>(node: &'a P<Node>, prefix: &str, path: &[&str]) -> Vec<(String, &'a P<Node>)> {
    let Some((first, rest)) = path.split_first() else {
        return vec![(prefix.to_string(), node)];
    };
    let field = if prefix.is_empty() {
        (*first).to_string()
    } else {
        format!("{prefix}.{first}")
    };
    children(node, first)
        .into_iter()
        .flat_map(|child| at(child, &field, rest))
        .collect()
}

/// The entries of a mapping (merged ones included), with their field paths.
fn entries<'a>(node: &'a P<Node>, field: &str) -> Vec<(String, &'a P<Node>)> {
    let mut out = Vec::new();
    if let Node::Map(items) = &node.value {
        for (k, v) in items {
            if k.value == "<<" {
                let merged: Vec<&P<Node>> = match &v.value {
                    Node::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for m in merged {
                    out.extend(entries(m, field));
                }
            } else {
                out.push((format!("{field}.{}", k.value), v));
            }
        }
    }
    out
}

/// Every server-side reference in the documents of `text`, which is to be written to
/// `file` (relative paths in it resolve against its folder). Nothing is read or resolved.
pub fn in_text(text: &str, file: &Path) -> Result<Vec<Found>, String> {
    let roots: Vec<P<Node>> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("the request body is not YAML documents: {e}"))?;
    let folder = file.parent().unwrap_or(Path::new("/"));
    let builtins: Vec<&str> = crate::plugin::BUILTIN.iter().map(|(n, _)| *n).collect();
    let mut found = Vec::new();
    let mut push = |reference: String, field: String, node: &P<Node>| {
        found.push(Found {
            reference,
            field,
            line: node.line,
            col: node.col,
        })
    };
    for root in &roots {
        let kinds: Vec<String> = children(root, "kind")
            .into_iter()
            .filter_map(scalar)
            .collect();
        for kind in kinds {
            match kind.as_str() {
                "MetricBackend" => {
                    let mut secrets = Vec::new();
                    for path in [
                        &["spec", "prometheus", "bearerToken"][..],
                        &["spec", "prometheus", "basicAuth", "username"][..],
                        &["spec", "prometheus", "basicAuth", "password"][..],
                        &["spec", "datadog", "apiKey"][..],
                        &["spec", "datadog", "applicationKey"][..],
                    ] {
                        secrets.extend(at(root, "", path));
                    }
                    for (field, headers) in at(root, "", &["spec", "prometheus", "headers"]) {
                        secrets.extend(entries(headers, &field));
                    }
                    for (field, node) in secrets {
                        if let Some(r) = scalar(node).and_then(|v| secret_ref(&v, None)) {
                            push(r, field, node);
                        }
                    }
                    for (field, node) in at(root, "", &["spec", "prometheus", "tls", "caFile"]) {
                        if let Some(v) = scalar(node) {
                            push(file_ref(Path::new(&v), None), field, node);
                        }
                    }
                    for (field, node) in at(root, "", &["spec", "replay", "file"]) {
                        if let Some(v) = scalar(node) {
                            push(file_ref(Path::new(&v), Some(folder)), field, node);
                        }
                    }
                }
                "Plugin" => {
                    for (field, node) in at(root, "", &["spec", "source"]) {
                        let Some(v) = scalar(node) else { continue };
                        let text = v.trim();
                        if text.is_empty()
                            || text.starts_with("builtin:")
                            || text.starts_with("oci://")
                            || builtins.contains(&text)
                        {
                            continue;
                        }
                        push(file_ref(Path::new(text), Some(folder)), field, node);
                    }
                    // An oci:// source's credentials, CA and signing key.
                    for key in ["username", "password"] {
                        for (field, node) in at(root, "", &["spec", "auth", key]) {
                            if let Some(r) = scalar(node).and_then(|v| secret_ref(&v, Some(folder)))
                            {
                                push(r, field, node);
                            }
                        }
                    }
                    for (field, node) in at(root, "", &["spec", "tls", "caFile"]) {
                        if let Some(v) = scalar(node) {
                            push(file_ref(Path::new(&v), Some(folder)), field, node);
                        }
                    }
                    for (field, node) in at(root, "", &["spec", "verify", "cosign", "publicKey"]) {
                        if let Some(v) = scalar(node) {
                            let path = v.strip_prefix("file:").unwrap_or(&v).to_string();
                            push(file_ref(Path::new(&path), Some(folder)), field, node);
                        }
                    }
                }
                "Rollout" => {
                    for key in ["command", "readyCommand"] {
                        for (field, node) in at(root, "", &["spec", "target", "exec", key]) {
                            let argv: Vec<String> = match &node.value {
                                Node::Seq(items) => items.iter().filter_map(scalar).collect(),
                                _ => scalar(node).into_iter().collect(),
                            };
                            push(exec_ref(&argv), field, node);
                        }
                    }
                    for (field, node) in at(root, "", &["spec", "target", "exec", "workingDir"]) {
                        if let Some(v) = scalar(node) {
                            push(file_ref(Path::new(&v), Some(folder)), field, node);
                        }
                    }
                    for (field, headers) in at(root, "", &["spec", "target", "webhook", "headers"])
                    {
                        for (field, node) in entries(headers, &field) {
                            if let Some(r) = scalar(node).and_then(|v| secret_ref(&v, Some(folder)))
                            {
                                push(r, field, node);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

/// Every server-side reference the documents of `bundle` use, except those of files below
/// `skip` (the folder applied documents are written to).
pub fn in_bundle(bundle: &Bundle, skip: &Path) -> BTreeSet<String> {
    let skip = normalise(skip, None);
    let own = |file: &Path| !normalise(file, None).starts_with(&skip);
    let folder = |file: &Path| normalise(file, None).parent().map(Path::to_path_buf);
    let mut out = BTreeSet::new();
    for (doc, file) in &bundle.backends {
        if !own(file) {
            continue;
        }
        if let Some(p) = &doc.spec.prometheus {
            let mut values: Vec<&String> = p.bearer_token.iter().collect();
            if let Some(b) = &p.basic_auth {
                values.push(&b.username);
                values.push(&b.password);
            }
            values.extend(p.headers.values());
            out.extend(values.into_iter().filter_map(|v| secret_ref(v, None)));
            if let Some(ca) = p.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
                out.insert(file_ref(Path::new(ca), None));
            }
        }
        if let Some(r) = &doc.spec.replay {
            out.insert(file_ref(Path::new(&r.file), folder(file).as_deref()));
        }
        #[cfg(feature = "datadog")]
        if let Some(d) = &doc.spec.datadog {
            for v in [&d.api_key, &d.application_key] {
                out.extend(secret_ref(v, None));
            }
        }
    }
    for plugin in bundle.plugins.values() {
        if let PluginSourceSpec::File(path) = &plugin.source
            && own(&plugin.file)
        {
            out.insert(file_ref(path, folder(&plugin.file).as_deref()));
        }
        if let Some(oci) = &plugin.oci
            && own(&plugin.file)
        {
            // Resolved against the document's folder by the loader already.
            for value in [&oci.username, &oci.password].into_iter().flatten() {
                out.extend(secret_ref(value, None));
            }
            for path in [&oci.ca_file, &oci.cosign_key].into_iter().flatten() {
                out.insert(file_ref(path, None));
            }
        }
    }
    for rollout in &bundle.rollouts {
        if !own(&rollout.file) {
            continue;
        }
        let base = folder(&rollout.file);
        match &rollout.target {
            TargetSpec::Exec(e) => {
                out.insert(exec_ref(&e.command));
                if let Some(ready) = &e.ready_command {
                    out.insert(exec_ref(ready));
                }
                let dir = e.working_dir.clone().unwrap_or_default();
                out.insert(file_ref(&dir, base.as_deref()));
            }
            TargetSpec::Webhook(w) => {
                out.extend(
                    w.headers
                        .values()
                        .filter_map(|v| secret_ref(v, base.as_deref())),
                );
            }
            TargetSpec::None => {}
        }
    }
    out
}

/// The problems of references in `found` that are not `allowed`, at `shown` (the file as
/// messages name it): what is not allowed, and how the server's operator allows it.
pub fn refused(found: &[Found], allowed: &BTreeSet<String>, shown: &Path) -> Vec<String> {
    found
        .iter()
        .filter(|f| !allowed.contains(&f.reference))
        .map(|f| {
            let what = if f.reference.starts_with("env:") {
                "an environment variable of the server"
            } else if f.reference.starts_with("exec:") {
                "a command run on the server"
            } else {
                "a path on the server"
            };
            format!(
                "{}:{}:{}: {}: {} is {what}, and documents applied through the API may only \
                 use what the configuration folder's own documents use; to allow it, start \
                 the server with `rollgate serve --api-allow-ref '{}'` (or use it in a \
                 document of the folder)",
                shown.display(),
                f.line,
                f.col,
                f.field,
                f.reference,
                f.reference
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_without_the_file_system() {
        assert_eq!(
            normalise(Path::new("../b/./c"), Some(Path::new("/x/api"))),
            PathBuf::from("/x/b/c")
        );
        assert_eq!(
            normalise(Path::new("/etc/../etc/passwd"), Some(Path::new("/x"))),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(normalise(Path::new("/.."), None), PathBuf::from("/"));
    }

    #[test]
    fn allowlist_entries() {
        assert_eq!(parse_allowed("env:PROM_TOKEN"), Ok("env:PROM_TOKEN".into()));
        assert_eq!(
            parse_allowed("file:/run/../run/secrets/t"),
            Ok("file:/run/secrets/t".into())
        );
        assert_eq!(
            parse_allowed(r#"exec:[ "sh", "deploy.sh" ]"#),
            Ok(r#"exec:["sh","deploy.sh"]"#.into())
        );
        for bad in ["env:", "file:", "exec:sh", "exec:[]", "PROM_TOKEN"] {
            assert!(parse_allowed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_oci_plugins_credentials_ca_and_key_are_references_its_source_is_not() {
        let text = r#"apiVersion: rollgate.dev/v1alpha1
kind: Plugin
metadata: {name: p}
spec:
  source: oci://registry.example/p/x@sha256:00
  auth: {username: env:REG_USER, password: "file:../../etc/rollgate/tokens"}
  tls: {caFile: ca.pem}
  verify: {cosign: {publicKey: "file:/keys/cosign.pub"}}
"#;
        let found = in_text(text, Path::new("/cfg/api/x.yaml")).expect("yaml");
        let got: Vec<(String, String)> =
            found.into_iter().map(|f| (f.reference, f.field)).collect();
        assert_eq!(
            got,
            vec![
                ("env:REG_USER".to_string(), "spec.auth.username".to_string()),
                (
                    "file:/etc/rollgate/tokens".into(),
                    "spec.auth.password".into()
                ),
                ("file:/cfg/api/ca.pem".into(), "spec.tls.caFile".into()),
                (
                    "file:/keys/cosign.pub".into(),
                    "spec.verify.cosign.publicKey".into()
                ),
            ]
        );
    }

    #[test]
    fn every_reference_of_every_kind_is_found_where_it_is_written() {
        let text = r#"apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata: {name: prom}
spec:
  prometheus:
    address: http://x
    bearerToken: env:TOKEN
    basicAuth: {username: literal, password: "file:pw"}
    headers:
      X-Org: env:ORG
      X-Plain: plain
    tls: {caFile: /etc/ca.pem}
---
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata: {name: rec}
spec:
  replay:
    file: ../../tokens
---
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata: {name: dd}
spec:
  datadog: {apiKey: env:DD_API_KEY, applicationKey: "file:/k"}
---
apiVersion: rollgate.dev/v1alpha1
kind: Plugin
metadata: {name: p}
spec: {source: plugins/x.wasm, sha256: "00"}
---
apiVersion: rollgate.dev/v1alpha1
kind: Plugin
metadata: {name: q}
spec: {source: builtin:threshold}
---
apiVersion: rollgate.dev/v1alpha1
kind: Rollout
metadata: {name: r}
base: &hdrs
  Authorization: file:/etc/shadow
spec:
  target:
    exec:
      command: [sh, -c, "cat /etc/passwd"]
      workingDir: ..
    webhook:
      url: http://x
      headers:
        <<: *hdrs
        X-Env: env:HOME
"#;
        let found = in_text(text, Path::new("/cfg/api/x.yaml")).expect("yaml");
        let cwd = std::env::current_dir().expect("cwd");
        let got: Vec<(String, String, u64, u64)> = found
            .into_iter()
            .map(|f| (f.reference, f.field, f.line, f.col))
            .collect();
        let want = vec![
            (
                "env:TOKEN".to_string(),
                "spec.prometheus.bearerToken",
                7,
                18,
            ),
            (
                "file:PW".into(),
                "spec.prometheus.basicAuth.password",
                8,
                46,
            ),
            ("env:ORG".into(), "spec.prometheus.headers.X-Org", 10, 14),
            (
                "file:/etc/ca.pem".into(),
                "spec.prometheus.tls.caFile",
                12,
                19,
            ),
            ("file:/tokens".into(), "spec.replay.file", 19, 11),
            ("env:DD_API_KEY".into(), "spec.datadog.apiKey", 25, 21),
            ("file:/k".into(), "spec.datadog.applicationKey", 25, 53),
            ("file:/cfg/api/plugins/x.wasm".into(), "spec.source", 30, 16),
            (
                r#"exec:["sh","-c","cat /etc/passwd"]"#.into(),
                "spec.target.exec.command",
                45,
                16,
            ),
            ("file:/cfg".into(), "spec.target.exec.workingDir", 46, 19),
            (
                "env:HOME".into(),
                "spec.target.webhook.headers.X-Env",
                51,
                16,
            ),
            // The parser merges `<<` itself, after the mapping's own keys, at the alias.
            (
                "file:/etc/shadow".into(),
                "spec.target.webhook.headers.Authorization",
                50,
                13,
            ),
        ];
        let want: Vec<(String, String, u64, u64)> = want
            .into_iter()
            .map(|(r, f, l, c)| {
                let r = if r == "file:PW" {
                    format!("file:{}", cwd.join("pw").display())
                } else {
                    r
                };
                (r, f.to_string(), l, c)
            })
            .collect();
        assert_eq!(got, want);
        assert!(in_text("a: [", Path::new("/cfg/api/x.yaml")).is_err());
    }

    #[test]
    fn refusals_say_what_and_how_to_allow_it() {
        let found = vec![Found {
            reference: "env:HOME".into(),
            field: "spec.prometheus.bearerToken".into(),
            line: 7,
            col: 18,
        }];
        let shown = Path::new("config/api/metricbackend-x.yaml");
        let problems = refused(&found, &BTreeSet::new(), shown);
        assert_eq!(
            problems,
            [
                "config/api/metricbackend-x.yaml:7:18: spec.prometheus.bearerToken: env:HOME is an environment variable of the server, and documents applied through the API may only use what the configuration folder's own documents use; to allow it, start the server with `rollgate serve --api-allow-ref 'env:HOME'` (or use it in a document of the folder)"
            ]
        );
        let allowed: BTreeSet<String> = ["env:HOME".to_string()].into();
        assert!(refused(&found, &allowed, shown).is_empty());
    }
}
