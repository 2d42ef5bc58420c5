//! Evaluating a trained probe on activations: the training metrics, over-blocking (flag rate on
//! label-0 rows) at the flag and pause thresholds, a per-source breakdown, and ROC/PR curves.
//!
//! [`evaluate`] takes a matrix and its rows, so it serves a stored extraction (`eval
//! --activations`) as well as one made on the fly into a temporary store.

use super::io::{write_json, Probe};
use super::metrics::{pr_curve, roc_auc, roc_curve, thin, Metrics, ThresholdMetrics};
use super::plot::{write_svg, Chart, Series};
use super::split::{Split, SplitIndices};
use super::train::check_finite;
use crate::error::{Error, Result};
use crate::store::RowMeta;
use ndarray::ArrayView2;
use plotters::prelude::SeriesLabelPosition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Flag rates on label-0 rows: how often safe behaviour would be blocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverBlock {
    pub negatives: usize,
    pub at_threshold: Option<f64>,
    pub at_pause_threshold: Option<f64>,
}

/// Metrics of the rows of one `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub source: String,
    pub n: usize,
    pub positives: usize,
    pub negatives: usize,
    pub roc_auc: Option<f64>,
    /// Flag rate on the source's label-0 rows at the flag threshold.
    pub over_block: Option<f64>,
    /// Flag rate on the source's label-1 rows at the flag threshold.
    pub tpr: Option<f64>,
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub probe: Option<String>,
    pub model_hash: String,
    pub layer_index: usize,
    pub rows: usize,
    /// Metrics at the probe's flag threshold (AUC-type metrics are null with one class).
    pub metrics: Metrics,
    pub at_pause_threshold: ThresholdMetrics,
    pub over_block: OverBlock,
    pub by_source: Vec<SourceReport>,
    /// ROC curve `[fpr, tpr]` and PR curve `[recall, precision]`, at most 1000 points each.
    pub roc_curve: Vec<[f64; 2]>,
    pub pr_curve: Vec<[f64; 2]>,
}

/// Curve points kept in `eval.json` and drawn.
const CURVE_POINTS: usize = 1000;

/// The rows of `split` (every row for `None`), assigned as in training.
pub fn select_rows(rows: &[RowMeta], split: Option<Split>) -> Result<Vec<usize>> {
    match split {
        None => Ok((0..rows.len()).collect()),
        Some(s) => Ok(SplitIndices::assign(rows)?.indices(s).to_vec()),
    }
}

/// Scores `x` (`[rows.len(), hidden_size]`, row i belonging to `rows[i]`) and reports.
pub fn evaluate(probe: &Probe, x: ArrayView2<'_, f32>, rows: &[RowMeta]) -> Result<EvalReport> {
    if rows.is_empty() {
        return Err(Error::Probe("no rows to evaluate".into()));
    }
    if x.nrows() != rows.len() || x.ncols() != probe.hidden_size() {
        return Err(Error::Probe(format!(
            "activations are {:?}, expected [{}, {}] (rows, probe hidden size)",
            x.shape(),
            rows.len(),
            probe.hidden_size()
        )));
    }
    if let Some(r) = rows.iter().find(|r| r.label > 1) {
        return Err(Error::Probe(format!(
            "row `{}` has label {}; expected 0 or 1",
            r.id, r.label
        )));
    }
    check_finite(x, rows, probe.layer_index())?;
    let scores = probe.score_batch(x);
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let metrics = Metrics::compute(&scores, &labels, probe.threshold());
    let at_pause = ThresholdMetrics::compute(&scores, &labels, probe.pause_threshold());
    Ok(EvalReport {
        probe: probe.dir().map(|d| d.display().to_string()),
        model_hash: probe.model_hash().to_string(),
        layer_index: probe.layer_index(),
        rows: rows.len(),
        over_block: OverBlock {
            negatives: metrics.negatives,
            at_threshold: metrics.at_threshold.fpr,
            at_pause_threshold: at_pause.fpr,
        },
        metrics,
        at_pause_threshold: at_pause,
        by_source: by_source(&scores, rows, probe.threshold()),
        roc_curve: thin(&roc_curve(&scores, &labels), CURVE_POINTS),
        pr_curve: thin(&pr_curve(&scores, &labels), CURVE_POINTS),
    })
}

