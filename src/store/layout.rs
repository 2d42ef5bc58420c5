//! Which files of a store directory the store owns, and the writer's lock.
//!
//! A store shares its folder with nothing it did not write, so it never removes anything but the
//! exact names it writes (and temp files of those names, see [`crate::fsutil::temp_base`]); a
//! non-empty folder without a store of its own is refused rather than written into. One writer
//! at a time holds an advisory `flock` on [`LOCK_FILE`], which records its pid for the error a
//! second writer gets.

use crate::error::{Error, IoContext, Result};
use crate::fsutil::temp_base;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The writer's lock file, inside the store directory.
pub const LOCK_FILE: &str = "writer.lock";

/// A store-owned file name: what it is, for cleanup decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// `meta.json`, `rows.jsonl`, the lock file.
    Fixed,
    /// `shard-NNNNN.safetensors` or `shard-NNNNN.rows.jsonl` of shard `index`.
    Shard(usize),
}

/// Whether `name` is a file the store writes (not a temp file).
pub fn owned(name: &str) -> Option<Owned> {
    if matches!(name, "meta.json" | "rows.jsonl" | LOCK_FILE) {
        return Some(Owned::Fixed);
    }
    let rest = name.strip_prefix("shard-")?;
    let digits = rest
        .strip_suffix(".safetensors")
        .or_else(|| rest.strip_suffix(".rows.jsonl"))?;
    // shard_stem pads to five digits; larger indices simply have more.
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Owned::Shard)
}

/// Whether `name` is a temp file of a store-owned name (left by an interrupted write).
pub fn owned_temp(name: &str) -> bool {
    temp_base(name).is_some_and(|base| owned(base).is_some())
}

/// Refuses to write a store into an existing folder that holds files the store did not write
/// and no store (`meta.json`) of its own: the user's files there are not ours to mix with.
pub fn check_not_foreign(dir: &Path) -> Result<()> {
    if dir.join("meta.json").exists() {
        return Ok(());
    }
    let mut foreign = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name().to_string_lossy().into_owned();
        if owned(&name).is_none() && !owned_temp(&name) {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    foreign.truncate(5);
    Err(Error::Store(format!(
        "{} is not empty and holds no activation store (it has {}); refusing to write a store \
         among other files: pass a new or empty folder as --out",
        dir.display(),
        foreign.join(", ")
    )))
}

/// An exclusive advisory lock on a store directory, held until dropped.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock of `dir` without waiting; when another process holds it, the error names
    /// its pid.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(&path, err));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            return Err(Error::Store(format!(
                "{} is being written by {holder} (it holds {}); wait for that run to finish or \
                 stop it, or write to another --out",
                dir.display(),
                path.display()
            )));
        }
        // Only the holder writes its pid, so a reader of the file sees whose lock it is.
        (|| {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        })()
        .at(&path)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_store_names_are_owned() {
        for name in [
            "meta.json",
            "rows.jsonl",
            "writer.lock",
            "shard-00007.safetensors",
            "shard-123456.rows.jsonl",
        ] {
            assert!(owned(name).is_some(), "{name}");
        }
        for name in [
            "page.tmpl",
            "my.tmp.bak",
            "shard-00007-notes.txt",
            "shard-12345.csv",
            "shard-7.safetensors",
            "shard-0000x.rows.jsonl",
            "meta.json.bak",
        ] {
            assert!(owned(name).is_none() && !owned_temp(name), "{name}");
        }
        assert!(owned_temp("shard-00002.rows.jsonl.tmp123"));
        assert!(owned_temp("meta.json.tmp9.4"));
        assert!(!owned_temp("notes.txt.tmp9.4"));
    }
}
