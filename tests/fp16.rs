//! fp16 graphs end to end on CPU (`models/tiny-gemma3-fp16`: tiny-gemma3 exported with
//! `--dtype fp16`): the cache and outputs stay fp16, pooled hidden states and logits match the
//! fp32 PyTorch goldens within fp16 tolerance, left-padded batches stay finite, and greedy
//! decoding is compared with the goldens token by token (fp16 may legitimately diverge).

mod common;

use common::*;
use open_constitution::extract::{forward_pooled, PreparedRow};
use open_constitution::guard::generate::{generate_batch, GenerateOptions, OnPause};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::runtime::decoder::{f32_view, Want};
use open_constitution::runtime::inputs::right_padded;
use open_constitution::runtime::DecodeState;
use open_constitution::store::Pooling;
use ort::value::TensorElementType;

const FP16: &str = "tiny-gemma3-fp16";
/// fp16 carries ~3 significant digits; six layers of rounding stay well inside 1e-2.
const REL: f32 = 1e-2;

/// ||a - b|| / ||b||, and whether `a` is all finite.
fn rel_err(a: &[f32], b: &[f32]) -> (f32, bool) {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = b.iter().map(|y| y * y).sum();
    (
        (num / den.max(1e-30)).sqrt(),
        a.iter().all(|x| x.is_finite()),
    )
}

fn dtype(v: &ort::value::DynValue) -> TensorElementType {
    v.dtype().tensor_type().unwrap()
}

#[test]
fn the_fp16_graph_keeps_its_cache_and_outputs_in_fp16() {
    let mut model = load(FP16, true);
    assert!(model.files.manifest.is_fp16());
    let cache = model.decoder.empty_cache(1).unwrap();
    assert!(cache
        .values()
        .all(|v| dtype(v) == TensorElementType::Float16));
    let want = Want {
        logits: true,
        hidden: vec![3],
        present: true,
    };
    let out = model
        .decoder
        .run(right_padded(&[&[2, 10, 11]], 0), cache, &want)
        .unwrap();
    assert_eq!(
        dtype(out.logits.as_ref().unwrap()),
        TensorElementType::Float16
    );
    assert_eq!(dtype(&out.hidden[0]), TensorElementType::Float16);
    let present = out.present.unwrap();
    assert_eq!(present.past_len(), 3);
    assert!(present
        .values()
        .all(|v| dtype(v) == TensorElementType::Float16));
}

#[test]
fn fp16_hidden_states_and_logits_match_the_fp32_goldens() {
    let mut model = load(FP16, true);
    let (g, t) = goldens("tiny-gemma3");
    let (mut worst_h, mut worst_l) = (0f32, 0f32);
    let mut rows = Vec::new();
    for (i, e) in g.exchanges.iter().enumerate() {
        if e.text.contains("Please repeat") {
            continue; // the control-token exchange's ids differ by design (tests/parity.rs)
        }
        let r = prepared_row(
            e.input_ids.clone(),
            e.response_token_range[0]..e.response_token_range[1],
        );
        for (pooling, key) in [(Pooling::Last, "last"), (Pooling::Mean, "response_mean")] {
            let got = forward_pooled(&mut model.decoder, &[&r], &g.layers, pooling, 0).unwrap();
            for (m, &layer) in got.iter().zip(&g.layers) {
                let want = t.f32(&format!("exchange.{i}.{key}.{layer}")).unwrap();
                let (d, finite) = rel_err(m.as_slice().unwrap(), &want.data);
                assert!(
                    finite && d < REL,
                    "exchange {i} {key} layer {layer}: rel {d}"
                );
                worst_h = worst_h.max(d);
            }
        }
        let want = Want {
            logits: true,
            hidden: vec![],
            present: false,
        };
        let cache = model.decoder.empty_cache(1).unwrap();
        let out = model
            .decoder
            .run(right_padded(&[&e.input_ids], 0), cache, &want)
            .unwrap();
        let logits = f32_view(out.logits.as_ref().unwrap())
            .unwrap()
            .1
            .into_owned();
        let (d, finite) = rel_err(
            &logits,
            &t.f32(&format!("exchange.{i}.logits")).unwrap().data,
        );
        assert!(finite && d < REL, "exchange {i} logits: rel {d}");
        worst_l = worst_l.max(d);
        rows.push((i, r));
    }
    // Mixed lengths in one right-padded batch: the same within the same tolerance.
    let refs: Vec<&PreparedRow> = rows.iter().map(|(_, r)| r).collect();
    let got = forward_pooled(&mut model.decoder, &refs, &g.layers, Pooling::Last, 0).unwrap();
    for (m, &layer) in got.iter().zip(&g.layers) {
        for (k, (i, _)) in rows.iter().enumerate() {
            let want = t.f32(&format!("exchange.{i}.last.{layer}")).unwrap();
            let (d, finite) = rel_err(m.row(k).as_slice().unwrap(), &want.data);
            assert!(
                finite && d < REL,
                "batched exchange {i} layer {layer}: rel {d}"
            );
        }
    }
    eprintln!(
        "fp16 vs fp32 PyTorch: worst relative error hidden {worst_h:.2e}, logits {worst_l:.2e}"
    );
}

#[test]
fn fp16_left_padded_decode_stays_finite() {
    let mut model = load(FP16, true);
    let prompts: [&[u32]; 3] = [
        &[2, 10, 11, 12, 13, 14, 15, 16, 17],
        &[2, 20],
        &[2, 30, 31, 32],
    ];
    let hidden = model.files.manifest.hidden_size;
    let d = &mut model.decoder;
    let (mut state, mut out) = DecodeState::prefill(d, &prompts, &[6]).unwrap();
    for step in 0..24 {
        for x in [out.logits().unwrap(), out.hidden(0, hidden).unwrap()] {
            assert!(
                x.iter().all(|x| x.is_finite()),
                "step {step}: non-finite output"
            );
        }
        out = state.step(d, &[40 + step, 50, 60], &[6]).unwrap();
    }
}

#[test]
fn fp16_greedy_decoding_against_the_fp32_goldens() {
    let mut model = load(FP16, true);
    let (g, _) = goldens("tiny-gemma3");
    let gens: Vec<_> = g.generations.iter().filter(|x| x.chat_template).collect();
    let prompts: Vec<String> = gens.iter().map(|x| x.prompt.clone()).collect();
    let opts = GenerateOptions {
        max_new_tokens: 20,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        ignore_eos: false,
        keep_withheld: false,
    };
    let sinks = prompts
        .iter()
        .map(|_| Box::new(|_: &str| {}) as Box<dyn FnMut(&str)>)
        .collect();
    let results = generate_batch(&mut model, &prompts, None, &opts, sinks).unwrap();
    let (mut same, mut total, mut first) = (0, 0, 0);
    for (r, gold) in results.iter().zip(&gens) {
        let mut ids = r.token_ids.clone();
        if r.stop_reason == open_constitution::guard::generate::StopReason::Eos {
            ids.push(*gold.greedy_ids.last().unwrap());
        }
        let prefix = ids
            .iter()
            .zip(&gold.greedy_ids)
            .take_while(|(a, b)| a == b)
            .count();
        same += prefix;
        total += gold.greedy_ids.len();
        first += usize::from(prefix > 0);
    }
    eprintln!(
        "fp16 greedy (batched, left-padded): {same} of {total} golden tokens reproduced before the \
         first difference; first token equal in {first} of {} prompts",
        gens.len()
    );
    assert_eq!(
        first,
        gens.len(),
        "the first greedy token agrees for every prompt"
    );
}
