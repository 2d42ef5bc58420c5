//! `eval` of a probe on a `tokens` store: each response replayed through the probe's guard from
//! its stored states (cascade included), reported as stream rates at the probe's thresholds and
//! as whole-stream classification (a stream's score is its highest smoothed risk).

use open_constitution::probe::eval::select_rows;
use open_constitution::probe::metrics::Metrics;
use open_constitution::probe::stream::curve::{
    pause_curves, unsafe_paused_at, write_curve_svg, CurvePoint,
};
use open_constitution::probe::stream::replay::rates;
use open_constitution::probe::stream::{store_streams, Second, StreamRates, StreamSet};
use open_constitution::probe::{Probe, Split};
use open_constitution::store::set::ActivationSet;
use serde::Serialize;
use std::path::Path;

/// `eval.json` of a stream evaluation.
#[derive(Debug, Serialize)]
struct StreamEval {
    split: Option<&'static str>,
    threshold: f32,
    pause_threshold: f32,
    cascade_threshold: Option<f32>,
    rates: StreamRates,
    stream_metrics: Metrics,
    /// Unsafe vs safe streams paused as the pause threshold moves, the probe alone (no second
    /// stage), from the highest threshold down.
    pause_curve: Vec<CurvePoint>,
    /// The same with the cascade's second stage at its calibrated threshold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pause_curve_cascade: Vec<CurvePoint>,
}

/// Prints what the curves reach at low over-blocking and writes `pause_curve.svg`.
pub(super) fn report_curves(
    out: &Path,
    alone: &[CurvePoint],
    cascade: &[CurvePoint],
) -> anyhow::Result<()> {
    let mut curves: Vec<(&str, &[CurvePoint])> = vec![("probe alone", alone)];
    if !cascade.is_empty() {
        curves.push(("with the second stage", cascade));
    }
    for (name, c) in &curves {
        let at = |r: f64| format!("{:.3}", unsafe_paused_at(c, r));
        println!(
            "pause curve ({name}): unsafe paused at <= 1 % / 2 % / 5 % safe paused: {} / {} / {} \
             (thresholds read off these streams: the probe's reach, not its operating point)",
            at(0.01),
            at(0.02),
            at(0.05)
        );
    }
    let svg = out.join("pause_curve.svg");
    write_curve_svg(
        &svg,
        "Streams paused as the pause threshold moves",
        &curves,
        0.2,
        Some((0.01, 0.6)),
    )?;
    println!("wrote {}", svg.display());
    Ok(())
}

pub fn report(
    probe: &Probe,
    set: &ActivationSet,
    split: Option<Split>,
    out: &Path,
) -> anyhow::Result<()> {
    probe.check_store(set.meta())?;
    let idx = select_rows(set.rows(), split)?;
    anyhow::ensure!(!idx.is_empty(), "the store has no rows to evaluate");
    let c = probe.config();
    let data = StreamSet::load(set, &c.layers())?;
    let second = probe.load_second_stage()?;
    let states = match &second {
        Some((p, _)) => Some(set.layers_matrix(&p.config().layers())?),
        None => None,
    };
    let stage = match (&second, &states) {
        (Some((p, _)), Some(s)) => Some(Second {
            probe: p,
            states: s,
            dir: String::new(),
        }),
        _ => None,
    };
    let streams = store_streams(&data, probe, &idx, c.guard_config(), stage.as_ref())?;
    let cascade = second.as_ref().map(|(_, t)| *t);
    let r = rates(&streams, c.threshold, c.pause_threshold, cascade);
    let (scores, labels): (Vec<f32>, Vec<u8>) = streams
        .iter()
        .map(|s| (s.smoothed.iter().cloned().fold(0.0, f32::max), s.label))
        .unzip();
    let m = Metrics::compute(&scores, &labels, c.threshold);
    let (alone, with_second) = pause_curves(&streams, cascade);
    let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    println!(
        "{} streams ({} safe, {} unsafe) replayed from the store: stream ROC-AUC {}  TPR@1%FPR {}",
        streams.len(),
        r.safe_streams,
        r.unsafe_streams,
        cell(m.roc_auc),
        cell(m.tpr_at_1pct_fpr)
    );
    println!(
        "at the probe's thresholds (flag {:.4}, pause {:.4}{}): safe flagged {:.3} paused {:.3}; \
         unsafe flagged {:.3} paused {:.3} (median pause at token {})",
        c.threshold,
        c.pause_threshold,
        cascade.map_or(String::new(), |t| format!(", second stage {t:.4}")),
        r.safe_flagged,
        r.safe_paused,
        r.unsafe_flagged,
        r.unsafe_paused,
        r.median_pause_token.map_or("-".into(), |t| t.to_string())
    );
    let report = StreamEval {
        split: split.map(|s| s.as_str()),
        threshold: c.threshold,
        pause_threshold: c.pause_threshold,
        cascade_threshold: cascade,
        rates: r,
        stream_metrics: m,
        pause_curve: alone,
        pause_curve_cascade: with_second,
    };
    std::fs::create_dir_all(out)?;
    if !report.pause_curve.is_empty() {
        report_curves(out, &report.pause_curve, &report.pause_curve_cascade)?;
    }
    open_constitution::fsutil::write_bytes_atomic(
        &out.join("eval.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    println!("wrote {}", out.join("eval.json").display());
    Ok(())
}
