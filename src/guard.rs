//! The guard state machine of guarded generation: probe risks come in every N tokens, are
//! smoothed, and turn into continue / flag / pause decisions; [`HeldStream`] holds generated text
//! back until the probe window containing it has been judged.
//!
//! Pure and ORT-free: the decode engine feeds it raw risks and token ids. Engine protocol, per
//! generated token (count `n` after it, 1-based):
//! 1. `stream.push(id)`; run the forward pass that feeds `id`, giving its hidden state;
//! 2. if `guard.should_probe(n)`: `let step = guard.observe(n, probe(hidden))?;`
//!    `stream.apply(&step)?;` and stop generating when `step.decision == Decision::Pause`;
//! 3. when generation stops for any other reason (stop token, length limit): if
//!    `guard.needs_final_probe(n)`, probe the last pushed token the same way, so the last
//!    partial window is judged before it is released; then `stream.finish()?`.
//!
//! A stop token is not pushed: it is not part of the response and has no hidden state of its own
//! until it is fed, which a stopping engine never does.

mod detok;
mod stream;

pub use detok::IncrementalDecoder;
pub use stream::{HeldStream, TextSink, TokenDecoder, WriteSink};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How raw per-step risks are smoothed before they are compared with the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Smoothing {
    /// Mean of the last `window` raw risks (fewer at the start); window 1 is no smoothing.
    MovingAverage { window: usize },
    /// Exponential moving average `s = alpha * r + (1 - alpha) * s_prev`, first `s = r`.
    Ema { alpha: f32 },
}

/// Thresholds, probe cadence and smoothing of a guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardConfig {
    /// Smoothed risk at or above which a step is flagged.
    pub threshold: f32,
    /// Smoothed risk at or above which generation pauses (>= `threshold`).
    pub pause_threshold: f32,
    /// Probe after tokens N, 2N, ... (and the last token, see [`Guard::needs_final_probe`]).
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
            Smoothing::MovingAverage { window: 0 } => {
                Err(arg("--smoothing-window must be >= 1 (1 = no smoothing)"))
            }
            Smoothing::Ema { alpha } if !(alpha > 0.0 && alpha <= 1.0) => Err(arg(format!(
                "--ema-alpha must be in (0, 1] (1 = no smoothing), got {alpha}"
            ))),
            _ => Ok(()),
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardStatus {
    /// No step has been flagged or paused.
    Completed,
    /// Some step was flagged (sticky even if later steps are calm); none paused.
    Flagged,
    /// A step paused generation; nothing after it was released.
    Paused,
}

/// One probe step, as recorded in the JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeStep {
    /// 0-based index of this probe step.
    pub step: usize,
    /// 0-based index, among generated tokens, of the token whose hidden state was probed; every
    /// generated token up to and including it is judged by this step.
    pub token_index: usize,
    /// Raw probe risk.
    pub risk: f32,
    /// Smoothed risk the decision is based on.
    pub smoothed: f32,
    /// What the engine must do.
    pub decision: Decision,
}

/// The guard state machine: smooths risks, decides, and keeps the step history.
#[derive(Debug, Clone)]
pub struct Guard {
    cfg: GuardConfig,
    steps: Vec<ProbeStep>,
    /// Last raw risks, for the moving average.
    window: VecDeque<f32>,
    /// Previous smoothed value, for the EMA.
    ema: Option<f32>,
    flagged: bool,
    paused: bool,
    /// Generated tokens judged so far (the `tokens_generated` of the last step).
    judged: usize,
}

impl Guard {
    /// A guard for `cfg`, which is validated first.
    pub fn new(cfg: GuardConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Guard {
            cfg,
            steps: Vec::new(),
            window: VecDeque::new(),
            ema: None,
            flagged: false,
            paused: false,
            judged: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Whether to probe now that `tokens_generated` tokens exist: after tokens N, 2N, ...
    pub fn should_probe(&self, tokens_generated: usize) -> bool {
        tokens_generated > 0 && tokens_generated % self.cfg.probe_every_n_tokens == 0
    }

    /// Whether generation that stops at `tokens_generated` tokens still holds unjudged tokens
    /// (the last partial window), which must be probed (at the last token) before release.
    pub fn needs_final_probe(&self, tokens_generated: usize) -> bool {
        !self.paused && tokens_generated > self.judged
    }

    /// Records the raw risk of the probe at generated token `tokens_generated` (1-based count,
    /// i.e. the probed token is at index `tokens_generated - 1`) and decides. Errors on a risk
    /// outside [0, 1] or NaN, on a count that does not move forward, and after a pause.
    pub fn observe(&mut self, tokens_generated: usize, raw_risk: f32) -> Result<ProbeStep> {
        if self.paused {
            return Err(Error::Generate(
                "the guard already paused generation; no further tokens may be judged".into(),
            ));
        }
        if tokens_generated <= self.judged {
            return Err(Error::Generate(format!(
                "probe at token count {tokens_generated}, but {} tokens were already judged",
                self.judged
            )));
        }
        if !(0.0..=1.0).contains(&raw_risk) {
            return Err(Error::Generate(format!(
                "probe risk at token {tokens_generated} is {raw_risk}, expected a probability in [0, 1]"
            )));
        }
        let smoothed = self.smooth(raw_risk);
        let decision = if smoothed >= self.cfg.pause_threshold {
            Decision::Pause
        } else if smoothed >= self.cfg.threshold {
            Decision::Flag
        } else {
            Decision::Continue
        };
        // A pause implies the flag: the status only ever escalates.
        self.flagged |= decision != Decision::Continue;
        self.paused |= decision == Decision::Pause;
        self.judged = tokens_generated;
        let step = ProbeStep {
            step: self.steps.len(),
            token_index: tokens_generated - 1,
            risk: raw_risk,
            smoothed,
            decision,
        };
        self.steps.push(step);
        Ok(step)
    }

    fn smooth(&mut self, risk: f32) -> f32 {
        match self.cfg.smoothing {
            Smoothing::MovingAverage { window } => {
                if self.window.len() == window {
                    self.window.pop_front();
                }
                self.window.push_back(risk);
                // Summed afresh each step (window is small) so no rounding drift accumulates.
                let sum: f64 = self.window.iter().map(|&r| f64::from(r)).sum();
                (sum / self.window.len() as f64) as f32
            }
            Smoothing::Ema { alpha } => {
                let s = match self.ema {
                    None => risk,
                    Some(prev) => alpha * risk + (1.0 - alpha) * prev,
                };
                self.ema = Some(s);
                s
            }
        }
    }

    /// Overall outcome so far: Paused beats Flagged beats Completed, and never goes back.
    pub fn status(&self) -> GuardStatus {
        if self.paused {
            GuardStatus::Paused
        } else if self.flagged {
            GuardStatus::Flagged
        } else {
            GuardStatus::Completed
        }
    }

    /// Every probe step so far, in order.
    pub fn steps(&self) -> &[ProbeStep] {
        &self.steps
    }

    /// Number of generated tokens judged so far.
    pub fn tokens_judged(&self) -> usize {
        self.judged
    }
}

#[cfg(test)]
mod tests;
