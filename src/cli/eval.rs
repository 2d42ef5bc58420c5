//! `eval`: score stored activations with a trained probe and report metrics, over-blocking and
//! ROC/PR curves.

use anyhow::Context;
use ndarray::Axis;
use open_constitution::probe::eval::select_rows;
use open_constitution::probe::{evaluate, Probe, Split};
use open_constitution::store_set::ActivationSet;
use std::path::{Path, PathBuf};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Probe directory written by `train` (or `sweep --keep-probes`).
    #[arg(long)]
    pub probe: PathBuf,
    /// Activation stores to score (a store, a directory of shard stores, or several). They must
    /// come from the probe's model and hold its layer, with the same pooling.
    #[arg(long, required = true, num_args = 1..)]
    pub activations: Vec<PathBuf>,
    /// Score only one split (by the rows' split labels, or by prompt hash when the store has
    /// none, exactly as `train` splits). Default: every row. On the store the probe was trained
    /// on, only `test` is unseen; `all` includes its training rows and overstates quality.
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// Directory for eval.json, roc.svg and pr.svg. Default: PROBE/eval (PROBE/eval-SPLIT with
    /// --split).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let probe = Probe::load(&args.probe)?;
    let set = ActivationSet::open(&args.activations)?;
    let out = args.out.unwrap_or_else(|| {
        args.probe.join(match args.split {
            Some(s) => format!("eval-{}", s.as_str()),
            None => "eval".into(),
        })
    });
    report_on_store(&probe, &set, args.split, &out)
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
    let x = set.layer_matrix(probe.layer_index())?;
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
