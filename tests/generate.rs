//! Decoding on the exported graph: KV-cached logits equal a full forward at every step (past the
//! sliding window), greedy tokens equal the PyTorch goldens, batched left-padded decoding equals
//! one-by-one, a probe built to fire pauses at the expected step with nothing held printed, and
//! bad prompts are refused.

mod common;

use common::*;
use open_constitution::guard::generate::{
    generate_batch, GenerateOptions, OnPause, Sink, Status, StopReason,
};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::guard::{GuardConfig, Smoothing};
use open_constitution::guard::{GuardSetup, RiskScorer};
use open_constitution::runtime::decoder::{f32_view, Want};
use open_constitution::runtime::inputs::right_padded;
use open_constitution::runtime::DecodeState;
use open_constitution::text::model::Model;
use std::cell::RefCell;
use std::rc::Rc;

fn opts(max_new: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: max_new,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: "I can't help with that.".into(),
        ignore_eos: false,
        keep_withheld: false,
    }
}

/// Runs generation, capturing what each row's sink received.
fn run(
    model: &mut Model,
    prompts: &[String],
    guard: Option<&GuardSetup<'_>>,
    o: &GenerateOptions,
) -> (
    Vec<open_constitution::guard::generate::GenerationResult>,
    Vec<String>,
) {
    let seen: Vec<Rc<RefCell<String>>> = prompts.iter().map(|_| Rc::default()).collect();
    let sinks: Vec<Sink<'_>> = seen
        .iter()
        .map(|s| {
            let s = s.clone();
            Box::new(move |t: &str| s.borrow_mut().push_str(t)) as Sink<'_>
        })
        .collect();
    let res = generate_batch(model, prompts, guard, o, sinks).unwrap();
    (res, seen.iter().map(|s| s.borrow().clone()).collect())
}

fn last_logits(model: &mut Model, ids: &[u32]) -> Vec<f32> {
    let inputs = right_padded(&[ids], 0);
    let past = model.decoder.empty_cache(1).unwrap();
    let want = Want {
        logits: true,
        hidden: vec![],
        present: false,
    };
    let out = model.decoder.run(inputs, past, &want).unwrap();
    f32_view(out.logits.as_ref().unwrap())
        .unwrap()
        .1
        .into_owned()
}

#[test]
fn kv_cached_logits_equal_full_forward_past_the_sliding_window() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let (g, _) = goldens(name);
        let mut ids = g.generations[0].input_ids.clone();
        let (mut state, mut out) = DecodeState::prefill(&mut model.decoder, &[&ids], &[]).unwrap();
        let window = model.files.manifest.sliding_window.unwrap_or(0);
        let mut worst = 0f32;
        for step in 0..window.max(8) + 8 {
            let cached = out.logits().unwrap().into_owned();
            let full = last_logits(&mut model, &ids);
            let d = max_scaled_diff(&cached, &full);
            worst = worst.max(d);
            assert!(d < 1e-4, "{name} step {step}: cached vs full diff {d}");
            // Feed a fixed, non-greedy token so the sequence keeps changing.
            let next = 7 + (step as u32 * 13) % 200;
            ids.push(next);
            out = state.step(&mut model.decoder, &[next], &[]).unwrap();
        }
        eprintln!(
            "{name}: {} tokens, worst cached-vs-full diff {worst:.2e}",
            ids.len()
        );
        assert!(ids.len() > window, "test went past the sliding window");
    }
}

#[test]
fn greedy_tokens_equal_pytorch_and_batching_changes_nothing() {
    for name in parity_models() {
        let mut model = load(name, true);
        let (g, _) = goldens(name);
        let gens: Vec<_> = g.generations.iter().filter(|x| x.chat_template).collect();
        let prompts: Vec<String> = gens.iter().map(|x| x.prompt.clone()).collect();
        let mut singles = Vec::new();
        for (p, gold) in prompts.iter().zip(&gens) {
            let (res, printed) = run(&mut model, std::slice::from_ref(p), None, &opts(20));
            let r = &res[0];
            let mut ids = r.token_ids.clone();
            if r.stop_reason == StopReason::Eos {
                ids.push(*gold.greedy_ids.last().unwrap());
            }
            assert_eq!(ids, gold.greedy_ids, "{name}: greedy ids for {p:?}");
            assert_eq!(
                printed[0], r.response,
                "{name}: streamed text equals the response"
            );
            singles.push(r.token_ids.clone());
        }
        let (batched, _) = run(&mut model, &prompts, None, &opts(20));
        for (b, s) in batched.iter().zip(&singles) {
            assert_eq!(
                &b.token_ids, s,
                "{name}: batched left-padded decode equals one-by-one"
            );
        }
    }
}

