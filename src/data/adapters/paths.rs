//! Which files a `--source` path names (a file, an XSTest directory, or a `*`/`?` pattern) and
//! whether the kind can read them.

use super::{SourceKind, SourceSpec};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The files a source path names: the file itself; for XSTest, every `*completions*.csv` in a
/// directory; for any kind, the matches of a `*`/`?` pattern in the last path component.
pub fn expand_paths(spec: &SourceSpec) -> Result<Vec<PathBuf>> {
    let path = &spec.path;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (dir, pattern) = if path.is_dir() {
        if spec.kind != SourceKind::XsTest {
            let msg = format!("{} is a directory; name the file", path.display());
            return Err(Error::Prepare(msg));
        }
        (path.as_path(), "*completions*.csv")
    } else if name.contains(['*', '?']) {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        (parent.unwrap_or(Path::new(".")), name)
    } else if path.is_file() {
        return Ok(vec![path.clone()]);
    } else {
        return Err(Error::Prepare(format!("{}: no such file", path.display())));
    };
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| glob_match(pattern, n))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        let msg = format!(
            "{}: no files match `{pattern}` in {}",
            spec.kind.as_str(),
            dir.display()
        );
        return Err(Error::Prepare(msg));
    }
    Ok(files)
}

/// Matches a file name against a pattern with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard matching with one backtrack point: linear in practice.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Rejects formats the adapters cannot read, with the one-line conversion for parquet.
pub fn check_extension(kind: SourceKind, file: &Path) -> Result<()> {
    let name = file.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") {
        return Err(Error::Prepare(format!(
            "{}: parquet is not read; convert it to JSONL first, e.g. \
             python -c \"import pandas as pd; pd.read_parquet('{0}').to_json('{0}.jsonl', orient='records', lines=True)\"",
            file.display()
        )));
    }
    let csv = name.ends_with(".csv") || name.ends_with(".csv.gz");
    let wants_csv = matches!(
        kind,
        SourceKind::GptFuzz | SourceKind::XsTest | SourceKind::SafeRlhfMini | SourceKind::JailJudge
    );
    if csv != wants_csv {
        let want = match kind {
            _ if wants_csv => "a .csv",
            // GuardReasoner redistributes BeaverTails as one JSON list.
            SourceKind::BeaverTails => "a .jsonl, .jsonl.gz or .json (a JSON list)",
            _ => "a .jsonl or .jsonl.gz",
        };
        let msg = format!(
            "{}: {} sources are read from {want} file",
            file.display(),
            kind.as_str()
        );
        return Err(Error::Prepare(msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        assert!(glob_match(
            "*completions*.csv",
            "xstest_v2_completions_gpt4.csv"
        ));
        assert!(!glob_match("*completions*.csv", "xstest_prompts.csv"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "ac"));
    }
}
