//! Synthetic activation stores for probe tests: two Gaussian blobs per stored layer, written with
//! the real `StoreWriter`.

#![allow(dead_code)]

use ndarray::Array2;
use open_constitution::fsutil::sha256_bytes;
use open_constitution::probe::split::SplitMix64;
use open_constitution::store::{
    Pooling, RowMeta, StoreMeta, StoreWriter, STORE_FORMAT, STORE_VERSION,
};
use std::path::Path;

/// Default hidden size of synthetic stores.
pub const HIDDEN: usize = 32;

/// How to make a store.
#[derive(Clone)]
pub struct Synth {
    pub rows: usize,
    pub positive_rate: f64,
    /// Distance between the blob means (in units of the per-feature std).
    pub separation: f64,
    pub seed: u64,
    /// Stored layers; the k-th of L carries (k+1)/L of the separation, so the last is best.
    pub layers: Vec<usize>,
    pub model_hash: String,
    /// Give rows split labels cycling train x8, validation, test (else split by prompt hash).
    pub split_labels: bool,
    pub id_prefix: String,
    pub hidden: usize,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            rows: 4000,
            positive_rate: 0.3,
            separation: 6.0,
            seed: 1,
            layers: vec![4],
            model_hash: "hash-a".into(),
            split_labels: false,
            id_prefix: "r".into(),
            hidden: HIDDEN,
        }
    }
}

pub fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn meta(s: &Synth) -> StoreMeta {
    StoreMeta {
        format: STORE_FORMAT.into(),
        version: STORE_VERSION,
        model_hash: s.model_hash.clone(),
        manifest_sha256: "manifest-sha".into(),
        model: "models/synthetic".into(),
        num_layers: 4,
        layers: s.layers.clone(),
        hidden_size: s.hidden,
        pooling: Pooling::Last,
        dtype: "float32".into(),
        chat_template: true,
        shard: None,
        rows_per_shard: 1000,
        args: serde_json::json!({"data_sha256": format!("seed-{}", s.seed)}),
        planned_rows: s.rows,
        complete: false,
        row_count: 0,
        truncated: 0,
        max_states: None,
    }
}

/// Rows and one matrix per layer.
pub fn generate(s: &Synth) -> (Vec<RowMeta>, Vec<Array2<f32>>) {
    let mut rng = SplitMix64::new(s.seed);
    let mut rows = Vec::with_capacity(s.rows);
    let mut mats: Vec<Array2<f32>> = s
        .layers
        .iter()
        .map(|_| Array2::zeros((s.rows, s.hidden)))
        .collect();
    // The mean difference points along a fixed direction spread over all features; features
    // get different offsets and scales so standardization matters.
    let shift = s.separation / (s.hidden as f64).sqrt();
    for i in 0..s.rows {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let label = u8::from(u < s.positive_rate);
        let id = format!("{}{i}", s.id_prefix);
        let split = s.split_labels.then(|| {
            use open_constitution::data::Split;
            match i % 10 {
                8 => Split::Validation,
                9 => Split::Test,
                _ => Split::Train,
            }
        });
        rows.push(RowMeta {
            prompt_hash: sha256_bytes(id.as_bytes()),
            id,
            label,
            split,
            topic: None,
            source: Some(if i % 2 == 0 { "even" } else { "odd" }.into()),
            tokens: 10,
            truncated: false,
            positions: None,
            response_tokens: None,
        });
        for (k, m) in mats.iter_mut().enumerate() {
            let strength = (k + 1) as f64 / s.layers.len() as f64;
            for j in 0..s.hidden {
                let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
                let mean = if label == 1 {
                    sign * shift * strength
                } else {
                    0.0
                };
                let scale = 1.0 + j as f64 * 0.5;
                m[[i, j]] = ((gaussian(&mut rng) + mean) * scale + 10.0 * j as f64) as f32;
            }
        }
    }
    (rows, mats)
}

/// Writes a complete store to `dir`; `edit` may change rows and matrices first.
pub fn write_store_with(
    dir: &Path,
    s: &Synth,
    edit: impl FnOnce(&mut Vec<RowMeta>, &mut Vec<Array2<f32>>),
) {
    let (mut rows, mut mats) = generate(s);
    edit(&mut rows, &mut mats);
    let mut w = StoreWriter::create_or_resume(dir, meta(s)).unwrap();
    let per = 1000;
    let mut start = 0;
    while start < rows.len() {
        let end = (start + per).min(rows.len());
        let parts: Vec<Array2<f32>> = mats
            .iter()
            .map(|m| m.slice(ndarray::s![start..end, ..]).to_owned())
            .collect();
        w.write_shard(&rows[start..end], &parts, &[]).unwrap();
        start = end;
    }
    w.finish(0).unwrap();
}

pub fn write_store(dir: &Path, s: &Synth) {
    write_store_with(dir, s, |_, _| {});
}
