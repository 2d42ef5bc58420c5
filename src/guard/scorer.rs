//! What the guard needs from a probe: the layers to read and a risk per hidden state (or per set
//! of states, for a probe on several layers), and optionally a cascade's second stage. Defined
//! here, implemented by [`crate::probe`], so probes do not depend on generation.

use super::GuardConfig;

/// Scores hidden states (a trained probe).
pub trait RiskScorer {
    /// Absolute hidden-state index the scorer reads (the first, for several layers).
    fn layer(&self) -> usize;
    /// Risk in [0, 1] for one `[hidden]` vector of [`RiskScorer::layer`].
    fn score(&self, hidden: &[f32]) -> f32;
    /// Every hidden-state index the scorer reads, in the order [`RiskScorer::score_states`]
    /// takes them.
    fn layers(&self) -> Vec<usize> {
        vec![self.layer()]
    }
    /// Risk for the states of [`RiskScorer::layers`] at one token, in that order.
    fn score_states(&self, states: &[&[f32]]) -> f32 {
        self.score(states[0])
    }
}

/// A cascade's second stage: a whole-exchange probe scoring the running mean of the response's
/// states at its layers (concatenated); a pause needs its agreement (score >= `threshold`).
#[derive(Clone, Copy)]
pub struct SecondStage<'a> {
    pub scorer: &'a dyn RiskScorer,
    pub threshold: f32,
}

/// A scorer and the guard policy to apply.
pub struct GuardSetup<'a> {
    pub scorer: &'a dyn RiskScorer,
    pub config: GuardConfig,
    /// The cascade's second stage, if any.
    pub second: Option<SecondStage<'a>>,
}

/// What judges a batch's rows: the probe and a cascade's second stage (each row has its own
/// guard configuration).
#[derive(Clone, Copy)]
pub struct Scorers<'a> {
    pub scorer: &'a dyn RiskScorer,
    pub second: Option<SecondStage<'a>>,
}

impl<'a> GuardSetup<'a> {
    /// The probe and second stage, without the configuration.
    pub fn scorers(&self) -> Scorers<'a> {
        Scorers {
            scorer: self.scorer,
            second: self.second,
        }
    }

    /// See [`Scorers::layers`].
    pub fn layers(&self) -> Vec<usize> {
        self.scorers().layers()
    }

    /// See [`Scorers::second_indices`].
    pub fn second_indices(&self) -> Option<Vec<usize>> {
        self.scorers().second_indices()
    }
}

impl Scorers<'_> {
    /// Every hidden-state index a guarded step needs: the probe's layers, then those of the
    /// second stage's layers that are not among them.
    pub fn layers(&self) -> Vec<usize> {
        let mut l = self.scorer.layers();
        if let Some(s) = &self.second {
            for x in s.scorer.layers() {
                if !l.contains(&x) {
                    l.push(x);
                }
            }
        }
        l
    }

    /// Where the second stage's layers are in [`Scorers::layers`], in the order its probe
    /// concatenates them (its running mean is of that concatenation).
    pub fn second_indices(&self) -> Option<Vec<usize>> {
        let s = self.second.as_ref()?;
        let all = self.layers();
        let at = |l: usize| all.iter().position(|&a| a == l).expect("layers() lists it");
        Some(s.scorer.layers().into_iter().map(at).collect())
    }
}
