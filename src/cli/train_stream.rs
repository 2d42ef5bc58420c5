//! `train` on a `tokens` store: a streaming probe on one or several layers (the default), or a
//! per-state baseline on one view of the same states (`--view last|token|mean`), with stream
//! thresholds set on validation streams and, for a streaming probe, a cascade's second stage.

use super::train::{summary, Args};
use anyhow::Context;
use ndarray::Array2;
use open_constitution::probe::split::SplitIndices;
use open_constitution::probe::stream::assemble::{train_streaming, StreamLayers};
use open_constitution::probe::stream::{
    calibrate_streams, Second, StreamOptions, StreamRates, StreamSet,
};
use open_constitution::probe::train::{store_info, train_layer, LayerInput, TrainedProbe};
use open_constitution::probe::TrainOptions;
use open_constitution::runtime::manifest::{parse_layer_spec, resolve_layer};
use open_constitution::store::set::ActivationSet;
use open_constitution::store::Pooling;

/// Which per-state matrix of a `tokens` store a baseline trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// The last response token of each exchange.
    Last,
    /// One stored response state per exchange, chosen by a hash of the row id.
    Token,
    /// The mean over the response tokens.
    Mean,
}

/// Where the cascade's second stage is written, inside the probe directory.
const CASCADE_DIR: &str = "cascade";

pub fn run(args: &Args, set: &ActivationSet) -> anyhow::Result<()> {
    let opts = args.train.options();
    let splits = SplitIndices::assign(set.rows())?;
    splits.require_both_classes(set.rows())?;
    let rates = match args.view {
        Some(view) => baseline(args, set, &splits, &opts, view)?,
        None => streaming(args, set, &splits, &opts)?,
    };
    println!(
        "as a guard (replayed from the store, thresholds on validation streams): test safe \
         streams flagged {:.3} paused {:.3}; unsafe flagged {:.3} paused {:.3} (median pause at \
         token {})",
        rates.safe_flagged,
        rates.safe_paused,
        rates.unsafe_flagged,
        rates.unsafe_paused,
        rates
            .median_pause_token
            .map_or("-".into(), |t| t.to_string())
    );
    println!("probe written to {}", args.out.display());
    Ok(())
}

/// A streaming probe on `--layers` (default: every stored layer) with a cascade on the mean
/// states of `--cascade-layer`.
fn streaming(
    args: &Args,
    set: &ActivationSet,
    splits: &SplitIndices,
    opts: &TrainOptions,
) -> anyhow::Result<StreamRates> {
    let meta = set.meta();
    let spec = args.layers.as_deref().unwrap_or("all");
    let indices = parse_layer_spec(spec, meta.num_layers, &meta.layers)?;
    let first = match (args.layer, args.layers.as_deref()) {
        (Some(l), None) => l,
        _ => indices[0] as i64,
    };
    let indices = match (args.layer, args.layers.as_deref()) {
        (Some(l), None) => vec![resolve_layer(l, meta.num_layers)?],
        _ => indices,
    };
    // Checked before the minutes of the streaming fit, not after.
    let cascade_layers = match (
        args.no_cascade,
        args.cascade_layer,
        args.cascade_layers.as_deref(),
    ) {
        (true, _, _) => None,
        (false, Some(l), _) => Some(vec![resolve_layer(l, meta.num_layers)?]),
        (false, None, Some(spec)) => Some(parse_layer_spec(spec, meta.num_layers, &meta.layers)?),
        (false, None, None) => Some(indices.clone()),
    };
    let data = StreamSet::load(set, &indices)?;
    let sopts = StreamOptions {
        tau: args.tau,
        ema_alpha: args.stream_ema_alpha,
        max_iters: args.max_iters,
    };
    let bar = super::progress::bar(opts.alphas.len() as u64, "alphas");
    bar.0
        .set_message(format!("streaming probe on layers {indices:?}"));
    let layers = StreamLayers {
        layer: first,
        indices: indices.clone(),
    };
    let store = store_info(set, &args.activations);
    let (mut trained, info) =
        train_streaming(&data, meta, store, splits, &layers, (opts, &sopts), &bar)?;
    bar.finish();
    let second = match cascade_layers {
        None => None,
        Some(ls) => {
            let probe = second_stage(args, set, splits, opts, &ls)?;
            let states = set.layers_matrix(&ls)?;
            Some((probe, states))
        }
    };
    let second_ref = second.as_ref().map(|(p, states)| Second {
        probe: &p.probe,
        states,
        dir: CASCADE_DIR.into(),
    });
    let rates = calibrate_streams(
        &mut trained.probe,
        &data,
        splits,
        (opts.flag_fpr, opts.pause_fpr),
        second_ref.as_ref(),
        Some(info),
    )?;
    let cascade_used = trained.probe.config().cascade.is_some();
    write(&trained, args)?;
    if let (Some((p, _)), true) = (&second, cascade_used) {
        let dir = args.out.join(CASCADE_DIR);
        p.write(&dir)
            .with_context(|| format!("writing the cascade's second stage to {}", dir.display()))?;
    }
    print!("{}", summary(&trained));
    match trained.probe.config().cascade.as_ref() {
        Some(c) => println!(
            "cascade: a pause needs the second stage (mean of {} so far) >= {:.4}",
            layer_words(&c.layers()),
            c.threshold
        ),
        None => println!(
            "cascade: none (no second-stage threshold paused more unsafe validation streams)"
        ),
    }
    Ok(rates)
}

