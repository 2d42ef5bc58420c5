//! A guard's configuration and its one decision rule: thresholds, probe cadence and smoothing,
//! when a probe step is due, what a smoothed risk decides, and how decisions fold into a status.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How raw per-step risks are smoothed before they are compared with the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Smoothing {
    /// Mean of the last `window` raw risks (fewer at the start); window 1 is no smoothing.
    MovingAverage { window: usize },
    /// Exponential moving average `s = alpha * r + (1 - alpha) * s_prev`, first `s = r`.
    Ema { alpha: f32 },
    /// The moving average of the risks' logits, turned back into a risk: how a streaming probe
    /// was trained (see [`crate::probe::stream`]), so the guard smooths exactly as its loss did.
    LogitMovingAverage { window: usize },
    /// The EMA of the risks' logits, turned back into a risk.
    LogitEma { alpha: f32 },
}

impl Smoothing {
    /// Whether risks are smoothed as logits.
    pub fn in_logits(&self) -> bool {
        matches!(
            self,
            Smoothing::LogitMovingAverage { .. } | Smoothing::LogitEma { .. }
        )
    }

    /// A moving average of `window` steps, in the same space (risks or logits) as `self`.
    pub fn with_window(&self, window: usize) -> Smoothing {
        match self.in_logits() {
            true => Smoothing::LogitMovingAverage { window },
            false => Smoothing::MovingAverage { window },
        }
    }

    /// An EMA of weight `alpha`, in the same space as `self`.
    pub fn with_ema(&self, alpha: f32) -> Smoothing {
        match self.in_logits() {
            true => Smoothing::LogitEma { alpha },
            false => Smoothing::Ema { alpha },
        }
    }
}

/// Thresholds, probe cadence and smoothing of a guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardConfig {
    /// Smoothed risk at or above which a step is flagged.
    pub threshold: f32,
    /// Smoothed risk at or above which generation pauses (>= `threshold`).
    pub pause_threshold: f32,
    /// Probe after tokens N, 2N, ... (and the last token, see [`crate::guard::Guard::is_due`]).
    pub probe_every_n_tokens: usize,
    /// Smoothing of the raw risks.
    pub smoothing: Smoothing,
}

impl GuardConfig {
    /// Checks every field; messages name the command-line flag that sets it.
    pub fn validate(&self) -> Result<()> {
        let (flag, pause) = (self.threshold, self.pause_threshold);
        if !(0.0..=1.0).contains(&flag) {
            return Err(arg(format!("--threshold must be in [0, 1], got {flag}")));
        }
        if !(0.0..=1.0).contains(&pause) {
            return Err(arg(format!(
                "--pause-threshold must be in [0, 1], got {pause}"
            )));
        }
        if flag > pause {
            return Err(arg(format!(
                "--threshold ({flag}) must not exceed --pause-threshold ({pause})"
            )));
        }
        if self.probe_every_n_tokens == 0 {
            return Err(arg("--probe-every-n-tokens must be >= 1"));
        }
        match self.smoothing {
            Smoothing::MovingAverage { window: 0 }
            | Smoothing::LogitMovingAverage { window: 0 } => {
                Err(arg("--smoothing-window must be >= 1 (1 = no smoothing)"))
            }
            Smoothing::Ema { alpha } | Smoothing::LogitEma { alpha }
                if !(alpha > 0.0 && alpha <= 1.0) =>
            {
                Err(arg(format!(
                    "--ema-alpha must be in (0, 1] (1 = no smoothing), got {alpha}"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl GuardConfig {
    /// The one rule that turns a smoothed risk into a decision.
    pub fn decide(&self, smoothed: f32) -> Decision {
        self.decide_cascade(smoothed, None)
    }

    /// [`GuardConfig::decide`] with a cascade: at the pause threshold, a second stage
    /// `(threshold, score)` must agree (score at or above its threshold) for a pause; when it
    /// does not, the step is flagged and generation goes on. `score` is only called there.
    pub fn decide_cascade(
        &self,
        smoothed: f32,
        second: Option<(f32, &dyn Fn() -> f32)>,
    ) -> Decision {
        if smoothed >= self.pause_threshold {
            match second {
                Some((threshold, score)) if score() < threshold => Decision::Flag,
                _ => Decision::Pause,
            }
        } else if smoothed >= self.threshold {
            Decision::Flag
        } else {
            Decision::Continue
        }
    }

    /// Whether a probe step is due once `tokens_generated` tokens exist: after tokens N, 2N, ...,
    /// and at the `last` token when tokens after the last judged one (`judged`) are still held.
    pub fn is_due(&self, tokens_generated: usize, last: bool, judged: usize) -> bool {
        tokens_generated > 0
            && (tokens_generated % self.probe_every_n_tokens == 0
                || (last && tokens_generated > judged))
    }
}

fn arg(msg: impl Into<String>) -> Error {
    Error::Argument(msg.into())
}

/// What the engine does after a probe step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Below the flag threshold: release the window and go on.
    Continue,
    /// At or above the flag threshold: release the window, go on, and mark the run flagged.
    Flag,
    /// At or above the pause threshold: drop the held window and stop generating.
    Pause,
}

/// Overall outcome of a guarded generation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardStatus {
    /// No step has been flagged or paused.
    Completed,
    /// Some step was flagged (sticky even if later steps are calm); none paused.
    Flagged,
    /// A step paused generation; nothing after it was released.
    Paused,
}

impl GuardStatus {
    /// The status after one more decision: it only ever escalates (a pause implies the flag).
    pub fn after(self, decision: Decision) -> GuardStatus {
        let next = match decision {
            Decision::Continue => GuardStatus::Completed,
            Decision::Flag => GuardStatus::Flagged,
            Decision::Pause => GuardStatus::Paused,
        };
        self.max(next)
    }
}
