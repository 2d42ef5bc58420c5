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
    /// A cascade's second-stage score of the response so far, where one was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second: Option<f32>,
}

/// The guard state machine: smooths risks, decides, and keeps the step history.
#[derive(Debug, Clone)]
pub struct Guard {
    cfg: GuardConfig,
    steps: Vec<ProbeStep>,
    /// Last raw risks (or their logits), for the moving average.
    window: VecDeque<f64>,
    /// Previous smoothed value (risk or logit), for the EMA.
    ema: Option<f64>,
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
        self.observe_cascade(tokens_generated, raw_risk, None)
    }

    /// [`Guard::observe`] with a cascade's second stage (see [`GuardConfig::decide_cascade`]).
    pub fn observe_cascade(
        &mut self,
        tokens_generated: usize,
        raw_risk: f32,
        second: Option<(f32, &dyn Fn() -> f32)>,
    ) -> Result<ProbeStep> {
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
        // The second stage is scored at every step it is given (one dot product), so generate
        // and replay record the same steps.
        let scored = second.map(|(t, score)| (t, score()));
        let value = scored.map(|(_, v)| v);
        let get = || value.unwrap_or(0.0);
        let decision = self
            .cfg
            .decide_cascade(smoothed, scored.map(|(t, _)| (t, &get as &dyn Fn() -> f32)));
        self.status = self.status.after(decision);
        self.judged = tokens_generated;
        let step = ProbeStep {
            step: self.steps.len(),
            token_index: tokens_generated - 1,
            risk: raw_risk,
            smoothed,
            decision,
            second: value,
        };
        self.steps.push(step);
        Ok(step)
    }

    fn smooth(&mut self, risk: f32) -> f32 {
        let logits = self.cfg.smoothing.in_logits();
        // Logit space: risks come from a sigmoid, so this recovers the probe's logit (to f32
        // precision; risks of exactly 0 or 1 are clamped to a finite logit).
        let x = if logits { logit(risk) } else { risk as f64 };
        let s = match self.cfg.smoothing {
            Smoothing::MovingAverage { window } | Smoothing::LogitMovingAverage { window } => {
                if self.window.len() == window {
                    self.window.pop_front();
                }
                self.window.push_back(x);
                // Summed afresh each step (window is small) so no rounding drift accumulates.
                self.window.iter().sum::<f64>() / self.window.len() as f64
            }
            Smoothing::Ema { alpha } => {
                // In f32, as this rule always was (risks' EMA values stay bit-identical).
                let s = match self.ema {
                    None => risk,
                    Some(prev) => alpha * risk + (1.0 - alpha) * prev as f32,
                };
                self.ema = Some(s as f64);
                s as f64
            }
            Smoothing::LogitEma { alpha } => {
                let a = alpha as f64;
                let s = match self.ema {
                    None => x,
                    Some(prev) => a * x + (1.0 - a) * prev,
                };
                self.ema = Some(s);
                s
            }
        };
        if logits {
            crate::probe::scorer::sigmoid(s) as f32
        } else {
            s as f32
        }
    }

    /// Records a second-stage score on the newest step (replay computes it for every step, so
    /// that any cascade threshold can be judged on the trajectory afterwards).
    pub fn record_second(&mut self, second: Option<f32>) {
        if let Some(last) = self.steps.last_mut() {
            last.second = second;
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

/// The logit of a risk, clamped so that risks of exactly 0 or 1 stay finite.
fn logit(risk: f32) -> f64 {
    let p = (risk as f64).clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}
