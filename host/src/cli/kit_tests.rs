//! The plugin author kit's tests.

use super::*;

#[test]
fn names() {
    assert_eq!(camel("error-ratio"), "ErrorRatio");
    assert_eq!(camel("p99_latency2"), "P99Latency2");
    assert!(bad_name("error-ratio").is_none());
    for bad in [
        "",
        "Error",
        "9lives",
        "a b",
        "über",
        "test",
        "rollgate-x",
        "a/b",
    ] {
        assert!(bad_name(bad).is_some(), "{bad}");
    }
}

/// Every file of `dir` (recursively), relative to it, with `/` separators.
fn files_under(dir: &Path, prefix: &str, found: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            files_under(&path, &format!("{prefix}{name}/"), found);
        } else {
            found.push(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn the_sdk_copy_has_every_source_file_of_the_sdk() {
    // A file the SDK has but the copy lacks would break every scaffold: list the real
    // folders and compare.
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    for (folder, vendored) in [
        ("sdk", "rollgate-plugin"),
        ("duration", "rollgate-duration"),
    ] {
        let mut found = Vec::new();
        files_under(&plugins.join(folder).join("src"), "", &mut found);
        for file in found {
            let copy = format!("vendor/{vendored}/src/{file}");
            assert!(
                SDK_FILES.iter().any(|(p, _)| *p == copy),
                "plugins/{folder}/src/{file} is not in SDK_FILES (host/src/cli/kit.rs): add it as {copy}"
            );
        }
    }
    assert!(SDK_FILES.iter().any(|(p, _)| *p == "wit/plugin.wit"));
}

#[test]
fn the_sdk_copy_uses_the_workspace_versions() {
    let sdk = vendored_manifest("rollgate-plugin", VENDORED[0].1).expect("the SDK vendors");
    // Exactly the SDK's own dependencies, at the workspace's versions.
    for line in [
        "rollgate-duration = { path = \"../rollgate-duration\" }",
        "wit-bindgen = { version = \"=",
        "serde = { version = \"1\", features = [\"derive\"] }",
        "serde_json = ",
        "schemars = ",
        "serde_path_to_error = ",
    ] {
        assert!(sdk.contains(line), "{line} missing from\n{sdk}");
    }
    assert!(!sdk.contains(".workspace"), "{sdk}");
    assert!(sdk.contains("edition = \"2024\""), "{sdk}");
    for (name, manifest) in VENDORED {
        vendored_manifest(name, manifest).unwrap_or_else(|e| panic!("{e}"));
    }

    let files = scaffold("my-check", Kind::Provider, None).expect("scaffold");
    let manifest = &files
        .iter()
        .find(|(p, _)| p == "Cargo.toml")
        .expect("manifest")
        .1;
    assert!(manifest.contains("name = \"my-check\""));
    assert!(manifest.contains("path = \"vendor/rollgate-plugin\""));
    assert!(
        !files
            .iter()
            .any(|(path, text)| !path.starts_with("vendor/") && text.contains("{{")),
        "a placeholder is left"
    );
    let lib = &files
        .iter()
        .find(|(p, _)| p == "src/lib.rs")
        .expect("lib")
        .1;
    assert!(lib.contains("export_verifier!(MyCheck)"));
}

#[test]
fn a_manifest_the_copy_cannot_carry_is_refused() {
    for (manifest, says) in [
        (
            "[package]\nname = \"x\"\n[features]\nfast = []\n",
            "[features]",
        ),
        (
            "[dependencies]\nhttp = { path = \"../http\" }\n",
            "http is not vendored",
        ),
        (
            "[dependencies]\nnope.workspace = true\n",
            "does not declare nope",
        ),
        (
            "[dependencies]\nserde = { workspace = true, features = [\"rc\"] }\n",
            "not a form",
        ),
        (
            "[dependencies]\nserde = { version = \"1\",\n",
            "spans several lines",
        ),
    ] {
        let e = vendored_manifest("x", manifest).expect_err(manifest);
        assert!(e.contains(says), "{manifest}: {e}");
    }
}

#[test]
fn backend_names_are_found_anywhere_in_the_config() {
    let mut names = vec!["extra".to_string()];
    backend_names(
        &json!({"backend": "prom", "canary": {"backend": "dd"}, "list": [{"backend": "prom"}]}),
        &mut names,
    );
    assert_eq!(names, ["extra", "prom", "dd"]);
}
