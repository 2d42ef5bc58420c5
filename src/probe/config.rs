//! The JSON documents of a probe directory: `config.json` (what the guard reads, plus provenance
//! and training record; deterministic for a given store, flags and seed), `calibration.json`
//! (thresholds and reliability tables) and `timing.json` (wall-clock times, which vary run to run
//! and so are kept out of `config.json`).

use super::calibrate::Reliability;
use super::fit::GridPoint;
use super::metrics::Metrics;
use super::split::{ClassBalance, SplitSource};
use crate::store::Pooling;
use serde::{Deserialize, Serialize};

/// `format` of a probe's `config.json`.
pub const PROBE_FORMAT: &str = "open-constitution/probe";
/// `version` of the probe directory layout this build reads and writes.
pub const PROBE_VERSION: u32 = 1;

/// How the classes are weighted in the fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every row weighs the same.
    None,
    /// Each class weighs the same in total (minority rows oversampled, seeded).
    Balanced,
}

/// `config.json`. The first keys are those of the original open-constitution probe config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// The model folder or hub id the activations were extracted from.
    pub model_id: String,
    /// The layer as the user gave it (negative counts from the end, -1 = last).
    pub layer: i64,
    /// Absolute hidden-state index (0 = embeddings).
    pub layer_index: usize,
    pub hidden_size: usize,
    /// Flag threshold: a score >= it is flagged (calibrated for `calibration.flag.target_fpr`).
    pub threshold: f32,
    /// Pause threshold (calibrated for `calibration.pause.target_fpr`).
    pub pause_threshold: f32,
    /// Score every n-th generated token.
    pub probe_every_n_tokens: usize,
    /// Tokens in the moving average of scores the guard compares with the thresholds.
    pub smoothing_window: usize,
    /// Whether activations were extracted with the chat template applied.
    pub use_chat_template: bool,
    /// Test-split metrics (at `threshold`).
    pub metrics: Metrics,
    pub format: String,
    pub version: u32,
    /// Identity of the model weights; a probe is refused on any other model.
    pub model_hash: String,
    pub manifest_sha256: String,
    pub pooling: Pooling,
    pub calibration: CalibrationSummary,
    pub training: TrainingInfo,
    /// Set when `threshold`/`pause_threshold` were re-chosen on replayed streams (`eval
    /// --stream --stream-fpr --write-thresholds`): where, for which rates, and what the
    /// per-state thresholds from training were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_calibration: Option<StreamCalibration>,
    /// A probe on several layers: the absolute hidden-state indices whose states are
    /// concatenated, in order (`layer_index` is the first); weights have `hidden_size` values
    /// per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_layers: Option<Vec<usize>>,
    /// Trained or calibrated on the per-token streams of a `tokens` store: the streaming fit (if
    /// any) and the guard's rates at the thresholds, as replayed from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamRecord>,
    /// The cascade's second stage, a probe directory beside this config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeConfig>,
}

/// The guard's smoothing of a probe: a streaming probe's is its fit's, in logits (exactly as
/// its loss smoothed them); a per-state probe's the moving average of `window` risks.
pub fn guard_smoothing(
    fit: Option<&crate::probe::stream::StreamingInfo>,
    window: usize,
) -> crate::guard::Smoothing {
    use crate::guard::Smoothing;
    use crate::probe::stream::LogitSmoothing;
    match fit.map(|f| f.smoothing) {
        Some(LogitSmoothing::Window { window }) => Smoothing::LogitMovingAverage { window },
        Some(LogitSmoothing::Ema { alpha }) => Smoothing::LogitEma {
            alpha: alpha as f32,
        },
        None => Smoothing::MovingAverage { window },
    }
}

/// What `train` on a `tokens` store records about streams (see [`crate::probe::stream`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// The streaming fit; none for a per-state probe whose thresholds were set on streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<crate::probe::stream::StreamingInfo>,
    /// Target rates of safe validation streams flagged and paused.
    pub flag_fpr: f64,
    pub pause_fpr: f64,
    /// Thresholds a per-state calibration would have chosen (for comparison).
    pub per_state_threshold: f32,
    pub per_state_pause_threshold: f32,
    pub validation: crate::probe::stream::StreamRates,
    pub test: crate::probe::stream::StreamRates,
    /// Whole-stream classification on test (a stream's score is its highest smoothed risk).
    pub test_stream_metrics: Metrics,
}

/// A cascade's second stage: `dir` (relative to the probe directory) holds a whole-exchange
/// probe on the running mean of the response's states; a pause needs its score >= `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeConfig {
    pub dir: String,
    /// The (first) hidden-state index whose response mean it scores.
    pub layer_index: usize,
    /// A second stage on several layers: the hidden-state indices whose response means are
    /// concatenated, in order (`layer_index` is the first); none for one layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    pub threshold: f32,
}

