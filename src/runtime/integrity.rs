//! Checking a graph file against the sha256 its manifest records, before a session loads it: a
//! damaged or swapped `model.onnx` would otherwise run (and extract NaNs, or another model's
//! states) under the good model's hash.
//!
//! Hashing a 1 GB graph costs seconds, so a success is remembered in a small file beside the
//! graph (`.NAME.verified.json`) keyed by the graph's canonical path, size and modification
//! time: any of them changing, or the expected hash changing, means hashing again. A folder that
//! cannot be written to is simply verified every time.

use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_bytes_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a past successful check saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Verified {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// The cache file remembering `file`'s last successful check.
pub fn cache_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.verified.json"))
}

/// The cache key of `file` as it is now, expecting `sha256`.
fn current(file: &Path, sha256: &str) -> Result<Verified> {
    let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(Verified {
        path: file.canonicalize().map_err(|e| Error::io(file, e))?,
        size: meta.len(),
        mtime_ns,
        sha256: sha256.to_ascii_lowercase(),
    })
}

/// Checks `file` has sha256 `expected` (named by `manifest` in the error), hashing only when no
/// matching cache entry says it was checked as it is now.
pub fn verify_file(file: &Path, expected: &str, manifest: &Path) -> Result<()> {
    let now = current(file, expected)?;
    let cache = cache_path(file);
    let cached: Option<Verified> = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if cached.as_ref() == Some(&now) {
        return Ok(());
    }
    let actual = sha256_file(file)?;
    if actual != now.sha256 {
        return Err(Error::Model(format!(
            "{} does not match {}: its sha256 is {actual}, the manifest records {expected}; the \
             file is damaged or was replaced: re-export the model (or restore the file)",
            file.display(),
            manifest.display()
        )));
    }
    let mut bytes = serde_json::to_vec_pretty(&now).expect("serializes");
    bytes.push(b'\n');
    if let Err(e) = write_bytes_atomic(&cache, &bytes) {
        // Only a speed-up: a read-only model folder is checked on every load instead.
        tracing::debug!("cannot record the graph check in {}: {e}", cache.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_hashed_again_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.onnx");
        std::fs::write(&f, b"abc").unwrap();
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let manifest = dir.path().join("manifest.json");
        verify_file(&f, good, &manifest).unwrap();
        assert!(cache_path(&f).is_file(), "success remembered");
        verify_file(&f, good, &manifest).unwrap();
        std::fs::write(&f, b"abd").unwrap();
        // Same size; a distinct mtime as any later write has (two writes may share a tick).
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let err = verify_file(&f, good, &manifest).unwrap_err().to_string();
        assert!(err.contains("g.onnx") && err.contains("re-export"), "{err}");
        let err = verify_file(&f, &"0".repeat(64), &manifest).unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }
}
