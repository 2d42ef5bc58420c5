//! The `prepare-data` binary: outputs on success, byte-identical reruns, the default sources, and
//! exit code 2 with a file:line:field message for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_open-constitution");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn prepare(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .arg("prepare-data")
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn source(kind: &str, rel: &str) -> String {
    format!("{kind}={}", fixtures().join(rel).display())
}

#[test]
fn writes_outputs_and_reruns_identically() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        source("pku", "pku.jsonl"),
        source("xstest", "xstest"),
        source("gptfuzz", "gptfuzz/train.csv"),
    ];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut args = vec![
            "--out",
            "out/train.jsonl",
            "--summary",
            "out/summary.json",
            "--split",
            "0.6,0.2,0.2",
        ];
        for s in &sources {
            args.extend(["--source", s.as_str()]);
        }
        let out = prepare(dir.path(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |n: &str| std::fs::read(dir.path().join("out").join(n)).unwrap();
        runs.push([
            read("train.jsonl"),
            read("xstest_eval.jsonl"),
            read("summary.json"),
        ]);
    }
    assert_eq!(runs[0], runs[1]);
    let summary: serde_json::Value = serde_json::from_slice(&runs[0][2]).unwrap();
    assert_eq!(summary["training"]["total"], 12);
    assert_eq!(summary["eval"]["total"], 6);
    assert_eq!(summary["split_fractions"]["train"], 0.6);
}

#[test]
fn bad_input_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = r#"{"prompt":"p","response":"r","label":0}"#;
    std::fs::write(
        &bad,
        format!(
            "{good}\n\n{}\n",
            r#"{"prompt":"q","response":"r","label":2}"#
        ),
    )
    .unwrap();
    let src = format!("jsonl={}", bad.display());
    let out = prepare(dir.path(), &["--source", &src, "--out", "o.jsonl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.jsonl:3: field `label`: expected 0 or 1, found 2"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("o.jsonl").exists(),
        "nothing written on failure"
    );

    let summary = dir.path().join("s.json");
    let out = prepare(
        dir.path(),
        &[
            "--source",
            &src,
            "--out",
            "o.jsonl",
            "--skip-invalid",
            "--summary",
            "s.json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    assert_eq!(
        (
            s["invalid_skipped"].as_u64(),
            s["training"]["total"].as_u64()
        ),
        (Some(1), Some(1))
    );

    let csv = dir.path().join("train.csv");
    std::fs::write(
        &csv,
        "question,Response,label\nWhat?,\"multi\nline\",0\nWhy?,fine,yes\n",
    )
    .unwrap();
    let out = prepare(
        dir.path(),
        &["--source", &format!("gptfuzz={}", csv.display())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("train.csv:4: field `label`"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--source", "parquet=x"][..],
        &["--split", "0.5,0.5"],
        &["--cap-source", "pku"],
    ] {
        let out = prepare(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = prepare(dir.path(), &["--source", "pku=missing.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
}

#[test]
fn default_sources_are_the_shared_files_or_nothing() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let out = prepare(&project, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no --source given"), "{stderr}");

    let raw = root.path().join("shared/data/raw");
    std::fs::create_dir_all(raw.join("gptfuzz")).unwrap();
    std::fs::create_dir_all(raw.join("xstest")).unwrap();
    for f in ["train.csv", "question_list.csv"] {
        std::fs::copy(
            fixtures().join("gptfuzz").join(f),
            raw.join("gptfuzz").join(f),
        )
        .unwrap();
    }
    let xs = "xstest_v2_completions_modela.csv";
    std::fs::copy(
        fixtures().join("xstest").join(xs),
        raw.join("xstest").join(xs),
    )
    .unwrap();
    let out = prepare(&project, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("gptfuzz=../shared/data/raw/gptfuzz/train.csv"),
        "{stderr}"
    );
    let train = std::fs::read_to_string(project.join("data/training_data.jsonl")).unwrap();
    assert_eq!(train.lines().count(), 6);
    let eval = std::fs::read_to_string(project.join("data/xstest_eval.jsonl")).unwrap();
    assert_eq!(eval.lines().count(), 3);
}

#[test]
fn falls_back_to_the_example_set() {
    let root = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples/examples.jsonl");
    if !examples.is_file() {
        eprintln!("skipping: no {}", examples.display());
        return;
    }
    std::fs::create_dir_all(root.path().join("data/examples")).unwrap();
    std::fs::copy(&examples, root.path().join("data/examples/examples.jsonl")).unwrap();
    let out = prepare(
        root.path(),
        &["--shared-data", "nowhere", "--summary", "data/s.json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("example set"), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("data/s.json")).unwrap()).unwrap();
    assert_eq!(s["training"]["conflicting_pairs"], 0);
    assert_eq!(s["training"]["duplicates_dropped"], 0);
    assert_eq!(
        s["training"]["split_reassigned"], 0,
        "the example set's own splits are consistent"
    );
}

/// Issue 17 item 4: outputs naming one file overwrote each other (training data replaced by
/// the summary), exit 0.
#[test]
fn outputs_naming_one_file_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let old = dir.path().join("out/train.jsonl");
    std::fs::write(&old, "old training data\n").unwrap();
    let pku = source("pku", "pku.jsonl");
    let xstest = source("xstest", "xstest");
    let abs = old.display().to_string();
    for (flag, same) in [
        ("--summary", "./out/../out/train.jsonl"),
        ("--eval-out", abs.as_str()),
    ] {
        let out = prepare(
            dir.path(),
            &[
                "--out",
                "out/train.jsonl",
                flag,
                same,
                "--source",
                &pku,
                "--source",
                &xstest,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains(&format!("--out and {flag} both name")),
            "{flag}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&old).unwrap(),
            "old training data\n",
            "nothing written"
        );
    }
}
