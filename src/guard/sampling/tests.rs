//! Tests of the logits processor on hand-made 4-element logits, stage by stage.

use super::*;
use proptest::prelude::*;

fn cfg(temperature: f32) -> SamplingConfig {
    SamplingConfig {
        temperature,
        ..SamplingConfig::default()
    }
}

fn processor(cfg: SamplingConfig) -> LogitsProcessor {
    LogitsProcessor::new(cfg).expect("valid config")
}

/// Logits whose softmax is exactly `probs` (0 probability -> -inf).
fn logits_of(probs: &[f64]) -> Vec<f32> {
    probs.iter().map(|&p| p.ln() as f32).collect()
}

/// Frequencies of each id over `n` draws from the same logits.
fn frequencies(p: &mut LogitsProcessor, logits: &[f32], n: usize) -> Vec<f64> {
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        let id = p.sample(&mut logits.to_vec(), &[]).unwrap();
        counts[id as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

#[test]
fn splitmix64_matches_the_reference_sequence() {
    let mut rng = SplitMix64::new(1234567);
    let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
    let want = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ];
    assert_eq!(got, want);
    let mut rng = SplitMix64::new(7);
    assert!((0..1000)
        .map(|_| rng.next_f64())
        .all(|u| (0.0..1.0).contains(&u)));
}

#[test]
fn validation_names_the_flag() {
    let bad = [
        (cfg(-0.5), "--temperature"),
        (cfg(f32::NAN), "--temperature"),
        (cfg(f32::INFINITY), "--temperature"),
        (
            SamplingConfig {
                top_p: Some(0.0),
                ..cfg(1.0)
            },
            "--top-p",
        ),
        (
            SamplingConfig {
                top_p: Some(1.5),
                ..cfg(1.0)
            },
            "--top-p",
        ),
        (
            SamplingConfig {
                top_k: Some(0),
                ..cfg(1.0)
            },
            "--top-k",
        ),
        (
            SamplingConfig {
                repetition_penalty: 0.0,
                ..cfg(1.0)
            },
            "--repetition-penalty",
        ),
    ];
    for (c, flag) in bad {
        let err = LogitsProcessor::new(c.clone()).unwrap_err().to_string();
        assert!(err.contains(flag), "{c:?}: {err}");
    }
    let ok = SamplingConfig {
        top_k: Some(1),
        top_p: Some(1.0),
        repetition_penalty: 1.3,
        ..cfg(0.7)
    };
    ok.validate().unwrap();
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    let mut p = processor(cfg(0.0));
    assert_eq!(p.sample(&mut [0.1, 2.0, -1.0, 1.5], &[]).unwrap(), 1);
    assert_eq!(p.sample(&mut [0.1, 2.0, 2.0, 2.0], &[]).unwrap(), 1);
    assert_eq!(
        p.sample(&mut [f32::NEG_INFINITY, -3.0, -2.0, -2.0], &[])
            .unwrap(),
        2
    );
}

#[test]
fn greedy_ignores_top_k_and_top_p() {
    let c = SamplingConfig {
        top_k: Some(2),
        top_p: Some(0.1),
        ..cfg(0.0)
    };
    assert_eq!(
        processor(c).sample(&mut [0.0, 1.0, 3.0, 2.0], &[]).unwrap(),
        2
    );
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_once_per_id() {
    let mut p = processor(SamplingConfig {
        repetition_penalty: 2.0,
        ..cfg(0.0)
    });
    let mut logits = [2.0, -1.0, 0.5, 3.0];
    // id 1 appears twice but is penalised once; id 2 and 3 are untouched.
    let id = p.sample(&mut logits, &[0, 1, 1]).unwrap();
    assert_eq!(logits, [1.0, -2.0, 0.5, 3.0]);
    assert_eq!(id, 3);
    // The penalty can change the greedy choice.
    let mut logits = [3.0, 2.0, 0.0, -1.0];
    assert_eq!(p.sample(&mut logits, &[0]).unwrap(), 1);
}

#[test]
fn repetition_penalty_off_leaves_logits_alone() {
    let mut p = processor(cfg(0.0));
    let mut logits = [2.0, -1.0, 0.5, 3.0];
    p.sample(&mut logits, &[0, 1, 99]).unwrap();
    assert_eq!(logits, [2.0, -1.0, 0.5, 3.0]);
}

#[test]
fn history_id_outside_vocabulary_is_an_error() {
    let mut p = processor(SamplingConfig {
        repetition_penalty: 1.2,
        ..cfg(0.0)
    });
    let err = p.sample(&mut [0.0; 4], &[4]).unwrap_err().to_string();
    assert!(err.contains("token id 4"), "{err}");
}

#[test]
fn bad_logits_are_errors_not_panics() {
    for t in [0.0, 1.0] {
        let mut p = processor(cfg(t));
        assert!(p.sample(&mut [0.0, f32::NAN, 1.0, 2.0], &[]).is_err());
        assert!(p.sample(&mut [0.0, f32::INFINITY, 1.0, 2.0], &[]).is_err());
        assert!(p.sample(&mut [f32::NEG_INFINITY; 4], &[]).is_err());
        assert!(p.sample(&mut [], &[]).is_err());
    }
}

#[test]
fn temperature_one_follows_the_softmax() {
    let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
    let f = frequencies(&mut processor(cfg(1.0)), &logits, 40_000);
    for (got, want) in f.iter().zip([0.5, 0.3, 0.15, 0.05]) {
        assert!((got - want).abs() < 0.015, "{f:?}");
    }
}

#[test]
fn temperature_sharpens_and_flattens() {
    let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
    let cold = frequencies(&mut processor(cfg(0.1)), &logits, 5_000);
    assert!(cold[0] > 0.98, "{cold:?}");
    let hot = frequencies(&mut processor(cfg(100.0)), &logits, 20_000);
    assert!(hot.iter().all(|&f| (f - 0.25).abs() < 0.03), "{hot:?}");
}

#[test]
fn tiny_temperature_does_not_overflow() {
    let mut p = processor(cfg(1e-30));
    for _ in 0..100 {
        assert_eq!(p.sample(&mut [1.0, 2.0, -3.0e38, 3.0e38], &[]).unwrap(), 3);
    }
}

#[test]
fn neg_infinity_is_never_sampled() {
    let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    let f = frequencies(&mut processor(cfg(1.0)), &logits, 2_000);
    assert_eq!((f[0], f[2]), (0.0, 0.0));
    assert!(f[1] > 0.4 && f[3] > 0.4, "{f:?}");
}

#[test]
fn top_k_keeps_only_the_k_largest() {
    let c = SamplingConfig {
        top_k: Some(2),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &[1.0, 2.0, 4.0, 3.0], 5_000);
    assert_eq!((f[0], f[1]), (0.0, 0.0));
    // Renormalised over ids 2 and 3: e^4 / (e^4 + e^3) = 0.731.
    assert!((f[2] - 0.731).abs() < 0.03, "{f:?}");
}

#[test]
fn top_k_keeps_ties_at_the_boundary() {
    let c = SamplingConfig {
        top_k: Some(1),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &[1.0, 3.0, 3.0, 0.0], 2_000);
    assert_eq!((f[0], f[3]), (0.0, 0.0));
    assert!(f[1] > 0.4 && f[2] > 0.4, "{f:?}");
}

#[test]
fn top_k_larger_than_vocab_keeps_everything() {
    let c = SamplingConfig {
        top_k: Some(10),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &[0.0; 4], 4_000);
    assert!(f.iter().all(|&x| (x - 0.25).abs() < 0.04), "{f:?}");
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p() {
    let probs = [0.05, 0.5, 0.15, 0.3];
    let mut cands: Vec<(u32, f64)> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as u32, p))
        .collect();
    keep_top_p(&mut cands, 0.75);
    assert_eq!(cands, vec![(1, 0.5), (3, 0.3)]);

    let mut cands: Vec<(u32, f64)> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as u32, p))
        .collect();
    keep_top_p(&mut cands, 0.85);
    assert_eq!(cands.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 3, 2]);

    // Whole pipeline: p = 0.75 samples ids 1 and 3 only, renormalised 0.625 / 0.375.
    let c = SamplingConfig {
        top_p: Some(0.75),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &logits_of(&probs), 20_000);
    assert_eq!((f[0], f[2]), (0.0, 0.0));
    assert!((f[1] - 0.625).abs() < 0.02, "{f:?}");
}

