//! Logits processing for decoding: repetition penalty, then greedy argmax or temperature, top-k,
//! top-p and a draw from a seeded generator, in the order Hugging Face `generate` applies them.
//!
//! Runs once per generated token over the full vocabulary (262k for Gemma 3), so the per-token
//! path reuses its scratch buffers and selects the top-k with `select_nth_unstable` rather than
//! sorting the vocabulary.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax, ignoring `top_k` and `top_p`).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties at the k-th logit are all kept, as in HF).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability sums to at least `p`.
    pub top_p: Option<f32>,
    /// HF repetition penalty for ids already in the history; 1.0 turns it off.
    pub repetition_penalty: f32,
    /// Seed of the sampling generator: the same seed, config and logits give the same tokens.
    pub seed: u64,
}

impl Default for SamplingConfig {
    /// Greedy decoding without penalty: reproducible, which is what a guard run wants by default.
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks every field; messages name the command-line flag that sets it.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(arg(format!(
                "--temperature must be a finite number >= 0 (0 = greedy), got {t}"
            )));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(arg(format!("--top-p must be in (0, 1], got {p}")));
            }
        }
        if self.top_k == Some(0) {
            return Err(arg("--top-k must be >= 1 (leave it out to disable top-k)"));
        }
        let r = self.repetition_penalty;
        if !r.is_finite() || r <= 0.0 {
            return Err(arg(format!(
                "--repetition-penalty must be a finite number > 0 (1.0 = off), got {r}"
            )));
        }
        Ok(())
    }

    /// True when sampling reduces to argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

fn arg(msg: impl Into<String>) -> Error {
    Error::Argument(msg.into())
}

/// A small seeded generator (SplitMix64): statistically sound for sampling, reproducible across
/// platforms and releases, which an external RNG crate does not promise.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1) with 53 bits of precision.
    /// Uniform in `0..n` (n > 0); the modulo bias is below 2^-40 for any realistic n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Chooses each next token from the logits under a [`SamplingConfig`].
#[derive(Debug, Clone)]
pub struct LogitsProcessor {
    cfg: SamplingConfig,
    rng: SplitMix64,
    /// Deduplicated history ids, reused across calls.
    seen: Vec<u32>,
    /// Logit copy for the top-k selection, reused across calls.
    values: Vec<f32>,
    /// Surviving (token id, probability) pairs, reused across calls.
    cands: Vec<(u32, f64)>,
}

