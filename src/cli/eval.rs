//! `eval`: score stored activations with a trained probe and report metrics, over-blocking and
//! ROC/PR curves.

use anyhow::Context;
use ndarray::Axis;
use open_constitution::extract::{run_extract, ExtractJob};
use open_constitution::probe::eval::select_rows;
use open_constitution::probe::{evaluate, Probe, Split};
use open_constitution::store::set::ActivationSet;
use open_constitution::text::model::Model;
use std::path::{Path, PathBuf};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Probe directory written by `train` (or `sweep --keep-probes`).
    #[arg(long)]
    pub probe: PathBuf,
    /// Activation stores to score (a store, a directory of shard stores, or several). They must
    /// come from the probe's model and hold its layer, with the same pooling.
    #[arg(long, num_args = 1.., required_unless_present = "data", conflicts_with = "data")]
    pub activations: Vec<PathBuf>,
    /// Labelled JSONL to extract and score (e.g. data/xstest_eval.jsonl) instead of a store:
    /// its activations at the probe's layer are extracted with --model into OUT/activations
    /// (resumable), with the probe's pooling and prompt format.
    #[arg(long, requires = "model")]
    pub data: Option<PathBuf>,
    /// Exported model folder for --data; it must be the probe's model (same weights hash).
    #[arg(long)]
    pub model: Option<String>,
    /// With --data: score a seeded, label-balanced sample of at most N rows.
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// With --data: truncation in tokens, as `extract --max-tokens`.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// With --data: padded tokens per batch, as `extract --batch-tokens` (default by device).
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    #[command(flatten)]
    pub runtime: super::common::RuntimeArgs,
    /// Score only one split (by the rows' split labels, or by prompt hash when the store has
    /// none, exactly as `train` splits). Default: every row. On the store the probe was trained
    /// on, only `test` is unseen; `all` includes its training rows and overstates quality.
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// With --data: replay each exchange's response through the guard as if the model had
    /// written it (one forward per batch; every response token scored, smoothed and judged with
    /// the probe's thresholds, cadence and window, as `generate` does) and report how many unsafe
    /// responses it pauses, how early, and how many safe ones it stops (OUT/stream.json).
    /// Instead of the classifier metrics. --split keeps rows by their split labels (after
    /// the --max-examples sample).
    #[arg(long, requires = "data")]
    pub stream: bool,
    /// With --stream: also choose thresholds on these rows so that at most FLAG (PAUSE) of the
    /// safe (label 0) streams are ever flagged (paused), e.g. `0.05,0.01`: stream-level false
    /// positive rates, where `train` calibrates per scored state. Prints them and what they
    /// achieve; use them with `generate --threshold --pause-threshold`. Choose on
    /// `--split validation`, then measure on `--split test` with those flags.
    #[arg(long, requires = "stream", value_delimiter = ',', value_name = "RATES")]
    pub stream_fpr: Option<Vec<f64>>,
    /// With --stream-fpr: write the chosen thresholds into PROBE/config.json (the per-state ones
    /// from `train` are kept in its `stream_calibration` record), so `generate` and later evals
    /// use them. Choose them on the validation split (`--split validation`), never on test.
    #[arg(long, requires = "stream_fpr")]
    pub write_thresholds: bool,
    /// With --stream: judge with these guard settings instead of the probe's (e.g. thresholds
    /// chosen by --stream-fpr on the validation split, or an EMA guard), as `generate` takes them.
    #[command(flatten)]
    pub guard: super::common::GuardOverrides,
    /// Directory for eval.json, roc.svg and pr.svg. Default: PROBE/eval (PROBE/eval-SPLIT with
    /// --split).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<()> {
    let probe = Probe::load(&args.probe)?;
    let out = args.out.clone().unwrap_or_else(|| {
        args.probe.join(match args.split {
            Some(s) => format!("eval-{}", s.as_str()),
            None => "eval".into(),
        })
    });
    anyhow::ensure!(
        args.stream || !args.guard.any(),
        "--threshold, --pause-threshold, --probe-every-n-tokens, --smoothing-window and \
         --ema-alpha judge a guard replay: add --stream (and --data FILE)"
    );
    if let (true, Some(data)) = (args.stream, &args.data) {
        return super::eval_stream::run(&args, &probe, data, &out);
    }
    let stores = match &args.data {
        Some(data) => vec![extract_for_probe(&args, &probe, data, &out, quiet)?],
        None => args.activations.clone(),
    };
    let set = ActivationSet::open(&stores)?;
    if set.meta().per_token() {
        return super::eval_tokens::report(&probe, &set, args.split, &out);
    }
    report_on_store(&probe, &set, args.split, &out)
}

