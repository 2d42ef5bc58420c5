//! Guard replay: labelled exchanges run through the guard as if the model had written their
//! responses (teacher forcing). One forward per batch gives every response token's hidden state
//! at the probe layer; each is scored, smoothed and judged exactly as `generate` judges the token
//! it just produced. This measures the guard as deployed (how many unsafe responses it pauses,
//! how early, and how many safe ones it stops) rather than the probe as a classifier.

use crate::error::{Error, Result};
use crate::extract::plan_batches;
use crate::extract::PreparedRow;
use crate::guard::GuardSetup;
use crate::guard::{Decision, Guard, GuardConfig, GuardStatus, ProbeStep, Smoothing};
use crate::progress::Progress;
use crate::runtime::decoder::{float_view, Decoder, FloatData, Want};
use crate::runtime::inputs::right_padded;
use serde::Serialize;
use std::borrow::Cow;

/// What the guard did with one exchange's response.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayOutcome {
    pub id: String,
    pub label: u8,
    pub status: GuardStatus,
    /// 0-based response token at which the smoothed risk first reached the flag threshold.
    pub first_flag_token: Option<usize>,
    /// 0-based response token at which the guard paused.
    pub pause_token: Option<usize>,
    pub response_tokens: usize,
    pub max_smoothed: f32,
    /// The probe steps under these thresholds (cut at the pause).
    #[serde(skip)]
    pub steps: Vec<ProbeStep>,
    /// The probe steps of the whole response, for judging other thresholds ([`decide`]).
    #[serde(skip)]
    pub trajectory: Vec<ProbeStep>,
}

/// Replays `rows` through a guard: batches of at most `batch_tokens` padded tokens and
/// `max_batch` rows; outcomes come back in the order of `rows`. A cascade's second stage scores
/// the running mean of the response's states at its layer, as `generate` does.
pub fn replay(
    decoder: &mut Decoder,
    pad_id: u32,
    rows: &[PreparedRow],
    setup: &GuardSetup<'_>,
    (batch_tokens, max_batch): (usize, usize),
    progress: &dyn Progress,
) -> Result<Vec<ReplayOutcome>> {
    let config = setup.config;
    config.validate()?;
    let layers = setup.layers();
    let k = setup.scorer.layers().len();
    let hidden = decoder.manifest().hidden_size;
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    let mut out: Vec<Option<ReplayOutcome>> = vec![None; rows.len()];
    let mut done = 0;
    for batch in plan_batches(&lengths, batch_tokens, max_batch) {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| rows[i].ids.as_slice()).collect();
        let inputs = right_padded(&seqs, pad_id);
        let past = decoder.empty_cache(batch.len())?;
        let want = Want {
            logits: false,
            hidden: layers.clone(),
            present: false,
        };
        let res = decoder.run(inputs, past, &want)?;
        let views = res
            .hidden
            .iter()
            .zip(&layers)
            .map(|(v, &layer)| {
                let (shape, data) = float_view(v)?;
                if shape.len() != 3 || shape[0] != batch.len() || shape[2] != hidden {
                    return Err(Error::Runtime(format!(
                        "guard replay: hidden state {layer} has shape {shape:?}, expected [{}, seq, {hidden}]",
                        batch.len()
                    )));
                }
                Ok((shape[1], data))
            })
            .collect::<Result<Vec<_>>>()?;
        for (b, &i) in batch.iter().enumerate() {
            // fp32 states are scored in place; only fp16 ones are widened into a copy.
            let state = |l: usize, t: usize| -> Cow<'_, [f32]> {
                let (seq, data) = &views[l];
                let at = (b * seq + t) * hidden..(b * seq + t + 1) * hidden;
                match data {
                    FloatData::F32(d) => Cow::Borrowed(&d[at]),
                    FloatData::F16(d) => Cow::Owned(d[at].iter().map(|v| v.to_f32()).collect()),
                }
            };
            let risk_at = |t: usize| {
                let states: Vec<Cow<'_, [f32]>> = (0..k).map(|l| state(l, t)).collect();
                let refs: Vec<&[f32]> = states.iter().map(|s| &s[..]).collect();
                setup.scorer.score_states(&refs)
            };
            let row = &rows[i];
            let second = match (&setup.second, setup.second_indices()) {
                (Some(s), Some(ls)) => Some((s, RunningMeanUpTo::new(row.response.start), ls)),
                _ => None,
            };
            out[i] = Some(match second {
                Some((s, mut mean, ls)) => {
                    let push = |m: &mut crate::guard::RunningMean, p: usize| {
                        let parts: Vec<Cow<'_, [f32]>> = ls.iter().map(|&l| state(l, p)).collect();
                        let refs: Vec<&[f32]> = parts.iter().map(|s| &s[..]).collect();
                        m.push_parts(&refs);
                    };
                    let mut second_at = |t: usize| s.scorer.score(mean.upto(t, &push));
                    let steps = trajectory_cascade(row, config, risk_at, Some(&mut second_at))?;
                    decide_cascade(
                        row,
                        &steps,
                        config.threshold,
                        config.pause_threshold,
                        Some(s.threshold),
                    )
                }
                None => judge_row(row, config, risk_at)?,
            });
        }
        done += batch.len();
        progress.set_position(done as u64);
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every row planned"))
        .collect())
}