#[test]
fn top_p_tiny_is_greedy_and_one_keeps_all() {
    let logits = logits_of(&[0.2, 0.3, 0.4, 0.1]);
    let c = SamplingConfig {
        top_p: Some(1e-6),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &logits, 500);
    assert_eq!(f, [0.0, 0.0, 1.0, 0.0]);
    let c = SamplingConfig {
        top_p: Some(1.0),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &logits, 500);
    assert!(f.iter().all(|&x| x > 0.0), "{f:?}");
}

#[test]
fn top_k_applies_before_top_p() {
    // Top-k = 2 keeps ids 2 and 0, renormalised to 0.54 / 0.46, so p = 0.5 keeps only id 2;
    // top-p alone (0.35 < 0.5) would have kept ids 2 and 0.
    let logits = logits_of(&[0.3, 0.2, 0.35, 0.15]);
    let c = SamplingConfig {
        top_k: Some(2),
        top_p: Some(0.5),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &logits, 500);
    assert_eq!(f, [0.0, 0.0, 1.0, 0.0]);
    let c = SamplingConfig {
        top_p: Some(0.5),
        ..cfg(1.0)
    };
    let f = frequencies(&mut processor(c), &logits, 2_000);
    assert!(
        f[0] > 0.3 && f[2] > 0.4 && f[1] == 0.0 && f[3] == 0.0,
        "{f:?}"
    );
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let c = SamplingConfig {
        top_k: Some(3),
        top_p: Some(0.95),
        repetition_penalty: 1.1,
        seed: 42,
        ..cfg(0.8)
    };
    let run = |c: SamplingConfig| -> Vec<u32> {
        let mut p = processor(c);
        let mut history = vec![];
        for _ in 0..64 {
            let id = p.sample(&mut [0.3, 0.1, 0.2, 0.25], &history).unwrap();
            history.push(id);
        }
        history
    };
    assert_eq!(run(c.clone()), run(c.clone()));
    assert_ne!(run(c.clone()), run(SamplingConfig { seed: 43, ..c }));
}

