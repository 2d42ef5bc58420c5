//! A loaded probe as the guard uses it: its scorer over one or several layers, and the cascade's
//! second stage its config names (a probe directory beside it).

use super::io::Probe;
use crate::error::{Error, Result};

impl Probe {
    /// The cascade's second stage named by the config (loaded from its directory beside this
    /// one, and checked to be a probe of the same model), with its threshold.
    pub fn load_second_stage(&self) -> Result<Option<(Probe, f32)>> {
        let Some(c) = &self.config().cascade else {
            return Ok(None);
        };
        let base = self.dir().ok_or_else(|| {
            Error::Probe("a probe with a cascade must be loaded from its directory".into())
        })?;
        let second = Probe::load(&base.join(&c.dir))?;
        if second.config().model_hash != self.config().model_hash
            || second.config().layers() != c.layers()
        {
            return Err(Error::Probe(format!(
                "{}: the cascade's second stage in `{}` is for another model or other layers than \
                 config.json's `cascade` says; retrain the probe",
                base.display(),
                c.dir
            )));
        }
        Ok(Some((second, c.threshold)))
    }

    /// The guard of this probe with `config`, and the cascade's second stage if given.
    pub fn guard_setup<'a>(
        &'a self,
        second: Option<&'a (Probe, f32)>,
        config: crate::guard::GuardConfig,
    ) -> crate::guard::GuardSetup<'a> {
        crate::guard::GuardSetup {
            scorer: self,
            config,
            second: second.map(|(p, t)| crate::guard::SecondStage {
                scorer: p,
                threshold: *t,
            }),
        }
    }
}

/// A probe scores the newest token's hidden states at its layers during guarded generation.
impl crate::guard::RiskScorer for Probe {
    fn layer(&self) -> usize {
        self.layer_index()
    }

    fn score(&self, hidden: &[f32]) -> f32 {
        Probe::score(self, hidden)
    }

    fn layers(&self) -> Vec<usize> {
        self.config().layers()
    }

    fn score_states(&self, states: &[&[f32]]) -> f32 {
        match states {
            [one] => Probe::score(self, one),
            // Concatenated as in training, so scores are bit-identical to the stored features'.
            many => Probe::score(self, &many.concat()),
        }
    }
}