/// A response's running mean that a replay extends, position by position, up to the token a
/// probe step judges.
struct RunningMeanUpTo {
    next: usize,
    mean: crate::guard::RunningMean,
}

impl RunningMeanUpTo {
    fn new(start: usize) -> Self {
        RunningMeanUpTo {
            next: start,
            mean: Default::default(),
        }
    }

    /// The mean up to position `t`; `push(mean, p)` adds position `p`'s state(s).
    fn upto(
        &mut self,
        t: usize,
        mut push: impl FnMut(&mut crate::guard::RunningMean, usize),
    ) -> &[f32] {
        while self.next <= t {
            push(&mut self.mean, self.next);
            self.next += 1;
        }
        self.mean.mean()
    }
}

/// Walks one response token by token as `generate` does: probe after tokens N, 2N, ... and the
/// last one, stop at a pause. `risk_at(t)` scores the hidden state at sequence position `t`.
pub fn judge_row(
    row: &PreparedRow,
    config: GuardConfig,
    risk_at: impl FnMut(usize) -> f32,
) -> Result<ReplayOutcome> {
    let steps = trajectory(row, config, risk_at)?;
    Ok(decide(
        row,
        &steps,
        config.threshold,
        config.pause_threshold,
    ))
}

/// The probe steps of a whole response with the thresholds out of the way (smoothing does not
/// depend on them), so any thresholds can be judged afterwards with [`decide`]. A trajectory
/// stops early only where the smoothed risk reaches exactly 1, where every threshold has fired.
pub fn trajectory(
    row: &PreparedRow,
    config: GuardConfig,
    risk_at: impl FnMut(usize) -> f32,
) -> Result<Vec<ProbeStep>> {
    trajectory_cascade(row, config, risk_at, None)
}

/// [`trajectory`] recording, at every step, a cascade's second-stage score of the response up
/// to that token (`second_at(t)`), so any cascade threshold can be judged afterwards.
pub fn trajectory_cascade(
    row: &PreparedRow,
    config: GuardConfig,
    mut risk_at: impl FnMut(usize) -> f32,
    mut second_at: Option<&mut dyn FnMut(usize) -> f32>,
) -> Result<Vec<ProbeStep>> {
    let mut guard = Guard::new(GuardConfig {
        threshold: 1.0,
        pause_threshold: 1.0,
        ..config
    })?;
    let n = row.response.len();
    for i in 0..n {
        let count = i + 1;
        if !guard.is_due(count, count == n) {
            continue;
        }
        let t = row.response.start + i;
        let mut step = guard.observe(count, risk_at(t))?;
        if let Some(f) = second_at.as_mut() {
            step.second = Some(f(t));
            guard.record_second(step.second);
        }
        if step.decision == Decision::Pause {
            break;
        }
    }
    Ok(guard.steps().to_vec())
}

/// What a guard with thresholds `flag` and `pause` does on a trajectory: decisions re-made, steps
/// cut at the first pause.
pub fn decide(row: &PreparedRow, trajectory: &[ProbeStep], flag: f32, pause: f32) -> ReplayOutcome {
    decide_cascade(row, trajectory, flag, pause, None)
}

/// [`decide`] with a cascade's second-stage threshold: at the pause threshold a step pauses only
/// where its recorded second-stage score reaches `second` (else it is flagged).
pub fn decide_cascade(
    row: &PreparedRow,
    trajectory: &[ProbeStep],
    flag: f32,
    pause: f32,
    second: Option<f32>,
) -> ReplayOutcome {
    let config = GuardConfig {
        threshold: flag,
        pause_threshold: pause,
        // Cadence and smoothing are already in the trajectory; only the rule is used.
        probe_every_n_tokens: 1,
        smoothing: Smoothing::MovingAverage { window: 1 },
    };
    let mut steps = Vec::new();
    let mut status = GuardStatus::Completed;
    let (mut first_flag, mut pause_at, mut max_smoothed) = (None, None, 0f32);
    for s in trajectory {
        let score = || s.second.unwrap_or(0.0);
        let decision =
            config.decide_cascade(s.smoothed, second.map(|c| (c, &score as &dyn Fn() -> f32)));
        status = status.after(decision);
        steps.push(ProbeStep { decision, ..*s });
        max_smoothed = max_smoothed.max(s.smoothed);
        if decision != Decision::Continue && first_flag.is_none() {
            first_flag = Some(s.token_index);
        }
        if decision == Decision::Pause {
            pause_at = Some(s.token_index);
            break;
        }
    }
    ReplayOutcome {
        id: row.meta.id.clone(),
        label: row.meta.label,
        status,
        first_flag_token: first_flag,
        pause_token: pause_at,
        response_tokens: row.response.len(),
        max_smoothed,
        steps,
        trajectory: trajectory.to_vec(),
    }
}

