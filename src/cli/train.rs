//! `train`: fit, select and calibrate a probe on one stored layer, and write its directory.

use anyhow::Context;
use open_constitution::probe::config::ClassWeight;
use open_constitution::probe::split::SplitIndices;
use open_constitution::probe::train::{load_layer, store_info, train_layer, LayerInput};
use open_constitution::probe::{TrainOptions, TrainedProbe};
use open_constitution::store::set::ActivationSet;
use std::path::PathBuf;

/// Training flags shared by `train` and `sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainFlags {
    /// Regularization grid: L2 strengths alpha = 1/C of scikit-learn, comma-separated; larger
    /// means stronger regularization and smaller weights. Each value is one single-threaded fit
    /// (8-15 s for 20,000 x 2,048 rows; small alphas on nearly separable data take longest);
    /// values are fitted in parallel. The best validation ROC-AUC wins, ties (within 1e-4)
    /// going to the larger alpha.
    #[arg(long, value_delimiter = ',', default_value = "0.1,1,10,100,1000,10000")]
    pub alphas: Vec<f64>,
    /// `balanced` gives both classes the same total weight by oversampling the minority class of
    /// the train split (seeded, see --seed); `none` weighs every row the same. Balanced helps
    /// when unsafe rows are rare, at the cost of memory and fit time for the added rows.
    #[arg(long, value_enum, default_value = "none")]
    pub class_weight: ClassWeight,
    /// Target false-positive rate of the flag threshold: the smallest threshold that flags at
    /// most this share of the validation split's safe (label 0) rows. Lower flags fewer safe
    /// responses and misses more unsafe ones.
    #[arg(long, default_value_t = 0.05)]
    pub flag_fpr: f64,
    /// Target false-positive rate of the pause threshold, calibrated the same way (default
    /// 1 %, so it sits at or above the flag threshold).
    #[arg(long, default_value_t = 0.01)]
    pub pause_fpr: f64,
    /// Seed of every random step (the oversampling of --class-weight balanced). The same store,
    /// flags and seed give byte-identical probe.safetensors and config.json.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Recorded for the guard: score every n-th generated token. 1 scores every token; larger
    /// is cheaper but reacts later.
    #[arg(long, default_value_t = 1)]
    pub probe_every_n_tokens: usize,
    /// Recorded for the guard: number of scored tokens averaged before comparing with the
    /// thresholds. Larger is steadier but reacts later.
    #[arg(long, default_value_t = 4)]
    pub smoothing_window: usize,
}

