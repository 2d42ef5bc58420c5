//! The guard state machine: risks in, smoothed, judged, recorded (see the engine protocol in
//! [`crate::guard`]).

use super::config::{Decision, GuardConfig, GuardStatus, Smoothing};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

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
    status: GuardStatus,
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
            status: GuardStatus::Completed,
            judged: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Whether to probe now that `tokens_generated` tokens exist ([`GuardConfig::is_due`]);
    /// `last` when generation stops at this token, so its partial window is judged before it
    /// is released. Never after a pause.
    pub fn is_due(&self, tokens_generated: usize, last: bool) -> bool {
        self.status != GuardStatus::Paused && self.cfg.is_due(tokens_generated, last, self.judged)
    }

    /// Whether to probe now that `tokens_generated` tokens exist: after tokens N, 2N, ...
    pub fn should_probe(&self, tokens_generated: usize) -> bool {
        self.is_due(tokens_generated, false)
    }

    /// Whether generation that stops at `tokens_generated` tokens still holds unjudged tokens
    /// (the last partial window), which must be probed (at the last token) before release.
    pub fn needs_final_probe(&self, tokens_generated: usize) -> bool {
        self.status != GuardStatus::Paused && tokens_generated > self.judged
    }

    /// Records the raw risk of the probe at generated token `tokens_generated` (1-based count,
    /// i.e. the probed token is at index `tokens_generated - 1`) and decides. Errors on a risk
    /// outside [0, 1] or NaN, on a count that does not move forward, and after a pause.
    pub fn observe(&mut self, tokens_generated: usize, raw_risk: f32) -> Result<ProbeStep> {
        if self.status == GuardStatus::Paused {
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
        let decision = self.cfg.decide(smoothed);
        self.status = self.status.after(decision);
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
        self.status
    }

    /// Every probe step so far, in order.
    pub fn steps(&self) -> &[ProbeStep] {
        &self.steps
    }
}
