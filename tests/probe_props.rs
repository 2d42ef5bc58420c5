//! Properties of the probe metrics and calibration on random scores with many ties.

use open_constitution::probe::calibrate::{rate_at, threshold_for_fpr};
use open_constitution::probe::metrics::{average_precision, roc_auc, tpr_at_fpr};
use proptest::prelude::*;

/// Scores on a coarse grid (so ties are common) with labels.
fn scored() -> impl Strategy<Value = (Vec<f32>, Vec<u8>)> {
    prop::collection::vec((0u8..20, 0u8..2), 2..120)
        .prop_map(|v| v.into_iter().map(|(s, y)| (f32::from(s) / 19.0, y)).unzip())
}

proptest! {
    #[test]
    fn roc_auc_is_the_pairwise_win_rate((s, y) in scored()) {
        let pos: Vec<f32> = s.iter().zip(&y).filter(|(_, &l)| l == 1).map(|(&v, _)| v).collect();
        let neg: Vec<f32> = s.iter().zip(&y).filter(|(_, &l)| l == 0).map(|(&v, _)| v).collect();
        match roc_auc(&s, &y) {
            None => prop_assert!(pos.is_empty() || neg.is_empty()),
            Some(auc) => {
                let mut wins = 0.0;
                for p in &pos {
                    for n in &neg {
                        wins += if p > n { 1.0 } else if p == n { 0.5 } else { 0.0 };
                    }
                }
                let want = wins / (pos.len() * neg.len()) as f64;
                prop_assert!((auc - want).abs() < 1e-12, "{} vs {}", auc, want);
                let ap = average_precision(&s, &y).unwrap();
                prop_assert!(ap > 0.0 && ap <= 1.0 + 1e-12);
            }
        }
    }

    #[test]
    fn calibrated_threshold_is_the_smallest_meeting_the_target(
        (s, _) in scored(), target in 0.0f64..1.0,
    ) {
        let t = threshold_for_fpr(&s, target).unwrap();
        prop_assert!(rate_at(&s, t).unwrap() <= target + 1e-12);
        // Every score below t, used as a threshold, flags too many.
        for &v in s.iter().filter(|&&v| v < t) {
            prop_assert!(rate_at(&s, v).unwrap() > target);
        }
    }

    #[test]
    fn tpr_at_fpr_grows_with_the_budget((s, y) in scored(), a in 0.0f64..1.0, b in 0.0f64..1.0) {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        if let (Some(x), Some(z)) = (tpr_at_fpr(&s, &y, lo), tpr_at_fpr(&s, &y, hi)) {
            prop_assert!(x <= z);
        }
    }
}
