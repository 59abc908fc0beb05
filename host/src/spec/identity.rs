//! Whether a finished run ran the spec the files hold now, independently of where the
//! configuration is mounted.
//!
//! A stored spec keeps absolute paths (its file, where each `provider.config` is written):
//! the engine resolves an `exec` target's folder against them, and problems point there.
//! Comparing those paths would make every finished rollout run again after the folder is
//! moved or mounted elsewhere (a new container, a renamed checkout), applying its steps to
//! production again. So the comparison looks at what decides what a run does:
//!
//! - everything the spec says (versions, target, strategy, phases, metrics and their
//!   configuration, policy, …), exactly;
//! - the folder of the rollout's file *relative to the configuration's root* (an `exec`
//!   target's commands and working folder resolve against it);
//! - not the file's name, not where in it values are written (positions only serve
//!   messages), not the root's own location.
//!
//! Stores written before this rule keep absolute paths too, and need no migration: the
//! stored file's folder is compared by its last components, as many as the current file
//! has below the root.

use super::model::{MetricSpec, RolloutSpec};
use std::path::{Path, PathBuf};

/// The root a rollout's file is relative to: the folder among `paths` (as given to
/// [`super::load`]) that holds it, or the folder of the file when it was named itself.
pub fn root_of(paths: &[PathBuf], file: &Path) -> PathBuf {
    for path in paths {
        let Ok(path) = std::path::absolute(path) else {
            continue;
        };
        if path == file {
            return file.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        if file.starts_with(&path) && path.is_dir() {
            return path;
        }
    }
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// True when `stored` (a spec as the store keeps it, JSON) is the spec `current`, loaded
/// from below `root`, wherever either was loaded from (see the module's comment). A stored
/// spec that cannot be read is not the same.
pub fn same_spec(stored: &str, current: &RolloutSpec, root: &Path) -> bool {
    let Ok(stored) = serde_json::from_str::<RolloutSpec>(stored) else {
        return false;
    };
    // How many components the file has below the root (all of them when it is not below:
    // then the absolute paths are compared, as they are).
    let depth = match current.file.strip_prefix(root) {
        Ok(relative) => relative.components().count(),
        Err(_) => current.file.components().count(),
    };
    located(stored, depth) == located(current.clone(), depth)
}

/// The spec without its locations: the file replaced by the last `depth - 1` folders it is
/// in, every position dropped.
fn located(mut spec: RolloutSpec, depth: usize) -> RolloutSpec {
    let components: Vec<_> = spec.file.components().collect();
    let tail = components.len().saturating_sub(depth);
    let relative: PathBuf = components.get(tail..).unwrap_or_default().iter().collect();
    spec.file = relative.parent().map(Path::to_path_buf).unwrap_or_default();
    spec.failure_policy.config_at = None;
    let background = spec
        .background
        .iter_mut()
        .flat_map(|b| b.metrics.iter_mut());
    let phases = spec.phases.iter_mut().flat_map(|p| p.metrics.iter_mut());
    phases
        .chain(background)
        .for_each(|m: &mut std::sync::Arc<MetricSpec>| {
            std::sync::Arc::make_mut(m).config_at = None
        });
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLOUT: &str = r#"apiVersion: rollgate.dev/v1alpha1
kind: VerificationTemplate
metadata:
  name: errors
spec:
  metrics:
    - name: error-ratio
      provider:
        plugin: threshold
        config: {value: 0.01, max: 0.05}
---
apiVersion: rollgate.dev/v1alpha1
kind: Rollout
metadata:
  name: checkout
spec:
  stableVersion: v1
  canaryVersion: v2
  target:
    exec: {command: [./deploy.sh]}
  strategy:
    canary: {}
  phases:
    - name: canary
      weight: 10
      verification:
        templates: [errors]
    - name: full
      weight: 100
"#;

    fn loaded(root: &Path, file: &str, text: &str) -> RolloutSpec {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        let bundle = super::super::load(&[root.to_path_buf()]).unwrap();
        (*bundle.rollouts[0]).clone()
    }

    #[test]
    fn a_moved_folder_holds_the_same_spec() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let before = loaded(&a.path().join("specs"), "team/checkout.yaml", ROLLOUT);
        let stored = serde_json::to_string(&before).unwrap();
        let after = loaded(&b.path().join("mnt/x"), "team/checkout.yaml", ROLLOUT);
        assert_ne!(before.file, after.file);
        assert!(same_spec(&stored, &after, &b.path().join("mnt/x")));
        assert!(same_spec(&stored, &before, &a.path().join("specs")));
        // Renamed within its folder, or shifted by a comment: the same.
        let c = tempfile::tempdir().unwrap();
        let shifted = format!("# moved\n\n{ROLLOUT}");
        let renamed = loaded(c.path(), "team/rollout.yml", &shifted);
        assert!(same_spec(&stored, &renamed, c.path()));
    }

    #[test]
    fn a_changed_spec_or_folder_below_the_root_is_not_the_same() {
        let a = tempfile::tempdir().unwrap();
        let before = loaded(a.path(), "team/checkout.yaml", ROLLOUT);
        let stored = serde_json::to_string(&before).unwrap();
        let b = tempfile::tempdir().unwrap();
        let changed = loaded(b.path(), "team/checkout.yaml", &ROLLOUT.replace("v2", "v3"));
        assert!(!same_spec(&stored, &changed, b.path()));
        let c = tempfile::tempdir().unwrap();
        let config = loaded(
            c.path(),
            "team/checkout.yaml",
            &ROLLOUT.replace("0.05", "0.06"),
        );
        assert!(!same_spec(&stored, &config, c.path()));
        // Its `./deploy.sh` is another one in another folder.
        let d = tempfile::tempdir().unwrap();
        let elsewhere = loaded(d.path(), "other/checkout.yaml", ROLLOUT);
        assert!(!same_spec(&stored, &elsewhere, d.path()));
        assert!(!same_spec("{not json", &before, a.path()));
    }

    #[test]
    fn the_root_is_the_folder_named_or_the_file_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("specs");
        let file = root.join("a/b.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "").unwrap();
        assert_eq!(root_of(std::slice::from_ref(&root), &file), root);
        assert_eq!(root_of(std::slice::from_ref(&file), &file), root.join("a"));
        assert_eq!(root_of(&[], &file), root.join("a"));
    }
}