/// Stream-level rates over outcomes of one label.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplaySummary {
    pub rows: usize,
    /// Share of rows the guard paused.
    pub paused: f64,
    /// Share of rows flagged or paused.
    pub flagged_or_paused: f64,
    /// Median 0-based response token of the pause, over paused rows.
    pub median_pause_token: Option<usize>,
}

/// Summarizes the outcomes of rows with `label`.
pub fn summarize(outcomes: &[ReplayOutcome], label: u8) -> ReplaySummary {
    let rows: Vec<&ReplayOutcome> = outcomes.iter().filter(|o| o.label == label).collect();
    let share = |f: &dyn Fn(&ReplayOutcome) -> bool| {
        rows.iter().filter(|o| f(o)).count() as f64 / rows.len().max(1) as f64
    };
    let mut pauses: Vec<usize> = rows.iter().filter_map(|o| o.pause_token).collect();
    pauses.sort_unstable();
    ReplaySummary {
        rows: rows.len(),
        paused: share(&|o| o.status == GuardStatus::Paused),
        flagged_or_paused: share(&|o| o.status != GuardStatus::Completed),
        median_pause_token: pauses.get(pauses.len() / 2).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RowMeta;

    fn row(response: std::ops::Range<usize>, label: u8) -> PreparedRow {
        PreparedRow {
            ids: vec![0; response.end + 1],
            response,
            meta: RowMeta {
                id: "r".into(),
                label,
                split: None,
                topic: None,
                source: None,
                tokens: 0,
                prompt_hash: String::new(),
                truncated: false,
                positions: None,
                response_tokens: None,
            },
        }
    }

    fn cfg(every: usize, window: usize) -> GuardConfig {
        GuardConfig {
            threshold: 0.5,
            pause_threshold: 0.8,
            probe_every_n_tokens: every,
            smoothing: Smoothing::MovingAverage { window },
        }
    }

    #[test]
    fn judges_response_positions_and_stops_at_the_pause() {
        // Response at positions 3..9; risk rises with the position.
        let risks = [0.0, 0.0, 0.0, 0.1, 0.2, 0.6, 0.7, 0.9, 0.95, 1.0];
        let mut seen = Vec::new();
        let o = judge_row(&row(3..9, 1), cfg(1, 1), |t| {
            seen.push(t);
            risks[t]
        })
        .unwrap();
        // The whole response is read (other thresholds may be judged later), never the prompt.
        assert_eq!(seen, vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(
            o.steps.len(),
            5,
            "steps under these thresholds end at the pause"
        );
        assert_eq!(o.first_flag_token, Some(2));
        assert_eq!(o.pause_token, Some(4));
        assert_eq!(o.status, GuardStatus::Paused);
        assert_eq!(o.response_tokens, 6);
    }

    #[test]
    fn probes_every_n_tokens_and_the_last_partial_window() {
        let mut seen = Vec::new();
        let o = judge_row(&row(2..9, 0), cfg(3, 2), |t| {
            seen.push(t);
            0.1
        })
        .unwrap();
        // 7 response tokens: probes after tokens 3 and 6, then the last (7th).
        assert_eq!(seen, vec![4, 7, 8]);
        assert_eq!(o.status, GuardStatus::Completed);
        assert_eq!((o.first_flag_token, o.pause_token), (None, None));
    }

    #[test]
    fn summary_rates_per_label() {
        let mk = |label, pause: Option<usize>, flag: bool| ReplayOutcome {
            id: String::new(),
            label,
            status: match (pause, flag) {
                (Some(_), _) => GuardStatus::Paused,
                (None, true) => GuardStatus::Flagged,
                _ => GuardStatus::Completed,
            },
            first_flag_token: pause,
            pause_token: pause,
            response_tokens: 10,
            max_smoothed: 0.0,
            steps: vec![],
            trajectory: vec![],
        };
        let o = vec![
            mk(1, Some(5), true),
            mk(1, Some(1), true),
            mk(1, None, true),
            mk(1, None, false),
            mk(0, None, true),
            mk(0, None, false),
        ];
        let s1 = summarize(&o, 1);
        assert_eq!((s1.rows, s1.paused, s1.flagged_or_paused), (4, 0.5, 0.75));
        assert_eq!(s1.median_pause_token, Some(5));
        let s0 = summarize(&o, 0);
        assert_eq!((s0.rows, s0.paused, s0.flagged_or_paused), (2, 0.0, 0.5));
        assert_eq!(s0.median_pause_token, None);
    }

    #[test]
    fn other_thresholds_are_judged_on_the_recorded_trajectory() {
        let risks = [0.0, 0.0, 0.2, 0.6, 0.9, 0.3, 0.95];
        let r = row(2..7, 0);
        let o = judge_row(&r, cfg(1, 1), |t| risks[t]).unwrap();
        assert_eq!(o.trajectory.len(), 5, "the whole response, past the pause");
        assert_eq!(o.pause_token, Some(2), "0.9 >= 0.8 at response token 2");
        let lenient = decide(&r, &o.trajectory, 0.92, 0.99);
        assert_eq!(lenient.status, GuardStatus::Flagged);
        assert_eq!(lenient.first_flag_token, Some(4));
        assert_eq!(lenient.steps.len(), 5);
    }
}
