//! Fitting: feature standardization (statistics of the train rows only), the standardized design
//! matrix, smartcore's L2-regularized logistic regression, and the regularization grid.

use crate::error::{Error, Result};
use crate::progress::Progress;
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::numbers::floatnum::FloatNumber;
use smartcore::numbers::realnum::RealNumber;
use std::time::Instant;

/// Per-feature mean and standard deviation of the train rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    /// Population standard deviation; 1 for a constant feature (see [`Standardizer::fit`]).
    pub std: Vec<f32>,
    /// Features that were constant on the train rows.
    pub constant_features: usize,
}

impl Standardizer {
    /// Mean and population std of `x[rows]`, accumulated in f64 in two passes. A feature whose
    /// std is below f32 resolution of its mean is constant on the train rows: its std is set to 1
    /// so it standardizes to 0 there (and gets no weight) instead of dividing by zero.
    pub fn fit(x: ArrayView2<'_, f32>, rows: &[usize]) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::Probe("cannot standardize: no train rows".into()));
        }
        let p = x.ncols();
        let n = rows.len() as f64;
        let mut sum = vec![0.0f64; p];
        for &i in rows {
            for (s, &v) in sum.iter_mut().zip(x.row(i)) {
                *s += v as f64;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut sq = vec![0.0f64; p];
        for &i in rows {
            for ((q, &v), m) in sq.iter_mut().zip(x.row(i)).zip(&mean) {
                let d = v as f64 - m;
                *q += d * d;
            }
        }
        let mut constant_features = 0;
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let s = (q / n).sqrt();
                if s <= f32::EPSILON as f64 * m.abs().max(1.0) {
                    constant_features += 1;
                    1.0
                } else {
                    s as f32
                }
            })
            .collect();
        Ok(Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
            constant_features,
        })
    }

    /// The standardized rows `x[rows]`, row-major, as smartcore's matrix. This is the one copy of
    /// the training data the fit needs: the gather, the standardization and the conversion happen
    /// in one pass, and `DenseMatrix::new` takes the buffer without copying.
    pub fn design_matrix<T: FloatNumber>(
        &self,
        x: ArrayView2<'_, f32>,
        rows: &[usize],
    ) -> Result<DenseMatrix<T>> {
        let p = x.ncols();
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let mut values: Vec<T> = Vec::with_capacity(rows.len() * p);
        for &i in rows {
            let row = x.row(i);
            values.extend(
                row.iter()
                    .zip(&self.mean)
                    .zip(&inv)
                    .map(|((&v, m), s)| T::from_f32((v - m) * s).expect("finite float")),
            );
        }
        DenseMatrix::new(rows.len(), p, values, false)
            .map_err(|e| Error::Probe(format!("building the design matrix: {e}")))
    }
}

/// A linear model on standardized features: `logit = weight . z + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub weight: Vec<f32>,
    pub bias: f32,
}

/// Fits smartcore's logistic regression (L-BFGS; objective: summed log-loss over the rows plus
/// 0.5 x alpha x ||w||^2, intercept unpenalized). `y` holds 0/1 labels with both present.
pub fn fit_logistic<T: FloatNumber + RealNumber>(
    design: &DenseMatrix<T>,
    y: &Vec<u32>,
    alpha: f64,
) -> Result<LinearModel> {
    let params = LogisticRegressionParameters::default()
        .with_alpha(T::from_f64(alpha).expect("alpha is finite"));
    let model: LogisticRegression<T, u32, DenseMatrix<T>, Vec<u32>> =
        LogisticRegression::fit(design, y, params)
            .map_err(|e| Error::Probe(format!("logistic regression (alpha {alpha}): {e}")))?;
    if model.classes() != &vec![0, 1] {
        return Err(Error::Probe(format!(
            "logistic regression saw classes {:?}; the train rows need labels 0 and 1",
            model.classes()
        )));
    }
    let p = design.shape().1;
    let coef = model.coefficients();
    let weight: Vec<f32> = (0..p)
        .map(|j| coef.get((0, j)).to_f32().unwrap_or(f32::NAN))
        .collect();
    let bias = model.intercept().get((0, 0)).to_f32().unwrap_or(f32::NAN);
    if !bias.is_finite() || weight.iter().any(|w| !w.is_finite()) {
        return Err(Error::Probe(format!(
            "logistic regression with alpha {alpha} diverged (non-finite weights); use a larger \
             alpha"
        )));
    }
    Ok(LinearModel { weight, bias })
}

/// One candidate of the regularization grid, as recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    /// alpha as given (1/C in scikit-learn's terms).
    pub alpha: f64,
    /// alpha passed to smartcore (scaled for oversampling, see `train`).
    pub effective_alpha: f64,
    pub validation_roc_auc: f64,
    pub validation_pr_auc: f64,
}

/// A fitted grid candidate and its wall-clock fit time.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub point: GridPoint,
    pub model: LinearModel,
    pub fit_seconds: f64,
}

