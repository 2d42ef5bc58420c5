//! Binary classification metrics over probe scores (label 1 = unsafe is the positive class):
//! ROC-AUC (ties count half), average precision, TPR at a false-positive budget, confusion-matrix
//! metrics at a threshold, and ROC/PR curves. A row is flagged when `score >= threshold`.

use super::calibrate::threshold_for_fpr;
use serde::{Deserialize, Serialize};

/// Confusion matrix at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    /// Label 0, not flagged.
    pub tn: usize,
    /// Label 0, flagged (over-blocking).
    pub fp: usize,
    /// Label 1, not flagged (missed).
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Label 1, flagged.
    pub tp: usize,
}

impl Confusion {
    /// Counts flagged (`score >= threshold`) rows per label.
    pub fn at(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
        let mut c = Confusion::default();
        for (&s, &y) in scores.iter().zip(labels) {
            match (y == 1, s >= threshold) {
                (false, false) => c.tn += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (true, true) => c.tp += 1,
            }
        }
        c
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Metrics of flagging at one threshold; a ratio whose denominator is zero is `None` (JSON null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdMetrics {
    pub threshold: f32,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    /// True-positive rate on label-1 rows.
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// False-positive rate on label-0 rows (the over-block rate).
    pub fpr: Option<f64>,
    pub confusion: Confusion,
}

impl ThresholdMetrics {
    pub fn compute(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
        let c = Confusion::at(scores, labels, threshold);
        let precision = ratio(c.tp, c.tp + c.fp);
        let recall = ratio(c.tp, c.tp + c.fn_);
        // F1 = 2TP / (2TP + FP + FN): defined whenever anything is positive or flagged.
        let f1 = ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_);
        ThresholdMetrics {
            threshold,
            accuracy: ratio(c.tp + c.tn, scores.len()),
            precision,
            recall,
            f1,
            fpr: ratio(c.fp, c.fp + c.tn),
            confusion: c,
        }
    }
}

/// The metrics reported for a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    pub positives: usize,
    pub negatives: usize,
    /// `None` when one class is absent (also for the three below).
    pub roc_auc: Option<f64>,
    /// Average precision (area under the step PR curve, as scikit-learn computes it).
    pub pr_auc: Option<f64>,
    /// Highest TPR among thresholds with FPR <= 1 %.
    pub tpr_at_1pct_fpr: Option<f64>,
    /// Highest TPR among thresholds with FPR <= 5 %.
    pub tpr_at_5pct_fpr: Option<f64>,
    /// At the probe's flag threshold.
    pub at_threshold: ThresholdMetrics,
}

impl Metrics {
    /// Every metric of `scores` against `labels` (0/1), thresholded at `threshold`.
    pub fn compute(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
        let positives = labels.iter().filter(|&&y| y == 1).count();
        Metrics {
            n: labels.len(),
            positives,
            negatives: labels.len() - positives,
            roc_auc: roc_auc(scores, labels),
            pr_auc: average_precision(scores, labels),
            tpr_at_1pct_fpr: tpr_at_fpr(scores, labels, 0.01),
            tpr_at_5pct_fpr: tpr_at_fpr(scores, labels, 0.05),
            at_threshold: ThresholdMetrics::compute(scores, labels, threshold),
        }
    }
}

/// One point per distinct score, descending: (score, label-0 rows >= it, label-1 rows >= it).
fn cumulative(scores: &[f32], labels: &[u8]) -> Vec<(f32, usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out: Vec<(f32, usize, usize)> = Vec::new();
    let (mut fp, mut tp) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        // Tied scores form one point: a threshold cannot separate them.
        let last_of_tie = order
            .get(k + 1)
            .is_none_or(|&j| scores[j].total_cmp(&scores[i]).is_ne());
        if last_of_tie {
            out.push((scores[i], fp, tp));
        }
    }
    out
}

fn class_counts(labels: &[u8]) -> Option<(f64, f64)> {
    let p = labels.iter().filter(|&&y| y == 1).count();
    let n = labels.len() - p;
    (p > 0 && n > 0).then_some((p as f64, n as f64))
}

/// Area under the ROC curve (trapezoids, so tied positive/negative pairs count 1/2 — the
/// Mann-Whitney statistic). `None` unless both classes are present.
pub fn roc_auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    let (p, n) = class_counts(labels)?;
    let (mut area, mut prev_fp, mut prev_tp) = (0.0, 0usize, 0usize);
    for (_, fp, tp) in cumulative(scores, labels) {
        area += (fp - prev_fp) as f64 * (tp + prev_tp) as f64 / 2.0;
        (prev_fp, prev_tp) = (fp, tp);
    }
    Some(area / (p * n))
}

/// Average precision: sum over distinct thresholds of (recall gain) x precision. `None` unless
/// both classes are present.
pub fn average_precision(scores: &[f32], labels: &[u8]) -> Option<f64> {
    let (p, _) = class_counts(labels)?;
    let (mut ap, mut prev_tp) = (0.0, 0usize);
    for (_, fp, tp) in cumulative(scores, labels) {
        ap += (tp - prev_tp) as f64 / p * (tp as f64 / (tp + fp) as f64);
        prev_tp = tp;
    }
    Some(ap)
}

