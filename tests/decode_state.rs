//! `DecodeState` on every tiny model: a rewind continues exactly as if the dropped tokens had
//! never been fed, rows that leave a batch do not change the rows that stay (each equals its
//! own batch-1 decode), rows that join a running batch decode as they would alone and do not
//! change the running rows, bad calls are errors, and logits that disagree with the manifest's
//! `vocab_size` are reported.

mod common;

use common::*;
use open_constitution::runtime::DecodeState;
use open_constitution::text::model::Model;

/// Next-token logits of each row after `prefill(seqs)` and feeding `steps[k]` at step k.
fn run(model: &mut Model, seqs: &[&[u32]], steps: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let d = &mut model.decoder;
    let (mut state, mut out) = DecodeState::prefill(d, seqs, &[]).unwrap();
    for tokens in steps {
        out = state.step(d, tokens, &[]).unwrap();
    }
    let logits = out.logits().unwrap();
    let vocab = logits.len() / seqs.len();
    logits.chunks(vocab).map(<[f32]>::to_vec).collect()
}

#[test]
fn rewind_continues_as_if_the_dropped_tokens_were_never_fed() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let d = &mut model.decoder;
        let prompt: &[u32] = &[2, 10, 11, 12, 13];
        let (mut state, _) = DecodeState::prefill(d, &[prompt], &[]).unwrap();
        state.step(d, &[20], &[]).unwrap();
        let kept = state.past_len();
        let want = state
            .step(d, &[21], &[])
            .unwrap()
            .logits()
            .unwrap()
            .into_owned();
        state.step(d, &[22], &[]).unwrap();
        state.rewind_to(kept).unwrap();
        assert_eq!(state.past_len(), kept);
        assert_eq!(state.cache().unwrap().past_len(), kept);
        let got = state
            .step(d, &[21], &[])
            .unwrap()
            .logits()
            .unwrap()
            .into_owned();
        let diff = max_scaled_diff(&got, &want);
        assert!(diff < 1e-5, "{name}: rewound logits differ by {diff:e}");
        assert!(state.rewind_to(state.past_len() + 1).is_err());
    }
}

#[test]
fn rows_that_leave_a_batch_do_not_change_the_others() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let seqs: [&[u32]; 3] = [&[2, 10, 11], &[2, 20, 21, 22, 23, 24, 25], &[2, 30, 31, 32]];
        let (before, after) = (3, 4);
        let d = &mut model.decoder;
        let (mut state, _) = DecodeState::prefill(d, &seqs, &[]).unwrap();
        for k in 0..before {
            state.step(d, &[40 + k, 50 + k, 60 + k], &[]).unwrap();
        }
        // The longest row leaves: the padding columns only it needed go with it.
        state.retain_rows(&[2, 0]).unwrap();
        assert_eq!(state.batch(), 2);
        assert_eq!(state.past_len(), 4 + before as usize);
        let mut out = None;
        for k in 0..after {
            out = Some(
                state
                    .step(d, &[60 + before + k, 40 + before + k], &[])
                    .unwrap(),
            );
        }
        let logits = out.unwrap().logits().unwrap().into_owned();
        let vocab = logits.len() / 2;
        for (slot, (row, base)) in [(2usize, 60u32), (0, 40)].into_iter().enumerate() {
            let steps: Vec<Vec<u32>> = (0..before + after).map(|k| vec![base + k]).collect();
            let alone = run(&mut model, &[seqs[row]], &steps).remove(0);
            let got = &logits[slot * vocab..(slot + 1) * vocab];
            let diff = max_scaled_diff(got, &alone);
            assert!(diff < 1e-4, "{name} row {row}: batched vs alone {diff:e}");
        }
    }
}

