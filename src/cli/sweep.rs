//! `sweep`: one probe per stored layer from a single extraction, compared in a table and a plot.

use super::train::TrainFlags;
use anyhow::Context;
use open_constitution::probe::sweep;
use open_constitution::runtime::manifest::parse_layer_spec;
use open_constitution::store::set::ActivationSet;
use std::path::PathBuf;

/// Arguments of `sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Activation stores written by `extract` (a store, a directory of shard stores, or
    /// several); the model is not run again.
    #[arg(long, required = true, num_args = 1..)]
    pub activations: Vec<PathBuf>,
    /// Layers to compare: `all` (every stored layer) or a comma list of hidden-state indices
    /// such as `-2,-4,-8` (negative counts from the end, -1 = last). Each must be stored.
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub layers: String,
    /// Directory for sweep.json and sweep.svg (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Also keep each layer's probe directory as OUT/layer-NNN (a few hidden-size vectors and
    /// JSON each), ready for `eval` or the guard.
    #[arg(long)]
    pub keep_probes: bool,
    #[command(flatten)]
    pub train: TrainFlags,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.train.options();
    opts.validate()?;
    let set = ActivationSet::open(&args.activations)?;
    let meta = set.meta();
    let layers = parse_layer_spec(&args.layers, meta.num_layers, &meta.layers)?;
    if let Some(l) = layers.iter().find(|l| !meta.layers.contains(l)) {
        anyhow::bail!(
            "layer {l} is not in the store, which holds layers {:?}",
            meta.layers
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bar = super::progress::bar((layers.len() * opts.alphas.len()) as u64, "fits");
    let keep = args.keep_probes.then_some(args.out.as_path());
    let report = sweep(&set, &args.activations, &layers, &opts, keep, &bar)?;
    bar.finish();
    report.write(&args.out)?;
    print!("{}", report.table());
    println!(
        "wrote {} and {}",
        args.out.join("sweep.json").display(),
        args.out.join("sweep.svg").display()
    );
    Ok(())
}
