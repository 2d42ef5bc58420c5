//! Issue 13 through the binary on a tiny model: `extract --pooling tokens`, `train` of a
//! streaming probe on two layers with a cascade (byte-deterministic, thresholds set on
//! validation streams), a per-state baseline on the same store (`--view`), `eval` on the store,
//! `eval --stream` and `generate` with the multi-layer probe and its second stage.

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

/// Copies a probe directory (its cascade folder included).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &to.join(e.file_name())),
            false => drop(std::fs::copy(e.path(), to.join(e.file_name())).unwrap()),
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn streaming_probe_trains_calibrates_and_guards() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let model = model_dir("tiny-gemma4");
    let data = "data/examples/examples.jsonl";
    let store = t.join("store");
    ok(oc(&[
        "extract",
        "--model",
        s(&model),
        "--data",
        data,
        "--out",
        s(&store),
        "--layers",
        "-1,-2",
        "--pooling",
        "tokens",
        "--max-states",
        "6",
    ]));
    let rows = std::fs::read_to_string(store.join("rows.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    let positions = first["positions"].as_array().unwrap();
    assert!(!positions.is_empty() && positions.len() <= 6, "{first}");
    assert_eq!(
        positions.last().unwrap().as_u64().unwrap() + 1,
        first["response_tokens"].as_u64().unwrap(),
        "the last response token is always stored"
    );

    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--activations", s(&store), "--out", s(out)];
        args.extend(["--alphas", "1,10", "--max-iters", "60"]);
        args.extend(extra);
        ok(oc(&args))
    };
    let (p1, p2) = (t.join("p1"), t.join("p2"));
    let out = train(&p1, &[]);
    assert!(out.contains("as a guard (replayed from the store"), "{out}");
    train(&p2, &[]);
    for f in ["config.json", "probe.safetensors"] {
        assert_eq!(
            std::fs::read(p1.join(f)).unwrap(),
            std::fs::read(p2.join(f)).unwrap(),
            "{f} is byte-identical across runs"
        );
    }
    let c = json(&p1.join("config.json"));
    assert_eq!(c["feature_layers"].as_array().unwrap().len(), 2, "{c}");
    assert_eq!(c["pooling"], "tokens");
    let streams = &c["streams"];
    assert!(streams["fit"]["tau"].is_number(), "{streams}");
    let val = &streams["validation"];
    assert!(val["safe_paused"].as_f64().unwrap() <= 0.01 + 1e-9, "{val}");
    assert!(
        val["safe_flagged"].as_f64().unwrap() <= 0.05 + 1e-9,
        "{val}"
    );
    assert!(c["threshold"].as_f64() <= c["pause_threshold"].as_f64());
    if !c["cascade"].is_null() {
        assert!(
            p1.join("cascade/config.json").is_file(),
            "the second stage is written"
        );
    }

    // Baseline on one view of the same states, calibrated on the same streams.
    let base = t.join("base");
    let out = train(&base, &["--view", "last", "--layer", "-1"]);
    assert!(out.contains("as a guard"), "{out}");
    let b = json(&base.join("config.json"));
    assert_eq!(b["pooling"], "last");
    assert!(
        b["streams"]["fit"].is_null() && b["streams"]["test"].is_object(),
        "{b}"
    );

    let out = ok(oc(&[
        "eval",
        "--probe",
        s(&p1),
        "--activations",
        s(&store),
        "--split",
        "test",
        "--out",
        s(&t.join("ev")),
    ]));
    assert!(out.contains("replayed from the store"), "{out}");
    assert!(
        json(&t.join("ev/eval.json"))["rates"]["safe_streams"]
            .as_u64()
            .unwrap()
            > 0
    );

    let out = ok(oc(&[
        "eval",
        "--probe",
        s(&p1),
        "--model",
        s(&model),
        "--data",
        data,
        "--max-examples",
        "12",
        "--stream",
        "--out",
        s(&t.join("st")),
    ]));
    assert!(out.contains("guard replay of 12 rows"), "{out}");

    // Recalibrated on the exact replay (a copy of the probe): the probe's thresholds and the
    // cascade's, chosen jointly by train's rule, land in config.json and bound the safe rows.
    let p3 = t.join("p3");
    copy_dir(&p1, &p3);
    ok(oc(&[
        "eval",
        "--probe",
        s(&p3),
        "--model",
        s(&model),
        "--data",
        data,
        "--max-examples",
        "24",
        "--stream",
        "--stream-fpr",
        "0.25,0.1",
        "--write-thresholds",
        "--out",
        s(&t.join("st3")),
    ]));
    let cal = &json(&t.join("st3/stream.json"))["stream_calibration"];
    assert!(
        cal["safe"]["paused"].as_f64().unwrap() <= 0.1 + 1e-9,
        "{cal}"
    );
    assert!(
        cal["safe"]["flagged_or_paused"].as_f64().unwrap() <= 0.25 + 1e-9,
        "{cal}"
    );
    assert_eq!(cal["cascade"], !c["cascade"].is_null(), "{cal}");
    let c3 = json(&p3.join("config.json"));
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-6
    };
    assert!(close(&c3["threshold"], &cal["threshold"]), "{c3}");
    assert!(
        close(&c3["pause_threshold"], &cal["pause_threshold"]),
        "{c3}"
    );
    match cal["second_threshold"].is_null() {
        true => assert!(c3["cascade"].is_null(), "{c3}"),
        false => assert!(
            close(&c3["cascade"]["threshold"], &cal["second_threshold"]),
            "{c3}"
        ),
    }
    let out = ok(oc(&[
        "generate",
        "--probe",
        s(&p1),
        "--model",
        s(&model),
        "--prompt",
        "Hello there",
        "--max-new-tokens",
        "6",
        "--json",
    ]));
    let g: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = g["probe_steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{g}");
    for step in steps {
        // The second stage scores every step exactly when the probe has a cascade.
        assert_eq!(
            step["second"].is_number(),
            !c["cascade"].is_null(),
            "{step}"
        );
    }

    // --view needs a tokens store; a per-token store refuses nothing else silently.
    let last = t.join("last");
    ok(oc(&[
        "extract",
        "--model",
        s(&model),
        "--data",
        data,
        "--out",
        s(&last),
        "--layers",
        "-1",
    ]));
    let e = fail(oc(&[
        "train",
        "--activations",
        s(&last),
        "--out",
        s(&t.join("x")),
        "--view",
        "mean",
    ]));
    assert!(e.contains("need a `tokens` store"), "{e}");
}
