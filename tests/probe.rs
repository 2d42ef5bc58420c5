//! Probe training end to end on synthetic stores: quality and calibration on held-out data,
//! byte-identical reruns, refusal of other models, and clear errors for unusable data.

mod probe_common;

use open_constitution::probe::split::SplitIndices;
use open_constitution::probe::train::{load_layer, store_info};
use open_constitution::probe::{
    evaluate, train_layer, ClassWeight, LayerInput, Probe, TrainOptions, TrainedProbe,
};
use open_constitution::progress::Silent;
use open_constitution::runtime::manifest::Manifest;
use open_constitution::store::set::ActivationSet;
use probe_common::*;
use std::path::{Path, PathBuf};

fn train_store(
    dir: &Path,
    layer: i64,
    opts: &TrainOptions,
) -> open_constitution::Result<TrainedProbe> {
    let given = vec![dir.to_path_buf()];
    let set = ActivationSet::open(&given)?;
    let splits = SplitIndices::assign(set.rows())?;
    let (layer_index, x) = load_layer(&set, layer)?;
    let input = LayerInput {
        x: x.view(),
        rows: set.rows(),
        splits: &splits,
        meta: set.meta(),
        store: store_info(&set, &given),
        layer,
        layer_index,
        feature_layers: None,
    };
    train_layer(&input, opts, &Silent)
}

/// Two grid points keep debug test runs short: smartcore's generic fit is compiled in this
/// (unoptimized) crate, and small alphas on separable blobs need many L-BFGS iterations.
fn quick() -> TrainOptions {
    TrainOptions {
        alphas: vec![1.0, 10.0],
        ..TrainOptions::default()
    }
}

fn err_text<T: std::fmt::Debug>(r: open_constitution::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn separable_blobs_give_high_auc_and_thresholds_hold_on_held_out_data() {
    let tmp = tempfile::tempdir().unwrap();
    let train_dir = tmp.path().join("train");
    let s = Synth {
        rows: 10_000,
        ..Synth::default()
    };
    write_store(&train_dir, &s);
    let t = train_store(&train_dir, -1, &quick()).unwrap();
    let c = t.probe.config();
    assert_eq!((c.layer, c.layer_index), (-1, 4));
    let auc = c.metrics.roc_auc.unwrap();
    assert!(auc > 0.99, "test AUC {auc}");
    assert!(c.pause_threshold >= c.threshold);
    for k in [&c.calibration.flag, &c.calibration.pause] {
        assert!(k.validation.fpr.unwrap() <= k.target_fpr, "{k:?}");
    }
    let probe_dir = tmp.path().join("probe");
    t.write(&probe_dir).unwrap();
    let probe = Probe::load(&probe_dir).unwrap();
    assert_eq!(
        probe.threshold(),
        c.threshold,
        "thresholds round-trip exactly"
    );

    // Fresh rows from the same distribution: the over-block rates match the targets.
    let held = tmp.path().join("held");
    write_store(
        &held,
        &Synth {
            rows: 40_000,
            seed: 99,
            ..s.clone()
        },
    );
    let set = ActivationSet::open(&[held]).unwrap();
    probe.check_store(set.meta()).unwrap();
    let x = set.layer_matrix(4).unwrap();
    let report = evaluate(&probe, x.view(), set.rows()).unwrap();
    let flag = report.over_block.at_threshold.unwrap();
    let pause = report.over_block.at_pause_threshold.unwrap();
    assert!(
        (flag - 0.05).abs() < 0.03,
        "flag FPR on held-out rows {flag}"
    );
    assert!(
        (pause - 0.01).abs() < 0.015,
        "pause FPR on held-out rows {pause}"
    );
    assert!(report.metrics.roc_auc.unwrap() > 0.99);
    // Per-token scoring is bit-identical to batch scoring.
    let batch = probe.score_batch(x.view());
    for i in [0, 17, 39_999] {
        let one = probe.score(x.row(i).as_slice().unwrap());
        assert_eq!(one.to_bits(), batch[i].to_bits());
    }
    report.write(&tmp.path().join("eval")).unwrap();
    for f in ["eval.json", "roc.svg", "pr.svg"] {
        assert!(tmp.path().join("eval").join(f).is_file(), "{f}");
    }
}

fn file_bytes(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn same_seed_gives_byte_identical_probe_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    write_store(
        &store,
        &Synth {
            positive_rate: 0.15,
            ..Synth::default()
        },
    );
    let opts = TrainOptions {
        class_weight: ClassWeight::Balanced,
        seed: 5,
        ..quick()
    };
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|d| tmp.path().join(d)).collect();
    train_store(&store, 4, &opts)
        .unwrap()
        .write(&dirs[0])
        .unwrap();
    train_store(&store, 4, &opts)
        .unwrap()
        .write(&dirs[1])
        .unwrap();
    for f in ["probe.safetensors", "config.json", "calibration.json"] {
        assert_eq!(
            file_bytes(&dirs[0], f),
            file_bytes(&dirs[1], f),
            "{f} differs"
        );
    }
    let other = TrainOptions { seed: 6, ..opts };
    train_store(&store, 4, &other)
        .unwrap()
        .write(&dirs[2])
        .unwrap();
    assert_ne!(
        file_bytes(&dirs[0], "probe.safetensors"),
        file_bytes(&dirs[2], "probe.safetensors"),
        "the seed drives the oversampling"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&file_bytes(&dirs[0], "config.json")).unwrap();
    let balance = &cfg["training"]["class_balance"]["train"];
    let fitted = cfg["training"]["fitted_rows"].as_u64().unwrap();
    assert_eq!(
        fitted,
        2 * balance["negatives"].as_u64().unwrap(),
        "classes balanced"
    );
    let keys: Vec<&str> = cfg
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        &keys[..9],
        [
            "model_id",
            "layer",
            "layer_index",
            "hidden_size",
            "threshold",
            "pause_threshold",
            "probe_every_n_tokens",
            "smoothing_window",
            "use_chat_template"
        ]
    );
}

