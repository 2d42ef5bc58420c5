//! Training a streaming probe on a `tokens` store: standardize the (concatenated) features on the
//! train split's states, fit the alpha path with the sequence loss (warm-started, largest alpha first), select on the
//! validation streams' ROC-AUC (a stream's score is its highest smoothed risk, what the guard
//! thresholds), and assemble the probe with the config fields of any probe, computed on streams.
//! Stream thresholds and the cascade are set afterwards by [`super::calibrate_streams`].

use super::data::StreamSet;
use super::fit::{fit_stream, StreamFit, StreamModel, Streams};
use super::loss::LogitSmoothing;
use crate::error::{Error, Result};
use crate::probe::fit::{select, GridPoint, LinearModel, Standardizer};
use crate::probe::metrics::{average_precision, roc_auc};
use crate::probe::scorer::Scorer;
use crate::probe::split::SplitIndices;
use crate::probe::train::TrainOptions;
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Streaming-specific settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    /// Softmax temperature of the token weighting, in logit units.
    pub tau: f64,
    /// Smooth with an EMA of this weight instead of the moving average of
    /// `TrainOptions::smoothing_window` steps.
    pub ema_alpha: Option<f64>,
    pub max_iters: u64,
}

/// The default softmax temperature of the sequence loss (chosen on the demo's validation streams;
/// see `train --tau`).
pub const DEFAULT_TAU: f64 = 2.0;

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            tau: DEFAULT_TAU,
            ema_alpha: None,
            max_iters: 300,
        }
    }
}

/// What `config.json` records about a streaming probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingInfo {
    pub tau: f64,
    pub smoothing: LogitSmoothing,
    pub objective: String,
    pub iterations: u64,
    pub converged: bool,
    pub train_states: usize,
}

/// The selected model of a streaming fit, before calibration.
pub struct StreamFitted {
    pub model: LinearModel,
    pub standardizer: Standardizer,
    pub grid: Vec<GridPoint>,
    pub info: StreamingInfo,
    pub fit_seconds: Vec<(f64, f64)>,
}

/// The smoothing a fit and its guard use.
pub fn smoothing_of(opts: &TrainOptions, s: &StreamOptions) -> LogitSmoothing {
    match s.ema_alpha {
        Some(alpha) => LogitSmoothing::Ema { alpha },
        None => LogitSmoothing::Window {
            window: opts.smoothing_window,
        },
    }
}

/// Fits the grid and selects on validation streams.
pub fn fit_and_select(
    data: &StreamSet<'_>,
    splits: &SplitIndices,
    opts: &TrainOptions,
    sopts: &StreamOptions,
    progress: &dyn Progress,
) -> Result<StreamFitted> {
    if let Some(a) = sopts.ema_alpha {
        if !(a > 0.0 && a <= 1.0) {
            return Err(Error::Argument(format!(
                "--ema-alpha must be in (0, 1], got {a}"
            )));
        }
    }
    let smoothing = smoothing_of(opts, sopts);
    let standardizer = Standardizer::fit(data.x.view(), &data.state_rows(&splits.train))?;
    let (x, spans, labels, weights) = data.train_streams(&standardizer, splits, opts.class_weight);
    let train_states = x.nrows();
    let train = std::sync::Arc::new(Streams {
        x,
        spans,
        labels,
        weights,
    });
    let val_labels: Vec<u8> = splits
        .validation
        .iter()
        .map(|&i| data.rows[i].label)
        .collect();
    // The alpha path from the strongest penalty down, each fit warm-started from the previous
    // solution (weak penalties converge slowly from zero); it stops once validation falls
    // clearly below the best for two alphas in a row, where weaker penalties only overfit more.
    let mut alphas = opts.alphas.clone();
    alphas.sort_by(|a, b| b.total_cmp(a));
    let mut fitted: Vec<(StreamModel, GridPoint, f64)> = Vec::new();
    let (mut best, mut worse) = (f64::NEG_INFINITY, 0);
    for (k, &alpha) in alphas.iter().enumerate() {
        let start = Instant::now();
        let fit = StreamFit {
            smoothing,
            tau: sopts.tau,
            alpha,
            max_iters: sopts.max_iters,
        };
        let init = fitted.last().map(|f| f.0.params.as_slice());
        let m = fit_stream(&train, fit, init)?;
        let secs = start.elapsed().as_secs_f64();
        let lm = LinearModel {
            weight: m.weight.clone(),
            bias: m.bias,
        };
        let scorer = Scorer::fold(&lm, &standardizer);
        let scores = data.stream_scores(&scorer, &splits.validation, smoothing);
        let point = GridPoint {
            alpha,
            effective_alpha: alpha,
            validation_roc_auc: roc_auc(&scores, &val_labels).unwrap_or(0.5),
            validation_pr_auc: average_precision(&scores, &val_labels).unwrap_or(0.0),
        };
        tracing::info!(
            "alpha {alpha:<8} validation stream ROC-AUC {:.4} ({} iterations{}, {secs:.1} s)",
            point.validation_roc_auc,
            m.iterations,
            if m.converged { "" } else { ", not converged" }
        );
        progress.advance(1);
        best = best.max(point.validation_roc_auc);
        worse = if point.validation_roc_auc < best - PATH_STOP_MARGIN {
            worse + 1
        } else {
            0
        };
        fitted.push((m, point, secs));
        if worse >= 2 && k + 1 < alphas.len() {
            tracing::info!(
                "alpha path stopped at {alpha}: validation ROC-AUC fell more than \
                 {PATH_STOP_MARGIN} below the best for two alphas in a row; smaller ones skipped"
            );
            progress.advance((alphas.len() - k - 1) as u64);
            break;
        }
    }
    // Reported in ascending alpha, as `train`'s per-state grid is.
    fitted.reverse();
    let grid: Vec<GridPoint> = fitted.iter().map(|f| f.1.clone()).collect();
    let chosen = select(&grid);
    let (m, point, _) = &fitted[chosen];
    tracing::info!(
        "selected alpha {} (validation stream ROC-AUC {:.4})",
        point.alpha,
        point.validation_roc_auc
    );
    Ok(StreamFitted {
        model: LinearModel {
            weight: m.weight.clone(),
            bias: m.bias,
        },
        standardizer,
        grid,
        info: StreamingInfo {
            tau: sopts.tau,
            smoothing,
            objective: OBJECTIVE.into(),
            iterations: m.iterations,
            converged: m.converged,
            train_states,
        },
        fit_seconds: fitted.iter().map(|f| (f.1.alpha, f.2)).collect(),
    })
}

/// How far below the best validation ROC-AUC an alpha counts as clearly worse on the path.
const PATH_STOP_MARGIN: f64 = 0.02;

const OBJECTIVE: &str = "argmin L-BFGS (More-Thuente) on standardized features of every stored \
    response state: per response, the cross-entropy of each step's smoothed logit against the \
    response's label, weighted by softmax(smoothed logits / tau) over the response; the weighted \
    mean over responses (class weights) + 0.5 * alpha / responses * ||w||^2, intercept \
    unpenalized; alphas from the largest down, each from the previous solution (the largest from \
    zero weights)";