/// risk = sigmoid(gain * (h[feature] - center)).
struct FeatureProbe {
    layer: usize,
    feature: usize,
    center: f32,
}

impl RiskScorer for FeatureProbe {
    fn layer(&self) -> usize {
        self.layer
    }
    fn score(&self, h: &[f32]) -> f32 {
        1.0 / (1.0 + (-(h[self.feature] - self.center) * 1e4).exp())
    }
}

#[test]
fn a_probe_built_to_fire_pauses_at_the_expected_step() {
    let mut model = load("tiny-gemma4", true);
    let prompt = "Tell me a short story about a cat.".to_string();
    let (free, _) = run(&mut model, std::slice::from_ref(&prompt), None, &opts(12));
    let gen = &free[0].token_ids;
    assert!(gen.len() >= 6, "needs a few generated tokens");
    let layer = model.files.manifest.num_layers - 1;
    // Feature 0 of each generated token's hidden state, from full forwards of the prefixes.
    let prompt_ids = {
        let r = model.files.format.generation_prompt(&prompt).unwrap();
        model.files.encoder.encode(&r).unwrap().ids
    };
    let mut f = Vec::new();
    for i in 0..gen.len() {
        let ids: Vec<u32> = prompt_ids.iter().chain(&gen[..=i]).copied().collect();
        let row = prepared_row(ids, 0..1);
        let m = open_constitution::extract::forward_pooled(
            &mut model.decoder,
            &[&row],
            &[layer],
            open_constitution::store::Pooling::Last,
            0,
        )
        .unwrap();
        f.push(m[0][[0, 0]]);
    }
    // Fire at the last token whose feature is a new running maximum (index >= 1).
    let j = (1..f.len())
        .rev()
        .find(|&i| f[i] > f[..i].iter().cloned().fold(f32::MIN, f32::max))
        .expect("some running maximum after the first token");
    let prev_max = f[..j].iter().cloned().fold(f32::MIN, f32::max);
    let probe = FeatureProbe {
        layer,
        feature: 0,
        center: (prev_max + f[j]) / 2.0,
    };
    let setup = GuardSetup {
        scorer: &probe,
        config: GuardConfig {
            threshold: 0.3,
            pause_threshold: 0.5,
            probe_every_n_tokens: 1,
            smoothing: Smoothing::MovingAverage { window: 1 },
        },
        second: None,
    };
    let (res, printed) = run(
        &mut model,
        std::slice::from_ref(&prompt),
        Some(&setup),
        &opts(12),
    );
    let r = &res[0];
    assert_eq!(r.status, Status::Paused);
    assert_eq!(r.stop_reason, StopReason::Paused);
    let last = r.probe_steps.last().unwrap();
    assert_eq!(last.token_index, j, "paused at the token built to fire");
    // The full decode, less a trailing incomplete UTF-8 sequence the stream holds back.
    let full = model
        .files
        .encoder
        .tokenizer()
        .decode(&gen[..j], true)
        .unwrap();
    let expected = full.trim_end_matches('\u{FFFD}').to_string();
    assert_eq!(
        printed[0], expected,
        "exactly the judged tokens before the pause were printed"
    );
    assert_eq!(r.partial_response.as_deref(), Some(expected.as_str()));
    assert_eq!(r.pause_token, Some(j));
    assert!(r.max_smoothed_risk >= 0.5, "{}", r.max_smoothed_risk);
    assert!(r.withheld_text.is_none(), "withheld text only when asked");
    // The guard's own time is measured inside the decode time.
    let t = &r.timings;
    assert!(
        t.guard_ms > 0.0 && t.guard_ms < t.total_ms - t.prefill_ms,
        "{t:?}"
    );

    // The paused window (token j, and any held bytes before it) is withheld, never printed.
    let mut audit = opts(12);
    audit.keep_withheld = true;
    let (res, printed) = run(
        &mut model,
        std::slice::from_ref(&prompt),
        Some(&setup),
        &audit,
    );
    let withheld = res[0].withheld_text.clone().expect("kept for the audit");
    assert_eq!(res[0].withheld_chars, withheld.chars().count());
    let through = model
        .files
        .encoder
        .tokenizer()
        .decode(&gen[..=j], true)
        .unwrap();
    assert_eq!(
        format!("{}{withheld}", printed[0]),
        through.trim_end_matches('\u{FFFD}')
    );

    let mut refuse = opts(12);
    refuse.on_pause = OnPause::Refuse;
    let (res, _) = run(&mut model, &[prompt], Some(&setup), &refuse);
    assert_eq!(res[0].status, Status::Refused);
    assert_eq!(res[0].response, "I can't help with that.");
}

