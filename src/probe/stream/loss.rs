//! The sequence loss of a streaming probe, for one response: per-token logits `z_t` are smoothed
//! exactly as the guard smooths them (moving average over the last `window` steps, fewer at the
//! start, or an EMA), and each token's cross-entropy against the response's label is weighted by
//! a softmax (temperature `tau`) of the smoothed logits. An unsafe response must so have *some*
//! high-risk stretch, and a safe one *none*: the loss acts on each response's riskiest part, not
//! on its early tokens, which are harmless in unsafe and safe responses alike. As `tau -> 0` the
//! loss is that of the riskiest step (the max the guard thresholds); as `tau` grows it becomes
//! the mean over steps. Pure f64 arithmetic, tested against finite differences.

pub use crate::probe::scorer::sigmoid;
use serde::{Deserialize, Serialize};

/// How per-token logits are smoothed (the guard's [`crate::guard::Smoothing`], in logit space).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogitSmoothing {
    /// Mean of the last `window` logits (fewer at the start).
    Window { window: usize },
    /// `s_t = alpha z_t + (1 - alpha) s_{t-1}`, `s_0 = z_0`.
    Ema { alpha: f64 },
}

impl LogitSmoothing {
    /// The smoothed logits of `z`.
    pub fn apply(&self, z: &[f64]) -> Vec<f64> {
        let mut s = Vec::with_capacity(z.len());
        match *self {
            LogitSmoothing::Window { window } => {
                let w = window.max(1);
                for t in 0..z.len() {
                    let lo = (t + 1).saturating_sub(w);
                    s.push(z[lo..=t].iter().sum::<f64>() / (t + 1 - lo) as f64);
                }
            }
            LogitSmoothing::Ema { alpha } => {
                for (t, &zt) in z.iter().enumerate() {
                    s.push(if t == 0 {
                        zt
                    } else {
                        alpha * zt + (1.0 - alpha) * s[t - 1]
                    });
                }
            }
        }
        s
    }

    /// Backpropagates `ds` (d loss / d s) through [`LogitSmoothing::apply`] into d loss / d z.
    pub fn backward(&self, ds: &[f64]) -> Vec<f64> {
        let n = ds.len();
        let mut dz = vec![0.0; n];
        match *self {
            LogitSmoothing::Window { window } => {
                let w = window.max(1);
                for (t, &g) in ds.iter().enumerate() {
                    let lo = (t + 1).saturating_sub(w);
                    let share = g / (t + 1 - lo) as f64;
                    for d in &mut dz[lo..=t] {
                        *d += share;
                    }
                }
            }
            LogitSmoothing::Ema { alpha } => {
                let mut carry = 0.0;
                for t in (0..n).rev() {
                    let total = ds[t] + carry;
                    if t == 0 {
                        dz[0] += total;
                    } else {
                        dz[t] += alpha * total;
                        carry = (1.0 - alpha) * total;
                    }
                }
            }
        }
        dz
    }
}

/// `log(1 + e^x)` without overflow.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The loss of one response with per-token logits `z` and label `y` (0 or 1), and its gradient
/// with respect to `z`.
pub fn sequence_loss(z: &[f64], y: u8, smoothing: LogitSmoothing, tau: f64) -> (f64, Vec<f64>) {
    if z.is_empty() {
        return (0.0, Vec::new());
    }
    let s = smoothing.apply(z);
    // Per-step cross-entropy with logits and its derivative in s.
    let (ell, dell): (Vec<f64>, Vec<f64>) = s
        .iter()
        .map(|&st| match y {
            0 => (softplus(st), sigmoid(st)),
            _ => (softplus(-st), sigmoid(st) - 1.0),
        })
        .unzip();
    let a = softmax(&s, tau);
    let loss: f64 = a.iter().zip(&ell).map(|(a, l)| a * l).sum();
    // d/ds_k sum_t a_t l_t = a_k l'_k + a_k (l_k - loss) / tau.
    let ds: Vec<f64> = (0..s.len())
        .map(|k| a[k] * dell[k] + a[k] * (ell[k] - loss) / tau)
        .collect();
    (loss, smoothing.backward(&ds))
}

