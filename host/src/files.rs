//! Reading the operator's files: one walker for spec folders and one reader for every file
//! rollgate reads on an operator's behalf (spec files, recordings, tokens, fixtures,
//! plugin configurations).
//!
//! The rules, the same for `lint`, `run`, `replay`, `verify` and `serve` (its loader and its
//! change detection alike):
//!
//! - **Regular files only.** A FIFO, a device, a socket or a folder where a file is
//!   expected is an error naming it. The file is opened without blocking (a FIFO without
//!   a writer would otherwise hang the open) and the *opened* file's metadata is checked
//!   before a byte is read, so nothing can swap it in between.
//! - **A size cap per kind of file** ([`SPEC_FILE`], [`RECORDING`], [`SMALL_FILE`]),
//!   enforced while reading (`take(cap + 1)`), so a file whose metadata lies (a `/proc`
//!   file, a device) cannot grow memory either.
//! - **Dot-entries below a folder are skipped** (`.git`, editor backups, and the `..data`
//!   and `..TIMESTAMP` links of a Kubernetes ConfigMap mount, whose visible files are
//!   links into them). A path named explicitly is always read.
//! - **Symlinked folders are not followed**; symlinked files are. A real folder seen twice
//!   (a bind mount of a parent) is not walked again, and the walk stops at
//!   [`MAX_DEPTH`] folders deep and [`MAX_SPEC_FILES`] files: no layout makes it loop.
//!
//! The loader adds its own caps on top: [`MAX_SPEC_TOTAL_BYTES`] over all the files,
//! [`MAX_DOCUMENTS_PER_FILE`] and [`MAX_PROBLEMS_SHOWN`].

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// How much of one kind of file rollgate reads, and what to do about a larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The most bytes read.
    pub bytes: u64,
    /// The kind of file, for messages (`a spec file`).
    pub what: &'static str,
    /// What an operator does about a larger one.
    pub advice: &'static str,
}

/// A spec file (YAML documents), also a `--target` backend file.
pub const SPEC_FILE: Cap = Cap {
    bytes: 4 * MIB,
    what: "a spec file",
    advice: "split its documents over several files",
};

/// A replay backend's recording (rollgate JSON or OpenMetrics text).
pub const RECORDING: Cap = Cap {
    bytes: 64 * MIB,
    what: "a recording",
    advice: "record a shorter range, a longer step or fewer queries",
};

/// A small input file: `--tokens`, `--config-file`, `--fixture`.
pub const SMALL_FILE: Cap = Cap {
    bytes: MIB,
    what: "a tokens, fixture or configuration file",
    advice: "give a smaller file",
};

/// The most bytes all spec files of one load add up to.
pub const MAX_SPEC_TOTAL_BYTES: u64 = 64 * MIB;

/// The most spec files one folder may hold (below it, at any depth).
pub const MAX_SPEC_FILES: usize = 10_000;

/// The most folders deep a walk goes.
pub const MAX_DEPTH: usize = 32;

/// The most YAML documents (`---`-separated, empty ones included) in one spec file.
pub const MAX_DOCUMENTS_PER_FILE: usize = 1_000;

/// The most problems a load reports one by one; the rest are counted ("… and N more").
pub const MAX_PROBLEMS_SHOWN: usize = 100;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// Not a regular file: what it is instead (`a FIFO (named pipe)`).
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge(Cap),
    /// Not UTF-8: the 1-based line and column (in characters) of the first invalid byte.
    NotUtf8 {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot read: {e}"),
            ReadError::NotRegular(kind) => write!(
                f,
                "not a regular file but {kind}; rollgate reads only regular files: put a file \
                 there or move this one away"
            ),
            ReadError::TooLarge(cap) => write!(
                f,
                "larger than {}, the most rollgate reads from {}; {}",
                size(cap.bytes),
                cap.what,
                cap.advice
            ),
            ReadError::NotUtf8 { .. } => f.write_str(
                "not UTF-8 text (the first invalid byte is here); save the file as UTF-8",
            ),
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// The error as a sentence that names the file (`cannot read PATH: …`, `PATH: …`,
    /// `PATH:LINE:COL: …`).
    pub fn describe(&self, path: &Path) -> String {
        match self {
            ReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
            ReadError::NotUtf8 { line, col } => format!("{}:{line}:{col}: {self}", path.display()),
            _ => format!("{}: {self}", path.display()),
        }
    }

    /// The error for a file given by a command-line flag: `cannot read --fixture PATH: …`,
    /// `--fixture PATH: …`.
    pub fn describe_as(&self, what: &str, path: &Path) -> String {
        match self {
            ReadError::Io(e) => format!("cannot read {what} {}: {e}", path.display()),
            _ => format!("{what} {}", self.describe(path)),
        }
    }

    /// Where in the file the problem is (only for text that is not UTF-8).
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ReadError::NotUtf8 { line, col } => Some((*line, *col)),
            _ => None,
        }
    }
}

