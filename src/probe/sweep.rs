//! Layer sweep: one probe per stored layer from a single extraction, compared on the same splits.
//! The best layer is chosen by validation ROC-AUC (test metrics are reported, never used to choose).

use super::io::write_json;
use super::plot::{write_svg, Chart, Series};
use super::split::{SplitIndices, SplitSource};
use super::train::{load_layer, store_info, train_layer, LayerInput, TrainOptions, TrainedProbe};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::set::ActivationSet;
use plotters::prelude::SeriesLabelPosition;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One layer's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub layer_index: usize,
    pub alpha: f64,
    pub threshold: f32,
    pub validation_roc_auc: f64,
    pub test_roc_auc: Option<f64>,
    pub test_pr_auc: Option<f64>,
    /// At the calibrated flag threshold.
    pub test_f1: Option<f64>,
    pub test_tpr_at_1pct_fpr: Option<f64>,
    pub test_tpr_at_5pct_fpr: Option<f64>,
    /// The probe directory, when kept.
    pub probe_dir: Option<String>,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub model_id: String,
    pub model_hash: String,
    pub rows: usize,
    pub split_source: SplitSource,
    pub layers: Vec<SweepRow>,
    /// Layer with the highest validation ROC-AUC (ties: the first listed).
    pub best_layer_by_validation: usize,
}

/// Trains a probe for each of `layers` (absolute indices, all stored); with `keep`, writes each
/// probe to `keep/layer-NNN`. `progress` advances once per grid point of every layer.
pub fn sweep(
    set: &ActivationSet,
    given: &[PathBuf],
    layers: &[usize],
    opts: &TrainOptions,
    keep: Option<&Path>,
    progress: &dyn Progress,
) -> Result<SweepReport> {
    opts.validate()?;
    let meta = set.meta();
    if layers.is_empty() {
        return Err(Error::Argument("no layers to sweep".into()));
    }
    let splits = SplitIndices::assign(set.rows())?;
    splits.require_both_classes(set.rows())?;
    let mut out = Vec::with_capacity(layers.len());
    for &layer in layers {
        progress.message(&format!("layer {layer}"));
        // One layer in memory at a time: a 20k x 2048 layer is 160 MB.
        let (index, x) = load_layer(set, layer as i64)?;
        let input = LayerInput {
            x: x.view(),
            rows: set.rows(),
            splits: &splits,
            meta,
            store: store_info(set, given),
            layer: index as i64,
            layer_index: index,
            feature_layers: None,
        };
        let trained = train_layer(&input, opts, progress)?;
        let probe_dir = match keep {
            Some(root) => {
                let dir = root.join(format!("layer-{index:03}"));
                trained.write(&dir)?;
                Some(dir.display().to_string())
            }
            None => None,
        };
        out.push(SweepRow::of(&trained, probe_dir));
    }
    let best = out
        .iter()
        .fold(&out[0], |b, r| {
            if r.validation_roc_auc > b.validation_roc_auc {
                r
            } else {
                b
            }
        })
        .layer_index;
    Ok(SweepReport {
        model_id: meta.model.clone(),
        model_hash: meta.model_hash.clone(),
        rows: set.rows().len(),
        split_source: splits.source,
        layers: out,
        best_layer_by_validation: best,
    })
}

impl SweepRow {
    fn of(trained: &TrainedProbe, probe_dir: Option<String>) -> Self {
        let c = trained.probe.config();
        let m = &c.metrics;
        SweepRow {
            layer_index: c.layer_index,
            alpha: c.training.alpha,
            threshold: c.threshold,
            validation_roc_auc: c.training.validation_metrics.roc_auc.unwrap_or(f64::NAN),
            test_roc_auc: m.roc_auc,
            test_pr_auc: m.pr_auc,
            test_f1: m.at_threshold.f1,
            test_tpr_at_1pct_fpr: m.tpr_at_1pct_fpr,
            test_tpr_at_5pct_fpr: m.tpr_at_5pct_fpr,
            probe_dir,
        }
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

impl SweepReport {
    /// The table printed by `sweep`.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:>5}  {:>8}  {:>8}  {:>8}  {:>6}  {:>11}  {:>7}\n",
            "layer", "val AUC", "test AUC", "PR-AUC", "F1", "TPR@1%FPR", "alpha"
        );
        for r in &self.layers {
            let mark = if r.layer_index == self.best_layer_by_validation {
                " *"
            } else {
                ""
            };
            s.push_str(&format!(
                "{:>5}  {:>8.4}  {:>8}  {:>8}  {:>6}  {:>11}  {:>7}{mark}\n",
                r.layer_index,
                r.validation_roc_auc,
                cell(r.test_roc_auc),
                cell(r.test_pr_auc),
                cell(r.test_f1),
                cell(r.test_tpr_at_1pct_fpr),
                r.alpha
            ));
        }
        s.push_str(&format!(
            "* best layer by validation ROC-AUC: {}\n",
            self.best_layer_by_validation
        ));
        s
    }

    /// Writes `sweep.json` and `sweep.svg` (test metrics against layer) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join("sweep.json"), self)?;
        let line = |name, f: fn(&SweepRow) -> Option<f64>| Series {
            name,
            points: self
                .layers
                .iter()
                .filter_map(|r| f(r).map(|v| (r.layer_index as f64, v)))
                .collect(),
            markers: true,
            reference: false,
        };
        let series = [
            line("test ROC-AUC", |r| r.test_roc_auc),
            line("test PR-AUC", |r| r.test_pr_auc),
            line("test F1 (flag threshold)", |r| r.test_f1),
            line("test TPR @ 1% FPR", |r| r.test_tpr_at_1pct_fpr),
            line("validation ROC-AUC", |r| Some(r.validation_roc_auc)),
        ];
        let lo = self.layers.iter().map(|r| r.layer_index).min().unwrap_or(0) as f64;
        let hi = self.layers.iter().map(|r| r.layer_index).max().unwrap_or(0) as f64;
        let chart = Chart {
            title: &format!("Probe metrics by layer ({})", self.model_id),
            x_label: "layer (hidden-state index)",
            y_label: "metric",
            x_range: (lo - 0.5, hi + 0.5),
            y_range: (0.0, 1.02),
            integer_x: true,
            legend: SeriesLabelPosition::LowerRight,
        };
        write_svg(&dir.join("sweep.svg"), &chart, &series)
    }
}
