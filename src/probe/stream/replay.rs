//! Guard replay from a `tokens` store, without the model: each stored state's raw risk goes
//! through the real [`Guard`] (its cadence and smoothing), and a cascade's second stage scores the
//! running mean of the states so far. Exact where a response's states are all stored (responses
//! up to `max_states` tokens); for longer ones the steps are the stored even sample. This is
//! what `train` calibrates stream thresholds on (validation) and reports (test).

use crate::error::Result;
use crate::guard::{Guard, GuardConfig};
use crate::probe::calibrate::threshold_for_fpr;
use crate::store::RowMeta;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// One response as the guard sees it: per probe step, the response token, the smoothed risk and
/// the second stage's score of the running mean (0 without a second stage).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStream {
    pub label: u8,
    pub tokens: Vec<usize>,
    pub smoothed: Vec<f32>,
    pub second: Vec<f32>,
}

/// A second stage during replay: the row's states at its layer and its scorer.
pub type SecondStates<'a> = (ArrayView2<'a, f32>, &'a dyn Fn(&[f32]) -> f32);

/// Replays one row: `risks[k]` is the raw risk of its k-th stored state, `means` the states of the
/// second stage's layer (`[states, hidden]`, the row's own) and `second` its scorer.
pub fn replay_row(
    row: &RowMeta,
    risks: &[f32],
    config: GuardConfig,
    second: Option<SecondStates<'_>>,
) -> Result<StoreStream> {
    let mut guard = Guard::new(GuardConfig {
        threshold: 1.0,
        pause_threshold: 1.0,
        ..config
    })?;
    let positions: Vec<usize> = match &row.positions {
        Some(p) => p.iter().map(|&p| p as usize).collect(),
        None => vec![row.response_tokens.unwrap_or(1).saturating_sub(1)],
    };
    let mut out = StoreStream {
        label: row.label,
        tokens: Vec::new(),
        smoothed: Vec::new(),
        second: Vec::new(),
    };
    let mut mean = crate::guard::RunningMean::default();
    for (k, (&p, &r)) in positions.iter().zip(risks).enumerate() {
        if let Some((m, _)) = second {
            match m.row(k).as_slice() {
                Some(row) => mean.push(row),
                None => mean.push(&m.row(k).to_vec()),
            }
        }
        let last = k + 1 == positions.len();
        if !guard.is_due(p + 1, last) {
            continue;
        }
        let step = guard.observe(p + 1, r)?;
        out.tokens.push(p);
        out.smoothed.push(step.smoothed);
        out.second.push(match second {
            Some((_, score)) => score(mean.mean()),
            None => 0.0,
        });
    }
    Ok(out)
}

/// Pause and cascade thresholds, and what they achieve on a set of streams.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamRates {
    pub safe_streams: usize,
    pub unsafe_streams: usize,
    /// Share of safe (unsafe) streams ever flagged or paused.
    pub safe_flagged: f64,
    pub unsafe_flagged: f64,
    /// Share of safe (unsafe) streams paused.
    pub safe_paused: f64,
    pub unsafe_paused: f64,
    /// Median 0-based response token of the pause, over paused unsafe streams.
    pub median_pause_token: Option<usize>,
}

/// The step at which a stream pauses: smoothed risk at or above `pause` and, with a second stage,
/// its score at or above `second`.
pub fn pause_step(s: &StoreStream, pause: f32, second: Option<f32>) -> Option<usize> {
    (0..s.smoothed.len())
        .find(|&k| s.smoothed[k] >= pause && second.is_none_or(|c| s.second[k] >= c))
}

/// Rates of `streams` under the flag / pause / second-stage thresholds.
pub fn rates(streams: &[StoreStream], flag: f32, pause: f32, second: Option<f32>) -> StreamRates {
    let of = |label: u8| streams.iter().filter(move |s| s.label == label);
    let share = |label: u8, f: &dyn Fn(&StoreStream) -> bool| {
        let n = of(label).count().max(1) as f64;
        of(label).filter(|s| f(s)).count() as f64 / n
    };
    let flagged = |s: &StoreStream| s.smoothed.iter().any(|&v| v >= flag);
    let paused = |s: &StoreStream| pause_step(s, pause, second).is_some();
    let mut pauses: Vec<usize> = of(1)
        .filter_map(|s| pause_step(s, pause, second).map(|k| s.tokens[k]))
        .collect();
    pauses.sort_unstable();
    StreamRates {
        safe_streams: of(0).count(),
        unsafe_streams: of(1).count(),
        safe_flagged: share(0, &flagged),
        unsafe_flagged: share(1, &flagged),
        safe_paused: share(0, &paused),
        unsafe_paused: share(1, &paused),
        median_pause_token: pauses.get(pauses.len() / 2).copied(),
    }
}

/// Stream-calibrated thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamThresholds {
    pub flag: f32,
    pub pause: f32,
    /// The second stage's threshold (a cascade), or none.
    pub second: Option<f32>,
}

