//! Fitting a streaming probe: per-token logits `z = w . x + b` over standardized (possibly
//! multi-layer) features, the [`sequence_loss`] of each response, class weights, and an L2 penalty
//! of the same meaning as `train`'s alpha grid (`alpha = 1/C`, penalty `alpha / (2 n) |w|^2` on
//! the mean loss over `n` responses). Minimized with argmin's L-BFGS (More-Thuente line search)
//! from zero weights or a neighbouring alpha's solution (a warm start along the alpha path): no
//! random step, and the same inputs give the same bits (the objective's parallel pass sums fixed
//! chunks of responses in a fixed order).

use super::loss::{sequence_loss, LogitSmoothing};
use crate::error::{Error, Result};
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::{Array2, ArrayView1};
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

/// Responses to fit: standardized states and, per response, its state rows and label. Shared
/// (`Arc`) by the grid's parallel fits: argmin owns its problem.
#[derive(Debug, Clone)]
pub struct Streams {
    /// `[states, features]`, standardized.
    pub x: Array2<f32>,
    /// Each response's rows of `x`, in token order.
    pub spans: Vec<Range<usize>>,
    pub labels: Vec<u8>,
    /// Per-response weight (class balance); summing to the number of responses is not needed.
    pub weights: Vec<f64>,
}

/// How one fit is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamFit {
    pub smoothing: LogitSmoothing,
    /// Softmax temperature of the token weighting (in logit units).
    pub tau: f64,
    /// L2 strength, `1/C` of scikit-learn.
    pub alpha: f64,
    pub max_iters: u64,
}

/// A fitted model on standardized features and how the optimizer ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamModel {
    pub weight: Vec<f32>,
    pub bias: f32,
    /// `[w..., b]` as the optimizer left them (the next alpha's warm start).
    pub params: Vec<f64>,
    pub iterations: u64,
    pub objective: f64,
    pub converged: bool,
}

/// Parameters, cost and gradient of one evaluation.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

/// The objective as argmin sees it; the last gradient is cached, since argmin asks for cost and
/// gradient at the same point separately and both come out of one pass.
struct Objective {
    data: Arc<Streams>,
    fit: StreamFit,
    total_weight: f64,
    cache: RefCell<Option<Evaluated>>,
}

impl Objective {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        if let Some((at, cost, grad)) = &*self.cache.borrow() {
            if at.as_slice() == p {
                return (*cost, grad.clone());
            }
        }
        let (cost, grad) = objective(&self.data, self.fit, self.total_weight, p);
        *self.cache.borrow_mut() = Some((p.to_vec(), cost, grad.clone()));
        (cost, grad)
    }
}

/// Responses per chunk of the objective's parallel pass. Fixed, so the partial sums, and their
/// order, never depend on the thread count: the same inputs give the same bits on any machine.
const SPANS_PER_CHUNK: usize = 64;

/// Objective and gradient at `p = [w..., b]`: chunks of responses in parallel, each giving its
/// cost, weight gradient and bias gradient, summed in chunk order.
fn objective(data: &Streams, fit: StreamFit, total: f64, p: &[f64]) -> (f64, Vec<f64>) {
    let d = data.x.ncols();
    let w32: Vec<f32> = p[..d].iter().map(|&v| v as f32).collect();
    let w = ArrayView1::from(&w32[..]);
    let b = p[d];
    let items: Vec<(&Range<usize>, (&u8, &f64))> = data
        .spans
        .iter()
        .zip(data.labels.iter().zip(&data.weights))
        .collect();
    let partials: Vec<(f64, Vec<f32>, f64)> = items
        .par_chunks(SPANS_PER_CHUNK)
        .map(|chunk| {
            let (mut cost, mut gw, mut gb) = (0.0, vec![0f32; d], 0.0);
            for &(span, (&y, &c)) in chunk {
                let xs = data.x.slice(ndarray::s![span.clone(), ..]);
                let zi: Vec<f64> = xs.dot(&w).iter().map(|&v| v as f64 + b).collect();
                let (loss, dz) = sequence_loss(&zi, y, fit.smoothing, fit.tau);
                cost += c * loss / total;
                let gz: Vec<f32> = dz.iter().map(|&g| (c * g / total) as f32).collect();
                gb += gz.iter().map(|&g| g as f64).sum::<f64>();
                let g = xs.t().dot(&ArrayView1::from(&gz[..]));
                for (a, v) in gw.iter_mut().zip(g.iter()) {
                    *a += v;
                }
            }
            (cost, gw, gb)
        })
        .collect();
    let lambda = fit.alpha / data.spans.len().max(1) as f64;
    let mut cost = 0.5 * lambda * p[..d].iter().map(|w| w * w).sum::<f64>();
    let mut grad: Vec<f64> = p[..d].iter().map(|&w| lambda * w).collect();
    let mut gb = 0.0;
    for (c, gw, b) in partials {
        cost += c;
        gb += b;
        for (g, v) in grad.iter_mut().zip(gw) {
            *g += v as f64;
        }
    }
    grad.push(gb);
    (cost, grad)
}

