//! The whole journey on a tiny model through the binary: extract -> train -> eval (from a store
//! and from a data file) -> guarded generate (text and JSON, one prompt and a prompts file), and
//! a probe used with another model is refused with the command that fixes it.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn oc(args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-q")
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn extract_train_eval_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = model_dir("tiny-gemma4");
    let (store, probe) = (t.join("store"), t.join("probe"));
    ok(oc(&[
        "extract",
        "--model",
        s(&model),
        "--data",
        "data/examples/examples.jsonl",
        "--out",
        s(&store),
        "--layers",
        "-1,-2",
    ]));
    let out = ok(oc(&[
        "train",
        "--activations",
        s(&store),
        "--layer",
        "-2",
        "--out",
        s(&probe),
        "--alphas",
        "1,10",
    ]));
    assert!(
        out.contains("flag  threshold") && out.contains("test: ROC-AUC"),
        "{out}"
    );
    for f in ["probe.safetensors", "config.json", "calibration.json"] {
        assert!(probe.join(f).is_file(), "{f}");
    }
    let out = ok(oc(&[
        "eval",
        "--probe",
        s(&probe),
        "--activations",
        s(&store),
        "--split",
        "test",
        "--out",
        s(&t.join("ev")),
    ]));
    assert!(out.contains("over-block"), "{out}");
    let out = ok(oc(&[
        "eval",
        "--probe",
        s(&probe),
        "--model",
        s(&model),
        "--data",
        "data/examples/examples.jsonl",
        "--max-examples",
        "40",
        "--out",
        s(&t.join("ev2")),
    ]));
    assert!(out.contains("rows 40"), "{out}");
    assert!(t.join("ev2/roc.svg").is_file() && t.join("ev2/activations/meta.json").is_file());

    // The guard replayed over the data's responses, with stream-level thresholds chosen on them.
    let out = ok(oc(&[
        "eval",
        "--probe",
        s(&probe),
        "--model",
        s(&model),
        "--data",
        "data/examples/examples.jsonl",
        "--max-examples",
        "40",
        "--stream",
        "--stream-fpr",
        "0.25,0.1",
        "--out",
        s(&t.join("ev3")),
    ]));
    assert!(out.contains("guard replay of 40 rows"), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("ev3/stream.json")).unwrap()).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 40);
    let cal = &v["stream_calibration"];
    let (safe_flagged, safe_paused) = (
        cal["safe"]["flagged_or_paused"].as_f64().unwrap(),
        cal["safe"]["paused"].as_f64().unwrap(),
    );
    assert!(safe_flagged <= 0.25 && safe_paused <= 0.1, "{cal}");
    assert!(
        cal["threshold"].as_f64() <= cal["pause_threshold"].as_f64(),
        "{cal}"
    );

    // The same guard overrides as generate: an EMA guard probing every 2 tokens is measured.
    ok(oc(&[
        "eval",
        "--probe",
        s(&probe),
        "--model",
        s(&model),
        "--data",
        "data/examples/examples.jsonl",
        "--max-examples",
        "10",
        "--stream",
        "--ema-alpha",
        "0.5",
        "--probe-every-n-tokens",
        "2",
        "--out",
        s(&t.join("ev4")),
    ]));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("ev4/stream.json")).unwrap()).unwrap();
    assert_eq!(
        v["guard"]["smoothing"]["ema"]["alpha"], 0.5,
        "{}",
        v["guard"]
    );
    assert_eq!(v["guard"]["probe_every_n_tokens"], 2);
    let e = fail(oc(&[
        "eval",
        "--probe",
        s(&probe),
        "--model",
        s(&model),
        "--data",
        "data/examples/examples.jsonl",
        "--ema-alpha",
        "0.5",
    ]));
    assert!(e.contains("add --stream"), "{e}");
    // Issue 17 item 10: a negative value reaches the range check (not taken for a flag).
    for flag in ["--threshold", "--pause-threshold"] {
        let e = fail(oc(&[
            "generate",
            "--model",
            s(&model),
            "--probe",
            s(&probe),
            "--prompt",
            "Hello",
            flag,
            "-1",
        ]));
        assert!(
            e.contains(&format!("{flag} must be in [0, 1], got -1")),
            "{flag}: {e}"
        );
    }

    let json = ok(oc(&[
        "generate",
        "--model",
        s(&model),
        "--probe",
        s(&probe),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "6",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        ["completed", "flagged", "paused"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    assert!(!v["probe_steps"].as_array().unwrap().is_empty());
    assert!(v["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);

    let prompts = t.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"id\": 7, \"prompt\": \"Hi\"}\n{\"id\": 8, \"prompt\": \"Tell me a story\"}\n{\"id\": 9, \"prompt\": \"Why?\"}\n").unwrap();
    let lines = ok(oc(&[
        "generate",
        "--model",
        s(&model),
        "--probe",
        s(&probe),
        "--prompts-file",
        s(&prompts),
        "--max-new-tokens",
        "5",
        "--batch-size",
        "2",
    ]));
    let ids: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [7, 8, 9], "one JSON result per prompt, in order");

    // A probe trained on tiny-gemma4 is refused for tiny-gemma3, naming the fix.
    let o = oc(&[
        "generate",
        "--model",
        s(&model_dir("tiny-gemma3")),
        "--probe",
        s(&probe),
        "--prompt",
        "Hi",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trained on model hash") && err.contains("just train"),
        "{err}"
    );
    // A probe trained with the chat template is refused without it.
    let o = oc(&[
        "generate",
        "--model",
        s(&model),
        "--probe",
        s(&probe),
        "--prompt",
        "Hi",
        "--no-chat-template",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("drop --no-chat-template"));
}