impl LogitsProcessor {
    /// A processor for `cfg`, which is validated first.
    pub fn new(cfg: SamplingConfig) -> Result<Self> {
        cfg.validate()?;
        let rng = SplitMix64::new(cfg.seed);
        Ok(LogitsProcessor {
            cfg,
            rng,
            seen: Vec::new(),
            values: Vec::new(),
            cands: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SamplingConfig {
        &self.cfg
    }

    /// Picks the next token id. `logits` (one per vocabulary id) is modified in place by the
    /// repetition penalty; `history` holds the ids the penalty applies to (the prompt and
    /// the tokens generated so far). NaN or +inf logits and out-of-vocabulary history ids are
    /// errors; `-inf` is allowed and means "never pick".
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32> {
        check_logits(logits)?;
        if self.cfg.repetition_penalty != 1.0 {
            self.apply_repetition_penalty(logits, history)?;
        }
        if self.cfg.is_greedy() {
            return Ok(argmax(logits));
        }
        self.collect_candidates(logits);
        softmax_in_place(&mut self.cands);
        if let Some(p) = self.cfg.top_p {
            keep_top_p(&mut self.cands, f64::from(p));
        }
        Ok(draw(&self.cands, self.rng.next_f64()))
    }

    /// HF semantics: each distinct id in the history is penalised once; a positive logit is
    /// divided by the penalty and a negative one multiplied, so both move towards "less likely".
    fn apply_repetition_penalty(&mut self, logits: &mut [f32], history: &[u32]) -> Result<()> {
        self.seen.clear();
        self.seen.extend_from_slice(history);
        self.seen.sort_unstable();
        self.seen.dedup();
        let penalty = self.cfg.repetition_penalty;
        for &id in &self.seen {
            let Some(l) = logits.get_mut(id as usize) else {
                return Err(Error::Generate(format!(
                    "history token id {id} is outside the vocabulary of {} logits",
                    logits.len()
                )));
            };
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
        Ok(())
    }

    /// Fills `cands` with the ids that survive top-k (all finite ids without it), in id order,
    /// carrying their temperature-scaled logits in the probability slot until the softmax. The
    /// scaling happens in f64: a tiny temperature would overflow f32 logits to inf.
    fn collect_candidates(&mut self, logits: &[f32]) {
        let finite = |l: f32| l > f32::NEG_INFINITY;
        // Top-k keeps every logit >= the k-th largest (HF keeps boundary ties); found by selection
        // on a copy, O(vocab), instead of a full sort.
        let cutoff = match self.cfg.top_k {
            Some(k) if k < logits.len() => {
                self.values.clear();
                self.values.extend_from_slice(logits);
                let (_, kth, _) = self.values.select_nth_unstable_by(k - 1, |a, b| {
                    b.partial_cmp(a).unwrap_or(Ordering::Equal)
                });
                *kth
            }
            _ => f32::NEG_INFINITY,
        };
        let inv_t = 1.0 / f64::from(self.cfg.temperature);
        self.cands.clear();
        self.cands.extend(
            logits
                .iter()
                .enumerate()
                .filter(|&(_, &l)| finite(l) && l >= cutoff)
                .map(|(id, &l)| (id as u32, f64::from(l) * inv_t)),
        );
    }
}

/// Rejects what would otherwise panic or silently poison the softmax.
fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::Generate("the model returned no logits".into()));
    }
    if let Some(i) = logits
        .iter()
        .position(|l| l.is_nan() || *l == f32::INFINITY)
    {
        return Err(Error::Generate(format!(
            "logit for token id {i} is {} (numerical failure in the model run)",
            logits[i]
        )));
    }
    if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        return Err(Error::Generate(
            "every logit is -inf: no token can be chosen".into(),
        ));
    }
    Ok(())
}

/// Index of the largest logit, the lowest id among ties. Logits are NaN-free here.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Turns the logits carried in `cands` into probabilities (max-subtracted, in f64).
fn softmax_in_place(cands: &mut [(u32, f64)]) {
    let max = cands.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for c in cands.iter_mut() {
        c.1 = (c.1 - max).exp();
        sum += c.1;
    }
    for c in cands.iter_mut() {
        c.1 /= sum;
    }
}

/// Nucleus filter: sorts by probability (descending, ties by id) and keeps the smallest prefix
/// whose cumulative probability reaches `p`, never fewer than one token.
fn keep_top_p(cands: &mut Vec<(u32, f64)>, p: f64) {
    drop_outside_head(cands, p);
    cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut cum = 0.0;
    let mut keep = cands.len();
    for (i, c) in cands.iter().enumerate() {
        cum += c.1;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep.max(1));
}

/// Without top-k the candidates are the whole vocabulary, and sorting 262k of them per token is
/// the costliest step. The tokens with probability >= `t` are a prefix of the sorted order (ties
/// included) and at most `1 / t` of them exist; when their mass already reaches `p` the nucleus
/// lies inside them, so the rest can go unsorted. The margin keeps rounding from changing the
/// result against a full sort.
fn drop_outside_head(cands: &mut Vec<(u32, f64)>, p: f64) {
    const MARGIN: f64 = 1e-9;
    if cands.len() <= 1024 {
        return;
    }
    for t in [1e-3, 1e-5] {
        let mass: f64 = cands.iter().filter(|c| c.1 >= t).map(|c| c.1).sum();
        if mass >= p + MARGIN {
            cands.retain(|c| c.1 >= t);
            return;
        }
    }
}

/// Inverse-CDF draw with `u` in [0, 1), scaled by the (possibly truncated) total mass.
fn draw(cands: &[(u32, f64)], u: f64) -> u32 {
    let total: f64 = cands.iter().map(|c| c.1).sum();
    let target = u * total;
    let mut cum = 0.0;
    for &(id, p) in cands {
        cum += p;
        if target < cum {
            return id;
        }
    }
    // Rounding can leave `target` a hair above the final sum: the last candidate with any mass
    // takes it (the most likely one always has mass, so this finds one).
    cands.iter().rev().find(|c| c.1 > 0.0).map_or(0, |c| c.0)
}

#[cfg(test)]
mod tests;
