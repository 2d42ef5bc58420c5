//! Training one probe on one layer: standardize on train, fit the alpha grid, select on
//! validation, calibrate the thresholds on validation, and report on test.
//!
//! Refit policy: none. The selected grid model, fitted on the train split only, is the probe.
//! Refitting on train + validation would leave no unseen rows to calibrate the thresholds on;
//! the test split is never seen by the weights, the selection or the calibration.

use super::calibrate::{rate_at, reliability, threshold_for_fpr};
use super::config::*;
use super::fit::{fit_grid, grid_edge, select, LinearModel, Standardizer, AUC_TIE_TOLERANCE};
use super::io::{write_json, Probe};
use super::metrics::{average_precision, roc_auc, Metrics};
use super::scorer::Scorer;
use super::split::{oversample_minority, ClassBalance, SplitIndices};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::set::ActivationSet;
use crate::store::{RowMeta, StoreMeta};
use ndarray::{Array2, ArrayView2};
use std::path::Path;
use std::time::Instant;

/// Everything `train` can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Regularization grid, alpha = 1/C of scikit-learn (larger = stronger).
    pub alphas: Vec<f64>,
    pub class_weight: ClassWeight,
    /// Target FPR of the flag threshold on validation label-0 rows.
    pub flag_fpr: f64,
    /// Target FPR of the pause threshold.
    pub pause_fpr: f64,
    /// Seed of every random step (the oversampling of `--class-weight balanced`).
    pub seed: u64,
    pub probe_every_n_tokens: usize,
    pub smoothing_window: usize,
}

/// The default alpha grid.
pub const DEFAULT_ALPHAS: [f64; 6] = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0];

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            alphas: DEFAULT_ALPHAS.to_vec(),
            class_weight: ClassWeight::None,
            flag_fpr: 0.05,
            pause_fpr: 0.01,
            seed: 0,
            probe_every_n_tokens: 1,
            smoothing_window: 4,
        }
    }
}

impl TrainOptions {
    /// Refuses values that cannot train or calibrate.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Argument(m));
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return bad(format!(
                "alphas {:?}: give one or more finite values > 0",
                self.alphas
            ));
        }
        for (name, v) in [("flag-fpr", self.flag_fpr), ("pause-fpr", self.pause_fpr)] {
            if !(v > 0.0 && v < 1.0) {
                return bad(format!("--{name} {v} must be between 0 and 1 (exclusive)"));
            }
        }
        if self.probe_every_n_tokens == 0 || self.smoothing_window == 0 {
            return bad("--probe-every-n-tokens and --smoothing-window must be >= 1".into());
        }
        Ok(())
    }
}

/// One layer's activations and the rows they belong to.
#[derive(Debug, Clone)]
pub struct LayerInput<'a> {
    /// `[rows, hidden]`, row i belonging to `rows[i]`.
    pub x: ArrayView2<'a, f32>,
    pub rows: &'a [RowMeta],
    pub splits: &'a SplitIndices,
    pub meta: &'a StoreMeta,
    pub store: StoreInfo,
    /// The layer as the user gave it, and its absolute index.
    pub layer: i64,
    pub layer_index: usize,
    /// Several layers' states concatenated per row (`x` is `[rows, layers x hidden]`; the
    /// first is `layer_index`); none for one layer.
    pub feature_layers: Option<Vec<usize>>,
}

/// A trained probe with its calibration record and timings, ready to write.
#[derive(Debug, Clone)]
pub struct TrainedProbe {
    pub probe: Probe,
    pub calibration: CalibrationFile,
    pub timing: Timing,
}

impl TrainedProbe {
    /// Writes `probe.safetensors`, `config.json`, `calibration.json` and `timing.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.probe.write(dir)?;
        write_json(&dir.join("calibration.json"), &self.calibration)?;
        write_json(&dir.join("timing.json"), &self.timing)
    }
}

/// Provenance of an opened store set.
pub fn store_info(set: &ActivationSet, given: &[std::path::PathBuf]) -> StoreInfo {
    StoreInfo {
        activations: given.iter().map(|p| p.display().to_string()).collect(),
        rows: set.rows().len(),
        args: set.stores().iter().map(|s| s.meta().args.clone()).collect(),
    }
}

/// Resolves `layer` (Python-style, -1 = last) against the store and loads its matrix, refusing
/// non-finite values.
pub fn load_layer(set: &ActivationSet, layer: i64) -> Result<(usize, Array2<f32>)> {
    let meta = set.meta();
    let index = crate::runtime::manifest::resolve_layer(layer, meta.num_layers)?;
    if !meta.layers.contains(&index) {
        return Err(Error::Probe(format!(
            "layer {layer} (hidden state {index}) is not in the store, which holds layers {:?}; \
             re-extract with `--layers {layer}` or pick a stored layer",
            meta.layers
        )));
    }
    let x = set.layer_matrix(index)?;
    check_finite(x.view(), set.rows(), index)?;
    Ok((index, x))
}

