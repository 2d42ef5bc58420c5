//! `train`, `sweep` and `eval` through the binary on synthetic stores: outputs, exit codes and
//! messages.

mod probe_common;

use probe_common::*;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_open-constitution"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn train_eval_sweep_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    write_store(
        &store,
        &Synth {
            rows: 3000,
            layers: vec![2, 4],
            ..Synth::default()
        },
    );
    let probe = tmp.path().join("probe");

    let o = run(&[
        "train",
        "--activations",
        p(&store),
        "--layer",
        "-1",
        "--out",
        p(&probe),
        "--alphas",
        "0.1,1,10",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("<- selected") && out.contains("test: ROC-AUC"),
        "{out}"
    );
    for f in [
        "probe.safetensors",
        "config.json",
        "calibration.json",
        "timing.json",
    ] {
        assert!(probe.join(f).is_file(), "{f}");
    }

    let o = run(&[
        "eval",
        "--probe",
        p(&probe),
        "--activations",
        p(&store),
        "--split",
        "test",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("over-block"), "{out}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(probe.join("eval-test/eval.json")).unwrap()).unwrap();
    assert!(
        report["metrics"]["roc_auc"].as_f64().unwrap() > 0.99,
        "{report}"
    );
    assert!(probe.join("eval-test/roc.svg").is_file());

    let sweep = tmp.path().join("sweep");
    let o = run(&[
        "sweep",
        "--activations",
        p(&store),
        "--out",
        p(&sweep),
        "--keep-probes",
        "--alphas",
        "1",
        "-q",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.is_empty(), "--quiet prints nothing on stderr: {err}");
    assert!(out.contains("best layer by validation ROC-AUC: 4"), "{out}");
    for f in [
        "sweep.json",
        "sweep.svg",
        "layer-002/config.json",
        "layer-004/probe.safetensors",
    ] {
        assert!(sweep.join(f).is_file(), "{f}");
    }
}

#[test]
fn bad_cases_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    write_store(
        &store,
        &Synth {
            rows: 300,
            layers: vec![2, 4],
            ..Synth::default()
        },
    );
    let out = tmp.path().join("probe");

    let o = run(&[
        "train",
        "--activations",
        p(&store),
        "--layer",
        "3",
        "--out",
        p(&out),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: probe: layer 3 (hidden state 3) is not in the store"),
        "{err}"
    );

    let o = run(&["train", "--activations", p(&store), "--out", p(&out)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("pick one with --layer"), "{err}");

    let nan = tmp.path().join("nan");
    write_store_with(
        &nan,
        &Synth {
            rows: 300,
            ..Synth::default()
        },
        |_, m| m[0][[5, 0]] = f32::INFINITY,
    );
    let o = run(&["train", "--activations", p(&nan), "--out", p(&out)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("row `r5` has a non-finite activation (inf)"),
        "{err}"
    );

    let o = run(&["eval", "--probe", p(&store), "--activations", p(&store)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("is not a probe directory"), "{err}");
}