fn manifest(hash: &str, hidden: usize) -> Manifest {
    serde_json::from_value(serde_json::json!({
        "schema_version": 1,
        "model_hash": hash,
        "architecture": {"model_type": "gemma3_text"},
        "num_layers": 4,
        "hidden_size": hidden,
        "vocab_size": 100,
        "graph": {"file": "model.onnx", "dtype": "float32"},
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                   "position_ids": "position_ids"},
        "logits": {"name": "logits"},
        "hidden_states": [{"index": 4, "name": "hidden_states.4"}],
        "kv_cache": [],
        "special_tokens": {}
    }))
    .unwrap()
}

/// A synthetic store of `rows` rows under `root` and a probe trained on its layer 4.
fn trained_probe(root: &std::path::Path, rows: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let (store, dir) = (root.join("store"), root.join("probe"));
    write_store(
        &store,
        &Synth {
            rows,
            ..Synth::default()
        },
    );
    train_store(&store, 4, &quick())
        .unwrap()
        .write(&dir)
        .unwrap();
    (store, dir)
}

#[test]
fn probes_refuse_other_models_and_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, dir) = trained_probe(tmp.path(), 1000);
    let probe = Probe::load(&dir).unwrap();
    probe
        .check_model(&manifest("hash-a", HIDDEN), "manifest-sha")
        .unwrap();
    probe
        .check_model(&manifest("hash-a", HIDDEN), "other-export")
        .unwrap();
    let err = err_text(probe.check_model(&manifest("hash-b", HIDDEN), "x"));
    assert!(
        err.contains("was trained on model hash hash-a (model_id models/synthetic")
            && err.contains("this model has model hash hash-b")
            && err.contains("just train"),
        "{err}"
    );
    let err = err_text(probe.check_model(&manifest("hash-a", 64), "x"));
    assert!(err.contains("hidden size 64"), "{err}");

    let other = tmp.path().join("other");
    write_store(
        &other,
        &Synth {
            rows: 100,
            model_hash: "hash-b".into(),
            ..Synth::default()
        },
    );
    let set = ActivationSet::open(&[other]).unwrap();
    assert!(err_text(probe.check_store(set.meta())).contains("hash-b"));
    let missing = tmp.path().join("nolayer");
    write_store(
        &missing,
        &Synth {
            rows: 100,
            layers: vec![2],
            ..Synth::default()
        },
    );
    let set = ActivationSet::open(&[missing]).unwrap();
    assert!(err_text(probe.check_store(set.meta())).contains("holds layers [2]"));
    assert!(err_text(Probe::load(&store)).contains("not a probe directory"));
}

