//! The export manifest (`manifest.json`, schema 1; see `export/CONTRACT.md`): every graph name and
//! shape the runtime uses comes from here, checked against the ONNX session when a model loads.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest schema version this crate reads.
pub const SCHEMA_VERSION: u32 = 1;

/// `manifest.json` as written by the export step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub format: String,
    /// Identity of the source weights: probes trained on one model are refused on another.
    pub model_hash: String,
    #[serde(default)]
    pub source: serde_json::Value,
    pub architecture: Architecture,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    pub graph: GraphInfo,
    pub inputs: InputNames,
    pub logits: LogitsInfo,
    pub hidden_states: Vec<HiddenStateOutput>,
    pub kv_cache: Vec<KvEntry>,
    #[serde(default)]
    pub shared_kv_layers: Vec<serde_json::Value>,
    pub special_tokens: SpecialTokens,
    #[serde(default)]
    pub chat_template: Option<ChatTemplateRef>,
    #[serde(default)]
    pub tokenizer: Option<TokenizerFiles>,
    #[serde(default)]
    pub exporter: serde_json::Value,
    #[serde(default)]
    pub goldens: Option<GoldenFiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Architecture {
    pub model_type: String,
    #[serde(default)]
    pub source_model_type: Option<String>,
    #[serde(default)]
    pub source_class: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphInfo {
    pub file: String,
    #[serde(default)]
    pub external_data: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// sha256 of the external-data file, when the graph has one.
    #[serde(default)]
    pub external_data_sha256: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// `float32` or `float16`.
    pub dtype: String,
    #[serde(default)]
    pub opset: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputNames {
    pub input_ids: String,
    pub attention_mask: String,
    pub position_ids: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogitsInfo {
    pub name: String,
    #[serde(default)]
    pub last_position_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HiddenStateOutput {
    /// 0 = embeddings, `num_layers` = last layer after the final norm.
    pub index: usize,
    pub name: String,
    #[serde(default)]
    pub meaning: String,
}

/// One past/present pair of the KV cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvEntry {
    pub layer: usize,
    pub past_key: String,
    pub past_value: String,
    pub present_key: String,
    pub present_value: String,
    pub num_heads: usize,
    pub head_dim: usize,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub attention: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpecialTokens {
    #[serde(default)]
    pub bos: Option<u32>,
    #[serde(default)]
    pub pad: Option<u32>,
    #[serde(default)]
    pub unk: Option<u32>,
    /// Every id that ends generation (eos and end-of-turn).
    #[serde(default)]
    pub eos: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatTemplateRef {
    pub file: String,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerFiles {
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoldenFiles {
    pub json: String,
    pub tensors: String,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`; returns it with the sha256 of its bytes.
    pub fn load(dir: &Path) -> Result<(Self, String)> {
        let path = dir.join("manifest.json");
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{} not found: `{}` is not an exported model folder. Export one with \
                 `just export MODEL_DIR {}` (or `just tiny-models` / `just smollm2` / `just gemma3-270m`)",
                path.display(),
                dir.display(),
                dir.display()
            )));
        }
        let bytes = std::fs::read(&path).at(&path)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(Error::json(&path, "a model manifest (re-export the model)"))?;
        manifest.check(&path)?;
        Ok((manifest, crate::fsutil::sha256_bytes(&bytes)))
    }

    fn check(&self, path: &Path) -> Result<()> {
        let fail = |m: String| Err(Error::Model(format!("{}: {m}", path.display())));
        if self.schema_version != SCHEMA_VERSION {
            return fail(format!(
                "schema_version {} is not supported (this build reads {SCHEMA_VERSION}); \
                 re-export the model with this version's export step",
                self.schema_version
            ));
        }
        if self.hidden_states.is_empty() {
            return fail("lists no hidden_states outputs".into());
        }
        if let Some(h) = self
            .hidden_states
            .iter()
            .find(|h| h.index > self.num_layers)
        {
            return fail(format!(
                "hidden state `{}` has index {} > num_layers {}",
                h.name, h.index, self.num_layers
            ));
        }
        if !matches!(self.graph.dtype.as_str(), "float32" | "float16") {
            return fail(format!(
                "graph.dtype `{}` is not float32 or float16",
                self.graph.dtype
            ));
        }
        Ok(())
    }

    /// The id padded slots carry: the manifest's pad token, else the first eos id, else 0.
    /// Padding is masked out of attention, so any valid id works; one rule keeps extraction,
    /// generation and replay padding alike.
    pub fn pad_id(&self) -> u32 {
        let st = &self.special_tokens;
        st.pad.or(st.eos.first().copied()).unwrap_or(0)
    }

    /// Whether the graph computes in fp16.
    pub fn is_fp16(&self) -> bool {
        self.graph.dtype == "float16"
    }

    /// Absolute hidden-state indices the graph exposes, ascending.
    pub fn available_layers(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.hidden_states.iter().map(|h| h.index).collect();
        v.sort_unstable();
        v
    }

    /// The output name of hidden state `index`, or an error listing what the graph has.
    pub fn hidden_output(&self, index: usize) -> Result<&str> {
        self.hidden_states
            .iter()
            .find(|h| h.index == index)
            .map(|h| h.name.as_str())
            .ok_or_else(|| {
                Error::Model(format!(
                    "the graph has no hidden-state output for layer {index}; it exports layers \
                     {:?}. Re-export with `--layers all` (or include {index})",
                    self.available_layers()
                ))
            })
    }

    /// Resolves one layer index, Python-style: `-1` is the last hidden state (`num_layers`).
    pub fn resolve_layer(&self, layer: i64) -> Result<usize> {
        resolve_layer(layer, self.num_layers)
    }

    /// Parses `all`, `-4` or `-2,-4,-8` into absolute indices (order kept, duplicates removed),
    /// each of which the graph must expose.
    pub fn parse_layers(&self, spec: &str) -> Result<Vec<usize>> {
        let layers = parse_layer_spec(spec, self.num_layers, &self.available_layers())?;
        for &l in &layers {
            self.hidden_output(l)?;
        }
        Ok(layers)
    }
}

/// Python-style index into the `num_layers + 1` hidden states.
pub fn resolve_layer(layer: i64, num_layers: usize) -> Result<usize> {
    let count = num_layers as i64 + 1;
    let idx = if layer < 0 { count + layer } else { layer };
    if (0..count).contains(&idx) {
        Ok(idx as usize)
    } else {
        Err(Error::Argument(format!(
            "layer {layer} is out of range: the model has {count} hidden states \
             (0 = embeddings .. {num_layers} = last layer; negative counts from the end, -1 = {num_layers})"
        )))
    }
}

/// Parses a layer list (`all` means every available layer).
pub fn parse_layer_spec(spec: &str, num_layers: usize, available: &[usize]) -> Result<Vec<usize>> {
    if spec.trim() == "all" {
        return Ok(available.to_vec());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: i64 = part.parse().map_err(|_| {
            Error::Argument(format!(
                "`{part}` in layer list `{spec}` is not an integer (use e.g. `-4`, `-2,-4,-8` or `all`)"
            ))
        })?;
        let idx = resolve_layer(v, num_layers)?;
        if !out.contains(&idx) {
            out.push(idx);
        }
    }
    if out.is_empty() {
        return Err(Error::Argument(format!("layer list `{spec}` is empty")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_layers_count_from_the_end() {
        assert_eq!(resolve_layer(-1, 6).unwrap(), 6);
        assert_eq!(resolve_layer(-4, 6).unwrap(), 3);
        assert_eq!(resolve_layer(0, 6).unwrap(), 0);
        assert_eq!(resolve_layer(-7, 6).unwrap(), 0);
        assert!(resolve_layer(-8, 6).is_err());
        assert!(resolve_layer(7, 6).is_err());
    }

    #[test]
    fn layer_specs() {
        let avail: Vec<usize> = (0..=6).collect();
        assert_eq!(parse_layer_spec("all", 6, &avail).unwrap(), avail);
        assert_eq!(
            parse_layer_spec("-2,-4, -2", 6, &avail).unwrap(),
            vec![5, 3]
        );
        let err = parse_layer_spec("-2,x", 6, &avail).unwrap_err().to_string();
        assert!(err.contains("`x`"), "{err}");
        assert!(parse_layer_spec(" , ", 6, &avail).is_err());
    }
}
