//! The shared training-JSONL reader: gzip input, a round trip through `prepare-data`'s output, and
//! fuzzing (arbitrary bytes and mutated valid lines) that must never panic.

use open_constitution::data::prepare::{prepare, write_jsonl, PrepareOptions};
use open_constitution::data::{parse_examples, read_examples, ReadOptions};
use open_constitution::Error;
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

const VALID: &str = r#"{"id":"a1","prompt":"How do I bake bread?","response":"Knead, proof, bake.","label":0,"split":"train","topic":"cooking"}"#;

fn opts(skip_invalid: bool) -> ReadOptions {
    ReadOptions { skip_invalid }
}

#[test]
fn reads_gzip_and_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("d.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    writeln!(enc, "{VALID}").unwrap();
    writeln!(enc, r#"{{"prompt":"p","response":"r","label":1}}"#).unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&gz, &bytes).unwrap();
    let (ex, report) = read_examples(&gz, &opts(false)).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].topic.as_deref(), Some("cooking"));
    assert_eq!(report.derived_ids, 1);
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_examples(&gz, &opts(true)).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }),
        "a truncated stream is fatal: {err}"
    );
    let missing = read_examples(&dir.path().join("none.jsonl"), &opts(false)).unwrap_err();
    assert!(missing.to_string().contains("none.jsonl"), "{missing}");
}

#[test]
fn reads_what_prepare_data_writes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data");
    let prepared = prepare(&PrepareOptions {
        sources: vec![
            format!("pku={}", fixtures.join("pku.jsonl").display())
                .parse()
                .unwrap(),
            format!("jsonl={}", fixtures.join("simple.jsonl").display())
                .parse()
                .unwrap(),
        ],
        ..PrepareOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    write_jsonl(&path, &prepared.training).unwrap();
    let (ex, report) = read_examples(&path, &opts(false)).unwrap();
    assert_eq!(report.derived_ids, 0);
    assert_eq!(ex.len(), prepared.training.len());
    for (e, r) in ex.iter().zip(&prepared.training) {
        assert_eq!((&e.id, &e.prompt, e.label), (&r.id, &r.prompt, r.label));
        assert_eq!(e.split, Some(r.split));
        assert_eq!(e.topic.as_ref(), Some(&r.topic));
        assert_eq!(e.source.as_ref(), Some(&r.source));
    }
}

/// Applies byte edits (position fraction, new byte, delete?) to a valid line.
fn mutate(line: &str, edits: &[(f64, u8, bool)]) -> Vec<u8> {
    let mut bytes = line.as_bytes().to_vec();
    for &(at, byte, delete) in edits {
        let i = ((bytes.len() as f64) * at) as usize;
        if delete && i < bytes.len() {
            bytes.remove(i);
        } else {
            bytes.insert(i.min(bytes.len()), byte);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for skip in [false, true] {
            let _ = parse_examples(bytes.as_slice(), Path::new("fuzz.jsonl"), &opts(skip));
        }
    }

    #[test]
    fn mutated_lines_fail_cleanly_or_skip(
        lines in prop::collection::vec(prop::collection::vec((0.0..1.0f64, any::<u8>(), any::<bool>()), 0..4), 1..8)
    ) {
        let mut text = Vec::new();
        for edits in &lines {
            text.extend(mutate(VALID, edits).into_iter().filter(|&b| b != b'\n'));
            text.push(b'\n');
        }
        let file = Path::new("fuzz.jsonl");
        match parse_examples(text.as_slice(), file, &opts(false)) {
            Ok((ex, _)) => prop_assert!(ex.iter().all(|e| e.label <= 1 && !e.prompt.trim().is_empty())),
            Err(Error::Data { file: f, line, .. }) => prop_assert!(f == file && line >= 1 && line <= lines.len()),
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
        let (ex, report) = parse_examples(text.as_slice(), file, &opts(true)).unwrap();
        prop_assert_eq!(ex.len() + report.skipped, report.lines);
        prop_assert_eq!(report.lines + report.blank_lines, lines.len());
    }
}