#[test]
fn unusable_data_gives_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let labelled = Synth {
        rows: 200,
        split_labels: true,
        ..Synth::default()
    };
    // No test rows at all.
    let d = tmp.path().join("empty-split");
    write_store_with(&d, &labelled, |rows, _| {
        for r in rows
            .iter_mut()
            .filter(|r| r.split == Some(open_constitution::data::Split::Test))
        {
            r.split = Some(open_constitution::data::Split::Train);
        }
    });
    let err = err_text(train_store(&d, 4, &TrainOptions::default()));
    assert!(err.contains("the test split is empty"), "{err}");
    // Validation rows all safe.
    let d = tmp.path().join("one-class");
    write_store_with(&d, &labelled, |rows, _| {
        for r in rows
            .iter_mut()
            .filter(|r| r.split == Some(open_constitution::data::Split::Validation))
        {
            r.label = 0;
        }
    });
    let err = err_text(train_store(&d, 4, &TrainOptions::default()));
    assert!(
        err.contains("the validation split has only label 0"),
        "{err}"
    );
    // A NaN activation.
    let d = tmp.path().join("nan");
    write_store_with(&d, &labelled, |_, mats| mats[0][[7, 3]] = f32::NAN);
    let err = err_text(train_store(&d, 4, &TrainOptions::default()));
    assert!(
        err.contains("row `r7` has a non-finite activation (NaN) at feature 3"),
        "{err}"
    );
    // Layer not stored, bad options.
    let d = tmp.path().join("ok");
    write_store(&d, &labelled);
    let err = err_text(train_store(&d, 2, &TrainOptions::default()));
    assert!(err.contains("not in the store"), "{err}");
    let bad = TrainOptions {
        flag_fpr: 1.5,
        ..TrainOptions::default()
    };
    assert!(err_text(train_store(&d, 4, &bad)).contains("--flag-fpr"));
    let bad = TrainOptions {
        alphas: vec![0.0],
        ..TrainOptions::default()
    };
    assert!(err_text(train_store(&d, 4, &bad)).contains("alphas"));
}

/// Issue 17 items 6 and 10: an edited `layer` in config.json was applied silently; a corrupt
/// probe.safetensors was reported as an "activation store" error and a bad `threshold` in
/// config.json as `--threshold`.
#[test]
fn tampered_or_broken_probe_files_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = trained_probe(tmp.path(), 600);
    let cfg_path = dir.join("config.json");
    let config = std::fs::read_to_string(&cfg_path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(config.contains(from), "{from} in {config}");
        std::fs::write(&cfg_path, config.replacen(from, to, 1)).unwrap();
    };

    // `layer` edited: the identity recorded in the tensors no longer matches.
    edit("\"layer\": 4,", "\"layer\": 2,");
    let err = err_text(Probe::load(&dir));
    assert!(
        err.contains("config.json") && err.contains("changed since training"),
        "{err}"
    );
    // Both edited consistently: the tensors still say which layer they were trained on.
    std::fs::write(
        &cfg_path,
        config
            .replacen("\"layer\": 4,", "\"layer\": 2,", 1)
            .replacen("\"layer_index\": 4,", "\"layer_index\": 2,", 1),
    )
    .unwrap();
    let err = err_text(Probe::load(&dir));
    assert!(err.contains("layer_index changed since training"), "{err}");

    // A threshold is a guard setting and may be tuned by hand, but must be in range.
    edit(
        "\"threshold\": ",
        "\"threshold\": 0.5, \"x_old_threshold\": ",
    );
    Probe::load(&dir).expect("tuned threshold accepted");
    let bad = config.replacen("\"threshold\": ", "\"threshold\": 7.0, \"x\": ", 1);
    std::fs::write(&cfg_path, bad).unwrap();
    let err = err_text(Probe::load(&dir));
    assert!(
        err.contains("config.json: field `threshold`: must be in [0, 1], got 7")
            && !err.contains("--threshold"),
        "{err}"
    );
    std::fs::write(&cfg_path, &config).unwrap();

    // Corrupt tensors: a probe error naming the file, not an activation store one.
    let tensors = dir.join("probe.safetensors");
    let bytes = std::fs::read(&tensors).unwrap();
    std::fs::write(&tensors, &bytes[..bytes.len() / 2]).unwrap();
    let err = err_text(Probe::load(&dir));
    assert!(
        err.starts_with("probe: ")
            && err.contains("probe.safetensors")
            && !err.contains("activation store"),
        "{err}"
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&tensors, &flipped).unwrap();
    let err = err_text(Probe::load(&dir));
    assert!(err.contains("weights changed since training"), "{err}");
    std::fs::write(&tensors, &bytes).unwrap();
    Probe::load(&dir).expect("restored probe loads");
}
