//! Where PostgreSQL's binaries are, and which user runs them.

use std::path::{Path, PathBuf};

/// The binaries the harness runs; a bin directory without one of them does not count.
const TOOLS: [&str; 4] = ["initdb", "postgres", "pg_isready", "psql"];

/// Where Debian installs each major version (`/usr/lib/postgresql/15/bin`, …).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The bin directory to use: `ROLLGATE_PG_BIN` when set, else the highest version under
/// `/usr/lib/postgresql/*/bin`. `Ok(None)`: PostgreSQL is not installed. `Err`:
/// `ROLLGATE_PG_BIN` is set but does not hold the binaries (a mistake to report, not a skip).
pub(crate) fn find() -> Result<Option<PathBuf>, String> {
    if let Some(dir) = std::env::var_os("ROLLGATE_PG_BIN").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return match missing(&dir) {
            None => Ok(Some(dir)),
            Some(tool) => Err(format!(
                "ROLLGATE_PG_BIN={}: there is no {tool} there; point it at PostgreSQL's bin \
                 directory (the one holding {}), or unset it to use the highest \
                 {DEBIAN_ROOT}/*/bin",
                dir.display(),
                TOOLS.join(", ")
            )),
        };
    }
    Ok(highest(Path::new(DEBIAN_ROOT)))
}

/// The bin directory of the highest version under `root` (`root/<version>/bin`) that holds
/// every tool; versions compare numerically part by part (`15` > `9.6`).
fn highest(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(version) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if missing(&bin).is_some() {
            continue;
        }
        if best.as_ref().is_none_or(|(seen, _)| version > *seen) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else is not a version directory.
fn version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The first tool `dir` lacks.
fn missing(dir: &Path) -> Option<&'static str> {
    TOOLS.iter().find(|tool| !dir.join(tool).is_file()).copied()
}

/// The user the server runs as when the tests run as root (PostgreSQL refuses root).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `Some(postgres)` when the effective user is root, `None` (run as the current user)
/// otherwise; `Err` when root and there is no `postgres` user.
pub(crate) fn run_as() -> Result<Option<RunAs>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup("postgres").map(Some).ok_or_else(|| {
        "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to \
         run it as (Debian's postgresql package creates one; or run the tests as another user)"
            .to_string()
    })
}

/// The uid and gid of `name` (getpwnam_r: the thread-safe form).
fn lookup(name: &str) -> Option<RunAs> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r fills it with pointers into buf, which
    // outlives every read below (only the integer fields are read).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is its real length.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_and_need_every_tool() {
        let root = tempfile::tempdir().unwrap();
        for (v, complete) in [("9.6", true), ("15", true), ("16", false), ("x", true)] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in TOOLS {
                if complete || tool != "psql" {
                    std::fs::write(bin.join(tool), "").unwrap();
                }
            }
        }
        // 16 lacks psql and "x" is no version: 15 wins over 9.6.
        assert_eq!(highest(root.path()), Some(root.path().join("15/bin")));
        assert_eq!(highest(&root.path().join("absent")), None);
    }
}
