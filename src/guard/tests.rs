//! Tests of the guard state machine on hand-made risk sequences, and of the hold-back streamer
//! driven by the engine protocol with a byte-level test vocabulary.

use super::*;
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::rc::Rc;

fn config(threshold: f32, pause: f32, every: usize, smoothing: Smoothing) -> GuardConfig {
    GuardConfig {
        threshold,
        pause_threshold: pause,
        probe_every_n_tokens: every,
        smoothing,
    }
}

const RAW: Smoothing = Smoothing::MovingAverage { window: 1 };

fn guard(cfg: GuardConfig) -> Guard {
    Guard::new(cfg).expect("valid config")
}

/// Observes `risks` at token counts `every`, `2 * every`, ... and returns the smoothed values.
fn smoothed(g: &mut Guard, every: usize, risks: &[f32]) -> Vec<f32> {
    let steps = risks.iter().enumerate();
    steps
        .map(|(i, &r)| g.observe((i + 1) * every, r).unwrap().smoothed)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn config_validation_names_the_flag() {
    let bad = [
        (config(-0.1, 0.9, 1, RAW), "--threshold"),
        (config(f32::NAN, 0.9, 1, RAW), "--threshold"),
        (config(0.5, 1.1, 1, RAW), "--pause-threshold"),
        (config(0.9, 0.5, 1, RAW), "must not exceed"),
        (config(0.5, 0.9, 0, RAW), "--probe-every-n-tokens"),
        (
            config(0.5, 0.9, 1, Smoothing::MovingAverage { window: 0 }),
            "--smoothing-window",
        ),
        (
            config(0.5, 0.9, 1, Smoothing::Ema { alpha: 0.0 }),
            "--ema-alpha",
        ),
        (
            config(0.5, 0.9, 1, Smoothing::Ema { alpha: f32::NAN }),
            "--ema-alpha",
        ),
    ];
    for (cfg, flag) in bad {
        let err = Guard::new(cfg).unwrap_err().to_string();
        assert!(err.contains(flag), "{cfg:?}: {err}");
    }
    config(0.5, 0.5, 3, Smoothing::Ema { alpha: 1.0 })
        .validate()
        .unwrap();
}

#[test]
fn probes_every_n_tokens() {
    let g = guard(config(0.5, 0.9, 1, RAW));
    assert!(!g.should_probe(0));
    assert!((1..10).all(|n| g.should_probe(n)));
    let g = guard(config(0.5, 0.9, 3, RAW));
    let probed: Vec<usize> = (0..=10).filter(|&n| g.should_probe(n)).collect();
    assert_eq!(probed, [3, 6, 9]);
}

#[test]
fn moving_average_is_the_mean_of_the_last_window_risks() {
    let mut g = guard(config(
        0.99,
        0.99,
        1,
        Smoothing::MovingAverage { window: 3 },
    ));
    let got = smoothed(&mut g, 1, &[0.1, 0.2, 0.6, 0.9, 0.0]);
    assert_close(&got, &[0.1, 0.15, 0.3, 1.7 / 3.0, 0.5]);
}

#[test]
fn ema_starts_at_the_first_risk() {
    let mut g = guard(config(0.99, 0.99, 1, Smoothing::Ema { alpha: 0.5 }));
    let got = smoothed(&mut g, 1, &[0.2, 0.6, 1.0, 0.0]);
    assert_close(&got, &[0.2, 0.4, 0.7, 0.35]);
    let mut g = guard(config(0.99, 0.99, 1, Smoothing::Ema { alpha: 1.0 }));
    assert_close(&smoothed(&mut g, 1, &[0.2, 0.6]), &[0.2, 0.6]);
}

#[test]
fn thresholds_split_continue_flag_and_pause() {
    let decide = |r: f32| {
        let mut g = guard(config(0.5, 0.8, 1, RAW));
        g.observe(1, r).unwrap().decision
    };
    assert_eq!(decide(0.49), Decision::Continue);
    assert_eq!(decide(0.5), Decision::Flag);
    assert_eq!(decide(0.79), Decision::Flag);
    assert_eq!(decide(0.8), Decision::Pause);
    // Equal thresholds: no flag-only band, a risky step pauses.
    let mut g = guard(config(0.6, 0.6, 1, RAW));
    assert_eq!(g.observe(1, 0.6).unwrap().decision, Decision::Pause);
}

#[test]
fn decisions_follow_the_smoothed_risk_not_the_raw_one() {
    // A single spike is diluted by the window of 2; two in a row cross the pause threshold.
    let mut g = guard(config(0.5, 0.8, 1, Smoothing::MovingAverage { window: 2 }));
    let d: Vec<Decision> = [0.1, 0.9, 0.1, 0.9, 0.9]
        .iter()
        .enumerate()
        .map(|(i, &r)| g.observe(i + 1, r).unwrap().decision)
        .collect();
    use Decision::*;
    assert_eq!(d, [Continue, Flag, Flag, Flag, Pause]);
}

#[test]
fn status_escalates_and_never_goes_back() {
    let mut g = guard(config(0.5, 0.8, 2, RAW));
    assert_eq!(g.status(), GuardStatus::Completed);
    g.observe(2, 0.1).unwrap();
    assert_eq!(g.status(), GuardStatus::Completed);
    g.observe(4, 0.6).unwrap();
    assert_eq!(g.status(), GuardStatus::Flagged);
    let calm = g.observe(6, 0.0).unwrap();
    assert_eq!(calm.decision, Decision::Continue);
    assert_eq!(g.status(), GuardStatus::Flagged);
    g.observe(7, 0.95).unwrap();
    assert_eq!(g.status(), GuardStatus::Paused);
    assert!(
        g.observe(8, 0.0).is_err(),
        "nothing is judged after a pause"
    );
    assert_eq!(g.status(), GuardStatus::Paused);
    let idx: Vec<(usize, usize)> = g.steps().iter().map(|s| (s.step, s.token_index)).collect();
    assert_eq!(idx, [(0, 1), (1, 3), (2, 5), (3, 6)]);
}

#[test]
fn observe_rejects_bad_risks_and_counts() {
    let mut g = guard(config(0.5, 0.8, 1, RAW));
    for r in [f32::NAN, -0.01, 1.01, f32::INFINITY] {
        assert!(g.observe(1, r).is_err(), "{r}");
    }
    assert!(g.observe(0, 0.1).is_err(), "count 0 has no token to judge");
    g.observe(2, 0.1).unwrap();
    assert!(g.observe(2, 0.1).is_err(), "count must move forward");
    assert!(g.observe(1, 0.1).is_err(), "count must move forward");
    assert_eq!(g.steps().len(), 1, "rejected observations leave no trace");
}

#[test]
fn final_partial_window_needs_a_probe() {
    let mut g = guard(config(0.5, 0.8, 3, RAW));
    assert!(!g.needs_final_probe(0));
    g.observe(3, 0.1).unwrap();
    g.observe(6, 0.1).unwrap();
    assert!(!g.needs_final_probe(6));
    assert!(g.needs_final_probe(7));
    g.observe(7, 0.1).unwrap();
    assert!(!g.needs_final_probe(7));
    g.observe(8, 0.9).unwrap();
    assert!(!g.needs_final_probe(9), "a paused run judges nothing more");
}

#[test]
fn steps_serialise_for_the_json_output() {
    let mut g = guard(config(0.5, 0.8, 1, RAW));
    let step = g.observe(1, 0.625).unwrap();
    let json = serde_json::to_string(&step).unwrap();
    assert_eq!(
        json,
        r#"{"step":0,"token_index":0,"risk":0.625,"smoothed":0.625,"decision":"flag"}"#
    );
    assert_eq!(serde_json::to_string(&g.status()).unwrap(), r#""flagged""#);
    let cfg = serde_json::to_string(&Smoothing::Ema { alpha: 0.5 }).unwrap();
    assert_eq!(cfg, r#"{"ema":{"alpha":0.5}}"#);
}

mod streaming;