/// Refuses NaN or infinite activations, naming the first row and feature.
pub fn check_finite(x: ArrayView2<'_, f32>, rows: &[RowMeta], layer_index: usize) -> Result<()> {
    for (i, row) in x.outer_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            let id = rows.get(i).map_or("?", |r| r.id.as_str());
            return Err(Error::Probe(format!(
                "row `{id}` has a non-finite activation ({}) at feature {j} of layer \
                 {layer_index}; the extraction overflowed (fp16?): re-extract it (a float32 \
                 export avoids overflow) or drop the row",
                row[j]
            )));
        }
    }
    Ok(())
}

/// [`check_finite`] for a `tokens` store's states (each row owning its positions' rows).
pub fn check_finite_states(x: ArrayView2<'_, f32>, rows: &[RowMeta], layer: usize) -> Result<()> {
    let mut at = 0;
    for r in rows {
        let n = r.states();
        let block = x.slice(ndarray::s![at..at + n, ..]);
        check_finite(block, std::slice::from_ref(r), layer)?;
        at += n;
    }
    Ok(())
}

fn gather<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

/// Trains, selects and calibrates a probe on one layer (see the module doc for the policy).
/// `progress` advances once per grid point.
pub fn train_layer(
    input: &LayerInput<'_>,
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<TrainedProbe> {
    let start = Instant::now();
    opts.validate()?;
    check_input(input)?;
    let (fitted, grid_times) = fit_and_select(input, opts, progress)?;
    let (probe, calibration) = finish(input, opts, fitted)?;
    let timing = Timing {
        grid: grid_times,
        total_seconds: start.elapsed().as_secs_f64(),
        threads: rayon::current_num_threads(),
    };
    Ok(TrainedProbe {
        probe,
        calibration,
        timing,
    })
}

fn check_input(input: &LayerInput<'_>) -> Result<()> {
    let (x, rows) = (input.x, input.rows);
    let width = input.meta.hidden_size * input.feature_layers.as_ref().map_or(1, |l| l.len());
    if x.nrows() != rows.len() || x.ncols() != width {
        return Err(Error::Probe(format!(
            "activations are {:?}, expected [{}, {width}]",
            x.shape(),
            rows.len(),
        )));
    }
    input.splits.require_both_classes(rows)?;
    check_finite(x, rows, input.layer_index)
}

/// Standardizes, fits the grid on the train rows (oversampled for balanced class weight), and
/// selects on validation.
fn fit_and_select(
    input: &LayerInput<'_>,
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<(Fitted, Vec<FitTime>)> {
    let (x, rows, splits) = (input.x, input.rows, input.splits);
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let standardizer = Standardizer::fit(x, &splits.train)?;
    let fit_rows = match opts.class_weight {
        ClassWeight::None => splits.train.clone(),
        ClassWeight::Balanced => oversample_minority(rows, &splits.train, opts.seed),
    };
    // The objective sums over fitted rows: scale alpha with the rows added, so the balance of
    // data and penalty matches scikit-learn's class_weight="balanced" at the same C.
    let scale = fit_rows.len() as f64 / splits.train.len() as f64;
    let design = standardizer.design_matrix::<f32>(x, &fit_rows)?;
    let y: Vec<u32> = fit_rows.iter().map(|&i| u32::from(labels[i])).collect();
    let val_labels = gather(&labels, &splits.validation);
    let validate = |m: &LinearModel| {
        let s = Scorer::fold(m, &standardizer).score_rows(x, Some(&splits.validation));
        let auc = roc_auc(&s, &val_labels).expect("both classes checked");
        let ap = average_precision(&s, &val_labels).expect("both classes checked");
        Ok((auc, ap))
    };
    let grid: Vec<(f64, f64)> = opts.alphas.iter().map(|&a| (a, a * scale)).collect();
    let candidates = fit_grid(&design, &y, &grid, validate, progress)?;
    drop(design);
    let points: Vec<_> = candidates.iter().map(|c| c.point.clone()).collect();
    let chosen = select(&points);
    let c = &candidates[chosen];
    let layer = input.layer_index;
    let (alpha, auc) = (c.point.alpha, c.point.validation_roc_auc);
    tracing::info!("layer {layer}: selected alpha {alpha} (validation ROC-AUC {auc:.4})");
    if let Some(edge) = grid_edge(&points, chosen) {
        tracing::warn!(
            "layer {layer}: the selected alpha {alpha} is the {edge} in the grid and clearly \
             best; a better one may lie beyond it: extend --alphas"
        );
    }
    let times = candidates
        .iter()
        .map(|c| FitTime {
            alpha: c.point.alpha,
            fit_seconds: c.fit_seconds,
        })
        .collect();
    let fitted = Fitted {
        model: c.model.clone(),
        alpha,
        effective_alpha: c.point.effective_alpha,
        grid: points,
        fitted_rows: fit_rows.len(),
        standardizer,
        labels,
    };
    Ok((fitted, times))
}

/// The selected model and what the config records about its fit.
struct Fitted {
    model: LinearModel,
    alpha: f64,
    effective_alpha: f64,
    grid: Vec<super::fit::GridPoint>,
    fitted_rows: usize,
    standardizer: Standardizer,
    labels: Vec<u8>,
}

/// Scores validation and test with the selected model, calibrates, and assembles the probe.
fn finish(
    input: &LayerInput<'_>,
    opts: &TrainOptions,
    f: Fitted,
) -> Result<(Probe, CalibrationFile)> {
    let splits = input.splits;
    let scorer = Scorer::fold(&f.model, &f.standardizer);
    let val = Scored::new(&scorer, input.x, &splits.validation, &f.labels);
    let test = Scored::new(&scorer, input.x, &splits.test, &f.labels);
    let flag = calibrate(&val, &test, opts.flag_fpr);
    let pause = calibrate(&val, &test, opts.pause_fpr);
    let file = CalibrationFile {
        flag: flag.clone(),
        pause: pause.clone(),
        validation: reliability(&val.scores, &val.labels),
        test: reliability(&test.scores, &test.labels),
    };
    let (threshold, pause_threshold) = (flag.threshold, pause.threshold);
    let meta = input.meta;
    let config = ProbeConfig {
        model_id: meta.model.clone(),
        layer: input.layer,
        layer_index: input.layer_index,
        hidden_size: meta.hidden_size,
        threshold,
        pause_threshold,
        probe_every_n_tokens: opts.probe_every_n_tokens,
        smoothing_window: opts.smoothing_window,
        use_chat_template: meta.chat_template,
        metrics: Metrics::compute(&test.scores, &test.labels, threshold),
        format: PROBE_FORMAT.into(),
        version: PROBE_VERSION,
        model_hash: meta.model_hash.clone(),
        manifest_sha256: meta.manifest_sha256.clone(),
        pooling: meta.pooling,
        calibration: CalibrationSummary {
            method: "smallest threshold whose FPR on the validation label-0 rows is <= the \
                     target; a score >= threshold is flagged"
                .into(),
            flag,
            pause,
            validation_ece: file.validation.ece,
            test_ece: file.test.ece,
        },
        training: training_info(input, opts, &f, &val, threshold),
        stream_calibration: None,
        feature_layers: input.feature_layers.clone(),
        streams: None,
        cascade: None,
    };
    Ok((Probe::new(config, f.model, f.standardizer)?, file))
}

/// What `config.json` records about the fit; `f.grid` and the model stay with the caller.
fn training_info(
    input: &LayerInput<'_>,
    opts: &TrainOptions,
    f: &Fitted,
    val: &Scored,
    threshold: f32,
) -> TrainingInfo {
    let splits = input.splits;
    let balance = |idx: &[usize]| ClassBalance::of(input.rows, idx);
    TrainingInfo {
        seed: opts.seed,
        alpha: f.alpha,
        effective_alpha: f.effective_alpha,
        objective: OBJECTIVE.into(),
        selection: format!(
            "highest validation ROC-AUC; candidates within {AUC_TIE_TOLERANCE} of the best \
             tie, and the largest alpha (strongest regularization) among them wins"
        ),
        refit: REFIT.into(),
        class_weight: opts.class_weight,
        fitted_rows: f.fitted_rows,
        split_source: splits.source,
        class_balance: SplitBalance {
            train: balance(&splits.train),
            validation: balance(&splits.validation),
            test: balance(&splits.test),
        },
        constant_features: f.standardizer.constant_features,
        grid: f.grid.clone(),
        validation_metrics: Metrics::compute(&val.scores, &val.labels, threshold),
        store: input.store.clone(),
    }
}

const OBJECTIVE: &str = "smartcore LogisticRegression (L-BFGS) on standardized features: sum of \
    log-loss over the fitted rows + 0.5 * effective_alpha * ||w||^2, intercept unpenalized. \
    alpha = 1/C of scikit-learn; with class_weight balanced, effective_alpha = alpha * \
    fitted_rows / train_rows, which keeps scikit-learn's data-to-penalty ratio";

const REFIT: &str = "none: the selected grid model, fitted on the train split, is the probe; the \
    validation split stays unseen by the weights and calibrates the thresholds, the test split \
    is unseen by weights, selection and calibration";

/// Scores and labels of one split.
struct Scored {
    scores: Vec<f32>,
    labels: Vec<u8>,
}

impl Scored {
    fn new(scorer: &Scorer, x: ArrayView2<'_, f32>, idx: &[usize], labels: &[u8]) -> Self {
        Scored {
            scores: scorer.score_rows(x, Some(idx)),
            labels: gather(labels, idx),
        }
    }

    fn class(&self, label: u8) -> Vec<f32> {
        self.scores
            .iter()
            .zip(&self.labels)
            .filter(|(_, &y)| y == label)
            .map(|(&s, _)| s)
            .collect()
    }

    fn achieved(&self, threshold: f32) -> Achieved {
        Achieved {
            fpr: rate_at(&self.class(0), threshold),
            tpr: rate_at(&self.class(1), threshold),
        }
    }
}

fn calibrate(val: &Scored, test: &Scored, target: f64) -> CalibratedThreshold {
    let threshold = threshold_for_fpr(&val.class(0), target).expect("validation has label 0");
    CalibratedThreshold {
        threshold,
        target_fpr: target,
        validation: val.achieved(threshold),
        test: test.achieved(threshold),
    }
}