/// Fits one model per `(alpha, effective_alpha)` in parallel (rayon; the design matrix is shared,
/// not copied) and scores each on validation with `validate`, which returns (ROC-AUC, PR-AUC).
/// Results come back in grid order whatever the thread timing, so output is deterministic.
pub fn fit_grid<T, V>(
    design: &DenseMatrix<T>,
    y: &Vec<u32>,
    alphas: &[(f64, f64)],
    validate: V,
    progress: &dyn Progress,
) -> Result<Vec<Candidate>>
where
    T: FloatNumber + RealNumber + Send + Sync,
    V: Fn(&LinearModel) -> Result<(f64, f64)> + Sync,
{
    alphas
        .par_iter()
        .map(|&(alpha, effective_alpha)| {
            let start = Instant::now();
            let model = fit_logistic(design, y, effective_alpha)?;
            let fit_seconds = start.elapsed().as_secs_f64();
            let (auc, ap) = validate(&model)?;
            tracing::info!(
                "alpha {alpha:<8} validation ROC-AUC {auc:.4} PR-AUC {ap:.4} ({fit_seconds:.1} s)"
            );
            progress.advance(1);
            Ok(Candidate {
                point: GridPoint {
                    alpha,
                    effective_alpha,
                    validation_roc_auc: auc,
                    validation_pr_auc: ap,
                },
                model,
                fit_seconds,
            })
        })
        .collect()
}

/// Validation ROC-AUC within this of the best counts as a tie. Below the resolution of any
/// realistic validation split (1 / (positives x negatives)), so it only merges noise.
pub const AUC_TIE_TOLERANCE: f64 = 1e-4;

/// Index of the selected candidate: the highest validation ROC-AUC, ties (within
/// [`AUC_TIE_TOLERANCE`]) going to the larger alpha, i.e. the stronger regularization.
pub fn select(points: &[GridPoint]) -> usize {
    let best = points
        .iter()
        .map(|p| p.validation_roc_auc)
        .fold(f64::NEG_INFINITY, f64::max);
    (0..points.len())
        .filter(|&i| points[i].validation_roc_auc >= best - AUC_TIE_TOLERANCE)
        .max_by(|&a, &b| points[a].alpha.total_cmp(&points[b].alpha))
        .expect("grid is not empty")
}

/// Whether the selected point sits at an edge of the grid and beats every other point by more
/// than the tie tolerance: then the best alpha may lie outside the grid. Returns "largest" or
/// "smallest".
pub fn grid_edge(points: &[GridPoint], chosen: usize) -> Option<&'static str> {
    let c = &points[chosen];
    let others = points.iter().enumerate().filter(|&(i, _)| i != chosen);
    let best_other = others
        .map(|(_, p)| p.validation_roc_auc)
        .fold(f64::NEG_INFINITY, f64::max);
    if points.len() < 2 || c.validation_roc_auc <= best_other + AUC_TIE_TOLERANCE {
        return None;
    }
    if points.iter().all(|p| p.alpha <= c.alpha) {
        Some("largest")
    } else if points.iter().all(|p| p.alpha >= c.alpha) {
        Some("smallest")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardizer_uses_given_rows_and_guards_constant_features() {
        let x = array![[1.0f32, 5.0, 100.0], [3.0, 5.0, 0.0], [5.0, 5.0, 0.0]];
        let s = Standardizer::fit(x.view(), &[0, 1]).unwrap();
        assert_eq!(s.mean, vec![2.0, 5.0, 50.0]);
        assert_eq!(s.std, vec![1.0, 1.0, 50.0]);
        assert_eq!(s.constant_features, 1);
        let d: DenseMatrix<f32> = s.design_matrix(x.view(), &[2, 0]).unwrap();
        assert_eq!(*d.get((0, 0)), 3.0);
        assert_eq!(*d.get((0, 1)), 0.0);
        assert_eq!(*d.get((1, 2)), 1.0);
        assert!(Standardizer::fit(x.view(), &[]).is_err());
    }

    #[test]
    fn selection_prefers_stronger_regularization_on_ties() {
        let p = |alpha, auc| GridPoint {
            alpha,
            effective_alpha: alpha,
            validation_roc_auc: auc,
            validation_pr_auc: 0.0,
        };
        assert_eq!(select(&[p(0.1, 0.9), p(1.0, 0.95), p(10.0, 0.8)]), 1);
        assert_eq!(select(&[p(0.1, 1.0), p(1.0, 1.0), p(10.0, 0.99995)]), 2);
        assert_eq!(select(&[p(10.0, 1.0), p(0.1, 1.0)]), 0);
        let edge = [p(0.1, 0.8), p(1.0, 0.85), p(10.0, 0.9)];
        assert_eq!(grid_edge(&edge, select(&edge)), Some("largest"));
        let edge = [p(0.1, 0.95), p(1.0, 0.85), p(10.0, 0.9)];
        assert_eq!(grid_edge(&edge, select(&edge)), Some("smallest"));
        let flat = [p(0.1, 0.9), p(1.0, 0.9), p(10.0, 0.9)];
        assert_eq!(grid_edge(&flat, select(&flat)), None, "a tie is no edge");
        let inner = [p(0.1, 0.8), p(1.0, 0.95), p(10.0, 0.9)];
        assert_eq!(grid_edge(&inner, select(&inner)), None);
    }

    #[test]
    fn logistic_fit_separates_a_line() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 / 10.0 - 2.0).collect();
        let d = DenseMatrix::new(40, 1, x, false).unwrap();
        let y: Vec<u32> = (0..40).map(|i| u32::from(i >= 20)).collect();
        let m = fit_logistic(&d, &y, 1.0).unwrap();
        assert!(m.weight[0] > 1.0, "{m:?}");
        let flat = vec![0u32; 40];
        assert!(fit_logistic(&d, &flat, 1.0).is_err());
    }
}