impl TrainFlags {
    pub fn options(&self) -> TrainOptions {
        TrainOptions {
            alphas: self.alphas.clone(),
            class_weight: self.class_weight,
            flag_fpr: self.flag_fpr,
            pause_fpr: self.pause_fpr,
            seed: self.seed,
            probe_every_n_tokens: self.probe_every_n_tokens,
            smoothing_window: self.smoothing_window,
        }
    }
}

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Activation stores written by `extract`: a store directory, a directory of shard stores,
    /// or several of either (they must come from the same model, layers and pooling).
    #[arg(long, required = true, num_args = 1..)]
    pub activations: Vec<PathBuf>,
    /// Layer to probe, as a hidden-state index: 0 = embeddings, -1 = last layer, -4 = fourth
    /// from the end. It must be stored. Default: the store's only layer (required when it holds
    /// several; `sweep` compares them all).
    #[arg(long, allow_negative_numbers = true)]
    pub layer: Option<i64>,
    /// Probe directory to write (created; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub train: TrainFlags,
    /// `tokens` stores: the layers a streaming probe concatenates (`all` or a comma list of
    /// hidden-state indices, negative from the end). Default: every stored layer. More layers
    /// generalize better at the cost of one dot product per layer per guarded token.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "view")]
    pub layers: Option<String>,
    /// `tokens` stores: fit a per-state baseline on one view of the states (`last`, `token`,
    /// `mean`) of --layer instead of a streaming probe; its thresholds are still set on
    /// validation streams, so the methods compare as guards.
    #[arg(long, value_enum)]
    pub view: Option<super::train_stream::View>,
    /// Streaming probe: softmax temperature (logit units) of the token weighting. Small values
    /// train on each response's riskiest step (what the guard thresholds), large ones on the
    /// mean over its steps. 2 beat 0.5, 1 and 4 on the demo's validation streams (SmolLM2,
    /// 2,000 exchanges: stream ROC-AUC and unsafe streams paused, one layer and three).
    #[arg(long, default_value_t = open_constitution::probe::stream::train::DEFAULT_TAU)]
    pub tau: f64,
    /// Streaming probe: smooth logits with an EMA of this weight in (0, 1] instead of the
    /// moving average of --smoothing-window steps (the guard then smooths the same way).
    #[arg(long)]
    pub stream_ema_alpha: Option<f64>,
    /// Streaming probe: most L-BFGS iterations per alpha (each is one pass over the states).
    #[arg(long, default_value_t = 300)]
    pub max_iters: u64,
    /// Streaming probe: one layer whose response mean the cascade's second stage scores. No
    /// second forward pass: the guard keeps a running mean of the states it already has.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "cascade_layers")]
    pub cascade_layer: Option<i64>,
    /// Streaming probe: the layers whose response means the second stage concatenates, as
    /// --layers takes them (`10,14,18`, `-1,-4`, `all`); default: the streaming probe's own
    /// layers. More layers rank exchanges a little better and cost hidden x layers additions
    /// per token for the running mean.
    #[arg(long, allow_hyphen_values = true)]
    pub cascade_layers: Option<String>,
    /// Streaming probe: no cascade (a pause needs only the streaming probe).
    #[arg(long)]
    pub no_cascade: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.train.options();
    opts.validate()?;
    let set = ActivationSet::open(&args.activations)?;
    let meta = set.meta();
    if meta.per_token() {
        return super::train_stream::run(&args, &set);
    }
    anyhow::ensure!(
        args.view.is_none() && args.layers.is_none(),
        "--view and --layers need a `tokens` store (extract with --pooling tokens); this one is \
         {:?}-pooled",
        meta.pooling
    );
    let layer = match (args.layer, meta.layers.as_slice()) {
        (Some(l), _) => l,
        (None, [only]) => *only as i64,
        (None, many) => anyhow::bail!(
            "the store holds layers {many:?}: pick one with --layer (or compare them all with \
             `open-constitution sweep`)"
        ),
    };
    let splits = SplitIndices::assign(set.rows())?;
    splits.require_both_classes(set.rows())?;
    let (layer_index, x) = load_layer(&set, layer)?;
    let input = LayerInput {
        x: x.view(),
        rows: set.rows(),
        splits: &splits,
        meta,
        store: store_info(&set, &args.activations),
        layer,
        layer_index,
        feature_layers: None,
    };
    let bar = super::progress::bar(opts.alphas.len() as u64, "alphas");
    bar.0.set_message(format!("layer {layer_index}"));
    let trained = train_layer(&input, &opts, &bar)?;
    bar.finish();
    trained
        .write(&args.out)
        .with_context(|| format!("writing the probe to {}", args.out.display()))?;
    print!("{}", summary(&trained));
    println!("probe written to {}", args.out.display());
    Ok(())
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The report printed after training.
pub fn summary(t: &TrainedProbe) -> String {
    let c = t.probe.config();
    let tr = &c.training;
    let layers = match &c.feature_layers {
        Some(l) if l.len() > 1 => format!("hidden states {l:?} concatenated"),
        _ => format!("layer {} (hidden state {})", c.layer, c.layer_index),
    };
    let mut s = format!(
        "{layers}, {} rows split by {}\n",
        tr.store.rows,
        tr.split_source.describe()
    );
    let b = &tr.class_balance;
    for (name, cb) in [
        ("train", &b.train),
        ("validation", &b.validation),
        ("test", &b.test),
    ] {
        s += &format!(
            "  {name:<10} {:>7} rows, {:>6} unsafe ({:.1} %)\n",
            cb.n,
            cb.positives,
            100.0 * cb.positive_rate
        );
    }
    s += "alpha      val ROC-AUC  val PR-AUC\n";
    for g in &tr.grid {
        let mark = if g.alpha == tr.alpha {
            "  <- selected"
        } else {
            ""
        };
        s += &format!(
            "{:<10} {:>11.4}  {:>10.4}{mark}\n",
            g.alpha, g.validation_roc_auc, g.validation_pr_auc
        );
    }
    s + &results(t)
}

/// Thresholds and test metrics.
fn results(t: &TrainedProbe) -> String {
    let c = t.probe.config();
    let mut s = String::new();
    let cal = &c.calibration;
    for (name, k) in [("flag", &cal.flag), ("pause", &cal.pause)] {
        s += &format!(
            "{name:<5} threshold {:.6} (target FPR {}): validation FPR {} TPR {}, test FPR {} TPR {}\n",
            k.threshold,
            k.target_fpr,
            cell(k.validation.fpr),
            cell(k.validation.tpr),
            cell(k.test.fpr),
            cell(k.test.tpr)
        );
    }
    let m = &c.metrics;
    let at = &m.at_threshold;
    let cm = at.confusion;
    s += &format!(
        "test: ROC-AUC {}  PR-AUC {}  TPR@1%FPR {}  TPR@5%FPR {}  ECE {:.4}\n\
         test at flag threshold: accuracy {}  precision {}  recall {}  F1 {}  \
         (tn {} fp {} fn {} tp {})\n",
        cell(m.roc_auc),
        cell(m.pr_auc),
        cell(m.tpr_at_1pct_fpr),
        cell(m.tpr_at_5pct_fpr),
        cal.test_ece,
        cell(at.accuracy),
        cell(at.precision),
        cell(at.recall),
        cell(at.f1),
        cm.tn,
        cm.fp,
        cm.fn_,
        cm.tp
    );
    let total: f64 = t.timing.grid.iter().map(|g| g.fit_seconds).sum();
    s += &format!(
        "{} fits, {total:.1} s of fitting in {:.1} s wall on {} threads\n",
        t.timing.grid.len(),
        t.timing.total_seconds,
        t.timing.threads
    );
    s
}
