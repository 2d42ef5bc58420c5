//! What the guard needs from a probe: a layer to read and a risk per hidden state. Defined here,
//! implemented by [`crate::probe`], so probes do not depend on generation.

use super::GuardConfig;

/// Scores one hidden state (a trained probe).
pub trait RiskScorer {
    /// Absolute hidden-state index the scorer reads.
    fn layer(&self) -> usize;
    /// Risk in [0, 1] for one `[hidden]` vector.
    fn score(&self, hidden: &[f32]) -> f32;
}

/// A scorer and the guard policy to apply.
pub struct GuardSetup<'a> {
    pub scorer: &'a dyn RiskScorer,
    pub config: GuardConfig,
}