#[test]
fn bad_prompts_are_refused_with_clear_errors() {
    let mut model = load("tiny-qwen3", true);
    let sink = || vec![Box::new(|_: &str| {}) as Sink<'_>];
    let err = generate_batch(&mut model, &["  ".into()], None, &opts(4), sink())
        .err()
        .unwrap();
    assert!(err.to_string().contains("prompt is empty"), "{err}");
    let err = generate_batch(&mut model, &["hi".into()], None, &opts(1 << 20), sink())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("exceeds the model's context"),
        "{err}"
    );
    // Issue 17 item 3: prompt + usize::MAX wrapped and decoding ran past the context, forever.
    let err = generate_batch(&mut model, &["hi".into()], None, &opts(usize::MAX), sink())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("--max-new-tokens 18446744073709551615 exceeds the model's context"),
        "{err}"
    );
}

/// risk = sigmoid(2 h[0] / rms(h)): unsaturated whatever the model's activation scale, so
/// smoothing and decisions vary from step to step.
struct SoftProbe {
    layer: usize,
}

impl RiskScorer for SoftProbe {
    fn layer(&self) -> usize {
        self.layer
    }
    fn score(&self, h: &[f32]) -> f32 {
        let rms = (h.iter().map(|x| x * x).sum::<f32>() / h.len() as f32).sqrt();
        1.0 / (1.0 + (-2.0 * h[0] / rms.max(1e-12)).exp())
    }
}

/// `eval --stream` replays a response through the guard in one forward; on the tokens `generate`
/// produced it must reach the same risks, smoothed risks and decisions at the same steps.
#[test]
fn guard_replay_matches_generate_step_by_step() {
    use open_constitution::guard::Decision;
    let mut decisions = Vec::new();
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let layer = model.files.manifest.num_layers / 2;
        let probe = SoftProbe { layer };
        let config = GuardConfig {
            threshold: 0.55,
            pause_threshold: 1.0, // flags vary by step; a pause would end the comparison early
            probe_every_n_tokens: 2,
            smoothing: Smoothing::MovingAverage { window: 3 },
        };
        let setup = GuardSetup {
            scorer: &probe,
            config,
            second: None,
        };
        decisions.extend(replay_equals_generate(name, &mut model, &setup));
    }
    assert!(
        decisions.contains(&Decision::Flag) && decisions.contains(&Decision::Continue),
        "the comparison covers both decisions: {decisions:?}"
    );
}

/// A probe on two layers (their first features, concatenated as training concatenates them).
struct TwoLayerProbe {
    layers: [usize; 2],
}

impl RiskScorer for TwoLayerProbe {
    fn layer(&self) -> usize {
        self.layers[0]
    }
    fn score(&self, h: &[f32]) -> f32 {
        SoftProbe { layer: 0 }.score(h)
    }
    fn layers(&self) -> Vec<usize> {
        self.layers.to_vec()
    }
    fn score_states(&self, states: &[&[f32]]) -> f32 {
        assert_eq!(states.len(), 2, "one state per layer");
        let p = SoftProbe { layer: 0 };
        0.5 * (p.score(states[0]) + p.score(states[1]))
    }
}

/// A second stage on the means of two layers, concatenated (its score reads both parts, so a
/// part in the wrong place or order changes it).
struct ConcatSecond {
    layers: [usize; 2],
}

impl RiskScorer for ConcatSecond {
    fn layer(&self) -> usize {
        self.layers[0]
    }
    fn score(&self, h: &[f32]) -> f32 {
        let half = h.len() / 2;
        let rms = |p: &[f32]| (p.iter().map(|x| x * x).sum::<f32>() / p.len() as f32).sqrt();
        let z = h[0] / rms(&h[..half]).max(1e-12) - 2.0 * h[half + 1] / rms(&h[half..]).max(1e-12);
        1.0 / (1.0 + (-z).exp())
    }
    fn layers(&self) -> Vec<usize> {
        self.layers.to_vec()
    }
}

