//! A streaming probe as a probe directory: the selected fit with the same config, calibration
//! and timing records as any probe, where every score is a *stream* score (a response's highest
//! smoothed risk, under the training smoothing). The thresholds written here are on validation
//! stream scores; [`super::calibrate_streams`] then replaces them with the guard's replay (and a
//! cascade) and records the stream rates.

use super::data::StreamSet;
use super::train::{fit_and_select, StreamOptions};
use crate::error::Result;
use crate::probe::calibrate::{rate_at, reliability, threshold_for_fpr};
use crate::probe::config::*;
use crate::probe::metrics::Metrics;
use crate::probe::scorer::Scorer;
use crate::probe::split::{ClassBalance, SplitIndices};
use crate::probe::train::{TrainOptions, TrainedProbe};
use crate::probe::Probe;
use crate::progress::Progress;
use crate::store::StoreMeta;
use std::time::Instant;

/// Which layers a streaming probe reads: as the user gave the first, and all absolute indices.
#[derive(Debug, Clone)]
pub struct StreamLayers {
    pub layer: i64,
    pub indices: Vec<usize>,
}

/// Fits, selects and assembles a streaming probe (see the module doc).
pub fn train_streaming(
    data: &StreamSet<'_>,
    meta: &StoreMeta,
    store: StoreInfo,
    splits: &SplitIndices,
    layers: &StreamLayers,
    (opts, sopts): (&TrainOptions, &StreamOptions),
    progress: &dyn Progress,
) -> Result<(TrainedProbe, super::StreamingInfo)> {
    let start = Instant::now();
    opts.validate()?;
    splits.require_both_classes(data.rows)?;
    let f = fit_and_select(data, splits, opts, sopts, progress)?;
    let scorer = Scorer::fold(&f.model, &f.standardizer);
    let scored = |idx: &[usize]| -> (Vec<f32>, Vec<u8>) {
        let labels = idx.iter().map(|&i| data.rows[i].label).collect();
        (data.stream_scores(&scorer, idx, f.info.smoothing), labels)
    };
    let (val, val_y) = scored(&splits.validation);
    let (test, test_y) = scored(&splits.test);
    let cal = |target: f64| {
        let neg: Vec<f32> = val
            .iter()
            .zip(&val_y)
            .filter(|(_, &y)| y == 0)
            .map(|(&s, _)| s)
            .collect();
        let threshold = threshold_for_fpr(&neg, target).unwrap_or(1.0);
        let achieved = |s: &[f32], y: &[u8]| {
            let class = |c: u8| -> Vec<f32> {
                s.iter()
                    .zip(y)
                    .filter(|(_, &l)| l == c)
                    .map(|(&v, _)| v)
                    .collect()
            };
            Achieved {
                fpr: rate_at(&class(0), threshold),
                tpr: rate_at(&class(1), threshold),
            }
        };
        CalibratedThreshold {
            threshold,
            target_fpr: target,
            validation: achieved(&val, &val_y),
            test: achieved(&test, &test_y),
        }
    };
    let (flag, pause) = (cal(opts.flag_fpr), cal(opts.pause_fpr));
    let file = CalibrationFile {
        flag: flag.clone(),
        pause: pause.clone(),
        validation: reliability(&val, &val_y),
        test: reliability(&test, &test_y),
    };
    let balance = |idx: &[usize]| ClassBalance::of(data.rows, idx);
    let alpha = f.grid[crate::probe::fit::select(&f.grid)].alpha;
    let config = ProbeConfig {
        model_id: meta.model.clone(),
        layer: layers.layer,
        layer_index: layers.indices[0],
        hidden_size: meta.hidden_size,
        threshold: flag.threshold,
        pause_threshold: pause.threshold.max(flag.threshold),
        probe_every_n_tokens: opts.probe_every_n_tokens,
        smoothing_window: opts.smoothing_window,
        use_chat_template: meta.chat_template,
        metrics: Metrics::compute(&test, &test_y, flag.threshold),
        format: PROBE_FORMAT.into(),
        version: PROBE_VERSION,
        model_hash: meta.model_hash.clone(),
        manifest_sha256: meta.manifest_sha256.clone(),
        pooling: meta.pooling,
        calibration: CalibrationSummary {
            method: "smallest threshold whose share of validation safe streams (label 0) \
                     reaching it (highest smoothed risk) is <= the target"
                .into(),
            flag,
            pause,
            validation_ece: file.validation.ece,
            test_ece: file.test.ece,
        },
        training: TrainingInfo {
            seed: opts.seed,
            alpha,
            effective_alpha: alpha,
            objective: f.info.objective.clone(),
            selection: "highest validation stream ROC-AUC (a stream's score is its highest \
                        smoothed risk); ties within 1e-4 go to the larger alpha"
                .into(),
            refit: "none: the selected grid model, fitted on the train split, is the probe".into(),
            class_weight: opts.class_weight,
            fitted_rows: splits.train.len(),
            split_source: splits.source,
            class_balance: SplitBalance {
                train: balance(&splits.train),
                validation: balance(&splits.validation),
                test: balance(&splits.test),
            },
            constant_features: f.standardizer.constant_features,
            grid: f.grid.clone(),
            validation_metrics: Metrics::compute(&val, &val_y, file.flag.threshold),
            store,
        },
        stream_calibration: None,
        feature_layers: (layers.indices.len() > 1).then(|| layers.indices.clone()),
        streams: None,
        cascade: None,
    };
    let timing = Timing {
        grid: f
            .fit_seconds
            .iter()
            .map(|&(alpha, fit_seconds)| FitTime { alpha, fit_seconds })
            .collect(),
        total_seconds: start.elapsed().as_secs_f64(),
        threads: rayon::current_num_threads(),
    };
    let probe = Probe::new(config, f.model, f.standardizer)?;
    Ok((
        TrainedProbe {
            probe,
            calibration: file,
            timing,
        },
        f.info,
    ))
}