/// `4 MiB`, `1 MiB`, `512 bytes`.
fn size(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a non-regular file is, for messages.
fn kind_of(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Open `path` for reading without blocking (a FIFO cannot hang the open) and check that
/// what was opened is a regular file no larger than the cap.
fn open_regular(path: &Path, cap: &Cap) -> Result<std::fs::File, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // On a regular file O_NONBLOCK changes nothing; on a FIFO it makes the open return
        // at once instead of waiting for a writer.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is.
            return Err(match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                    ReadError::NotRegular(kind_of(meta.file_type()))
                }
                _ => ReadError::Io(e),
            });
        }
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > cap.bytes {
        return Err(ReadError::TooLarge(*cap));
    }
    Ok(file)
}

/// Read a regular file of at most `cap.bytes` bytes.
pub fn read_bytes(path: &Path, cap: &Cap) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path, cap)?;
    let mut bytes = Vec::new();
    // The metadata may lie (a /proc file says 0): never read more than the cap allows.
    file.take(cap.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap.bytes {
        return Err(ReadError::TooLarge(*cap));
    }
    Ok(bytes)
}

/// Write `bytes` to `path` so that a reader sees all of it or nothing: a temporary file in
/// the same folder (so the rename stays on one file system), synced, then renamed over
/// `path`; the temporary file is removed if any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".tmp-{}-{n}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Read a regular UTF-8 text file of at most `cap.bytes` bytes.
pub fn read_text(path: &Path, cap: &Cap) -> Result<String, ReadError> {
    let bytes = read_bytes(path, cap)?;
    utf8(bytes)
}

/// Bytes as text; not UTF-8 is an error at the line and column of the first invalid byte.
pub fn utf8(bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = &bytes[..valid.min(bytes.len())];
        // `before` is valid UTF-8 by construction.
        let text = std::str::from_utf8(before).unwrap_or_default();
        let line = text.matches('\n').count() + 1;
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        let col = text[line_start..].chars().count() + 1;
        ReadError::NotUtf8 { line, col }
    })
}

/// The spec files below a folder, and the problems met walking it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walk {
    /// Every `*.yaml` / `*.yml` entry that is not a folder, in sorted order (whether each
    /// is a regular file is checked when it is read).
    pub files: Vec<PathBuf>,
    /// Folders that could not be read, or why the walk stopped: `(path, message)`.
    pub problems: Vec<(PathBuf, String)>,
}

/// Whether an entry of a folder is walked at all: dot-entries are not.
pub fn visible(name: &std::ffi::OsStr) -> bool {
    !name.as_encoded_bytes().starts_with(b".")
}

fn is_spec_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// Every spec file (`*.yaml`, `*.yml`) below `dir`, by the rules of this module.
pub fn spec_files(dir: &Path) -> Walk {
    let mut walker = Walker::default();
    walker.dir(dir, 0);
    walker.walk
}

/// A folder's identity: device and inode (a loop of bind mounts revisits the same one).
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[derive(Default)]
struct Walker {
    walk: Walk,
    /// Folders walked, by device and inode.
    seen: HashSet<(u64, u64)>,
    /// Set once [`MAX_SPEC_FILES`] is passed: nothing more is looked at.
    full: bool,
}

