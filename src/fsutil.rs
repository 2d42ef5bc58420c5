//! Small file-system helpers shared by every writer: atomic writes (temp file + fsync + rename), so
//! an interrupted run never leaves a half-written file under its final name.

use crate::error::{IoContext, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The temporary sibling a file is written to before it is renamed into place:
/// `NAME.tmpPID.N`, unique per process and call (threads of one process may write the same file),
/// and recognizable by [`temp_base`] so a store removes only temp files of its own names.
pub fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".tmp{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// The file name a temp file made by [`temp_path`] stands for (`a.json.tmp12.3` -> `a.json`;
/// the older `a.json.tmp12` form too), or `None` for any other name (`page.tmpl`, `x.tmp.bak`).
pub fn temp_base(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once(".tmp")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match suffix.split_once('.') {
        Some((pid, n)) => digits(pid) && digits(n),
        None => digits(suffix),
    };
    (ok && !base.is_empty()).then_some(base)
}

/// Writes a file atomically: `write` fills a buffered temp file, which is synced and renamed over
/// `path`. On error the temp file is removed and `path` is untouched.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.at(path)
}

/// A path's identity for "is this the same file": the canonical path when it exists, else its
/// canonical folder plus its name, else the absolute path with `.` and `..` resolved. Different
/// spellings of one file (`./a`, `d/../a`, an absolute path, a symlink) give the same key.
pub fn path_key(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let absolute = std::env::current_dir().unwrap_or_default().join(path);
    let mut lexical = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    match (
        lexical.parent().map(Path::canonicalize),
        lexical.file_name(),
    ) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => lexical,
    }
}

/// Refuses outputs that name one file twice (under any spelling): the later write would
/// replace the earlier. `outputs` pairs each path with the flag that gave it.
pub fn check_distinct_outputs(outputs: &[(&str, &Path)]) -> Result<()> {
    for (i, (flag, path)) in outputs.iter().enumerate() {
        let key = path_key(path);
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| path_key(p) == key) {
            return Err(crate::Error::Argument(format!(
                "{other} and {flag} both name {}; each output needs its own file",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Writes bytes atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Hex sha256 of a file's bytes, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).at(path)?;
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_cleans_up_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.txt");
        write_bytes_atomic(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"one", "original kept");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp file removed");
    }

    #[test]
    fn temp_names_are_recognized_exactly() {
        let t = temp_path(Path::new("d/meta.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_base(name), Some("meta.json"));
        assert_ne!(
            temp_path(Path::new("x")),
            temp_path(Path::new("x")),
            "unique per call"
        );
        assert_eq!(temp_base("rows.jsonl.tmp123"), Some("rows.jsonl"));
        for other in [
            "page.tmpl",
            "my.tmp.bak",
            "a.tmp",
            "a.tmp12.",
            "a.tmp1.2.3",
            ".tmp1",
        ] {
            assert_eq!(temp_base(other), None, "{other}");
        }
    }

    #[test]
    fn outputs_naming_one_file_are_refused_under_any_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let same = dir.path().join("sub/../a.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = check_distinct_outputs(&[("--out", &a), ("--summary", &same)]).unwrap_err();
        assert!(
            err.to_string().contains("--out and --summary both name"),
            "{err}"
        );
        std::fs::write(&a, "x").unwrap();
        let dotted = dir.path().join("./a.jsonl");
        assert!(check_distinct_outputs(&[("--out", &a), ("--eval-out", &dotted)]).is_err());
        let b = dir.path().join("b.jsonl");
        assert!(check_distinct_outputs(&[("--out", &a), ("--eval-out", &b)]).is_ok());
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