/// The whole-exchange second stage: a per-state probe on the response means of `layers`
/// (concatenated, as the guard's running mean of their states is).
fn second_stage(
    args: &Args,
    set: &ActivationSet,
    splits: &SplitIndices,
    opts: &TrainOptions,
    layers: &[usize],
) -> anyhow::Result<TrainedProbe> {
    let x = set.means_matrix(layers)?;
    let mut t = fit_view(args, set, splits, opts, &x, layers)?;
    t.probe.config_mut().pooling = Pooling::Mean;
    let m = &t.probe.config().metrics;
    println!(
        "second stage (mean of {}): test ROC-AUC {}  TPR@1%FPR {}",
        layer_words(layers),
        m.roc_auc.map_or("-".into(), |v| format!("{v:.4}")),
        m.tpr_at_1pct_fpr.map_or("-".into(), |v| format!("{v:.4}"))
    );
    Ok(t)
}

/// A per-state baseline on one view, with stream thresholds.
fn baseline(
    args: &Args,
    set: &ActivationSet,
    splits: &SplitIndices,
    opts: &TrainOptions,
    view: View,
) -> anyhow::Result<StreamRates> {
    let meta = set.meta();
    let layer = match (args.layer, meta.layers.as_slice()) {
        (Some(l), _) => resolve_layer(l, meta.num_layers)?,
        (None, [only]) => *only,
        (None, many) => anyhow::bail!("the store holds layers {many:?}: pick one with --layer"),
    };
    let x = view_matrix(set, layer, view)?;
    let mut trained = fit_view(args, set, splits, opts, &x, &[layer])?;
    trained.probe.config_mut().pooling = match view {
        View::Last => Pooling::Last,
        View::Token => Pooling::Token,
        View::Mean => Pooling::Mean,
    };
    let data = StreamSet::load(set, &[layer])?;
    let rates = calibrate_streams(
        &mut trained.probe,
        &data,
        splits,
        (opts.flag_fpr, opts.pause_fpr),
        None,
        None,
    )?;
    write(&trained, args)?;
    print!("{}", summary(&trained));
    Ok(rates)
}

fn fit_view(
    args: &Args,
    set: &ActivationSet,
    splits: &SplitIndices,
    opts: &TrainOptions,
    x: &Array2<f32>,
    layers: &[usize],
) -> anyhow::Result<TrainedProbe> {
    let input = LayerInput {
        x: x.view(),
        rows: set.rows(),
        splits,
        meta: set.meta(),
        store: store_info(set, &args.activations),
        layer: layers[0] as i64,
        layer_index: layers[0],
        feature_layers: (layers.len() > 1).then(|| layers.to_vec()),
    };
    let bar = super::progress::bar(opts.alphas.len() as u64, "alphas");
    let t = train_layer(&input, opts, &bar)?;
    bar.finish();
    Ok(t)
}

/// "layer 18" or "layers 10, 14, 18".
fn layer_words(layers: &[usize]) -> String {
    let list: Vec<String> = layers.iter().map(|l| l.to_string()).collect();
    match layers.len() {
        1 => format!("layer {}", list[0]),
        _ => format!("layers {}", list.join(", ")),
    }
}

/// One state per exchange of a `tokens` store.
fn view_matrix(set: &ActivationSet, layer: usize, view: View) -> anyhow::Result<Array2<f32>> {
    if view == View::Mean {
        return Ok(set.mean_matrix(layer)?);
    }
    let states = set.layer_matrix(layer)?;
    let mut at = 0;
    let mut pick = Vec::with_capacity(set.rows().len());
    for r in set.rows() {
        let n = r.states();
        let k = match view {
            View::Last => n - 1,
            _ => open_constitution::extract::hashed_index(&r.id, n),
        };
        pick.push(at + k);
        at += n;
    }
    Ok(states.select(ndarray::Axis(0), &pick))
}

fn write(t: &TrainedProbe, args: &Args) -> anyhow::Result<()> {
    t.write(&args.out)
        .with_context(|| format!("writing the probe to {}", args.out.display()))
}
