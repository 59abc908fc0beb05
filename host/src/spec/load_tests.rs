//! The loader against hostile files and folders: what it reads, what it refuses, where.

use super::*;

/// A rollout named `name`, valid on its own.
fn rollout(name: &str) -> String {
    format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: full\n      weight: 100\n"
    )
}

fn shown(errors: &[SpecError], root: &Path) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}: {}",
                e.file.strip_prefix(root).unwrap_or(&e.file).display(),
                e.line,
                e.col,
                e.message
            )
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn a_configmap_mount_loads_each_document_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let stamp = root.join("..2026_11_29_07_00_00.123");
    std::fs::create_dir(&stamp).unwrap();
    std::fs::write(stamp.join("rollout.yaml"), rollout("checkout")).unwrap();
    std::fs::write(stamp.join("other.yml"), rollout("search")).unwrap();
    symlink("..2026_11_29_07_00_00.123", root.join("..data")).unwrap();
    symlink("..data/rollout.yaml", root.join("rollout.yaml")).unwrap();
    symlink("..data/other.yml", root.join("other.yml")).unwrap();
    // Other dot-entries are skipped too, folders and files alike.
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/x.yaml"), rollout("checkout")).unwrap();
    std::fs::write(root.join(".backup.yaml"), rollout("checkout")).unwrap();
    let bundle = load(&[root.to_path_buf()]).unwrap_or_else(|e| panic!("{e:#?}"));
    let names: Vec<(&str, PathBuf)> = bundle
        .rollouts
        .iter()
        .map(|r| (r.name.as_str(), r.file.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("search", root.join("other.yml")),
            ("checkout", root.join("rollout.yaml"))
        ]
    );
    // A hidden file named on purpose is read.
    let named = load(&[root.join(".backup.yaml")]).unwrap();
    assert_eq!(named.rollouts.len(), 1);
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_folder_is_a_problem_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.yaml"), rollout("checkout")).unwrap();
    let fifo = root.join("b.yaml");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let errors = load(&[root.to_path_buf()]).unwrap_err();
    assert_eq!(
        shown(&errors, root),
        [
            "b.yaml:0:0: not a regular file but a FIFO (named pipe); rollgate reads only regular files: put a file there or move this one away"
        ]
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_device_named_as_a_spec_is_refused() {
    let errors = load(&[PathBuf::from("/dev/zero")]).unwrap_err();
    assert_eq!(
        shown(&errors, Path::new("/nowhere")),
        [
            "/dev/zero:0:0: not a regular file but a character device; rollgate reads only regular files: put a file there or move this one away"
        ]
    );
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_not_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("team")).unwrap();
    std::fs::write(root.join("team/a.yaml"), rollout("checkout")).unwrap();
    symlink(root, root.join("team/up")).unwrap();
    symlink("loop-b", root.join("loop-a")).unwrap();
    symlink("loop-a", root.join("loop-b")).unwrap();
    let bundle = load(&[root.to_path_buf()]).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(bundle.rollouts.len(), 1);
    // A looping link named *.yaml is listed and reported, once.
    symlink("self.yaml", root.join("self.yaml")).unwrap();
    let errors = load(&[root.to_path_buf()]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        shown(&errors, root)[0].starts_with("self.yaml:0:0: cannot read: "),
        "{errors:#?}"
    );
}

#[test]
fn a_file_over_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    let comment = "#".repeat(1023) + "\n";
    let size = usize::try_from(crate::files::SPEC_FILE.bytes).unwrap();
    std::fs::write(&file, comment.repeat(size / 1024 + 1)).unwrap();
    let errors = load(std::slice::from_ref(&file)).unwrap_err();
    assert_eq!(
        shown(&errors, dir.path()),
        [
            "big.yaml:0:0: larger than 4 MiB, the most rollgate reads from a spec file; split its documents over several files"
        ]
    );
}

#[test]
fn all_files_together_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    // 17 files of 3.9 MiB: the 17th passes 64 MiB.
    let comment = "#".repeat(1023) + "\n";
    let text = comment.repeat(3900);
    for i in 0..17 {
        std::fs::write(dir.path().join(format!("f{i:02}.yaml")), &text).unwrap();
    }
    let errors = load(&[dir.path().to_path_buf()]).unwrap_err();
    assert_eq!(
        shown(&errors, dir.path()),
        [
            "f16.yaml:0:0: the spec files add up to more than 64 MiB, the most rollgate loads at once; this file and the rest are not read"
        ]
    );
}

#[test]
fn documents_per_file_are_capped_empty_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.yaml");
    let max = crate::files::MAX_DOCUMENTS_PER_FILE;
    // Exactly the cap: fine (empty documents are skipped).
    std::fs::write(&file, rollout("checkout") + &"---\n".repeat(max - 1)).unwrap();
    assert_eq!(load(std::slice::from_ref(&file)).unwrap().rollouts.len(), 1);
    // A million empty documents: one problem, where the first one too many starts.
    std::fs::write(&file, "---\n".repeat(1_000_000)).unwrap();
    let errors = load(std::slice::from_ref(&file)).unwrap_err();
    assert_eq!(
        shown(&errors, dir.path()),
        [
            "docs.yaml:1001:1: more than 1000 documents in one file (empty ones count too); this is document 1001: split the file"
        ]
    );
}

