//! `bench decode`: decoding speed at batch 1, unguarded and guarded (a random linear probe read
//! every N tokens), on any exported model. End-of-turn ids are ignored so every prompt decodes
//! exactly `--max-new-tokens` tokens (random-weight models would otherwise stop at random).
//! The probe's weights are random: only its cost is measured, and its score stays below 0.5 so
//! it never pauses a run.

use crate::cli::common::{report_placement, Target};
use anyhow::Context;
use open_constitution::guard::generate::{
    generate_batch, GenerateOptions, GenerationResult, OnPause,
};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::guard::{GuardConfig, Smoothing};
use open_constitution::guard::{GuardSetup, RiskScorer};
use open_constitution::text::model::Model;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `bench decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Prompts, one per line, rendered with the model's prompt format (as `generate` does).
    #[arg(long)]
    pub prompts_file: PathBuf,
    /// Use at most this many prompts from the file (default: all).
    #[arg(long)]
    pub max_prompts: Option<usize>,
    /// Tokens generated per prompt and mode (greedy; end-of-turn ids do not stop decoding).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Hidden state the random probe reads: an index as in `extract --layers` (negative counts
    /// from the end). Default: the middle layer.
    #[arg(long, allow_hyphen_values = true)]
    pub probe_layer: Option<String>,
    /// Probe every N tokens (1 = every token, the most expensive guard).
    #[arg(long, default_value_t = 1)]
    pub probe_every_n_tokens: usize,
    /// Untimed generations (per mode) before measuring: the first runs allocate memory and
    /// pick kernels.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also time guarded decoding with IoBinding switched the other way (on a GPU: plain runs,
    /// where the KV cache crosses to the host and back every step), to show what it saves.
    #[arg(long)]
    pub compare_io_binding: bool,
    /// Seed of the random probe weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the results as JSON to this file (they are printed as one JSON line too).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `risk = 0.5 * sigmoid(w . h / sqrt(d))` with seeded random `w`: a real dot product per probe
/// step, and a score that never reaches a pause threshold.
struct RandomProbe {
    layer: usize,
    weights: Vec<f32>,
}

impl RandomProbe {
    fn new(layer: usize, hidden: usize, seed: u64) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let weights = (0..hidden)
            .map(|_| {
                // splitmix64: enough randomness for a speed probe, no extra dependency.
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        Self { layer, weights }
    }
}

impl RiskScorer for RandomProbe {
    fn layer(&self) -> usize {
        self.layer
    }
    fn score(&self, hidden: &[f32]) -> f32 {
        let dot: f32 = hidden.iter().zip(&self.weights).map(|(h, w)| h * w).sum();
        let z = dot / (self.weights.len() as f32).sqrt();
        0.5 / (1.0 + (-z).exp())
    }
}

/// Summed tokens and decode time of one mode.
#[derive(Default)]
struct Tally {
    tokens: usize,
    decode_ms: f64,
    prefill_ms: f64,
    runs: usize,
}

impl Tally {
    fn add(&mut self, r: &GenerationResult) {
        self.tokens += r.tokens_generated;
        self.decode_ms += r.timings.decode_ms();
        self.prefill_ms += r.timings.prefill_ms;
        self.runs += 1;
    }
    fn json(&self) -> serde_json::Value {
        let s = self.decode_ms.max(1e-9) / 1e3;
        json!({
            "tokens": self.tokens,
            "tokens_per_s": self.tokens as f64 / s,
            "ms_per_token": self.decode_ms / self.tokens.max(1) as f64,
            "prefill_ms_mean": self.prefill_ms / self.runs.max(1) as f64,
        })
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut model = a.target.load(&a.target.runtime.options())?;
    let mut prompts: Vec<String> = open_constitution::data::read_prompts(&a.prompts_file)?
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    prompts.truncate(a.max_prompts.unwrap_or(usize::MAX));
    let m = &model.files.manifest;
    let layer = match &a.probe_layer {
        Some(spec) => *m
            .parse_layers(spec)?
            .first()
            .context("--probe-layer names no layer")?,
        None => m.num_layers / 2,
    };
    let probe = RandomProbe::new(layer, m.hidden_size, a.seed);
    let guard = GuardSetup {
        scorer: &probe,
        config: GuardConfig {
            threshold: 0.9,
            pause_threshold: 0.95,
            probe_every_n_tokens: a.probe_every_n_tokens,
            smoothing: Smoothing::MovingAverage { window: 1 },
        },
        second: None,
    };
    guard.config.validate()?;
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        // Fixed-length decoding: no id ends a run.
        ignore_eos: true,
        keep_withheld: false,
    };
    let bound = model.decoder.uses_io_binding();
    let mut modes = vec![("unguarded", false, bound), ("guarded", true, bound)];
    if a.compare_io_binding {
        let other = if bound {
            "guarded_without_io_binding"
        } else {
            "guarded_with_io_binding"
        };
        modes.push((other, true, !bound));
    }
    let gen = |model: &mut Model, p: &String, guarded: bool, binding: bool| {
        model.decoder.set_io_binding(binding);
        let sink = vec![Box::new(|_: &str| {}) as Box<dyn FnMut(&str)>];
        let g = guarded.then_some(&guard);
        generate_batch(model, std::slice::from_ref(p), g, &opts, sink).map(|mut r| r.remove(0))
    };
    for &(_, guarded, binding) in &modes {
        for _ in 0..a.warmup {
            gen(&mut model, &prompts[0], guarded, binding)?;
        }
    }
    let mut tallies: Vec<Tally> = modes.iter().map(|_| Tally::default()).collect();
    let mut prompt_tokens = 0;
    // Modes alternate per prompt, so clock or thermal drift hits them alike.
    for p in &prompts {
        for (t, &(_, guarded, binding)) in tallies.iter_mut().zip(&modes) {
            let r = gen(&mut model, p, guarded, binding)?;
            prompt_tokens += r.prompt_tokens;
            t.add(&r);
        }
    }
    model.decoder.set_io_binding(bound);
    let rate = |i: usize| tallies[i].tokens as f64 / (tallies[i].decode_ms.max(1e-9) / 1e3);
    let mut out = json!({
        "model": model.files.id,
        "provider": format!("{:?}", model.decoder.provider()).to_lowercase(),
        "io_binding": bound,
        "prompts": prompts.len(),
        "mean_prompt_tokens": prompt_tokens as f64 / (prompts.len() * modes.len()) as f64,
        "max_new_tokens": a.max_new_tokens,
        "probe_layer": layer,
        "probe_every_n_tokens": a.probe_every_n_tokens,
        "probe_overhead_pct": 100.0 * (rate(0) / rate(1) - 1.0),
    });
    for (i, &(name, _, _)) in modes.iter().enumerate() {
        out[name] = tallies[i].json();
    }
    let line = serde_json::to_string(&out)?;
    println!("{line}");
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    report_placement(&mut model.decoder)
}
