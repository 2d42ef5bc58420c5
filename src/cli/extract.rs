//! `extract`: hidden-state activations of labelled exchanges into an activation store.

use super::common::{report_placement, Target};
use open_constitution::extract::select::ShardArg;
use open_constitution::extract::{run_extract, ExtractJob};
use open_constitution::store::Pooling;
use std::path::PathBuf;

/// Arguments of `extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Labelled JSONL (`prompt`, `response`, `label`; optional `id`, `split`, `topic`), e.g.
    /// from `prepare-data`. `.jsonl.gz` is read too.
    #[arg(long, default_value = "data/training_data.jsonl")]
    pub data: PathBuf,
    /// Output activation store directory. Rerunning the same command resumes it; other
    /// arguments into the same directory are refused.
    #[arg(long)]
    pub out: PathBuf,
    /// Hidden states to store: `all`, one index (`-4`) or a list (`-2,-4,-8`). Negative indices
    /// count from the end as in Python (-1 = last layer after the final norm, 0 = embeddings).
    /// Each layer costs hidden_size x 4 bytes per row.
    #[arg(long, default_value = ExtractJob::DEFAULT_LAYERS, allow_hyphen_values = true)]
    pub layers: String,
    /// `last`: the exchange's last token (the seed's choice: with a chat template, the
    /// end-of-turn marker); `mean`: the mean over the response tokens; `token`: one response
    /// token per exchange (chosen by a hash of the row id), the kind of state the guard scores
    /// while generating; `tokens`: up to --max-states response tokens per exchange with their
    /// positions, plus the response mean: what `train` fits streaming probes (and a cascade's
    /// second stage) on, and what the guard is as deployed. The forward pass costs the same;
    /// `tokens` stores --max-states + 1 times more.
    #[arg(long, value_enum, default_value_t = Pooling::Last)]
    pub pooling: Pooling,
    /// `--pooling tokens`: most states stored per exchange: every token of shorter responses;
    /// of longer ones the first half of them, then an even sample ending at the last token.
    /// Store size and training time grow with it.
    #[arg(long, default_value_t = ExtractJob::DEFAULT_MAX_STATES)]
    pub max_states: usize,
    /// Padded tokens per batch (rows x longest row). Default: 1024 on CPU (cache-friendly),
    /// 16384 on a GPU (fills it). Attention memory grows with the square of the longest row.
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Most rows per batch.
    #[arg(long, default_value_t = ExtractJob::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Extract a seeded, label-balanced sample of at most N examples (default: all).
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Seed of the --max-examples sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Truncate exchanges longer than N tokens, cutting the prompt from the left so the
    /// response end is kept; the count of truncated rows is reported.
    #[arg(long, default_value_t = ExtractJob::DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Skip (and count) invalid data lines instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Extract only shard K of N (rows assigned by a hash of their id); each shard writes its own
    /// store, and train/sweep/eval/merge combine them.
    #[arg(long)]
    pub shard: Option<ShardArg>,
    /// Rows per store shard file: the unit of resume after an interruption.
    #[arg(long, default_value_t = ExtractJob::DEFAULT_ROWS_PER_SHARD)]
    pub rows_per_shard: usize,
    /// Run the first N batches once, untimed and discarded, before extracting: the reported
    /// rate then excludes one-time GPU setup (kernel selection, memory-pool growth). For
    /// benchmarks; costs N extra batches. Default 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_batches: usize,
}

pub fn run(a: Args, quiet: bool) -> anyhow::Result<()> {
    let mut model = a.target.load_for_extraction(
        &a.target.runtime.options_for(a.max_batch, a.max_tokens),
        &a.layers,
    )?;
    let (bar, log) = super::progress::extraction(!quiet);
    let job = ExtractJob {
        layers: a.layers,
        pooling: a.pooling,
        batch_tokens: a.target.runtime.batch_tokens(a.batch_tokens),
        max_batch: a.max_batch,
        max_examples: a.max_examples,
        seed: a.seed,
        max_tokens: Some(a.max_tokens),
        skip_invalid: a.skip_invalid,
        shard: a.shard,
        rows_per_shard: a.rows_per_shard,
        progress: log,
        warmup_batches: a.warmup_batches,
        max_states: a.max_states,
        ..ExtractJob::new(a.data, a.out.clone(), a.target.runtime.device)
    };
    let s = run_extract(&mut model, &job, &bar)?;
    bar.finish();
    if s.read.skipped > 0 {
        eprintln!(
            "skipped {} invalid data lines (--skip-invalid)",
            s.read.skipped
        );
    }
    if s.resumed_rows > 0 {
        eprintln!("resumed: {} rows were already extracted", s.resumed_rows);
    }
    println!(
        "extracted {} rows ({} tokens) in {:.1} s: {:.2} examples/s, {:.0} tokens/s; {} truncated to --max-tokens; store {} ({} rows, layers {:?}, provider {:?})",
        s.rows,
        s.tokens,
        s.seconds,
        s.rows as f64 / s.seconds.max(1e-9),
        s.tokens as f64 / s.seconds.max(1e-9),
        s.meta.truncated,
        a.out.display(),
        s.meta.row_count,
        s.meta.layers,
        model.decoder.provider(),
    );
    report_placement(&mut model.decoder)
}
