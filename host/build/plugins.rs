//! Building the plugins workspace (`plugins/`) for `wasm32-wasip2`, shared by the build
//! scripts of `rollgate` (host/build.rs: the shipped plugins, compiled into the binary) and
//! of `rollgate-test-plugins` (host/test-plugins/build.rs: the test-only plugins, a
//! dev-dependency, so `cargo build`, `cargo check` and a release never build them).
//!
//! [`SHIPPED`] is the one list of the plugins shipped inside rollgate.
//!
//! The plugins are built into `<target dir>/plugins`, next to the host's own artifacts, so a
//! CI run builds them once and `cargo test` inside `plugins/` reuses the same directory.
//! Cargo's dep-info for each plugin is read back to re-run the build script exactly when a
//! plugin source changes.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Shipped inside the binary: (crate name, constant name).
pub const SHIPPED: &[(&str, &str)] = &[
    ("threshold", "THRESHOLD"),
    ("default-policy", "DEFAULT_POLICY"),
    ("canary-judge", "CANARY_JUDGE"),
    ("burn-rate", "BURN_RATE"),
    ("baseline-ratio", "BASELINE_RATIO"),
    ("http-check", "HTTP_CHECK"),
];

/// The plugins workspace of the repository at `root`, built into the current target dir.
pub struct Plugins {
    dir: PathBuf,
    target: PathBuf,
}

impl Plugins {
    /// Register the re-run triggers every plugin build shares (manifests, lock file, WIT)
    /// and check that the wasm32-wasip2 standard library is installed.
    pub fn new(root: &Path) -> Plugins {
        let dir = root.join("plugins");
        let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
        let target = host_target_dir(&out_dir).join("plugins");
        // Every manifest: a plugin's name, version and description are compiled into it.
        for manifest in manifests(&dir) {
            println!("cargo:rerun-if-changed={}", manifest.display());
        }
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.lock").display()
        );
        println!("cargo:rerun-if-changed={}", root.join("wit").display());
        // Its cargo configuration (the plugins' linker flags).
        println!(
            "cargo:rerun-if-changed={}",
            dir.join(".cargo").join("config.toml").display()
        );
        check_target();
        Plugins { dir, target }
    }

    /// Build these plugins (crate names) for wasm32-wasip2, release.
    pub fn build<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.dir)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&self.target);
        for name in names {
            cmd.args(["-p", name]);
        }
        // Flags meant for the host build must not leak into the guest build: clippy's
        // wrapper, host rustflags, a host --target.
        for var in [
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("rollgate: could not run cargo to build the plugins: {e}"));
        if !status.success() {
            panic!(
                "rollgate: building the plugins in {} for wasm32-wasip2 failed (see the errors above)",
                self.dir.display()
            );
        }
    }

    /// Where the component of crate `name` is (or will be) built.
    pub fn path(&self, name: &str) -> PathBuf {
        self.target
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")))
    }

    /// The built component of crate `name`, registering its sources for re-runs.
    pub fn artifact(&self, name: &str) -> PathBuf {
        let wasm = self.path(name);
        if !wasm.is_file() {
            panic!(
                "rollgate: expected {} after building the plugins",
                wasm.display()
            );
        }
        // Dep-info: "<output>: <source> <source> ...", with escaped spaces.
        if let Ok(dep) = fs::read_to_string(wasm.with_extension("d")) {
            for line in dep.lines() {
                if let Some((_, deps)) = line.split_once(": ") {
                    for source in deps.replace("\\ ", "\u{0}").split_whitespace() {
                        println!("cargo:rerun-if-changed={}", source.replace('\u{0}', " "));
                    }
                }
            }
        }
        wasm
    }
}

/// Every `Cargo.toml` under `dir`, skipping build output and hidden folders.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            found.extend(manifests(&path));
        } else if name == "Cargo.toml" {
            found.push(path);
        }
    }
    found
}

/// `<target>/<profile>/build/<pkg>-<hash>/out` → `<target>`; with `--target T`,
/// `<target>/<T>/<profile>/build/...` → `<target>`.
fn host_target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR has the usual depth");
    let parent = profile_dir.parent().expect("profile dir has a parent");
    let is_triple_dir = env::var("TARGET")
        .map(|t| parent.file_name().is_some_and(|n| n == t.as_str()))
        .unwrap_or(false);
    if is_triple_dir {
        parent
            .parent()
            .expect("triple dir has a parent")
            .to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

/// Fail with the fix when the wasm32-wasip2 standard library is not installed.
fn check_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let installed = sysroot
        .map(|s| s.join("lib/rustlib/wasm32-wasip2/lib").is_dir())
        .unwrap_or(false);
    if !installed {
        panic!(
            "rollgate: the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`"
        );
    }
}
