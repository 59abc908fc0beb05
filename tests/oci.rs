//! Plugins from an OCI registry (issue 21): a real registry (Debian's `docker-registry`,
//! started per test on a free loopback port, storage in a temp dir, killed by PID), the
//! real `rollgate` binary pushing, pulling, signing, linting and running with what it
//! pulled; a silent socket for a registry that hangs.

use crate::common;

use common::serve::Serve;
use common::{RegistryOptions, RegistryServer, Run, rollgate_env, rollgate_in};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The shipped component `name` (a built-in) as a file in `dir`.
fn component(dir: &Path, name: &str) -> PathBuf {
    let bytes = rollgate::plugin::BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .expect("a built-in plugin");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write the component");
    path
}

/// The shipped component `name` with a custom section naming `variant` appended: the
/// same plugin, other bytes, so another digest.
fn variant(dir: &Path, name: &str, variant: &str) -> PathBuf {
    let path = component(dir, name);
    let mut bytes = std::fs::read(&path).expect("read");
    let section_name = b"rollgate-test";
    let body_len = 1 + section_name.len() + variant.len();
    assert!(
        body_len < 128 && section_name.len() < 128,
        "one-byte LEB128 sizes"
    );
    bytes.push(0); // a custom section
    bytes.push(u8::try_from(body_len).expect("small"));
    bytes.push(u8::try_from(section_name.len()).expect("small"));
    bytes.extend_from_slice(section_name);
    bytes.extend_from_slice(variant.as_bytes());
    let out = dir.join(format!("{name}-{variant}.wasm"));
    std::fs::write(&out, bytes).expect("write");
    out
}

fn ok(run: &Run, what: &str) {
    assert_eq!(
        run.code, 0,
        "{what}: exit {}\n{}\n{}",
        run.code, run.stdout, run.stderr
    );
}

/// `rollgate plugin push FILE oci://HOST/REPO:TAG --insecure [extra]`: the digest printed.
fn push(dir: &Path, file: &Path, reference: &str, extra: &[&str]) -> String {
    let mut args = vec!["plugin", "push", file.to_str().expect("utf-8"), reference];
    args.extend_from_slice(extra);
    let run = rollgate_in(dir, &args);
    ok(&run, "plugin push");
    let digest = run.stdout.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        run.stderr.contains("pin it as source: oci://"),
        "{}",
        run.stderr
    );
    digest
}

/// A Plugin document for `source` with extra spec lines.
fn plugin_doc(name: &str, source: &str, extra: &str) -> String {
    format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  source: {source}\n{extra}"
    )
}

/// A rollout that pauses at its first step, with `policy` as its failure policy.
fn held_with_policy(name: &str, policy: &str) -> String {
    common::fixture_with("serve/held.yaml", &[("name", name)])
        + &format!("  failurePolicy:\n    plugin: {policy}\n")
}

/// The quickstart's canary example in `dir`, its metrics measured by `plugin` (a Plugin
/// document written to `plugin.yaml`) instead of the built-in threshold.
fn canary_with(dir: &Path, plugin: &str) {
    for entry in std::fs::read_dir(common::example("canary")).expect("canary") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let templates = std::fs::read_to_string(dir.join("templates.yaml")).expect("read");
    assert!(templates.contains("plugin: threshold\n"));
    std::fs::write(
        dir.join("templates.yaml"),
        templates.replace("plugin: threshold\n", "plugin: threshold-oci\n"),
    )
    .expect("write");
    std::fs::write(dir.join("plugin.yaml"), plugin).expect("write");
}

fn run_canary(dir: &Path, cache: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "run",
        ".",
        "--store",
        "s.db",
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
        "--cache-dir",
        cache.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    rollgate_in(dir, &args)
}