impl CostFunction for Objective {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.eval(p).0)
    }
}

impl Gradient for Objective {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p).1)
    }
}

/// Fits one model (see the module doc), from zero weights or from `init` (`[w..., b]`, a
/// neighbouring alpha's solution: a warm start).
pub fn fit_stream(
    data: &Arc<Streams>,
    fit: StreamFit,
    init: Option<&[f64]>,
) -> Result<StreamModel> {
    if data.spans.is_empty() || data.x.ncols() == 0 {
        return Err(Error::Probe(
            "a streaming fit needs responses with states".into(),
        ));
    }
    if !(fit.tau > 0.0 && fit.tau.is_finite()) {
        return Err(Error::Argument(format!(
            "--tau must be > 0, got {}",
            fit.tau
        )));
    }
    let total_weight: f64 = data.weights.iter().sum();
    let problem = Objective {
        data: Arc::clone(data),
        fit,
        total_weight,
        cache: RefCell::new(None),
    };
    let init = match init {
        Some(p) if p.len() == data.x.ncols() + 1 => p.to_vec(),
        Some(p) => {
            return Err(Error::Probe(format!(
                "a warm start of {} parameters for {} features",
                p.len(),
                data.x.ncols()
            )))
        }
        None => vec![0.0; data.x.ncols() + 1],
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-6)
        .and_then(|s| s.with_tolerance_cost(1e-10))
        .map_err(|e| Error::Probe(format!("L-BFGS setup: {e}")))?;
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(init).max_iters(fit.max_iters))
        .run()
        .map_err(|e| Error::Probe(format!("the streaming probe fit failed: {e}")))?;
    let state = res.state();
    let best = state
        .get_best_param()
        .or(state.get_param())
        .ok_or_else(|| Error::Probe("the streaming probe fit produced no parameters".into()))?;
    let d = data.x.ncols();
    let converged = matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(
            TerminationReason::SolverConverged | TerminationReason::TargetCostReached
        )
    );
    Ok(StreamModel {
        weight: best[..d].iter().map(|&v| v as f32).collect(),
        bias: best[d] as f32,
        params: best.clone(),
        iterations: state.get_iter(),
        objective: state.get_best_cost(),
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Two features: feature 0 rises at the end of unsafe responses only; feature 1 is noise.
    fn toy() -> (Array2<f32>, Vec<Range<usize>>, Vec<u8>) {
        let mut rows = Vec::new();
        let mut spans = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let y = (i % 2) as u8;
            let start = rows.len() / 2;
            for t in 0..6 {
                let signal = if y == 1 && t >= 4 { 2.0 } else { -0.5 };
                let noise = ((i * 7 + t * 3) % 5) as f32 - 2.0;
                rows.extend([signal + 0.1 * noise, noise]);
            }
            spans.push(start..start + 6);
            labels.push(y);
        }
        (
            Array2::from_shape_vec((rows.len() / 2, 2), rows).unwrap(),
            spans,
            labels,
        )
    }

    fn fit_toy(x: &Array2<f32>, spans: &[Range<usize>], labels: &[u8]) -> StreamModel {
        let data = Arc::new(Streams {
            x: x.clone(),
            spans: spans.to_vec(),
            labels: labels.to_vec(),
            weights: vec![1.0; labels.len()],
        });
        let fit = StreamFit {
            smoothing: LogitSmoothing::Window { window: 2 },
            tau: 0.5,
            alpha: 0.1,
            max_iters: 200,
        };
        fit_stream(&data, fit, None).unwrap()
    }

    #[test]
    fn learns_the_late_signal_and_is_deterministic() {
        let (x, spans, labels) = toy();
        let m = fit_toy(&x, &spans, &labels);
        assert!(m.weight[0] > 1.0, "{m:?}");
        assert!(m.weight[0].abs() > 5.0 * m.weight[1].abs(), "{m:?}");
        let again = fit_toy(&x, &spans, &labels);
        assert_eq!(m, again, "same inputs, same bits");
    }

    #[test]
    fn the_gradient_of_the_whole_objective_matches_finite_differences() {
        let (x, spans, labels) = toy();
        let data = Streams {
            x,
            spans,
            labels,
            weights: (0..40).map(|i| 1.0 + (i % 3) as f64).collect(),
        };
        let fit = StreamFit {
            smoothing: LogitSmoothing::Ema { alpha: 0.5 },
            tau: 0.7,
            alpha: 3.0,
            max_iters: 1,
        };
        let total: f64 = data.weights.iter().sum();
        let p = vec![0.3, -0.2, 0.1];
        let (_, g) = objective(&data, fit, total, &p);
        for k in 0..p.len() {
            let h = 1e-3;
            let (mut up, mut down) = (p.clone(), p.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (objective(&data, fit, total, &up).0 - objective(&data, fit, total, &down).0)
                / (2.0 * h);
            // Features are multiplied in f32: agreement to f32 precision.
            assert!((fd - g[k]).abs() < 1e-4, "k {k}: fd {fd} vs {}", g[k]);
        }
    }
}