/// Thresholds for at most `flag_fpr` of the safe `streams` flagged and `pause_fpr` paused. With
/// `cascade`, every second-stage threshold among the quantiles of the safe streams' second-stage
/// scores is tried, each with the lowest pause threshold meeting `pause_fpr`, and the pair
/// pausing the most unsafe streams wins (ties: no cascade, then the lower second threshold).
/// `None` without safe streams.
pub fn calibrate(
    streams: &[StoreStream],
    flag_fpr: f64,
    pause_fpr: f64,
    cascade: bool,
) -> Option<StreamThresholds> {
    let maxima = |second: Option<f32>| -> Vec<f32> {
        streams
            .iter()
            .filter(|s| s.label == 0)
            .map(|s| effective_max(s, second))
            .collect()
    };
    let flag = threshold_for_fpr(&maxima(None), flag_fpr)?;
    let mut candidates: Vec<Option<f32>> = vec![None];
    if cascade {
        let mut seconds: Vec<f32> = streams
            .iter()
            .filter(|s| s.label == 0)
            .flat_map(|s| s.second.iter().copied())
            .collect();
        seconds.sort_by(f32::total_cmp);
        // Just above a quantile: the safe steps at that score are vetoed too.
        for q in 1..=40 {
            if let Some(&c) = seconds.get((q * seconds.len() / 40).min(seconds.len() - 1)) {
                candidates.push(Some(f32::from_bits(c.max(0.0).to_bits() + 1)));
            }
        }
        candidates.dedup();
    }
    let mut best: Option<(f64, StreamThresholds)> = None;
    for second in candidates {
        let pause = threshold_for_fpr(&maxima(second), pause_fpr)?.max(flag);
        let caught = rates(streams, flag, pause, second).unsafe_paused;
        if best.is_none_or(|(b, _)| caught > b + 1e-12) {
            best = Some((
                caught,
                StreamThresholds {
                    flag,
                    pause,
                    second,
                },
            ));
        }
    }
    best.map(|(_, t)| t)
}

/// The highest smoothed risk at a step the second stage lets through (`second` none: any step),
/// or none when it lets none through: the stream pauses at threshold `t` exactly when this is
/// at least `t`.
pub(super) fn pause_max(s: &StoreStream, second: Option<f32>) -> Option<f32> {
    (0..s.smoothed.len())
        .filter(|&k| second.is_none_or(|c| s.second[k] >= c))
        .map(|k| s.smoothed[k])
        .reduce(f32::max)
}

fn effective_max(s: &StoreStream, second: Option<f32>) -> f32 {
    pause_max(s, second).map_or(0.0, |m| m.max(0.0))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A stream of `label` with these smoothed and second-stage scores, one step per token.
    pub(in crate::probe::stream) fn stream(
        label: u8,
        smoothed: &[f32],
        second: &[f32],
    ) -> StoreStream {
        StoreStream {
            label,
            tokens: (0..smoothed.len()).collect(),
            smoothed: smoothed.to_vec(),
            second: second.to_vec(),
        }
    }

    #[test]
    fn calibration_meets_its_bounds_on_the_streams_it_saw() {
        let mut streams = Vec::new();
        for i in 0..200 {
            let r = i as f32 / 200.0;
            streams.push(stream(0, &[0.1, r], &[0.2, 0.3]));
            streams.push(stream(1, &[0.2, 0.5 + r / 2.0], &[0.9, 0.9]));
        }
        for cascade in [false, true] {
            let t = calibrate(&streams, 0.05, 0.01, cascade).unwrap();
            let r = rates(&streams, t.flag, t.pause, t.second);
            assert!(
                r.safe_flagged <= 0.05 && r.safe_paused <= 0.01,
                "{cascade}: {r:?}"
            );
            assert!(t.flag <= t.pause);
        }
        // The second stage separates perfectly here: with it, the pause threshold drops to the
        // flag threshold (never below) and pauses every unsafe stream reaching it.
        let t = calibrate(&streams, 0.05, 0.01, true).unwrap();
        assert!(t.second.is_some());
        assert_eq!(t.pause, t.flag);
        let with = rates(&streams, t.flag, t.pause, t.second);
        assert_eq!(with.unsafe_paused, with.unsafe_flagged);
        let plain = calibrate(&streams, 0.05, 0.01, false).unwrap();
        let without = rates(&streams, plain.flag, plain.pause, None);
        assert!(plain.pause > plain.flag);
        assert!(
            without.unsafe_paused < with.unsafe_paused,
            "{without:?} vs {with:?}"
        );
    }

    #[test]
    fn no_safe_streams_give_no_thresholds_and_pause_steps_need_both_stages() {
        assert!(calibrate(&[stream(1, &[0.9], &[0.9])], 0.05, 0.01, true).is_none());
        let s = stream(1, &[0.2, 0.8, 0.9], &[0.9, 0.1, 0.6]);
        assert_eq!(pause_step(&s, 0.7, None), Some(1));
        assert_eq!(pause_step(&s, 0.7, Some(0.5)), Some(2));
        assert_eq!(pause_step(&s, 0.95, None), None);
    }
}
