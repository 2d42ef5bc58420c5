//! Streaming probes, trained the way the guard uses them (issue 13): on every stored response
//! state of a `tokens` store, with a sequence loss over the guard's smoothed logits ([`loss`],
//! [`fit`]), on one layer or several concatenated; thresholds set on *validation streams* (the
//! guard replayed from the store, [`replay`]) for target shares of safe streams flagged and
//! paused; and a cascade whose second stage, a whole-exchange probe on the running mean of the
//! response's states, must agree before a pause.
//!
//! [`calibrate_streams`] applies to any probe trained on a `tokens` store (a per-state baseline
//! too), so methods compare on the same streams.

pub mod assemble;
pub mod curve;
pub mod data;
pub mod fit;
pub mod loss;
pub mod replay;
pub mod train;

pub use data::StreamSet;
pub use loss::LogitSmoothing;
pub use replay::{StreamRates, StreamThresholds};
pub use train::{StreamOptions, StreamingInfo};

use crate::error::{Error, Result};
use crate::probe::config::{CascadeConfig, StreamRecord};
use crate::probe::metrics::Metrics;
use crate::probe::split::SplitIndices;
use crate::probe::Probe;
use ndarray::Array2;
use replay::{calibrate, rates, replay_row, StoreStream};

/// A cascade's second stage during calibration: the probe and the raw states of its layers for
/// every stored state (`[states, layers x hidden]`, concatenated as the probe reads them; rows as
/// in the store).
pub struct Second<'a> {
    pub probe: &'a Probe,
    pub states: &'a Array2<f32>,
    pub dir: String,
}

/// Replays rows `idx` from the store through `probe`'s guard (and a second stage).
pub fn store_streams(
    data: &StreamSet<'_>,
    probe: &Probe,
    idx: &[usize],
    config: crate::guard::GuardConfig,
    second: Option<&Second<'_>>,
) -> Result<Vec<StoreStream>> {
    let score = |h: &[f32]| second.map_or(0.0, |s| s.probe.score(h));
    idx.iter()
        .map(|&i| {
            let risks = data.risks(probe.scorer(), i);
            let states = second.map(|s| s.states.slice(ndarray::s![data.spans[i].clone(), ..]));
            let second = states.map(|m| (m, &score as &dyn Fn(&[f32]) -> f32));
            replay_row(&data.rows[i], &risks, config, second)
        })
        .collect()
}

/// Sets `probe`'s thresholds from its validation streams (at most `flag_fpr` of safe ones
/// flagged, `pause_fpr` paused; with `second`, the cascade's threshold too), and records the
/// rates on validation and test in its config.
pub fn calibrate_streams(
    probe: &mut Probe,
    data: &StreamSet<'_>,
    splits: &SplitIndices,
    (flag_fpr, pause_fpr): (f64, f64),
    second: Option<&Second<'_>>,
    fit: Option<StreamingInfo>,
) -> Result<StreamRates> {
    let mut config = probe.config().guard_config();
    config.smoothing =
        crate::probe::config::guard_smoothing(fit.as_ref(), probe.config().smoothing_window);
    let val = store_streams(data, probe, &splits.validation, config, second)?;
    let test = store_streams(data, probe, &splits.test, config, second)?;
    let t = calibrate(&val, flag_fpr, pause_fpr, second.is_some()).ok_or_else(|| {
        Error::Probe("the validation split has no safe streams to calibrate on".into())
    })?;
    let maxima = |s: &[StoreStream]| -> (Vec<f32>, Vec<u8>) {
        s.iter()
            .map(|s| (s.smoothed.iter().cloned().fold(0.0, f32::max), s.label))
            .unzip()
    };
    let (scores, labels) = maxima(&test);
    let c = probe.config_mut();
    let record = StreamRecord {
        fit,
        flag_fpr,
        pause_fpr,
        per_state_threshold: c.threshold,
        per_state_pause_threshold: c.pause_threshold,
        validation: rates(&val, t.flag, t.pause, t.second),
        test: rates(&test, t.flag, t.pause, t.second),
        test_stream_metrics: Metrics::compute(&scores, &labels, t.flag),
    };
    let test_rates = record.test;
    let achieved = |r: &StreamRates, paused: bool| crate::probe::config::Achieved {
        fpr: Some(if paused {
            r.safe_paused
        } else {
            r.safe_flagged
        }),
        tpr: Some(if paused {
            r.unsafe_paused
        } else {
            r.unsafe_flagged
        }),
    };
    let (v, te) = (&record.validation, &record.test);
    c.calibration.method = "the guard replayed from the store on the validation streams: the \
        smallest thresholds flagging (pausing) at most the target share of safe streams; with a \
        cascade, the second-stage threshold pausing the most unsafe validation streams"
        .into();
    c.calibration.flag = crate::probe::config::CalibratedThreshold {
        threshold: t.flag,
        target_fpr: flag_fpr,
        validation: achieved(v, false),
        test: achieved(te, false),
    };
    c.calibration.pause = crate::probe::config::CalibratedThreshold {
        threshold: t.pause,
        target_fpr: pause_fpr,
        validation: achieved(v, true),
        test: achieved(te, true),
    };
    c.threshold = t.flag;
    c.pause_threshold = t.pause;
    c.streams = Some(record);
    c.cascade = match (second, t.second) {
        (Some(s), Some(threshold)) => {
            let layers = s.probe.config().layers();
            Some(CascadeConfig {
                dir: s.dir.clone(),
                layer_index: layers[0],
                layers: (layers.len() > 1).then_some(layers),
                threshold,
            })
        }
        _ => None,
    };
    Ok(test_rates)
}
