//! `extract` through the binary: a complete store, resume after a kill without lost or duplicated
//! rows, refusal of other arguments, and clear errors (exit code 2) for bad data, a missing ONNX
//! Runtime library and a graph without the manifest's hidden-state outputs.

mod common;

use common::*;
use open_constitution::store::ActivationStore;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DATA: &str = "data/examples/examples.jsonl";

fn extract(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-q", "extract", "--threads", "1", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

#[test]
fn resume_after_kill_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir("tiny-gemma3");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let args = [
        "--rows-per-shard",
        "16",
        "--max-batch",
        "4",
        "--layers",
        "-1,-3",
    ];
    let whole = tmp.path().join("whole");
    ok(extract(&model, &data, &whole, &args).output().unwrap());

    let killed = tmp.path().join("killed");
    let mut child = extract(&model, &data, &killed, &args).spawn().unwrap();
    let start = Instant::now();
    while !killed.join("shard-00002.safetensors").exists()
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ActivationStore::open(&killed).is_err(),
        "an interrupted store is not readable"
    );
    let out = ok(extract(&model, &data, &killed, &args).output().unwrap());
    assert!(
        !out.contains("extracted 0 rows"),
        "the rerun had work left: {out}"
    );

    let (a, b) = (
        ActivationStore::open(&whole).unwrap(),
        ActivationStore::open(&killed).unwrap(),
    );
    let ids = |s: &ActivationStore| s.rows().iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "same rows in the same order");
    let mut unique = ids(&b);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300, "every example exactly once");
    for layer in a.meta().layers.clone() {
        let (ma, mb) = (
            a.layer_matrix(layer).unwrap(),
            b.layer_matrix(layer).unwrap(),
        );
        let d = max_scaled_diff(mb.as_slice().unwrap(), ma.as_slice().unwrap());
        assert!(d < 1e-4, "layer {layer}: resumed activations differ by {d}");
    }
    // A rerun of a complete store does nothing; other arguments are refused.
    let out = ok(extract(&model, &data, &whole, &args).output().unwrap());
    assert!(out.contains("extracted 0 rows"), "{out}");
    let err = fail(
        extract(&model, &data, &whole, &["--layers", "-2"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("made with other arguments") && err.contains("layers"),
        "{err}"
    );
}

#[test]
fn bad_data_is_reported_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir("tiny-qwen3");
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"prompt\": \"a\", \"response\": \"b\", \"label\": 0}\n{not json\n",
            ":2:",
        ),
        (b"{\"prompt\": \"a\", \"label\": 0}\n", "field `response`"),
        (
            b"{\"prompt\": \"a\", \"response\": \"b\", \"label\": 3}\n",
            "field `label`",
        ),
        (
            b"{\"prompt\": \"a\", \"response\": \"  \", \"label\": 1}\n",
            "field `response`",
        ),
        (
            b"{\"prompt\": \"a\xff\", \"response\": \"b\", \"label\": 1}\n",
            ":1:",
        ),
    ];
    for (i, (bytes, want)) in cases.iter().enumerate() {
        let data = tmp.path().join(format!("bad{i}.jsonl"));
        std::fs::write(&data, bytes).unwrap();
        let err = fail(
            extract(&model, &data, &tmp.path().join("s"), &[])
                .output()
                .unwrap(),
        );
        assert!(
            err.contains(&format!("bad{i}.jsonl")) && err.contains(want),
            "case {i}: {err}"
        );
    }
}

#[test]
fn missing_runtime_and_broken_graphs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let model = model_dir("tiny-qwen3");
    let err = fail(
        extract(
            &model,
            &data,
            &tmp.path().join("s"),
            &["--ort-lib", "/nonexistent/libonnxruntime.so"],
        )
        .output()
        .unwrap(),
    );
    assert!(
        err.contains("ONNX Runtime library not found") && err.contains("just setup"),
        "{err}"
    );

    // A manifest naming a hidden-state output the graph does not have.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in std::fs::read_dir(&model).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, broken.join(p.file_name().unwrap())).unwrap();
        }
    }
    let m = std::fs::read_to_string(broken.join("manifest.json")).unwrap();
    std::fs::write(
        broken.join("manifest.json"),
        m.replace("\"hidden_states.1\"", "\"hidden_states.99\""),
    )
    .unwrap();
    let err = fail(
        extract(&broken, &data, &tmp.path().join("s2"), &[])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("missing outputs") && err.contains("hidden_states.99"),
        "{err}"
    );
    assert!(
        err.contains("hidden_states.2"),
        "lists what the graph has: {err}"
    );

    let err = fail(
        extract(&tmp.path().join("nope"), &data, &tmp.path().join("s3"), &[])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("does not exist") && err.contains("just export"),
        "{err}"
    );
}

#[test]
fn progress_is_logged_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let o = Command::new(bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "extract",
            "--threads",
            "1",
            "--max-examples",
            "20",
            "--model",
        ])
        .arg(model_dir("tiny-gemma3"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("s"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // A log file or cluster job gets progress lines (the bar only draws on a terminal).
    assert!(err.contains("extracted 20/20 rows"), "{err}");
    assert!(err.contains("rows/s") && err.contains("eta"), "{err}");
}

/// Issue 17 items 3 and 10: an empty data file made an empty store (exit 0), a folder as
/// --data was "not found", and --max-tokens beyond the context was accepted.
#[test]
fn unusable_data_and_lengths_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir("tiny-qwen3");
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n  \n").unwrap();
    let err = fail(
        extract(&model, &empty, &tmp.path().join("s1"), &[])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("empty.jsonl") && err.contains("no examples"),
        "{err}"
    );
    let err = fail(
        extract(&model, tmp.path(), &tmp.path().join("s2"), &[])
            .output()
            .unwrap(),
    );
    assert!(err.contains("is a directory"), "{err}");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let err = fail(
        extract(
            &model,
            &data,
            &tmp.path().join("s3"),
            &["--max-tokens", "100000000"],
        )
        .output()
        .unwrap(),
    );
    assert!(
        err.contains("--max-tokens 100000000 exceeds the model's context"),
        "{err}"
    );
}

/// Issue 17 item 10: a relative and an absolute path to one model folder were different models
/// on resume ("holds a store made with other arguments").
#[test]
fn one_model_folder_under_two_spellings_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let out = tmp.path().join("s");
    let args = ["--max-examples", "6"];
    ok(extract(Path::new("models/tiny-qwen3"), &data, &out, &args)
        .output()
        .unwrap());
    let stdout = ok(extract(&model_dir("tiny-qwen3"), &data, &out, &args)
        .output()
        .unwrap());
    assert!(stdout.contains("extracted 0 rows"), "{stdout}");
    ok(extract(
        Path::new("./models/../models/tiny-qwen3"),
        &data,
        &out,
        &args,
    )
    .output()
    .unwrap());
}