/// The TPR at the smallest threshold whose FPR is <= `max_fpr` — the same rule that calibrates
/// the probe's thresholds, so this is what a threshold chosen on these rows would achieve.
pub fn tpr_at_fpr(scores: &[f32], labels: &[u8], max_fpr: f64) -> Option<f64> {
    class_counts(labels)?;
    let neg: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &y)| y == 0)
        .map(|(&s, _)| s)
        .collect();
    let t = threshold_for_fpr(&neg, max_fpr)?;
    let (mut pos, mut hit) = (0usize, 0usize);
    for (&s, &y) in scores.iter().zip(labels) {
        if y == 1 {
            pos += 1;
            hit += usize::from(s >= t);
        }
    }
    ratio(hit, pos)
}

/// ROC curve points `[fpr, tpr]` from (0, 0) to (1, 1); empty unless both classes are present.
pub fn roc_curve(scores: &[f32], labels: &[u8]) -> Vec<[f64; 2]> {
    let Some((p, n)) = class_counts(labels) else {
        return Vec::new();
    };
    let mut pts = vec![[0.0, 0.0]];
    pts.extend(
        cumulative(scores, labels)
            .into_iter()
            .map(|(_, fp, tp)| [fp as f64 / n, tp as f64 / p]),
    );
    pts
}

/// Precision-recall curve points `[recall, precision]`, starting at recall 0 with precision 1
/// (scikit-learn's convention); empty unless both classes are present.
pub fn pr_curve(scores: &[f32], labels: &[u8]) -> Vec<[f64; 2]> {
    let Some((p, _)) = class_counts(labels) else {
        return Vec::new();
    };
    let mut pts = vec![[0.0, 1.0]];
    pts.extend(
        cumulative(scores, labels)
            .into_iter()
            .map(|(_, fp, tp)| [tp as f64 / p, tp as f64 / (tp + fp) as f64]),
    );
    pts
}

/// Keeps at most `max` points (evenly spaced, first and last kept), for JSON reports.
pub fn thin(points: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn hand_computed_small_case_with_ties() {
        // scores: pos 0.9, 0.6, 0.6(tie with a neg), 0.2 ; neg 0.8, 0.6, 0.3, 0.1
        let s = [0.9, 0.8, 0.6, 0.6, 0.6, 0.3, 0.2, 0.1];
        let y = [1, 0, 1, 1, 0, 0, 1, 0];
        // Pairs (pos > neg) of 16: 0.9 beats 4; 0.6 beats 0.3,0.1 and ties 0.6 (x2 pos);
        // 0.2 beats 0.1. = 4 + 2*(2 + 0.5) + 1 = 10 -> 10/16
        assert!(close(roc_auc(&s, &y), 10.0 / 16.0));
        // Thresholds: 0.9 (tp1 fp0), 0.8 (1,1), 0.6 (3,2), 0.3 (3,3), 0.2 (4,3), 0.1 (4,4)
        // AP = 1/4*1 + 2/4*3/5 + 1/4*4/7
        let ap = 0.25 + 0.5 * 0.6 + 0.25 * 4.0 / 7.0;
        assert!(close(average_precision(&s, &y), ap));
        // FPR <= 25 % allows 1 negative flagged: threshold just above 0.6 -> tpr 1/4.
        assert!(close(tpr_at_fpr(&s, &y, 0.25), 0.25));
        // FPR <= 50 %: 2 negatives -> threshold just above 0.3 -> tpr 3/4.
        assert!(close(tpr_at_fpr(&s, &y, 0.5), 0.75));
        assert!(close(tpr_at_fpr(&s, &y, 0.0), 0.25));
        let m = ThresholdMetrics::compute(&s, &y, 0.6);
        assert_eq!(
            m.confusion,
            Confusion {
                tn: 2,
                fp: 2,
                fn_: 1,
                tp: 3
            }
        );
        assert!(close(m.precision, 0.6) && close(m.recall, 0.75));
        assert!(close(m.f1, 2.0 * 0.6 * 0.75 / 1.35));
        assert!(close(m.accuracy, 5.0 / 8.0) && close(m.fpr, 0.5));
        assert_eq!(
            roc_curve(&s, &y),
            vec![
                [0.0, 0.0],
                [0.0, 0.25],
                [0.25, 0.25],
                [0.5, 0.75],
                [0.75, 0.75],
                [0.75, 1.0],
                [1.0, 1.0]
            ]
        );
        assert_eq!(pr_curve(&s, &y)[2], [0.25, 0.5]);
    }

    #[test]
    fn perfect_all_tied_and_single_class() {
        let y = [0, 0, 1, 1];
        assert!(close(roc_auc(&[0.1, 0.2, 0.3, 0.4], &y), 1.0));
        assert!(close(average_precision(&[0.1, 0.2, 0.3, 0.4], &y), 1.0));
        assert!(close(roc_auc(&[0.5; 4], &y), 0.5));
        assert!(close(average_precision(&[0.5; 4], &y), 0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[0, 0]), None);
        assert_eq!(tpr_at_fpr(&[0.1, 0.2], &[1, 1], 0.1), None);
        let m = Metrics::compute(&[0.1, 0.7], &[0, 0], 0.5);
        assert_eq!(
            (m.at_threshold.recall, m.at_threshold.fpr),
            (None, Some(0.5))
        );
    }

    #[test]
    fn thinning_keeps_ends() {
        let pts: Vec<[f64; 2]> = (0..1000).map(|i| [i as f64, 0.0]).collect();
        let t = thin(&pts, 11);
        assert_eq!(t.len(), 11);
        assert_eq!((t[0], t[10]), (pts[0], pts[999]));
    }
}
