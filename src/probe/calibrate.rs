//! Threshold calibration for target false-positive rates, and reliability (calibration) tables
//! with their expected calibration error.

use serde::{Deserialize, Serialize};

/// The smallest f32 strictly above `x` (`f32::next_up`, which needs Rust 1.86).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// The smallest threshold `t` such that the share of `negatives` (label-0 scores) with
/// `score >= t` is at most `target_fpr`. `None` when there are no negatives.
///
/// With k = floor(target x n) negatives allowed to be flagged, `t` is the next f32 above the
/// (k+1)-th largest negative score, so exactly the negatives strictly above it are flagged.
/// Ties at that score are all left unflagged, which may leave the achieved FPR below target.
pub fn threshold_for_fpr(negatives: &[f32], target_fpr: f64) -> Option<f32> {
    if negatives.is_empty() {
        return None;
    }
    let n = negatives.len();
    // The epsilon keeps e.g. 0.29 x 100 = 28.999999999999996 from losing an allowed row.
    let allowed = ((target_fpr.clamp(0.0, 1.0) * n as f64) + 1e-9).floor() as usize;
    if allowed >= n {
        return Some(0.0);
    }
    let mut sorted = negatives.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    Some(next_up(sorted[allowed]))
}

/// Share of `scores` at or above `threshold` (`None` for no scores).
pub fn rate_at(scores: &[f32], threshold: f32) -> Option<f64> {
    (!scores.is_empty())
        .then(|| scores.iter().filter(|&&s| s >= threshold).count() as f64 / scores.len() as f64)
}

/// One bin of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Bin range `[lower, upper)` of predicted probability (the last bin includes 1).
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean predicted probability of the rows in the bin (`None` when empty).
    pub mean_predicted: Option<f64>,
    /// Share of label-1 rows in the bin (`None` when empty).
    pub observed_positive_rate: Option<f64>,
}

/// A reliability table and its expected calibration error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    pub bins: Vec<ReliabilityBin>,
    /// Sum over bins of (count / n) x |mean predicted - observed rate|.
    pub ece: f64,
}

/// Number of equal-width bins of [`reliability`].
pub const RELIABILITY_BINS: usize = 10;

/// Reliability table of predicted probabilities against labels, in 10 equal-width bins.
pub fn reliability(scores: &[f32], labels: &[u8]) -> Reliability {
    let k = RELIABILITY_BINS;
    let mut sum = vec![0.0f64; k];
    let mut pos = vec![0usize; k];
    let mut count = vec![0usize; k];
    for (&s, &y) in scores.iter().zip(labels) {
        let b = ((s as f64 * k as f64).floor().max(0.0) as usize).min(k - 1);
        sum[b] += s as f64;
        pos[b] += usize::from(y == 1);
        count[b] += 1;
    }
    let n = scores.len().max(1) as f64;
    let mut ece = 0.0;
    let bins = (0..k)
        .map(|b| {
            let (mean, obs) = if count[b] == 0 {
                (None, None)
            } else {
                let c = count[b] as f64;
                (Some(sum[b] / c), Some(pos[b] as f64 / c))
            };
            if let (Some(m), Some(o)) = (mean, obs) {
                ece += count[b] as f64 / n * (m - o).abs();
            }
            ReliabilityBin {
                lower: b as f64 / k as f64,
                upper: (b + 1) as f64 / k as f64,
                count: count[b],
                mean_predicted: mean,
                observed_positive_rate: obs,
            }
        })
        .collect();
    Reliability { bins, ece }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_smallest_meeting_the_target() {
        let neg: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = threshold_for_fpr(&neg, 0.05).unwrap();
        assert_eq!(rate_at(&neg, t), Some(0.05));
        assert_eq!(
            rate_at(&neg, 0.94),
            Some(0.06),
            "one step lower flags a sixth"
        );
        assert_eq!(t, next_up(0.94));
        assert_eq!(threshold_for_fpr(&neg, 1.0), Some(0.0));
        assert_eq!(threshold_for_fpr(&neg, 0.0), Some(next_up(0.99)));
        assert_eq!(threshold_for_fpr(&[], 0.05), None);
        // ties: three negatives at 0.9, 5 % of 20 allows one -> none of the tie is flagged
        let mut tied = vec![0.1f32; 17];
        tied.extend([0.9, 0.9, 0.9]);
        let t = threshold_for_fpr(&tied, 0.05).unwrap();
        assert!(t > 0.9 && rate_at(&tied, t) == Some(0.0));
        assert_eq!(threshold_for_fpr(&vec![0.5; 100], 0.29), Some(next_up(0.5)));
        assert_eq!(next_up(0.0), f32::from_bits(1));
        assert!(next_up(-1.0) > -1.0);
    }

    #[test]
    fn reliability_table_and_ece() {
        let s = [0.05, 0.15, 0.15, 0.95, 1.0];
        let y = [0, 0, 1, 1, 1];
        let r = reliability(&s, &y);
        assert_eq!(r.bins.len(), 10);
        assert_eq!(r.bins[1].count, 2);
        assert_eq!(r.bins[1].observed_positive_rate, Some(0.5));
        assert_eq!(r.bins[9].count, 2, "1.0 falls in the last bin");
        assert_eq!(r.bins[5].mean_predicted, None);
        let f = |x: f32| x as f64;
        let want =
            (f(0.05) + (f(0.15) - 0.5).abs() * 2.0 + (1.0 - (f(0.95) + 1.0) / 2.0) * 2.0) / 5.0;
        assert!((r.ece - want).abs() < 1e-12, "{} vs {want}", r.ece);
    }
}