impl CascadeConfig {
    /// The hidden-state indices the second stage reads, in its order.
    pub fn layers(&self) -> Vec<usize> {
        self.layers
            .clone()
            .unwrap_or_else(|| vec![self.layer_index])
    }
}

/// Thresholds chosen so that at most `flag_fpr` (`pause_fpr`) of the safe streams of `data`
/// (`split`) are ever flagged (paused) by the guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamCalibration {
    pub data: String,
    pub split: Option<String>,
    pub flag_fpr: f64,
    pub pause_fpr: f64,
    pub safe_streams: usize,
    /// What the thresholds were before (the per-state calibration of `train`).
    pub per_state_threshold: f32,
    pub per_state_pause_threshold: f32,
}

impl ProbeConfig {
    /// Replaces the thresholds with stream-calibrated ones (a cascade's second-stage threshold
    /// too; `t.second` none drops the cascade, as `train` does when no second-stage threshold
    /// pauses more unsafe streams), keeping the per-state ones of the first calibration in the
    /// record (a second calibration does not overwrite them).
    pub fn set_stream_thresholds(
        &mut self,
        t: &crate::probe::stream::StreamThresholds,
        mut cal: StreamCalibration,
    ) {
        if let Some(prev) = &self.stream_calibration {
            cal.per_state_threshold = prev.per_state_threshold;
            cal.per_state_pause_threshold = prev.per_state_pause_threshold;
        } else {
            cal.per_state_threshold = self.threshold;
            cal.per_state_pause_threshold = self.pause_threshold;
        }
        self.threshold = t.flag;
        self.pause_threshold = t.pause;
        self.cascade = match (self.cascade.take(), t.second) {
            (Some(c), Some(threshold)) => Some(CascadeConfig { threshold, ..c }),
            _ => None,
        };
        self.stream_calibration = Some(cal);
    }

    /// The guard this probe was calibrated for: its thresholds, cadence and moving-average
    /// window.
    pub fn guard_config(&self) -> crate::guard::GuardConfig {
        let fit = self.streams.as_ref().and_then(|s| s.fit.as_ref());
        let smoothing = guard_smoothing(fit, self.smoothing_window);
        crate::guard::GuardConfig {
            threshold: self.threshold,
            pause_threshold: self.pause_threshold,
            probe_every_n_tokens: self.probe_every_n_tokens,
            smoothing,
        }
    }

    /// The hidden-state indices whose states the probe reads, concatenated in this order.
    pub fn layers(&self) -> Vec<usize> {
        self.feature_layers
            .clone()
            .unwrap_or_else(|| vec![self.layer_index])
    }
}

/// FPR and TPR achieved by a threshold on one split (`None` when a class is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Achieved {
    pub fpr: Option<f64>,
    pub tpr: Option<f64>,
}

/// A calibrated threshold, its target and what it achieves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedThreshold {
    pub threshold: f32,
    /// The FPR it was calibrated for on the validation label-0 rows.
    pub target_fpr: f64,
    pub validation: Achieved,
    pub test: Achieved,
}

/// The calibration part of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    pub method: String,
    pub flag: CalibratedThreshold,
    pub pause: CalibratedThreshold,
    /// Expected calibration error of the scores (10 bins) on validation and test.
    pub validation_ece: f64,
    pub test_ece: f64,
}

/// Rows per class in each split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitBalance {
    pub train: ClassBalance,
    pub validation: ClassBalance,
    pub test: ClassBalance,
}

/// Where the training rows came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The store paths as given.
    pub activations: Vec<String>,
    pub rows: usize,
    /// The extraction arguments recorded in the store (data file hash, sampling, truncation...).
    pub args: Vec<serde_json::Value>,
}

/// How the probe was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub seed: u64,
    /// The selected alpha (1/C in scikit-learn's terms).
    pub alpha: f64,
    pub effective_alpha: f64,
    pub objective: String,
    pub selection: String,
    pub refit: String,
    pub class_weight: ClassWeight,
    /// Rows the fit saw (train rows plus oversampled copies).
    pub fitted_rows: usize,
    pub split_source: SplitSource,
    pub class_balance: SplitBalance,
    /// Features constant on the train rows (their std is set to 1; they get no weight).
    pub constant_features: usize,
    pub grid: Vec<GridPoint>,
    /// Validation metrics of the selected model (at `threshold`).
    pub validation_metrics: Metrics,
    pub store: StoreInfo,
}

/// `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub flag: CalibratedThreshold,
    pub pause: CalibratedThreshold,
    pub validation: Reliability,
    pub test: Reliability,
}

/// Wall-clock time of one grid fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitTime {
    pub alpha: f64,
    pub fit_seconds: f64,
}

/// `timing.json`: wall-clock seconds, not reproducible, hence not in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Fit time per grid point; points were fitted in parallel.
    pub grid: Vec<FitTime>,
    /// Reading nothing, from standardization to the written probe.
    pub total_seconds: f64,
    pub threads: usize,
}