fn by_source(scores: &[f32], rows: &[RowMeta], threshold: f32) -> Vec<SourceReport> {
    let mut groups: BTreeMap<&str, (Vec<f32>, Vec<u8>)> = BTreeMap::new();
    for (r, &s) in rows.iter().zip(scores) {
        let g = groups
            .entry(r.source.as_deref().unwrap_or("-"))
            .or_default();
        g.0.push(s);
        g.1.push(r.label);
    }
    groups
        .into_iter()
        .map(|(source, (s, y))| {
            let m = ThresholdMetrics::compute(&s, &y, threshold);
            let c = m.confusion;
            SourceReport {
                source: source.to_string(),
                n: s.len(),
                positives: c.tp + c.fn_,
                negatives: c.tn + c.fp,
                roc_auc: roc_auc(&s, &y),
                over_block: m.fpr,
                tpr: m.recall,
            }
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

impl EvalReport {
    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let m = &self.metrics;
        let t = &m.at_threshold;
        let c = t.confusion;
        let mut s = format!(
            "rows {} ({} unsafe, {} safe)\nROC-AUC {}  PR-AUC {}  TPR@1%FPR {}  TPR@5%FPR {}\n\
             at threshold {}: accuracy {}  precision {}  recall {}  F1 {}\n\
             confusion: tn {} fp {} fn {} tp {}\n\
             over-block (flag rate on safe rows): {} at threshold, {} at pause threshold {}\n",
            m.n,
            m.positives,
            m.negatives,
            cell(m.roc_auc),
            cell(m.pr_auc),
            cell(m.tpr_at_1pct_fpr),
            cell(m.tpr_at_5pct_fpr),
            t.threshold,
            cell(t.accuracy),
            cell(t.precision),
            cell(t.recall),
            cell(t.f1),
            c.tn,
            c.fp,
            c.fn_,
            c.tp,
            cell(self.over_block.at_threshold),
            cell(self.over_block.at_pause_threshold),
            self.at_pause_threshold.threshold,
        );
        if self.by_source.len() > 1 {
            s.push_str("by source (over-block / TPR at threshold):\n");
            for g in &self.by_source {
                s.push_str(&format!(
                    "  {:<24} n {:>6}  over-block {:>6}  TPR {:>6}\n",
                    g.source,
                    g.n,
                    cell(g.over_block),
                    cell(g.tpr)
                ));
            }
        }
        s
    }

    /// Writes `eval.json`, `roc.svg` and `pr.svg` (curves only when both classes are present).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join("eval.json"), self)?;
        if self.roc_curve.is_empty() {
            return Ok(());
        }
        let pts = |v: &[[f64; 2]]| v.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>();
        let auc = cell(self.metrics.roc_auc);
        let roc = [
            Series {
                name: "chance",
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                markers: false,
                reference: true,
            },
            Series {
                name: &format!("probe (AUC {auc})"),
                points: pts(&self.roc_curve),
                markers: false,
                reference: false,
            },
        ];
        let chart = |title, x_label, y_label, legend| Chart {
            title,
            x_label,
            y_label,
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.02),
            integer_x: false,
            legend,
        };
        let title = format!("ROC, layer {}", self.layer_index);
        write_svg(
            &dir.join("roc.svg"),
            &chart(
                &title,
                "false-positive rate",
                "true-positive rate",
                SeriesLabelPosition::LowerRight,
            ),
            &roc,
        )?;
        let pr = [Series {
            name: &format!("probe (AP {})", cell(self.metrics.pr_auc)),
            points: pts(&self.pr_curve),
            markers: false,
            reference: false,
        }];
        let title = format!("Precision-recall, layer {}", self.layer_index);
        write_svg(
            &dir.join("pr.svg"),
            &chart(
                &title,
                "recall",
                "precision",
                SeriesLabelPosition::LowerLeft,
            ),
            &pr,
        )
    }
}
