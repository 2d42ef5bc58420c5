//! `bench generate`: our KV-cached decoding unguarded and guarded (probe every token) vs the
//! seed's no-cache loop and HF `generate`, on the same prompts and new-token counts.

use super::python::BaselineArgs;
use super::{print_table, Row};
use crate::cli::common::Target;
use crate::cli::generate::load_probe;
use open_constitution::guard::generate::{generate_batch, GenerateOptions, OnPause, Sink};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::guard::GuardSetup;
use open_constitution::guard::{GuardConfig, Smoothing};
use open_constitution::text::model::Model;
use std::path::PathBuf;
use std::time::Instant;

pub(super) const PROMPTS: [&str; 8] = [
    "Write a short story about a lighthouse keeper.",
    "Explain how vaccines train the immune system.",
    "What are good habits for learning a new language?",
    "Describe the water cycle to a ten-year-old.",
    "Give me tips for a first job interview.",
    "How does a bicycle stay upright?",
    "Summarize the causes of the French Revolution.",
    "What should I pack for a weekend hiking trip?",
];

/// Arguments of `bench generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Trained probe directory for the guarded runs.
    #[arg(long, default_value = crate::cli::generate::DEFAULT_PROBE)]
    pub probe: PathBuf,
    /// Prompts per measurement (batch 1, one after another).
    #[arg(long, default_value_t = 4)]
    pub prompts: usize,
    /// New tokens per prompt (end-of-turn is ignored so every run generates exactly this many).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Alternating unguarded/guarded measurements; the median of each is reported. Runs of
    /// ~13 s on a shared 2-core machine vary by several percent: 3 repeats once read +8 %
    /// overhead where 5 read -0.5 %.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Prompts the Python baselines run (the seed's loop is slow).
    #[arg(long, default_value_t = 2)]
    pub baseline_prompts: usize,
    #[command(flatten)]
    pub baseline: BaselineArgs,
}

/// Tokens, seconds, and the guard's own share of the decode time (see [`Timings::guard_ms`]).
///
/// [`Timings::guard_ms`]: open_constitution::guard::generate::Timings::guard_ms
fn measure(
    model: &mut Model,
    prompts: &[String],
    guard: Option<&GuardSetup<'_>>,
    o: &GenerateOptions,
) -> anyhow::Result<(usize, f64, f64)> {
    let t = Instant::now();
    let (mut tokens, mut guard_ms, mut decode_ms) = (0, 0.0, 0.0);
    for p in prompts {
        let sink: Sink<'_> = Box::new(|_: &str| {});
        let r = &generate_batch(model, std::slice::from_ref(p), guard, o, vec![sink])?[0];
        tokens += r.tokens_generated;
        guard_ms += r.timings.guard_ms;
        decode_ms += r.timings.decode_ms();
    }
    Ok((
        tokens,
        t.elapsed().as_secs_f64(),
        guard_ms / decode_ms.max(1e-9),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut model = a.target.load(&a.target.runtime.options())?;
    let probe = load_probe(&a.probe, &model)?;
    // Thresholds of 1.0 never pause, so both runs generate the same tokens; the probe still
    // scores every token and the guard still smooths and decides.
    let setup = GuardSetup {
        scorer: &probe,
        config: GuardConfig {
            threshold: 1.0,
            pause_threshold: 1.0,
            probe_every_n_tokens: 1,
            smoothing: Smoothing::MovingAverage { window: 4 },
        },
        second: None,
    };
    let opts = GenerateOptions {
        max_new_tokens: a.new_tokens,
        sampling: SamplingConfig::default(),
        on_pause: OnPause::Stop,
        refusal_message: String::new(),
        ignore_eos: true,
        keep_withheld: false,
    };
    let prompts: Vec<String> = PROMPTS
        .iter()
        .cycle()
        .take(a.prompts)
        .map(|s| s.to_string())
        .collect();
    measure(&mut model, &prompts[..1], None, &opts)?; // warm-up
    let (mut plain, mut guarded, mut tokens) = (Vec::new(), Vec::new(), 0);
    let (mut release_share, mut guard_share) = (Vec::new(), Vec::new());
    for _ in 0..a.repeats.max(1) {
        let (n, s, r) = measure(&mut model, &prompts, None, &opts)?;
        plain.push(s);
        release_share.push(r);
        let (m, g, share) = measure(&mut model, &prompts, Some(&setup), &opts)?;
        anyhow::ensure!(m == n, "guarded run generated {m} tokens, unguarded {n}");
        guarded.push(g);
        guard_share.push(share);
        tokens = n;
    }
    let (plain, guarded) = (median(plain), median(guarded));
    let (release_share, guard_share) = (median(release_share), median(guard_share));
    let mut table = vec![
        Row {
            method: "ours unguarded (KV cache)".into(),
            items: a.prompts,
            tokens,
            seconds: plain,
        },
        Row {
            method: "ours guarded, probe every token".into(),
            items: a.prompts,
            tokens,
            seconds: guarded,
        },
    ];
    if !a.baseline.skip_baseline {
        let n = a.baseline_prompts.min(prompts.len());
        let ids: Vec<Vec<u32>> = prompts[..n]
            .iter()
            .map(|p| {
                Ok(model
                    .files
                    .encoder
                    .encode(&model.files.format.generation_prompt(p)?)?
                    .ids)
            })
            .collect::<anyhow::Result<_>>()?;
        table.extend(a.baseline.run(
            &model.files,
            "benches/generate_baseline.py",
            &serde_json::json!({"prompts": ids, "new_tokens": a.new_tokens, "layer": probe.layer_index()}),
            &[],
            &[
                ("seed", "seed's guarded loop (no cache)"),
                ("generate", "HF generate (KV cache)"),
            ],
            "prompts",
        )?);
    }
    let base: Vec<(&str, usize)> = if table.len() == 4 {
        vec![("seed", 2), ("HF generate", 3)]
    } else {
        vec![]
    };
    print_table("prompts", &table, &base);
    println!(
        "probe overhead: {:+.2} % (median of {} alternating runs, {} tokens each)",
        (guarded / plain - 1.0) * 100.0,
        a.repeats.max(1),
        tokens
    );
    // The wall ratio above carries the machine's noise (several % on a shared VM); this is the
    // guard's own code timed inside the guarded runs, so it holds under load.
    println!(
        "guard's own time: {:.3} % of guarded decode time (unguarded: releasing text, {:.3} %); \
         the rest of the difference is the graph returning the probe layers' states",
        guard_share * 100.0,
        release_share * 100.0
    );
    Ok(())
}