/// `softmax(s / tau)`, shifted by the max so nothing overflows.
fn softmax(s: &[f64], tau: f64) -> Vec<f64> {
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|&v| ((v - m) / tau).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: [f64; 6] = [-1.5, 0.3, 2.0, -0.4, 1.1, 0.7];

    fn smoothings() -> [LogitSmoothing; 4] {
        [
            LogitSmoothing::Window { window: 1 },
            LogitSmoothing::Window { window: 3 },
            LogitSmoothing::Ema { alpha: 0.4 },
            LogitSmoothing::Ema { alpha: 1.0 },
        ]
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        for smoothing in smoothings() {
            for y in [0u8, 1] {
                for tau in [0.3, 1.0, 5.0] {
                    let (_, g) = sequence_loss(&Z, y, smoothing, tau);
                    for k in 0..Z.len() {
                        let h = 1e-6;
                        let (mut up, mut down) = (Z.to_vec(), Z.to_vec());
                        up[k] += h;
                        down[k] -= h;
                        let fd = (sequence_loss(&up, y, smoothing, tau).0
                            - sequence_loss(&down, y, smoothing, tau).0)
                            / (2.0 * h);
                        assert!(
                            (fd - g[k]).abs() < 1e-6,
                            "{smoothing:?} y {y} tau {tau} k {k}: fd {fd} vs {}",
                            g[k]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn small_tau_is_the_riskiest_step_and_large_tau_the_mean() {
        let s = LogitSmoothing::Window { window: 2 };
        let smoothed = s.apply(&Z);
        let (imax, smax) = smoothed
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        assert_eq!(imax, 2);
        for y in [0u8, 1] {
            let ell = |v: f64| if y == 0 { softplus(v) } else { softplus(-v) };
            let (l0, _) = sequence_loss(&Z, y, s, 1e-4);
            assert!(
                (l0 - ell(smax)).abs() < 1e-9,
                "y {y}: {l0} vs {}",
                ell(smax)
            );
            let mean = smoothed.iter().map(|&v| ell(v)).sum::<f64>() / Z.len() as f64;
            let (lbig, _) = sequence_loss(&Z, y, s, 1e7);
            assert!((lbig - mean).abs() < 1e-6, "y {y}: {lbig} vs {mean}");
        }
    }

    #[test]
    fn smoothing_matches_the_guards_rule() {
        let w = LogitSmoothing::Window { window: 3 }.apply(&[3.0, 0.0, 6.0, 3.0]);
        assert_eq!(w, vec![3.0, 1.5, 3.0, 3.0]);
        let e = LogitSmoothing::Ema { alpha: 0.5 }.apply(&[2.0, 4.0, 0.0]);
        assert_eq!(e, vec![2.0, 3.0, 1.5]);
    }

    /// The guard smooths a streaming probe's risks exactly as the loss smooths its logits.
    #[test]
    fn the_guard_smooths_logits_as_the_loss_does() {
        use crate::guard::{Guard, GuardConfig, Smoothing};
        for (guard_rule, loss_rule) in [
            (
                Smoothing::LogitMovingAverage { window: 3 },
                LogitSmoothing::Window { window: 3 },
            ),
            (
                Smoothing::LogitEma { alpha: 0.25 },
                LogitSmoothing::Ema { alpha: 0.25 },
            ),
        ] {
            let mut g = Guard::new(GuardConfig {
                threshold: 1.0,
                pause_threshold: 1.0,
                probe_every_n_tokens: 1,
                smoothing: guard_rule,
            })
            .unwrap();
            let want = loss_rule.apply(&Z);
            for (t, &z) in Z.iter().enumerate() {
                let step = g.observe(t + 1, sigmoid(z) as f32).unwrap();
                let expect = sigmoid(want[t]) as f32;
                assert!(
                    (step.smoothed - expect).abs() < 1e-6,
                    "{guard_rule:?} t {t}"
                );
            }
        }
    }

    #[test]
    fn a_confident_correct_response_costs_almost_nothing() {
        let s = LogitSmoothing::Window { window: 1 };
        assert!(sequence_loss(&[-20.0, -15.0], 0, s, 1.0).0 < 1e-6);
        assert!(sequence_loss(&[-20.0, 20.0], 1, s, 0.1).0 < 1e-6);
        // One risky step makes a safe response costly whatever its other steps.
        assert!(sequence_loss(&[-20.0, 20.0], 0, s, 0.1).0 > 10.0);
        assert_eq!(sequence_loss(&[], 1, s, 1.0).0, 0.0);
    }
}