#[test]
fn problems_are_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text: String = (0..250)
        .map(|i| format!("---\napiVersion: rollgate.dev/v1alpha1\nkind: Nope{i}\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    let errors = load(std::slice::from_ref(&file)).unwrap_err();
    assert_eq!(errors.len(), crate::files::MAX_PROBLEMS_SHOWN + 1);
    assert_eq!(problem_count(&errors), 250);
    let lines = shown(&errors, dir.path());
    assert!(
        lines[0].starts_with("bad.yaml:3:7: unknown kind \"Nope0\""),
        "{lines:?}"
    );
    assert!(
        lines[99].starts_with("bad.yaml:300:7: unknown kind \"Nope99\""),
        "{lines:?}"
    );
    assert_eq!(
        errors[100].to_string(),
        "… and 150 more problem(s) not shown; fix the ones above first"
    );
    assert_eq!(errors[100].not_shown(), Some(150));
    assert_eq!(errors[99].not_shown(), None);
}

#[test]
fn loading_stops_reading_after_many_problems() {
    let dir = tempfile::tempdir().unwrap();
    let doc = "---\napiVersion: rollgate.dev/v1alpha1\nkind: Nope\n";
    for i in 0..12 {
        std::fs::write(dir.path().join(format!("f{i:02}.yaml")), doc.repeat(1000)).unwrap();
    }
    let errors = load(&[dir.path().to_path_buf()]).unwrap_err();
    // 10 files of 1000 problems are read, the 11th is not.
    assert_eq!(problem_count(&errors), 10_001);
    assert_eq!(
        errors.last().map(ToString::to_string),
        Some("… and 9901 more problem(s) not shown; fix the ones above first".into())
    );
}

#[test]
fn invalid_utf8_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latin1.yaml");
    let mut bytes = rollout("checkout").into_bytes();
    // `  stableVersion: v1` → `  stableVersion: v\xe91`
    let key = b"stableVersion: v";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes.insert(at + key.len(), 0xe9);
    std::fs::write(&file, bytes).unwrap();
    let errors = load(std::slice::from_ref(&file)).unwrap_err();
    assert_eq!(
        shown(&errors, dir.path()),
        [
            "latin1.yaml:6:19: not UTF-8 text (the first invalid byte is here); save the file as UTF-8"
        ]
    );
}

/// A folder of many documents is read on several threads: what loads and what is wrong
/// come out in the folder's order, as if read one after another.
#[test]
fn a_large_folder_read_on_several_threads_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut wrong = Vec::new();
    for f in 0..7 {
        let mut text = String::new();
        for d in 0..45 {
            let name = format!("r{f}-{d}");
            if (f * 45 + d) % 11 == 5 {
                // Line of `kind:` in this document of the file.
                wrong.push(format!(
                    "f{f}.yaml:{}:7: unknown kind \"Nope\"",
                    text.lines().count() + 3
                ));
                text += "---\napiVersion: rollgate.dev/v1alpha1\nkind: Nope\n";
            } else {
                expected.push(name.clone());
                text += "---\n";
                text += &rollout(&name);
            }
        }
        std::fs::write(dir.path().join(format!("f{f}.yaml")), text).unwrap();
    }
    let each = load_each(&[dir.path().to_path_buf()]);
    let names: Vec<&str> = each
        .bundle
        .rollouts
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, expected);
    let problems: Vec<String> = shown(&each.other, dir.path())
        .into_iter()
        .map(|l| l.split(';').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(problems, wrong);
    assert!(each.invalid.is_empty());
}

/// The cap on problems stops in the middle of a file as it did when files were read one
/// document after another: the documents after it are not taken, the next file is named as
/// not checked.
#[test]
fn the_cap_on_problems_stops_inside_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let one = "---\napiVersion: rollgate.dev/v1alpha1\nkind: Nope\n";
    // Two problems: no apiVersion, unknown kind.
    let two = "---\nkind: Nope\n";
    std::fs::write(dir.path().join("f0.yaml"), one.repeat(2)).unwrap();
    for f in 1..=6 {
        std::fs::write(dir.path().join(format!("f{f}.yaml")), two.repeat(1000)).unwrap();
    }
    let sources: Vec<(PathBuf, String)> = (0..=6)
        .map(|f| {
            let file = dir.path().join(format!("f{f}.yaml"));
            let text = std::fs::read_to_string(&file).unwrap();
            (file, text)
        })
        .collect();
    let (_, errors) = resolve::load_sources_partial(&sources);
    // 2 + 4 × 2000 + 999 × 2 = 10,000 problems: f5's last document is not taken.
    assert_eq!(errors.len(), 10_001);
    let in_f5: Vec<&SpecError> = errors
        .iter()
        .filter(|e| e.file == dir.path().join("f5.yaml"))
        .collect();
    assert_eq!(in_f5.len(), 1998);
    assert_eq!(in_f5.last().map(|e| e.line), Some(999 * 2));
    let last = errors.last().unwrap();
    assert_eq!(last.file, dir.path().join("f6.yaml"));
    assert!(last.message.starts_with("not checked"), "{last:?}");
}