#[test]
fn draw_never_returns_a_massless_candidate() {
    assert_eq!(draw(&[(5, 1.0), (6, 0.0)], 0.999_999_999_999), 5);
    assert_eq!(draw(&[(5, 0.5), (6, 0.5)], 0.25), 5);
    assert_eq!(draw(&[(5, 0.5), (6, 0.5)], 0.75), 6);
}

/// The nucleus by a plain full sort, to check the head shortcut against.
fn top_p_by_full_sort(cands: &[(u32, f64)], p: f64) -> Vec<(u32, f64)> {
    let mut all = cands.to_vec();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut cum = 0.0;
    let keep = all.iter().position(|c| {
        cum += c.1;
        cum >= p
    });
    all.truncate(keep.map_or(all.len(), |i| i + 1));
    all
}

proptest! {
    #[test]
    fn top_p_head_shortcut_matches_a_full_sort(
        head in prop::collection::vec(0.0f64..1.0, 1..40),
        tail_len in 1000usize..5000,
        tail_weight in 0.0f64..0.3,
        p in 0.05f64..=1.0,
    ) {
        // A few likely tokens over a long flat tail, like a real vocabulary.
        let mut weights = head.clone();
        weights.extend(std::iter::repeat_n(tail_weight / tail_len as f64, tail_len));
        let total: f64 = weights.iter().sum();
        let cands: Vec<(u32, f64)> =
            weights.iter().enumerate().map(|(i, &w)| (i as u32, w / total)).collect();
        let mut got = cands.clone();
        keep_top_p(&mut got, p);
        prop_assert_eq!(got, top_p_by_full_sort(&cands, p));
    }

    #[test]
    fn top_k_one_equals_greedy(
        logits in prop::collection::vec(-50.0f32..50.0, 1..64),
        seed in any::<u64>(),
        t in 0.01f32..10.0,
    ) {
        let greedy = processor(cfg(0.0)).sample(&mut logits.clone(), &[]).unwrap();
        let c = SamplingConfig { top_k: Some(1), seed, ..cfg(t) };
        let got = processor(c).sample(&mut logits.clone(), &[]).unwrap();
        // Equal when the maximum is unique; with ties top-k keeps them all, still maximal.
        prop_assert_eq!(logits[got as usize], logits[greedy as usize]);
    }

    #[test]
    fn sampled_id_is_within_top_k(
        logits in prop::collection::vec(-50.0f32..50.0, 1..64),
        k in 1usize..8,
        p in 0.01f32..=1.0,
        seed in any::<u64>(),
    ) {
        let c = SamplingConfig { top_k: Some(k), top_p: Some(p), seed, ..cfg(1.0) };
        let id = processor(c).sample(&mut logits.clone(), &[]).unwrap() as usize;
        let larger = logits.iter().filter(|&&l| l > logits[id]).count();
        prop_assert!(larger < k, "id {} has {} larger logits, k = {}", id, larger, k);
    }
}
