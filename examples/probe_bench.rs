//! Fit time of the probe's logistic regression in f32 and f64 on synthetic data:
//! `cargo run --release --example probe_bench -- ROWS HIDDEN [ALPHA] [f32|f64|both]`. Reports seconds per fit,
//! held-out ROC-AUC and the largest weight difference between the two precisions.

use ndarray::Array2;
use open_constitution::probe::fit::{fit_logistic, Standardizer};
use open_constitution::probe::metrics::roc_auc;
use open_constitution::probe::scorer::Scorer;
use open_constitution::probe::split::SplitMix64;
use std::time::Instant;

fn gaussian(rng: &mut SplitMix64) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Overlapping blobs (Bayes AUC about 0.92) with feature offsets and scales like hidden states.
fn data(n: usize, p: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut rng = SplitMix64::new(seed);
    let labels: Vec<u8> = (0..n).map(|_| (rng.next_u64() % 10 < 3) as u8).collect();
    let shift = 2.0 / (p as f32).sqrt();
    let x = Array2::from_shape_fn((n, p), |(i, j)| {
        let mean = if labels[i] == 1 && j % 2 == 0 {
            shift * 1.41
        } else {
            0.0
        };
        (gaussian(&mut rng) + mean) * (1.0 + (j % 7) as f32) + (j % 13) as f32
    });
    (x, labels)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(5000, |v| v.parse().unwrap());
    let p: usize = args.get(1).map_or(640, |v| v.parse().unwrap());
    let alpha: f64 = args.get(2).map_or(1.0, |v| v.parse().unwrap());
    let which = args.get(3).map_or("both", String::as_str);
    let (x, y) = data(n, p, 1);
    let (xt, yt) = data(n / 4, p, 2);
    let rows: Vec<usize> = (0..n).collect();
    let st = Standardizer::fit(x.view(), &rows).unwrap();
    let y32: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let mut weights = Vec::new();
    for precision in ["f32", "f64"] {
        if which != "both" && which != precision {
            continue;
        }
        let start = Instant::now();
        let model = if precision == "f32" {
            let d = st.design_matrix::<f32>(x.view(), &rows).unwrap();
            let built = start.elapsed().as_secs_f64();
            let m = fit_logistic(&d, &y32, alpha).unwrap();
            println!("{precision}: design matrix {built:.2} s");
            m
        } else {
            let d = st.design_matrix::<f64>(x.view(), &rows).unwrap();
            fit_logistic(&d, &y32, alpha).unwrap()
        };
        let secs = start.elapsed().as_secs_f64();
        let scores = Scorer::fold(&model, &st).score_rows(xt.view(), None);
        let auc = roc_auc(&scores, &yt).unwrap();
        println!(
            "{precision}: {n} x {p}, alpha {alpha}: fit {secs:.2} s, held-out ROC-AUC {auc:.4}"
        );
        weights.push(model.weight);
    }
    if weights.len() < 2 {
        return;
    }
    let diff = weights[0]
        .iter()
        .zip(&weights[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = weights[1].iter().map(|w| w.abs()).fold(0.0f32, f32::max);
    println!("max |w_f32 - w_f64| = {diff:.2e} (max |w| = {scale:.2e})");
}
