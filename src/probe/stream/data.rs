//! A `tokens` store as streams: the concatenated features of the chosen layers for every stored
//! state, each response's span of states, and the standardized train matrix the fit runs on.

use super::loss::sigmoid;
use crate::error::{Error, Result};
use crate::probe::fit::Standardizer;
use crate::probe::scorer::Scorer;
use crate::probe::split::SplitIndices;
use crate::probe::ClassWeight;
use crate::store::set::ActivationSet;
use crate::store::RowMeta;
use ndarray::{concatenate, Array2, ArrayView2, Axis};
use std::ops::Range;

/// Every stored state of a store, as features of the chosen layers.
pub struct StreamSet<'a> {
    pub rows: &'a [RowMeta],
    /// `[states, layers x hidden]`, raw (not standardized).
    pub x: Array2<f32>,
    /// Each row's states in `x`.
    pub spans: Vec<Range<usize>>,
}

impl<'a> StreamSet<'a> {
    /// Loads `layers` (absolute indices, concatenated in this order) of a `tokens` store.
    pub fn load(set: &'a ActivationSet, layers: &[usize]) -> Result<Self> {
        let meta = set.meta();
        if !meta.per_token() {
            return Err(Error::Probe(format!(
                "a streaming probe trains on per-token states, but the store has {:?} pooling: \
                 extract with `--pooling tokens` (or pass --view last|token|mean to fit a \
                 per-state probe)",
                meta.pooling
            )));
        }
        if layers.is_empty() {
            return Err(Error::Probe(
                "a streaming probe needs at least one layer".into(),
            ));
        }
        let parts = layers
            .iter()
            .map(|&l| {
                let m = set.layer_matrix(l)?;
                crate::probe::train::check_finite_states(m.view(), set.rows(), l)?;
                Ok(m)
            })
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = parts.iter().map(|m| m.view()).collect();
        let x = concatenate(Axis(1), &views)
            .map_err(|e| Error::Probe(format!("concatenating layers: {e}")))?;
        let mut spans = Vec::with_capacity(set.rows().len());
        let mut at = 0;
        for r in set.rows() {
            spans.push(at..at + r.states());
            at += r.states();
        }
        Ok(StreamSet {
            rows: set.rows(),
            x,
            spans,
        })
    }

    /// The states of `rows`, in order.
    pub fn state_rows(&self, rows: &[usize]) -> Vec<usize> {
        rows.iter().flat_map(|&i| self.spans[i].clone()).collect()
    }

    /// The standardized train streams of `splits.train` (one copy of their states).
    pub fn train_streams(
        &self,
        standardizer: &Standardizer,
        splits: &SplitIndices,
        class_weight: ClassWeight,
    ) -> (Array2<f32>, Vec<Range<usize>>, Vec<u8>, Vec<f64>) {
        let idx = &splits.train;
        let states = self.state_rows(idx);
        let d = self.x.ncols();
        let inv: Vec<f32> = standardizer.std.iter().map(|s| 1.0 / s).collect();
        let mut values = Vec::with_capacity(states.len() * d);
        for &s in &states {
            let row = self.x.row(s);
            values.extend(
                row.iter()
                    .zip(&standardizer.mean)
                    .zip(&inv)
                    .map(|((&v, m), k)| (v - m) * k),
            );
        }
        let x = Array2::from_shape_vec((states.len(), d), values).expect("states x features");
        let mut spans = Vec::with_capacity(idx.len());
        let mut at = 0;
        for &i in idx {
            let n = self.spans[i].len();
            spans.push(at..at + n);
            at += n;
        }
        let labels: Vec<u8> = idx.iter().map(|&i| self.rows[i].label).collect();
        let weights = class_weights(&labels, class_weight);
        (x, spans, labels, weights)
    }

    /// Each row's stream score under `scorer`: the highest smoothed risk of its states, smoothed
    /// in logits as the loss smooths them (model selection and the first calibration).
    pub fn stream_scores(
        &self,
        scorer: &Scorer,
        idx: &[usize],
        smoothing: super::LogitSmoothing,
    ) -> Vec<f32> {
        idx.iter()
            .map(|&i| {
                let x = self.x.slice(ndarray::s![self.spans[i].clone(), ..]);
                let s = smoothing.apply(&logits(scorer, x));
                sigmoid(s.iter().cloned().fold(f64::NEG_INFINITY, f64::max)) as f32
            })
            .collect()
    }

    /// The raw risk of each of row `i`'s stored states under `scorer`.
    pub fn risks(&self, scorer: &Scorer, i: usize) -> Vec<f32> {
        let x = self.x.slice(ndarray::s![self.spans[i].clone(), ..]);
        logits(scorer, x)
            .into_iter()
            .map(|z| sigmoid(z) as f32)
            .collect()
    }
}

/// Raw logits of each row of `x`.
pub fn logits(scorer: &Scorer, x: ArrayView2<'_, f32>) -> Vec<f64> {
    let mut buf = Vec::new();
    x.outer_iter()
        .map(|row| match row.as_slice() {
            Some(s) => scorer.logit(s),
            None => {
                buf.clear();
                buf.extend(row.iter().copied());
                scorer.logit(&buf)
            }
        })
        .collect()
}

/// Per-response weights: 1 each, or (balanced) each class weighing half of the total.
pub fn class_weights(labels: &[u8], class_weight: ClassWeight) -> Vec<f64> {
    let n = labels.len() as f64;
    let pos = labels.iter().filter(|&&y| y == 1).count() as f64;
    labels
        .iter()
        .map(|&y| match class_weight {
            ClassWeight::None => 1.0,
            ClassWeight::Balanced if y == 1 => n / (2.0 * pos.max(1.0)),
            ClassWeight::Balanced => n / (2.0 * (n - pos).max(1.0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights_give_each_class_half() {
        let w = class_weights(&[1, 0, 0, 0], ClassWeight::Balanced);
        assert_eq!(w, vec![2.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(class_weights(&[1, 0], ClassWeight::None), vec![1.0, 1.0]);
    }
}