/// Issue 13: the cascade (a second stage on the running mean of other layers' states: one
/// layer, or two concatenated) and a multi-layer, logit-smoothed probe decide the same in
/// `generate` and in replay, second-stage scores included, with pauses vetoed by the second
/// stage turned into flags.
#[test]
fn cascade_decisions_are_equal_in_generate_and_replay() {
    use open_constitution::guard::{Decision, SecondStage};
    let mut decisions = Vec::new();
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let n = model.files.manifest.num_layers;
        let probe = TwoLayerProbe { layers: [n / 2, n] };
        let one = SoftProbe { layer: 1 };
        // In another order than the probe's layers, one of them shared.
        let two = ConcatSecond { layers: [n, 1] };
        let seconds: [(&dyn RiskScorer, Vec<usize>); 2] = [(&one, vec![2]), (&two, vec![1, 2])];
        for (second, indices) in seconds {
            let config = GuardConfig {
                threshold: 0.0,
                pause_threshold: 0.0, // every step reaches the pause: the second stage decides
                probe_every_n_tokens: 1,
                smoothing: Smoothing::LogitMovingAverage { window: 2 },
            };
            let setup = GuardSetup {
                scorer: &probe,
                config,
                // Above every score: each step's pause is vetoed (flagged), so decoding goes on.
                second: Some(SecondStage {
                    scorer: second,
                    threshold: 1.5,
                }),
            };
            if n / 2 != 1 {
                assert_eq!(
                    setup.layers(),
                    vec![n / 2, n, 1],
                    "probe layers, then the second stage's others"
                );
                assert_eq!(setup.second_indices(), Some(indices));
            }
            decisions.extend(replay_equals_generate(name, &mut model, &setup));
        }
    }
    assert!(
        decisions.iter().all(|&d| d == Decision::Flag) && !decisions.is_empty(),
        "every pause was vetoed into a flag: {decisions:?}"
    );
}

/// Generates 9 tokens with `setup`, replays them, and checks both saw the same steps; returns
/// the decisions.
fn replay_equals_generate(
    name: &str,
    model: &mut Model,
    setup: &GuardSetup<'_>,
) -> Vec<open_constitution::guard::Decision> {
    use open_constitution::guard::replay::replay;
    let prompt = "Tell me a short story about a cat.".to_string();
    let mut o = opts(9);
    o.ignore_eos = true;
    let (res, _) = run(model, std::slice::from_ref(&prompt), Some(setup), &o);
    let r = &res[0];
    assert!(r.probe_steps.len() >= 2, "{name}: a few probe steps: {r:?}");
    let gen = &r.token_ids[..r.probe_steps.last().unwrap().token_index + 1];
    let prompt_ids = {
        let p = model.files.format.generation_prompt(&prompt).unwrap();
        model.files.encoder.encode(&p).unwrap().ids
    };
    let ids: Vec<u32> = prompt_ids.iter().chain(gen).copied().collect();
    let row = prepared_row(ids, prompt_ids.len()..prompt_ids.len() + gen.len());
    let pad = model.files.pad_id();
    let out = replay(
        &mut model.decoder,
        pad,
        &[row],
        setup,
        (4096, 8),
        &open_constitution::progress::Silent,
    )
    .unwrap();
    let steps = &out[0].steps;
    assert_eq!(steps.len(), r.probe_steps.len(), "{name}: same probe steps");
    let close = |a: Option<f32>, b: Option<f32>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-4,
        (a, b) => a == b,
    };
    for (a, b) in steps.iter().zip(&r.probe_steps) {
        assert_eq!(a.token_index, b.token_index, "{name}");
        assert!((a.risk - b.risk).abs() < 1e-4, "{name}: {a:?} vs {b:?}");
        assert!(
            (a.smoothed - b.smoothed).abs() < 1e-4,
            "{name}: {a:?} vs {b:?}"
        );
        assert!(close(a.second, b.second), "{name}: {a:?} vs {b:?}");
        assert_eq!(a.second.is_some(), setup.second.is_some(), "{name}: {a:?}");
        assert_eq!(a.decision, b.decision, "{name}: {a:?} vs {b:?}");
    }
    steps.iter().map(|s| s.decision).collect()
}