#[test]
fn rows_that_join_a_running_batch_decode_as_they_would_alone() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let running: [&[u32]; 2] = [&[2, 10, 11], &[2, 20, 21, 22]];
        // One joining row longer than the running rows' past, one shorter: both sides get
        // left-padded.
        let joining: [&[u32]; 2] = [&[2, 30, 31, 32, 33, 34, 35, 36, 37, 38], &[2, 40]];
        let (before, after) = (3u32, 4u32);
        let d = &mut model.decoder;
        let (mut state, _) = DecodeState::prefill(d, &running, &[]).unwrap();
        for k in 0..before {
            state.step(d, &[50 + k, 60 + k], &[]).unwrap();
        }
        let (fresh, _) = DecodeState::prefill(d, &joining, &[]).unwrap();
        state.join(fresh).unwrap();
        assert_eq!(state.batch(), 4);
        assert_eq!(state.past_len(), 10, "the longer of 4 + 3 and 10 positions");
        let mut out = None;
        for k in 0..after {
            let t = [50 + before + k, 60 + before + k, 70 + k, 80 + k];
            out = Some(state.step(d, &t, &[]).unwrap());
        }
        let logits = out.unwrap().logits().unwrap().into_owned();
        let vocab = logits.len() / 4;
        let feeds: [(&[u32], u32, u32); 4] = [
            (running[0], 50, before + after),
            (running[1], 60, before + after),
            (joining[0], 70, after),
            (joining[1], 80, after),
        ];
        for (slot, (seq, base, n)) in feeds.into_iter().enumerate() {
            let steps: Vec<Vec<u32>> = (0..n).map(|k| vec![base + k]).collect();
            let alone = run(&mut model, &[seq], &steps).remove(0);
            let got = &logits[slot * vocab..(slot + 1) * vocab];
            let diff = max_scaled_diff(got, &alone);
            assert!(diff < 1e-4, "{name} row {slot}: joined vs alone {diff:e}");
        }
    }
}

#[test]
fn bad_calls_are_errors() {
    let mut model = load("tiny-qwen3", true);
    let d = &mut model.decoder;
    assert!(DecodeState::prefill(d, &[], &[]).is_err());
    assert!(DecodeState::prefill(d, &[&[]], &[]).is_err());
    let (mut state, _) = DecodeState::prefill(d, &[&[2, 3], &[2, 4]], &[]).unwrap();
    let e = state.step(d, &[5], &[]).err().unwrap().to_string();
    assert!(e.contains("1 tokens for a batch of 2"), "{e}");
    assert!(state.retain_rows(&[]).is_err());
    assert!(state.retain_rows(&[2]).is_err(), "row 2 of 2");
    assert!(state.retain_rows(&[1, 1]).is_err(), "a row twice");
    // The state is still usable after refused calls.
    state.step(d, &[5, 6], &[]).unwrap();
}

#[test]
fn logits_that_disagree_with_the_manifest_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir("tiny-qwen3");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let manifest = tmp.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let vocab = m["vocab_size"].as_u64().unwrap();
    m["vocab_size"] = (vocab + 1).into();
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    let opts = open_constitution::runtime::RuntimeOptions {
        threads: 1,
        ..Default::default()
    };
    let mut model = Model::load(tmp.path().to_str().unwrap(), true, &opts).unwrap();
    let (_, out) = DecodeState::prefill(&mut model.decoder, &[&[2, 3]], &[]).unwrap();
    let e = out.logits().err().unwrap().to_string();
    assert!(e.contains("vocab_size") && e.contains("re-export"), "{e}");
}

#[test]
fn a_failed_graph_run_keeps_onnx_runtimes_own_error_as_its_cause() {
    let mut model = load("tiny-qwen3", true);
    let d = &mut model.decoder;
    // Five positions for two tokens: the rotary embedding's shapes cannot match.
    let mut inputs = open_constitution::runtime::inputs::left_padded(&[&[2, 3]], 0);
    inputs.position_ids = ndarray::Array2::zeros((1, 5));
    let past = d.empty_cache(1).unwrap();
    let want = open_constitution::runtime::Want {
        logits: true,
        hidden: vec![],
        present: true,
    };
    let err = d
        .run(inputs, past, &want)
        .err()
        .expect("mismatched positions");
    assert!(err.to_string().contains("graph run failed"), "{err}");
    let cause = std::error::Error::source(&err).expect("ONNX Runtime's error as the cause");
    assert!(cause.downcast_ref::<ort::Error>().is_some(), "{cause:?}");
    assert!(!cause.to_string().is_empty());
}