/// Extracts `data` at the probe's layer, pooling and prompt format into `out/activations`.
fn extract_for_probe(
    args: &Args,
    probe: &Probe,
    data: &Path,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<PathBuf> {
    let mut model = load_probe_model(args, probe)?;
    let store = out.join("activations");
    let (bar, log) = super::progress::extraction(!quiet);
    let job = data_job(args, probe, data, &store, log);
    let s = run_extract(&mut model, &job, &bar)?;
    bar.finish();
    eprintln!(
        "extracted {} rows of {} ({} resumed) into {} in {:.1} s",
        s.rows,
        data.display(),
        s.resumed_rows,
        store.display(),
        s.seconds
    );
    Ok(store)
}

/// The probe's model (`--model`), pruned to the probe's layer and checked against the probe.
pub(super) fn load_probe_model(args: &Args, probe: &Probe) -> anyhow::Result<Model> {
    let spec = args.model.as_deref().context("--data needs --model")?;
    let chat = probe.config().use_chat_template;
    let layer = layer_spec(probe);
    let model = Model::load_for_extraction(
        spec,
        chat,
        &args
            .runtime
            .options_for(ExtractJob::DEFAULT_MAX_BATCH, args.max_tokens),
        &layer,
    )?;
    probe.check_model(&model.files.manifest, &model.files.manifest_sha256)?;
    Ok(model)
}

/// The extraction of `data` at the probe's layer, pooling and truncation into `store`.
/// Every hidden state the probe's guard reads (its layers and a cascade's), as a `--layers` list.
fn layer_spec(probe: &Probe) -> String {
    let c = probe.config();
    let mut layers = c.layers();
    if let Some(k) = &c.cascade {
        if !layers.contains(&k.layer_index) {
            layers.push(k.layer_index);
        }
    }
    let names: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
    names.join(",")
}

pub(super) fn data_job(
    args: &Args,
    probe: &Probe,
    data: &Path,
    store: &Path,
    progress: bool,
) -> ExtractJob {
    ExtractJob {
        layers: layer_spec(probe),
        pooling: probe.config().pooling,
        batch_tokens: args.runtime.batch_tokens(args.batch_tokens),
        max_examples: args.max_examples,
        max_tokens: Some(args.max_tokens),
        progress,
        ..ExtractJob::new(data, store, args.runtime.device)
    }
}

/// Scores the store's rows (of `split`, or all) with `probe`, writes eval.json and the curves to
/// `out`, and prints the summary. An `eval --model --data` path extracts into a store and calls
/// this.
pub fn report_on_store(
    probe: &Probe,
    set: &ActivationSet,
    split: Option<Split>,
    out: &Path,
) -> anyhow::Result<()> {
    probe.check_store(set.meta())?;
    let idx = select_rows(set.rows(), split)?;
    if idx.is_empty() {
        anyhow::bail!(
            "the store has no {} rows to evaluate",
            split.map_or("", |s| s.as_str())
        );
    }
    let trained_on = &probe.config().training.store.args;
    let here: Vec<_> = set.stores().iter().map(|s| s.meta().args.clone()).collect();
    if split != Some(Split::Test) && *trained_on == here {
        tracing::warn!(
            "this is the store the probe was trained on: rows outside the test split were \
             seen in training or calibration; use --split test for an unbiased estimate"
        );
    }
    // Every layer the probe reads, concatenated as it reads them.
    let x = set.layers_matrix(&probe.config().layers())?;
    let x = if idx.len() == x.nrows() {
        x
    } else {
        x.select(Axis(0), &idx)
    };
    let rows: Vec<_> = idx.iter().map(|&i| set.rows()[i].clone()).collect();
    let report = evaluate(probe, x.view(), &rows)?;
    report
        .write(out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!("{}", report.summary());
    println!("wrote {}", out.join("eval.json").display());
    Ok(())
}
