//! Fast probe scoring: the standardization is folded into the weights once, so scoring a hidden
//! state is one dot product and a sigmoid (it runs for every decoded token while guarding).

use super::fit::{LinearModel, Standardizer};
use ndarray::ArrayView2;

/// `sigmoid(w . ((h - mean) / std) + b)` computed as `sigmoid(w' . h + b')` with `w' = w / std`
/// and `b' = b - sum(w * mean / std)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    weight: Vec<f32>,
    bias: f64,
}

impl Scorer {
    /// Folds a model on standardized features into raw-feature weights (in f64, then rounded).
    pub fn fold(model: &LinearModel, standardizer: &Standardizer) -> Self {
        Self::fold_parts(
            &model.weight,
            model.bias,
            &standardizer.mean,
            &standardizer.std,
        )
    }

    /// As [`Scorer::fold`], from the four tensors of a probe file.
    pub fn fold_parts(weight: &[f32], bias: f32, mean: &[f32], std: &[f32]) -> Self {
        let mut b = bias as f64;
        let folded = weight
            .iter()
            .zip(mean.iter().zip(std))
            .map(|(&w, (&m, &s))| {
                let ws = w as f64 / s as f64;
                b -= ws * m as f64;
                ws as f32
            })
            .collect();
        Scorer {
            weight: folded,
            bias: b,
        }
    }

    pub fn hidden_size(&self) -> usize {
        self.weight.len()
    }

    /// The logit of one hidden state. The dot product accumulates in f64 over four fixed lanes:
    /// the same input always gives the same bits, and hidden states with large outlier features
    /// lose no precision to cancellation against the folded bias.
    ///
    /// # Panics
    /// If `hidden.len()` is not the probe's hidden size (checked against the model when a probe
    /// is loaded for it, see `Probe::check_model`).
    pub fn logit(&self, hidden: &[f32]) -> f64 {
        assert_eq!(
            hidden.len(),
            self.weight.len(),
            "hidden state size does not match the probe"
        );
        let mut acc = [0.0f64; 4];
        let chunks = hidden.chunks_exact(4).zip(self.weight.chunks_exact(4));
        for (h, w) in chunks {
            for k in 0..4 {
                acc[k] += h[k] as f64 * w[k] as f64;
            }
        }
        let tail = hidden.len() / 4 * 4;
        let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (h, w) in hidden[tail..].iter().zip(&self.weight[tail..]) {
            sum += *h as f64 * *w as f64;
        }
        sum + self.bias
    }

    /// The probability that `hidden` belongs to unsafe behaviour (label 1).
    pub fn score(&self, hidden: &[f32]) -> f32 {
        sigmoid(self.logit(hidden)) as f32
    }

    /// Scores the rows `rows` of `x` (all rows when `None`), with exactly the arithmetic of
    /// [`Scorer::score`], so thresholds calibrated on batches hold token by token.
    pub fn score_rows(&self, x: ArrayView2<'_, f32>, rows: Option<&[usize]>) -> Vec<f32> {
        let mut buf = Vec::new();
        let mut one = |i: usize| {
            let row = x.row(i);
            match row.as_slice() {
                Some(s) => self.score(s),
                None => {
                    buf.clear();
                    buf.extend(row.iter().copied());
                    self.score(&buf)
                }
            }
        };
        match rows {
            Some(idx) => idx.iter().map(|&i| one(i)).collect(),
            None => (0..x.nrows()).map(one).collect(),
        }
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn folded_score_equals_standardized_formula() {
        let model = LinearModel {
            weight: vec![0.5, -2.0, 1.0, 0.25, 3.0],
            bias: 0.3,
        };
        let st = Standardizer {
            mean: vec![1.0, -1.0, 100.0, 0.0, 2.0],
            std: vec![2.0, 0.5, 10.0, 1.0, 4.0],
            constant_features: 0,
        };
        let s = Scorer::fold(&model, &st);
        let h = [2.0f32, -0.5, 90.0, 1.0, 6.0];
        let z: f64 = (0..5)
            .map(|j| model.weight[j] as f64 * (h[j] - st.mean[j]) as f64 / st.std[j] as f64)
            .sum::<f64>()
            + 0.3;
        assert!((s.logit(&h) - z).abs() < 1e-5, "{} vs {z}", s.logit(&h));
        assert!((s.score(&h) as f64 - sigmoid(z)).abs() < 1e-6);
        let x = array![[2.0f32, -0.5, 90.0, 1.0, 6.0], [0.0, 0.0, 0.0, 0.0, 0.0]];
        let batch = s.score_rows(x.view(), None);
        assert_eq!(batch[0].to_bits(), s.score(&h).to_bits());
        // Every other column of a wider array: rows are not contiguous slices.
        let wide = ndarray::Array2::from_shape_fn((2, 10), |(r, c)| x[[r, c / 2]]);
        let strided = wide.slice(ndarray::s![.., ..;2]);
        assert!(strided.row(0).as_slice().is_none());
        let col = s.score_rows(strided, Some(&[1, 0]));
        assert_eq!(col, vec![batch[1], batch[0]]);
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
    }
}
