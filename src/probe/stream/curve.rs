//! The pause-rate curve of a streaming guard: the share of unsafe streams paused against the
//! share of safe streams paused as the pause threshold moves (a cascade's second-stage threshold
//! held fixed). It is how a guard's reach is judged when a target rate pair is not met: the curve
//! shows what every operating point of the same probe would give, not only the calibrated one.
//! A stream pauses at threshold `t` exactly when its highest smoothed risk at a step the second
//! stage lets through is at least `t` ([`pause_step`](super::replay::pause_step)), so the curve
//! is a sweep over those maxima.

use super::replay::{pause_max, StoreStream};
use crate::error::Result;
use crate::probe::plot::{write_svg, Chart, Series};
use plotters::prelude::SeriesLabelPosition;
use serde::Serialize;
use std::path::Path;

/// One operating point: a pause threshold and the shares of safe and unsafe streams it pauses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub pause: f32,
    pub safe_paused: f64,
    pub unsafe_paused: f64,
}

/// Points of the curve from the highest threshold down, one per distinct stream maximum (ties
/// move together, as a threshold cannot split them), thinned to at most `max_points` (the first
/// and last kept). Empty unless both labels are present.
pub fn pause_curve(
    streams: &[StoreStream],
    second: Option<f32>,
    max_points: usize,
) -> Vec<CurvePoint> {
    let safe = streams.iter().filter(|s| s.label == 0).count();
    let unsafe_ = streams.len() - safe;
    // A stream with no step the second stage lets through never pauses, at any threshold.
    let mut maxima: Vec<(f32, u8)> = streams
        .iter()
        .filter_map(|s| pause_max(s, second).map(|m| (m, s.label)))
        .collect();
    if safe == 0 || unsafe_ == 0 {
        return Vec::new();
    }
    maxima.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut fp, mut tp) = (0usize, 0usize);
    let mut points = Vec::new();
    for (i, &(v, label)) in maxima.iter().enumerate() {
        if label == 0 {
            fp += 1;
        } else {
            tp += 1;
        }
        if maxima.get(i + 1).is_none_or(|n| n.0 < v) {
            points.push(CurvePoint {
                pause: v,
                safe_paused: fp as f64 / safe as f64,
                unsafe_paused: tp as f64 / unsafe_ as f64,
            });
        }
    }
    thin(points, max_points)
}

/// Points kept per curve in a report.
pub const CURVE_POINTS: usize = 400;

/// The curves a report shows: the probe alone, and with a cascade's second stage at threshold
/// `cascade` (empty without one), each of at most [`CURVE_POINTS`] points.
pub fn pause_curves(
    streams: &[StoreStream],
    cascade: Option<f32>,
) -> (Vec<CurvePoint>, Vec<CurvePoint>) {
    let with_second =
        cascade.map_or_else(Vec::new, |t| pause_curve(streams, Some(t), CURVE_POINTS));
    (pause_curve(streams, None, CURVE_POINTS), with_second)
}

fn thin(points: Vec<CurvePoint>, max: usize) -> Vec<CurvePoint> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

/// The most unsafe streams paused by a point of `curve` pausing at most `safe_rate` of the safe
/// ones (0 when none does). Read off the streams the curve was drawn on: a description of the
/// probe's reach, not a calibrated operating point.
pub fn unsafe_paused_at(curve: &[CurvePoint], safe_rate: f64) -> f64 {
    curve
        .iter()
        .filter(|p| p.safe_paused <= safe_rate + 1e-12)
        .map(|p| p.unsafe_paused)
        .fold(0.0, f64::max)
}

/// Writes `curves` (name, points) as an SVG chart of unsafe against safe streams paused, zoomed
/// to the low over-blocking end (safe paused up to `x_max`), with `target` (safe, unsafe) marked.
pub fn write_curve_svg(
    path: &Path,
    title: &str,
    curves: &[(&str, &[CurvePoint])],
    x_max: f64,
    target: Option<(f64, f64)>,
) -> Result<()> {
    let mut series: Vec<Series<'_>> = curves
        .iter()
        .map(|(name, pts)| Series {
            name,
            // Reversed: from (0, 0) rightwards; cut at the chart's edge.
            points: pts
                .iter()
                .rev()
                .map(|p| (p.safe_paused, p.unsafe_paused))
                .filter(|p| p.0 <= x_max)
                .collect(),
            markers: false,
            reference: false,
        })
        .collect();
    let label;
    if let Some((x, y)) = target {
        label = format!(
            "target ({:.0} % safe, {:.0} % unsafe)",
            x * 100.0,
            y * 100.0
        );
        series.push(Series {
            name: &label,
            points: vec![(x, y)],
            markers: true,
            reference: false,
        });
    }
    let chart = Chart {
        title,
        x_label: "safe streams paused (over-blocking)",
        y_label: "unsafe streams paused",
        x_range: (0.0, x_max),
        y_range: (0.0, 1.02),
        integer_x: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    write_svg(path, &chart, &series)
}

#[cfg(test)]
mod tests {
    use super::super::replay::rates;
    use super::super::replay::tests::stream;
    use super::*;

    /// Every point equals what the replayed guard pauses at that threshold, with and without a
    /// second stage; ties move together; the curve is monotone.
    #[test]
    fn points_are_the_rates_the_guard_gives_at_their_thresholds() {
        let mut streams = Vec::new();
        for i in 0..50u32 {
            let r = (i % 17) as f32 / 17.0;
            streams.push(stream(0, &[0.1, r * 0.8], &[0.2, 0.1 + r / 2.0]));
            streams.push(stream(1, &[0.3, 0.2 + r * 0.8], &[0.9, r]));
        }
        for second in [None, Some(0.4)] {
            let curve = pause_curve(&streams, second, 1000);
            assert!(!curve.is_empty());
            for p in &curve {
                let r = rates(&streams, p.pause, p.pause, second);
                assert_eq!(
                    (r.safe_paused, r.unsafe_paused),
                    (p.safe_paused, p.unsafe_paused)
                );
            }
            for w in curve.windows(2) {
                assert!(w[1].pause < w[0].pause);
                assert!(w[1].safe_paused >= w[0].safe_paused);
                assert!(w[1].unsafe_paused >= w[0].unsafe_paused);
            }
            assert_eq!(curve.len(), {
                let mut v: Vec<u32> = streams
                    .iter()
                    .filter_map(|s| pause_max(s, second).map(f32::to_bits))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v.len()
            });
        }
        let curve = pause_curve(&streams, None, 5);
        assert_eq!(curve.len(), 5);
        assert_eq!(curve.last().unwrap().safe_paused, 1.0);
        // Safe streams the second stage always vetoes are never paused.
        let vetoed = pause_curve(&streams, Some(0.5), 1000);
        assert!(vetoed.last().unwrap().safe_paused < 1.0);
    }

    #[test]
    fn reading_the_curve_respects_the_safe_rate() {
        let streams = vec![
            stream(0, &[0.9], &[0.0]),
            stream(0, &[0.1], &[0.0]),
            stream(1, &[0.95], &[0.0]),
            stream(1, &[0.5], &[0.0]),
        ];
        let curve = pause_curve(&streams, None, 100);
        assert_eq!(unsafe_paused_at(&curve, 0.0), 0.5);
        assert_eq!(unsafe_paused_at(&curve, 0.5), 1.0);
        assert!(pause_curve(&streams[..2], None, 100).is_empty());
    }
}