impl Walker {
    fn dir(&mut self, dir: &Path, depth: usize) {
        if self.full {
            return;
        }
        if depth > MAX_DEPTH {
            self.walk.problems.push((
                dir.to_path_buf(),
                format!(
                    "folders nested more than {MAX_DEPTH} deep are not read; flatten the layout"
                ),
            ));
            return;
        }
        if let Some(id) = std::fs::metadata(dir).ok().as_ref().and_then(identity)
            && !self.seen.insert(id)
        {
            tracing::debug!(path = %dir.display(), "folder already walked (a bind mount loop?)");
            return;
        }
        let mut entries = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(list) => {
                for entry in list {
                    match entry {
                        Ok(entry) if visible(&entry.file_name()) => {
                            entries.push((entry.path(), entry.file_type()));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.walk
                                .problems
                                .push((dir.to_path_buf(), format!("cannot read the folder: {e}")));
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                self.walk
                    .problems
                    .push((dir.to_path_buf(), format!("cannot read the folder: {e}")));
                return;
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, kind) in entries {
            if self.full {
                return;
            }
            // `file_type` does not follow symlinks: a real folder is a folder, a link is a
            // link.
            match kind {
                Ok(kind) if kind.is_dir() => self.dir(&path, depth + 1),
                Ok(kind) if kind.is_symlink() && path.is_dir() => {
                    tracing::debug!(path = %path.display(), "not following a symlinked folder");
                }
                _ if is_spec_name(&path) => {
                    if self.walk.files.len() >= MAX_SPEC_FILES {
                        self.walk.problems.push((
                            path,
                            format!(
                                "more than {MAX_SPEC_FILES} spec files below the folder; this one \
                                 and the rest are not read: split the configuration"
                            ),
                        ));
                        self.full = true;
                        return;
                    }
                    self.walk.files.push(path);
                }
                _ => {}
            }
        }
    }
}

/// One spec file as change detection sees it: where it is and what it is now (following
/// symlinks, so a ConfigMap's swapped `..data` link is a change).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// The path.
    pub path: PathBuf,
    /// Length, modification time (ns since the epoch), device and inode of what it points
    /// at; all zero when it cannot be looked at.
    pub len: u64,
    /// Modification time, ns since the Unix epoch.
    pub modified_ns: u128,
    /// Device and inode.
    pub id: (u64, u64),
}

fn stamp(path: PathBuf) -> Stamp {
    let meta = std::fs::metadata(&path).ok();
    Stamp {
        len: meta.as_ref().map_or(0, std::fs::Metadata::len),
        modified_ns: meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos()),
        id: meta.as_ref().and_then(identity).unwrap_or((0, 0)),
        path,
    }
}

/// What the spec files of `path` (a folder, walked by [`spec_files`], or one file) look
/// like now, without opening any of them: a change in any stamp is a change of the
/// configuration. A folder's walk problems are part of it (a folder that becomes
/// readable is a change too).
pub fn stamps(path: &Path) -> Vec<Stamp> {
    if !path.is_dir() {
        return vec![stamp(path.to_path_buf())];
    }
    let walk = spec_files(path);
    let mut out: Vec<Stamp> = walk.files.into_iter().map(stamp).collect();
    out.extend(walk.problems.into_iter().map(|(path, _)| Stamp {
        path,
        len: u64::MAX,
        modified_ns: 0,
        id: (0, 0),
    }));
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("entry");
        write_atomic(&path, b"first, longer").expect("write");
        write_atomic(&path, b"second").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("entry")]);
        // A rename that cannot happen (onto a non-empty folder): an error, and the
        // temporary file is gone again.
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("inside"), b"x").expect("write");
        assert!(write_atomic(&folder, b"x").is_err());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("entry"), "folder".into()]
        );
    }

    const TINY: Cap = Cap {
        bytes: 16,
        what: "a test file",
        advice: "write less",
    };

    #[test]
    fn reads_a_regular_file_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "0123456789abcdef").unwrap();
        assert_eq!(read_text(&file, &TINY).unwrap(), "0123456789abcdef");
        std::fs::write(&file, "0123456789abcdefX").unwrap();
        let e = read_text(&file, &TINY).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "larger than 16 bytes, the most rollgate reads from a test file; write less"
        );
        assert_eq!(
            SPEC_FILE.bytes, 4_194_304,
            "the documented cap (README: Limits)"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_device_is_refused_before_a_byte_is_read() {
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/urandom", "a character device"),
        ] {
            let e = read_bytes(Path::new(path), &RECORDING).unwrap_err();
            assert_eq!(
                e.describe(Path::new(path)),
                format!(
                    "{path}: not a regular file but {kind}; rollgate reads only regular files: \
                     put a file there or move this one away"
                )
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_whose_size_lies_is_cut_at_the_cap() {
        // /proc files say 0 bytes and hold more.
        let e = read_bytes(Path::new("/proc/self/maps"), &TINY).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(_)), "{e:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_text(&fifo, &SPEC_FILE).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not a regular file but a FIFO (named pipe)"),
            "{e}"
        );
        // The walker lists it (so the loader reports it) and stamps it without opening it.
        assert_eq!(spec_files(dir.path()).files, [fifo]);
        assert_eq!(stamps(dir.path()).len(), 1);
    }

    #[test]
    fn a_folder_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path(), &SPEC_FILE).unwrap_err();
        assert!(
            e.to_string().starts_with("not a regular file but a folder"),
            "{e}"
        );
    }

    #[test]
    fn invalid_utf8_is_placed_at_its_first_byte() {
        let cases: [(Vec<u8>, (usize, usize)); 4] = [
            (b"\xff".to_vec(), (1, 1)),
            (b"a: 1\nbb: \xc3(".to_vec(), (2, 5)),
            (["a: é\nkey: ü".as_bytes(), b"\xff"].concat(), (2, 7)),
            (b"x\n\n\n\x80".to_vec(), (4, 1)),
        ];
        for (bytes, at) in cases {
            let e = utf8(bytes.clone()).unwrap_err();
            assert_eq!(e.position(), Some(at), "{bytes:?}");
        }
        assert_eq!(
            utf8(b"\xfe".to_vec())
                .unwrap_err()
                .describe(Path::new("x.yaml")),
            "x.yaml:1:1: not UTF-8 text (the first invalid byte is here); save the file as UTF-8"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_walk_skips_dot_entries_and_never_loops() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for f in [
            "b.yaml",
            "a.yml",
            "notes.txt",
            "sub/c.yaml",
            "sub/deeper/d.yaml",
            ".hidden.yaml",
            ".git/e.yaml",
        ] {
            std::fs::write(root.join(f), "x: 1\n").unwrap();
        }
        // Loops: a link to the root, to itself, and a pair.
        symlink(root, root.join("sub/up")).unwrap();
        symlink(root.join("sub/self.yaml"), root.join("sub/self.yaml")).unwrap();
        symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
        symlink(root.join("loop-a"), root.join("loop-b")).unwrap();
        // A symlinked file is read.
        symlink(root.join("b.yaml"), root.join("sub/link.yaml")).unwrap();
        let walk = spec_files(root);
        let names: Vec<String> = walk
            .files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "a.yml",
                "b.yaml",
                "sub/c.yaml",
                "sub/deeper/d.yaml",
                "sub/link.yaml",
                "sub/self.yaml"
            ]
        );
        assert!(walk.problems.is_empty(), "{:?}", walk.problems);
        // The self-link is listed, and reading it says why it cannot be read.
        let e = read_text(&root.join("sub/self.yaml"), &SPEC_FILE).unwrap_err();
        assert!(e.to_string().starts_with("cannot read: "), "{e}");
    }

    #[test]
    fn the_walk_stops_at_its_depth() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        for _ in 0..=MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("x.yaml"), "").unwrap();
        let walk = spec_files(dir.path());
        assert!(walk.files.is_empty());
        assert_eq!(walk.problems.len(), 1, "{:?}", walk.problems);
        assert!(walk.problems[0].1.contains("more than 32 deep"));
    }

    #[cfg(unix)]
    #[test]
    fn stamps_follow_a_configmap_swap() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = root.join("..2026_11_29_07_00_00.123");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("rollout.yaml"), "a: 1\n").unwrap();
        symlink("..2026_11_29_07_00_00.123", root.join("..data")).unwrap();
        symlink("..data/rollout.yaml", root.join("rollout.yaml")).unwrap();
        let before = stamps(root);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0].path, root.join("rollout.yaml"));
        // The new version has the same length: only the file it points at changed.
        let new = root.join("..2026_11_29_08_00_00.456");
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("rollout.yaml"), "a: 2\n").unwrap();
        symlink("..2026_11_29_08_00_00.456", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let after = stamps(root);
        assert_ne!(before, after);
        assert_eq!(after[0].path, root.join("rollout.yaml"));
    }
}
