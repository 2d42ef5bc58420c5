//! Continuous batching on every tiny model: 16 requests that join a running [`Batch`] at
//! different steps, and leave it as soon as they finish (as `serve` runs them), get exactly the
//! greedy tokens, probe steps (risks to float noise) and released text `generate` gives each prompt alone.

mod common;

use common::*;
use open_constitution::guard::generate::{
    generate_batch, Batch, GenerateOptions, GenerationResult, OnPause, Row, Sink,
};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::guard::{GuardConfig, GuardSetup, RiskScorer, Smoothing};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// risk = sigmoid(h[0] / rms(h)): varies from step to step, never pauses at threshold 1.
struct SoftProbe {
    layer: usize,
}

impl RiskScorer for SoftProbe {
    fn layer(&self) -> usize {
        self.layer
    }
    fn score(&self, h: &[f32]) -> f32 {
        let rms = (h.iter().map(|x| x * x).sum::<f32>() / h.len() as f32).sqrt();
        1.0 / (1.0 + (-h[0] / rms.max(1e-12)).exp())
    }
}

fn opts(max_new: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: max_new,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        ignore_eos: false,
        keep_withheld: false,
    }
}

fn sink(into: &Rc<RefCell<String>>) -> Sink<'static> {
    let into = into.clone();
    Box::new(move |t: &str| into.borrow_mut().push_str(t))
}

#[test]
fn requests_joining_a_running_batch_get_the_tokens_generate_gives_them_alone() {
    for name in TINY_MODELS {
        let mut model = load(name, true);
        let probe = SoftProbe {
            layer: model.files.manifest.num_layers - 1,
        };
        let setup = GuardSetup {
            scorer: &probe,
            config: GuardConfig {
                threshold: 1.0,
                pause_threshold: 1.0,
                probe_every_n_tokens: 2,
                smoothing: Smoothing::MovingAverage { window: 2 },
            },
            second: None,
        };
        let prompts: Vec<String> = (0..16)
            .map(|i| format!("Request {i}: tell me {} things about cats.", i % 5 + 1))
            .collect();
        // Different lengths so rows finish, and leave, at different steps.
        let max_new = |i: usize| 4 + (i * 7) % 13;
        let alone: Vec<GenerationResult> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s: Sink<'_> = Box::new(|_: &str| {});
                let o = opts(max_new(i));
                generate_batch(
                    &mut model,
                    std::slice::from_ref(p),
                    Some(&setup),
                    &o,
                    vec![s],
                )
                .unwrap()
                .remove(0)
            })
            .collect();

        let start = Instant::now();
        let texts: Vec<Rc<RefCell<String>>> = prompts.iter().map(|_| Rc::default()).collect();
        let mut done: Vec<Option<GenerationResult>> = prompts.iter().map(|_| None).collect();
        let (files, decoder) = (&model.files, &mut model.decoder);
        let mut batch = Batch::new(files, Some(setup.scorers()));
        let mut ids: Vec<usize> = Vec::new();
        let (mut next, mut step) = (0, 0);
        while next < prompts.len() || !ids.is_empty() {
            // 1, 2 or 3 requests join every third step.
            let joining = if step % 3 == 0 { (step / 3) % 3 + 1 } else { 0 };
            let mut rows = Vec::new();
            for i in next..(next + joining).min(prompts.len()) {
                let o = opts(max_new(i));
                rows.push(
                    Row::new(files, &prompts[i], &o, Some(&setup), sink(&texts[i]), start).unwrap(),
                );
                ids.push(i);
            }
            next = (next + joining).min(prompts.len());
            batch.join(decoder, rows).unwrap();
            if batch.decoding() {
                batch.step(decoder).unwrap();
            }
            let gone: Vec<usize> = (0..ids.len())
                .filter(|&k| !batch.rows()[k].has_pending())
                .collect();
            for (k, row) in gone.iter().zip(batch.remove(&gone).unwrap()) {
                done[ids[*k]] = Some(row.finish(false).unwrap());
            }
            ids = (0..ids.len())
                .filter(|k| !gone.contains(k))
                .map(|k| ids[k])
                .collect();
            step += 1;
        }
        for (i, (a, b)) in alone.iter().zip(&done).enumerate() {
            let b = b.as_ref().expect("every request finished");
            assert_eq!(b.token_ids, a.token_ids, "{name} request {i}: tokens");
            assert_eq!(
                b.probe_steps.len(),
                a.probe_steps.len(),
                "{name} request {i}"
            );
            for (x, y) in b.probe_steps.iter().zip(&a.probe_steps) {
                // Batched matmuls sum in another order: risks agree to float noise.
                assert_eq!((x.token_index, x.decision), (y.token_index, y.decision));
                assert!(
                    (x.risk - y.risk).abs() < 1e-4,
                    "{name} request {i}: {x:?} vs {y:?}"
                );
            }
            assert_eq!(b.response, a.response, "{name} request {i}: response");
            assert_eq!(
                *texts[i].borrow(),
                a.response,
                "{name} request {i}: streamed text"
            );
            assert!(!b.token_ids.is_empty() || b.stop_reason == a.stop_reason);
        }
        assert!(
            step > 10,
            "{name}: the requests overlapped over {step} steps"
        );
    }
}
