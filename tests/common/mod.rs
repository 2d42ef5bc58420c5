//! Helpers shared by the integration tests: the tiny models and their PyTorch goldens.
#![allow(dead_code)]

use open_constitution::extract::PreparedRow;
use open_constitution::runtime::RuntimeOptions;
use open_constitution::store::tensors::TensorFile;
use open_constitution::store::RowMeta;
use open_constitution::text::model::Model;
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Output;

/// The committed tiny models (made by `just tiny-models`).
pub const TINY_MODELS: [&str; 3] = ["tiny-gemma4", "tiny-gemma3", "tiny-qwen3"];

/// The real models `just gemma3-270m` and `just smollm2` export (git-ignored).
pub const REAL_MODELS: [&str; 2] = ["gemma-3-270m", "smollm2-135m-instruct"];

/// The tiny models, plus each real model that has been exported here (git-ignored, so CI
/// checks the tiny ones and a developer's machine checks all).
pub fn parity_models() -> Vec<&'static str> {
    let mut v = TINY_MODELS.to_vec();
    for real in REAL_MODELS {
        if model_dir(real).join("goldens.json").is_file() {
            v.push(real);
        } else {
            eprintln!("models/{real} not exported: its parity is not checked here");
        }
    }
    v
}

pub fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_open-constitution"))
}

pub fn load(name: &str, chat: bool) -> Model {
    let opts = RuntimeOptions {
        threads: 1,
        ..Default::default()
    };
    Model::load(model_dir(name).to_str().unwrap(), chat, &opts).expect("tiny model loads")
}

#[derive(Debug, Deserialize)]
pub struct Goldens {
    pub layers: Vec<usize>,
    pub exchanges: Vec<GoldenExchange>,
    pub generations: Vec<GoldenGeneration>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenExchange {
    pub prompt: String,
    pub response: String,
    pub chat_template: bool,
    pub text: String,
    pub input_ids: Vec<u32>,
    pub response_token_range: [usize; 2],
}

#[derive(Debug, Deserialize)]
pub struct GoldenGeneration {
    pub prompt: String,
    pub chat_template: bool,
    pub text: String,
    pub input_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
}

pub fn goldens(name: &str) -> (Goldens, TensorFile) {
    let dir = model_dir(name);
    let g: Goldens =
        serde_json::from_slice(&std::fs::read(dir.join("goldens.json")).unwrap()).unwrap();
    let t = TensorFile::open(&dir.join("goldens.safetensors")).unwrap();
    (g, t)
}

/// Largest |a - b| / max(1, |b|): relative where values are large (Gemma's residual stream
/// reaches ~1e5), absolute near zero.
pub fn max_scaled_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// ||a - b|| / ||b||: the error relative to the vector's size.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f32 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num.sqrt() / den.sqrt().max(1e-30)) as f32
}

/// Parity check: tiny models within 1e-4 elementwise (scaled); a real model, whose residual
/// stream spans 1e-3..1e5, within 1e-4 relative L2 and 1e-3 elementwise.
pub fn assert_close(name: &str, what: &str, got: &[f32], want: &[f32]) -> f32 {
    let d = max_scaled_diff(got, want);
    if TINY_MODELS.contains(&name) {
        assert!(d < 1e-4, "{name} {what}: max scaled diff {d}");
    } else {
        let r = rel_l2(got, want);
        assert!(
            r < 1e-4 && d < 1e-3,
            "{name} {what}: rel L2 {r}, max scaled {d}"
        );
    }
    d
}

/// A tokenized exchange with placeholder metadata: `response` is the token range mean pooling
/// averages over.
pub fn prepared_row(ids: Vec<u32>, response: std::ops::Range<usize>) -> PreparedRow {
    PreparedRow {
        meta: RowMeta {
            id: "x".into(),
            label: 0,
            split: None,
            topic: None,
            source: None,
            tokens: ids.len(),
            prompt_hash: String::new(),
            truncated: false,
            positions: None,
            response_tokens: None,
        },
        ids,
        response,
    }
}

/// The stdout of a command that must succeed (its stderr in the failure message).
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The stderr of a command that must fail with the binary's error exit code, 2.
pub fn fail(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// `render --tokens` of a JSON message list on the model folder `dir`: the token ids and stderr.
pub fn render_tokens(
    dir: &std::path::Path,
    messages: &str,
    generation_prompt: bool,
) -> (Vec<u64>, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), messages).unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "render",
        "--model",
        dir.to_str().unwrap(),
        "--tokens",
        "--messages",
    ])
    .arg(file.path());
    if generation_prompt {
        cmd.arg("--add-generation-prompt");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ids = ok(out)
        .rsplit("tokens ---\n")
        .next()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (ids, stderr)
}
