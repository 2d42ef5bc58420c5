//! Helpers shared by the `prepare-data` integration tests.
#![allow(dead_code)]

use open_constitution::data::prepare::{prepare, PrepareOptions, Prepared};
use open_constitution::data::{normalize_prompt, Record, SourceSpec, Split};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

pub fn spec(kind: &str, path: &Path) -> SourceSpec {
    format!("{kind}={}", path.display()).parse().unwrap()
}

pub fn fixture(kind: &str, rel: &str) -> SourceSpec {
    spec(kind, &fixtures().join(rel))
}

pub fn run(sources: Vec<SourceSpec>) -> Prepared {
    prepare(&PrepareOptions {
        sources,
        ..PrepareOptions::default()
    })
    .unwrap()
}

pub fn by_response<'a>(records: &'a [Record], start: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.response.starts_with(start))
        .collect()
}

/// No normalized prompt appears in two splits.
pub fn assert_split_invariant(records: &[Record]) {
    let mut splits: HashMap<String, BTreeSet<Split>> = HashMap::new();
    for r in records {
        splits
            .entry(normalize_prompt(&r.prompt))
            .or_default()
            .insert(r.split);
    }
    for (prompt, s) in splits {
        assert_eq!(s.len(), 1, "prompt {prompt:?} is in splits {s:?}");
    }
}