/// Files in `dir` whose name ends with `suffix`.
fn cached(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn pushed_pinned_and_run_then_started_again_from_the_cache_with_the_registry_gone() {
    let Some(mut registry) = RegistryServer::start(
        "pushed_pinned_and_run_then_started_again_from_the_cache_with_the_registry_gone",
        RegistryOptions::default(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let wasm = component(d, "threshold");
    let tagged = format!("oci://{}/plugins/threshold:v1", registry.host);
    let digest = push(d, &wasm, &tagged, &["--insecure"]);
    // `plugin pull` prints the digest of a tag: the same one.
    let pulled = rollgate_in(d, &["plugin", "pull", &tagged, "--insecure"]);
    ok(&pulled, "plugin pull");
    assert_eq!(pulled.stdout.trim(), digest);

    // A tag alone is refused by lint, with the way to the digest.
    let spec = tempfile::tempdir().expect("tempdir");
    let s = spec.path();
    canary_with(
        s,
        &plugin_doc("threshold-oci", &tagged, "  insecure: true\n"),
    );
    let lint = rollgate_in(s, &["lint", "."]);
    assert_eq!(lint.code, 1, "{}\n{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout.contains("plugin.yaml:6:11: spec.source:")
            && lint.stdout.contains("pinned by tag only")
            && lint
                .stdout
                .contains(&format!("rollgate plugin pull {tagged}")),
        "{}",
        lint.stdout
    );

    // Pinned: the rollouts run with the pulled plugin (checkout promoted, payments rolled
    // back: the quickstart's outcome, exit 5).
    let pinned = format!("oci://{}/plugins/threshold@{digest}", registry.host);
    canary_with(
        s,
        &plugin_doc("threshold-oci", &pinned, "  insecure: true\n"),
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let first = run_canary(s, cache.path(), &[]);
    assert_eq!(first.code, 5, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("succeeded"), "{}", first.stdout);
    // Cached by digest beside the compile cache: the manifest and the component.
    let oci = cache.path().join("oci");
    assert_eq!(cached(&oci, ".manifest"), 1, "{oci:?}");
    assert_eq!(cached(&oci, ".wasm"), 1, "{oci:?}");
    assert_eq!(cached(&oci, "tmp"), 0, "no temporary file left");

    // The registry is gone: the second start asks it nothing, so it still runs.
    registry.stop();
    std::fs::remove_file(s.join("s.db")).expect("fresh store");
    let second = run_canary(s, cache.path(), &[]);
    assert_eq!(second.code, 5, "{}\n{}", second.stdout, second.stderr);
    // And without the cache it cannot: the registry really is gone.
    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::remove_file(s.join("s.db")).expect("fresh store");
    let third = run_canary(s, empty.path(), &[]);
    assert_ne!(third.code, 5, "{}\n{}", third.stdout, third.stderr);
    assert!(
        third.stderr.contains("pull-failed") && third.stderr.contains("cannot connect"),
        "{}",
        third.stderr
    );
}

#[test]
fn both_wasm_artifact_conventions_pull_to_the_same_component() {
    let Some(registry) = RegistryServer::start(
        "both_wasm_artifact_conventions_pull_to_the_same_component",
        RegistryOptions::default(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let wasm = component(d, "threshold");
    let original = std::fs::read(&wasm).expect("read");
    let mut digests = Vec::new();
    for convention in ["cncf", "wasm-to-oci"] {
        let tagged = format!("oci://{}/plugins/{convention}:v1", registry.host);
        let digest = push(
            d,
            &wasm,
            &tagged,
            &["--insecure", "--convention", convention],
        );
        let out = d.join(format!("{convention}.wasm"));
        let pinned = format!("oci://{}/plugins/{convention}@{digest}", registry.host);
        let run = rollgate_in(
            d,
            &[
                "plugin",
                "pull",
                &pinned,
                "--insecure",
                "--out",
                out.to_str().expect("utf-8"),
            ],
        );
        ok(&run, convention);
        assert_eq!(
            std::fs::read(&out).expect("pulled"),
            original,
            "{convention}"
        );
        // The manifest says which convention it follows.
        let manifests = registry
            .storage()
            .join("blobs/sha256")
            .join(&digest[7..9])
            .join(&digest[7..])
            .join("data");
        let manifest = std::fs::read_to_string(manifests).expect("the manifest in storage");
        let layer = if convention == "cncf" {
            "\"application/wasm\""
        } else {
            "\"application/vnd.wasm.content.layer.v1+wasm\""
        };
        assert!(manifest.contains(layer), "{manifest}");
        digests.push(digest);
    }
    assert_ne!(digests[0], digests[1]);
}

/// The data file of blob `digest` in the registry's storage.
fn blob_data(registry: &RegistryServer, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    registry
        .storage()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn a_digest_that_does_not_match_and_a_swapped_layer_are_refused() {
    let Some(registry) = RegistryServer::start(
        "a_digest_that_does_not_match_and_a_swapped_layer_are_refused",
        RegistryOptions::default(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let threshold = component(d, "threshold");
    let policy = component(d, "default-policy");
    let layer = push(
        d,
        &variant(d, "threshold", "layer"),
        &format!("oci://{}/p/layer:v1", registry.host),
        &["--insecure"],
    );
    let manifest = push(
        d,
        &threshold,
        &format!("oci://{}/p/manifest:v1", registry.host),
        &["--insecure"],
    );
    let other = push(
        d,
        &policy,
        &format!("oci://{}/p/other:v1", registry.host),
        &["--insecure"],
    );
    let lint_with = |name: &str, source: &str, extra: &str| {
        let spec = tempfile::tempdir().expect("tempdir");
        canary_with(
            spec.path(),
            &plugin_doc(
                "threshold-oci",
                source,
                &format!("  insecure: true\n{extra}"),
            ),
        );
        let cache = tempfile::tempdir().expect("tempdir");
        let run = rollgate_in(
            spec.path(),
            &[
                "lint",
                ".",
                "--cache-dir",
                cache.path().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(run.code, 1, "{name}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(
            cached(&cache.path().join("oci"), ".wasm"),
            0,
            "{name}: nothing cached"
        );
        run.stdout + &run.stderr
    };
    let lint = |name: &str, source: &str| lint_with(name, source, "");

    // A component over limits.maxComponentBytes: refused by the layer's declared size,
    // before it is downloaded.
    let said = lint_with(
        "too large",
        &format!("oci://{}/p/manifest@{manifest}", registry.host),
        "  limits: {maxComponentBytes: 1Ki}\n",
    );
    assert!(
        said.contains("component-too-large") && said.contains("over the limit of 1024 bytes"),
        "{said}"
    );

    // A digest the repository does not have.
    let missing = format!("sha256:{}", "0".repeat(64));
    let said = lint(
        "missing",
        &format!("oci://{}/p/layer@{missing}", registry.host),
    );
    assert!(
        said.contains("pull-failed") && said.contains("no manifest"),
        "{said}"
    );

    // The manifest's bytes in storage replaced by another manifest's: served under the
    // pinned digest, they hash to something else.
    let other_manifest = std::fs::read(blob_data(&registry, &other)).expect("read");
    std::fs::write(blob_data(&registry, &manifest), &other_manifest).expect("swap");
    let said = lint(
        "manifest",
        &format!("oci://{}/p/manifest@{manifest}", registry.host),
    );
    assert!(
        said.contains("digest-mismatch") && said.contains("manifest"),
        "{said}"
    );

    // The layer's bytes replaced by another component: the layer digest does not match.
    let text = std::fs::read_to_string(blob_data(&registry, &layer)).expect("manifest");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let layer_digest = v["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    std::fs::write(
        blob_data(&registry, &layer_digest),
        rollgate::plugin::BUILTIN[1].1,
    )
    .expect("swap the layer");
    let said = lint("layer", &format!("oci://{}/p/layer@{layer}", registry.host));
    assert!(
        said.contains("digest-mismatch") && said.contains(&layer_digest),
        "{said}"
    );
}

/// An EC P-256 key pair in `dir`: (PKCS#8 PEM private key, PEM public key).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sec1 = dir.join(format!("{name}.sec1"));
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let openssl = |args: &[&str]| {
        common::run_tool(
            std::process::Command::new("openssl").args(args),
            "Debian's openssl package",
        )
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        sec1.to_str().expect("utf-8"),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        sec1.to_str().expect("utf-8"),
        "-out",
        key.to_str().expect("utf-8"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        key.to_str().expect("utf-8"),
        "-pubout",
        "-out",
        public.to_str().expect("utf-8"),
    ]);
    (key, public)
}

#[test]
fn signed_with_the_key_runs_unsigned_or_signed_by_another_key_is_refused() {
    let Some(registry) = RegistryServer::start(
        "signed_with_the_key_runs_unsigned_or_signed_by_another_key_is_refused",
        RegistryOptions::default(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = key_pair(d, "ours");
    let (other_key, other_public) = key_pair(d, "theirs");
    let policy = component(d, "default-policy");
    let host = &registry.host;
    let signed = push(
        d,
        &policy,
        &format!("oci://{host}/p/signed:v1"),
        &["--insecure"],
    );
    let unsigned = push(
        d,
        &policy,
        &format!("oci://{host}/p/unsigned:v1"),
        &["--insecure", "--convention", "wasm-to-oci"],
    );
    // Other bytes than the signed one's: a signature vouches for a digest, wherever it is.
    let theirs = push(
        d,
        &variant(d, "default-policy", "theirs"),
        &format!("oci://{host}/p/theirs:v1"),
        &["--insecure"],
    );
    for (reference, key) in [
        (format!("oci://{host}/p/signed@{signed}"), &key),
        (format!("oci://{host}/p/theirs@{theirs}"), &other_key),
    ] {
        let run = rollgate_in(
            d,
            &[
                "plugin",
                "sign",
                "--key",
                key.to_str().expect("utf-8"),
                &reference,
                "--insecure",
            ],
        );
        ok(&run, "plugin sign");
    }
    // The signature sits at the tag cosign uses, sha256-<hex>.sig; it is no component, so
    // pulling it as one is wrong-media-type.
    let pull_sig = rollgate_in(
        d,
        &[
            "plugin",
            "pull",
            &format!(
                "oci://{host}/p/signed:{}",
                signed.replace(':', "-") + ".sig"
            ),
            "--insecure",
        ],
    );
    assert_eq!(
        pull_sig.code, 3,
        "a signature is not a component: {}",
        pull_sig.stderr
    );
    assert!(
        pull_sig.stderr.contains("wrong-media-type"),
        "{}",
        pull_sig.stderr
    );

    // `plugin pull --key` checks the signature first: ours verifies, the other key's not.
    let signed_ref = format!("oci://{host}/p/signed@{signed}");
    let out = d.join("pulled.wasm");
    for (key, code, said) in [(&public, 0, ""), (&other_public, 3, "signature-invalid")] {
        let run = rollgate_in(
            d,
            &[
                "plugin",
                "pull",
                &signed_ref,
                "--insecure",
                "--key",
                key.to_str().expect("utf-8"),
                "--out",
                out.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(run.code, code, "{}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        // Without --out the signature is checked all the same (--key is never ignored).
        let run = rollgate_in(
            d,
            &[
                "plugin",
                "pull",
                &signed_ref,
                "--insecure",
                "--key",
                key.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(run.code, code, "without --out: {}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        if code == 0 {
            assert!(run.stderr.contains("signature"), "{}", run.stderr);
            assert!(run.stdout.contains(&signed), "{}", run.stdout);
        }
    }
    // A key that is not one (a public key given to sign, a private key given to verify) is
    // invalid input (exit 4), refused before the registry is asked.
    for (verb, key, said) in [
        ("sign", &public, "not a PKCS#8 PEM private key"),
        ("pull", &key, "not a PEM public key"),
    ] {
        let run = rollgate_in(
            d,
            &[
                "plugin",
                verb,
                &signed_ref,
                "--insecure",
                "--key",
                key.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(run.code, 4, "{verb}: {}", run.stderr);
        assert!(run.stderr.contains(said), "{verb}: {}", run.stderr);
    }

    let config = d.join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let verify = format!(
        "  insecure: true\n  verify:\n    cosign:\n      publicKey: file:{}\n",
        public.display()
    );
    let docs = [
        (
            "signed",
            format!("oci://{host}/p/signed@{signed}"),
            verify.clone(),
        ),
        (
            "unsigned",
            format!("oci://{host}/p/unsigned@{unsigned}"),
            verify.clone(),
        ),
        (
            "theirs",
            format!("oci://{host}/p/theirs@{theirs}"),
            verify.clone(),
        ),
        // No key named: refused only under --require-signed-plugins.
        (
            "nokey",
            format!("oci://{host}/p/signed@{signed}"),
            "  insecure: true\n".to_string(),
        ),
    ];
    for (name, source, extra) in &docs {
        std::fs::write(
            config.join(format!("plugin-{name}.yaml")),
            plugin_doc(&format!("policy-{name}"), source, extra),
        )
        .expect("write");
        std::fs::write(
            config.join(format!("rollout-{name}.yaml")),
            held_with_policy(name, &format!("policy-{name}")),
        )
        .expect("write");
    }
    std::fs::write(
        config.join("plain.yaml"),
        common::fixture_with("serve/held.yaml", &[("name", "plain")]),
    )
    .expect("write");
    // The other key's public half verifies nothing of ours.
    assert_ne!(
        std::fs::read(&public).ok(),
        std::fs::read(&other_public).ok()
    );

    let s = Serve::new(d)
        .args(&["--require-signed-plugins"])
        .reload_interval("100ms")
        .start();
    s.wait_state("signed", 1, "paused(step)");
    s.wait_state("plain", 1, "paused(step)");
    for (name, kind) in [
        ("unsigned", "unsigned"),
        ("theirs", "signature-invalid"),
        ("nokey", "unsigned"),
    ] {
        let r = s.rollout(name);
        assert_eq!(r["state"], "invalid-spec", "{name}: {r}");
        let problems = r["invalidSpec"]["problems"].to_string();
        assert!(problems.contains(kind), "{name}: {problems}");
    }
    let theirs_problems = s.rollout("theirs")["invalidSpec"]["problems"].to_string();
    assert!(
        theirs_problems.contains("does not verify with the key"),
        "{theirs_problems}"
    );
}

#[test]
fn a_registry_that_is_down_or_silent_fails_only_its_rollouts_within_the_timeout() {
    let blackhole = common::Blackhole::start();
    let silent = blackhole.address.trim_start_matches("http://").to_string();
    let down = format!("127.0.0.1:{}", common::free_port());
    let digest = format!("sha256:{}", "a".repeat(64));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("plugins.yaml"),
        plugin_doc(
            "silent",
            &format!("oci://{silent}/p/x@{digest}"),
            "  insecure: true\n  pullTimeout: 1s\n",
        ) + "---\n"
            + &plugin_doc(
                "down",
                &format!("oci://{down}/p/x@{digest}"),
                "  insecure: true\n  pullTimeout: 1s\n",
            ),
    )
    .expect("write");
    for (name, policy) in [
        ("silent", Some("silent")),
        ("down", Some("down")),
        ("plain", None),
    ] {
        let text = match policy {
            Some(p) => held_with_policy(name, p),
            None => common::fixture_with("serve/held.yaml", &[("name", name)]),
        };
        std::fs::write(d.join(format!("{name}.yaml")), text).expect("write");
    }
    let started = Instant::now();
    let lint = rollgate_in(d, &["lint", "."]);
    let took = started.elapsed();
    assert_eq!(lint.code, 1, "{}\n{}", lint.stdout, lint.stderr);
    assert!(took < Duration::from_secs(15), "lint took {took:?}");
    let said = lint.stdout.clone() + &lint.stderr;
    assert!(
        said.contains("plugin \"silent\": pull-failed")
            && (said.contains("longer than 1s") || said.contains("timed out")),
        "{said}"
    );
    assert!(
        said.contains("plugin \"down\": pull-failed") && said.contains("cannot connect"),
        "{said}"
    );
    assert!(said.contains("rollout \"plain\": loads; it runs"), "{said}");
    assert!(said.contains("rollout \"silent\": invalid-spec"), "{said}");
    assert!(said.contains("rollout \"down\": invalid-spec"), "{said}");
}

#[test]
fn credentials_arrive_on_the_wire_over_tls_and_never_in_output() {
    let user = "rollgate-bot";
    let password = "s3cret-Passw0rd-xyz";
    let Some(registry) = RegistryServer::start(
        "credentials_arrive_on_the_wire_over_tls_and_never_in_output",
        RegistryOptions {
            users: vec![(user.into(), password.into())],
            tls: true,
            token: None,
        },
    ) else {
        return;
    };
    let ca = registry.ca.clone().expect("a CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("password"), format!("{password}\n")).expect("write");
    let policy = component(d, "default-policy");
    let tagged = format!("oci://{}/p/policy:v1", registry.host);
    let env = [("REGISTRY_USER", user), ("ROLLGATE_LOG", "rollgate=debug")];
    let ca_arg = ca.to_str().expect("utf-8");
    let push_run = rollgate_env(
        d,
        &[
            "plugin",
            "push",
            policy.to_str().expect("utf-8"),
            &tagged,
            "--ca-file",
            ca_arg,
            "--username",
            "env:REGISTRY_USER",
            "--password",
            "file:password",
        ],
        &env,
    );
    ok(&push_run, "push with credentials");
    let digest = push_run.stdout.trim().to_string();
    // Without credentials the registry refuses: they did arrive on the wire above.
    let anonymous = rollgate_in(d, &["plugin", "pull", &tagged, "--ca-file", ca_arg]);
    assert_eq!(anonymous.code, 3, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("asks for credentials"),
        "{}",
        anonymous.stderr
    );
    // Without the CA, the certificate is not trusted.
    let untrusted = rollgate_env(
        d,
        &[
            "plugin",
            "pull",
            &tagged,
            "--username",
            "env:REGISTRY_USER",
            "--password",
            "file:password",
        ],
        &env,
    );
    assert_eq!(untrusted.code, 3, "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains("pull-failed"),
        "{}",
        untrusted.stderr
    );

    let pinned = format!("oci://{}/p/policy@{digest}", registry.host);
    let auth = |password_ref: &str| {
        format!(
            "  auth:\n    username: env:REGISTRY_USER\n    password: {password_ref}\n  tls:\n    caFile: {}\n",
            ca.display()
        )
    };
    std::fs::write(d.join("wrong"), "not-the-password\n").expect("write");
    let write = |password_ref: &str| {
        std::fs::write(
            d.join("plugin.yaml"),
            plugin_doc("policy-oci", &pinned, &auth(password_ref)),
        )
        .expect("write");
        std::fs::write(
            d.join("rollout.yaml"),
            held_with_policy("guarded", "policy-oci"),
        )
        .expect("write");
    };
    write("file:password");
    let good = rollgate_env(d, &["lint", "."], &env);
    ok(&good, "lint with credentials and the CA");
    write("file:wrong");
    let bad = rollgate_env(d, &["lint", "."], &env);
    assert_eq!(bad.code, 1, "{}\n{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.contains("pull-failed"), "{}", bad.stdout);
    // Under serve, with debug logs: one rollout pulls with the right password and runs, one
    // with a wrong one is invalid-spec; the password is nowhere in the log, the API, the
    // audit or the problems.
    let config = d.join("config");
    std::fs::create_dir(&config).expect("mkdir");
    for (name, password_ref) in [("right", "file:../password"), ("wrong", "file:../wrong")] {
        std::fs::write(
            config.join(format!("{name}.yaml")),
            plugin_doc(&format!("policy-{name}"), &pinned, &auth(password_ref))
                + "---\n"
                + &held_with_policy(name, &format!("policy-{name}")),
        )
        .expect("write");
    }
    let server = Serve::new(d)
        .env(&[("REGISTRY_USER", user)])
        .log("rollgate=debug")
        .reload_interval("100ms")
        .start();
    server.wait_state("right", 1, "paused(step)");
    let wrong = server.rollout("wrong");
    assert_eq!(wrong["state"], "invalid-spec", "{wrong}");
    assert!(wrong.to_string().contains("pull-failed"), "{wrong}");
    let served = [
        server.log(),
        server.rollout("right").to_string(),
        wrong.to_string(),
        serde_json::Value::Array(server.audit("right", 1)).to_string(),
        server.get("/api/v1/rollouts").to_string(),
    ];
    for text in &served {
        assert!(!text.contains(password), "the password leaked: {text}");
        assert!(
            !text.contains("cm9sbGdhdGUtYm90OnMzY3JldC1QYXNzdzByZC14eXo"),
            "{text}"
        );
    }
    for run in [&push_run, &anonymous, &untrusted, &good, &bad] {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(password), "the password leaked: {text}");
            // Nor its Basic form.
            assert!(
                !text.contains("cm9sbGdhdGUtYm90OnMzY3JldC1QYXNzdzByZC14eXo"),
                "{text}"
            );
        }
    }
}

/// A token service stand-in (what `auth.docker.io` is to Docker Hub's registry): it answers
/// a request carrying the right Basic credentials with a JWT granting the scope asked for,
/// signed ES256 by a key whose certificate the registry trusts (`x5c`), and a request
/// without them with 401. Stops when dropped.
struct TokenServer {
    url: String,
    /// Requests that carried the right credentials.
    granted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const TOKEN_SERVICE: &str = "rollgate-test-registry";
const TOKEN_ISSUER: &str = "rollgate-test-issuer";

impl TokenServer {
    /// The server and the certificate bundle the registry is to trust.
    fn start(dir: &Path, user: &str, password: &str) -> (TokenServer, PathBuf) {
        use base64::Engine as _;
        use rustls_pki_types::pem::PemObject;
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        common::self_signed_p256(dir, "token", "/CN=rollgate test token signer");
        let cert = rustls_pki_types::CertificateDer::from_pem_file(dir.join("token.crt"))
            .expect("the signing certificate");
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(dir.join("token.key"))
            .expect("the signing key");
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.secret_pkcs8_der(),
        )
        .expect("an EC P-256 key");
        let b64 = base64::engine::general_purpose::STANDARD;
        let url64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = url64.encode(
            serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [b64.encode(cert.as_ref())]})
                .to_string(),
        );
        let expected = format!("Basic {}", b64.encode(format!("{user}:{password}")));
        let user = user.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let granted = std::sync::Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), granted.clone());
        std::thread::spawn(move || {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                    })
                });
                let (status, body) = if authorized {
                    count.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    let query = reqwest::Url::parse(&format!("http://x{target}")).expect("url");
                    let access: Vec<serde_json::Value> = query
                        .query_pairs()
                        .filter(|(k, _)| k == "scope")
                        .filter_map(|(_, v)| {
                            let mut parts = v.splitn(3, ':');
                            let kind = parts.next()?.to_string();
                            let name = parts.next()?.to_string();
                            let actions: Vec<&str> = parts.next()?.split(',').collect();
                            Some(
                                serde_json::json!({"type": kind, "name": name, "actions": actions}),
                            )
                        })
                        .collect();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("time")
                        .as_secs();
                    let claims = url64.encode(
                        serde_json::json!({
                            "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_SERVICE,
                            "exp": now + 600, "nbf": now - 60, "iat": now - 60,
                            "jti": format!("t{n}"), "access": access,
                        })
                        .to_string(),
                    );
                    let input = format!("{header}.{claims}");
                    let sig = pair.sign(&rng, input.as_bytes()).expect("sign");
                    let token = format!("{input}.{}", url64.encode(sig.as_ref()));
                    ("200 OK", serde_json::json!({"token": token}).to_string())
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"details":"bad credentials"}"#.to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (TokenServer { url, granted, stop }, dir.join("token.crt"))
    }
}

#[test]
fn a_registry_with_token_auth_gets_a_bearer_token_bought_with_the_credentials() {
    let user = "rollgate-bot";
    let password = "t0ken-Passw0rd-abc";
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (tokens, bundle) = TokenServer::start(d, user, password);
    let Some(registry) = RegistryServer::start(
        "a_registry_with_token_auth_gets_a_bearer_token_bought_with_the_credentials",
        RegistryOptions {
            token: Some((
                tokens.url.clone(),
                TOKEN_SERVICE.into(),
                TOKEN_ISSUER.into(),
                bundle,
            )),
            ..RegistryOptions::default()
        },
    ) else {
        return;
    };
    std::fs::write(d.join("password"), password).expect("write");
    let policy = component(d, "default-policy");
    let tagged = format!("oci://{}/p/policy:v1", registry.host);
    let env = [("REGISTRY_USER", user)];
    let creds = [
        "--username",
        "env:REGISTRY_USER",
        "--password",
        "file:password",
    ];
    let mut args = vec![
        "plugin",
        "push",
        policy.to_str().expect("utf-8"),
        &tagged,
        "--insecure",
    ];
    args.extend_from_slice(&creds);
    let pushed = rollgate_env(d, &args, &env);
    ok(&pushed, "push through token auth");
    assert!(tokens.granted.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let digest = pushed.stdout.trim().to_string();

    // Without credentials the token service refuses, and so the pull fails, by name.
    let anonymous = rollgate_in(d, &["plugin", "pull", &tagged, "--insecure"]);
    assert_eq!(anonymous.code, 3, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("pull-failed") && anonymous.stderr.contains("token service"),
        "{}",
        anonymous.stderr
    );

    // A Plugin document with the credentials by reference pulls through the token.
    let before = tokens.granted.load(std::sync::atomic::Ordering::Relaxed);
    std::fs::write(
        d.join("plugin.yaml"),
        plugin_doc(
            "policy-oci",
            &format!("oci://{}/p/policy@{digest}", registry.host),
            "  insecure: true\n  auth: {username: env:REGISTRY_USER, password: file:password}\n",
        ),
    )
    .expect("write");
    std::fs::write(
        d.join("rollout.yaml"),
        held_with_policy("guarded", "policy-oci"),
    )
    .expect("write");
    let lint = rollgate_env(d, &["lint", "."], &env);
    ok(&lint, "lint through token auth");
    assert!(tokens.granted.load(std::sync::atomic::Ordering::Relaxed) > before);
    for run in [&pushed, &anonymous, &lint] {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(password), "the password leaked: {text}");
        }
    }
}
