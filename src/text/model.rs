//! Finding and loading an exported model: a local folder (the export output) or a hub id
//! resolved offline from the local Hugging Face cache; its manifest, tokenizer, chat template and
//! (when inference is needed) its ONNX session.

use crate::error::{Error, Result};
use crate::runtime::decoder::Decoder;
use crate::runtime::manifest::Manifest;
use crate::runtime::trt_profile::profiles;
use crate::runtime::{load_session, load_session_from, Device, GraphSource, RuntimeOptions};
use crate::text::prompt::PromptFormat;
use crate::text::template::ChatTemplate;
use crate::text::tokenize::TextEncoder;
use std::path::{Path, PathBuf};

/// Resolves `spec`: an existing directory, else a hub id (`org/name`) in the local Hugging
/// Face cache (`$HF_HOME/hub`, no network). The folder must hold an exported model.
pub fn resolve_model_dir(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let looks_like_hub_id =
        spec.split('/').count() == 2 && !spec.starts_with('.') && !path.exists();
    if looks_like_hub_id {
        let cache = hf_hub::Cache::from_env();
        let repo = cache.model(spec.to_string());
        if let Some(manifest) = repo.get("manifest.json") {
            let dir = manifest.parent().expect("file in a snapshot").to_path_buf();
            tracing::info!(
                "resolved {spec} from the Hugging Face cache: {}",
                dir.display()
            );
            return Ok(dir);
        }
        if let Some(config) = repo.get("config.json") {
            let dir = config.parent().expect("file in a snapshot");
            return Err(Error::Model(format!(
                "{spec} is in the Hugging Face cache ({}) but is not exported; export it once with \
                 `just export {} models/<name>` and pass that folder",
                dir.display(),
                dir.display()
            )));
        }
        return Err(Error::Model(format!(
            "model `{spec}` is neither a folder nor in the local Hugging Face cache ({}); this tool \
             does not download. Export a local model folder with `just export MODEL_DIR OUT_DIR` \
             (or `just smollm2` / `just gemma3-270m`)",
            cache.path().display()
        )));
    }
    Err(Error::Model(format!(
        "model folder `{spec}` does not exist; export one with `just export MODEL_DIR {spec}` \
         (or `just smollm2` / `just gemma3-270m` / `just tiny-models`)"
    )))
}

/// The files of an exported model that need no inference: manifest, tokenizer, prompt format.
pub struct ModelFiles {
    pub dir: PathBuf,
    /// The model as the user named it (folder or hub id).
    pub id: String,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    pub encoder: TextEncoder,
    pub format: PromptFormat,
}

impl ModelFiles {
    /// Loads manifest, tokenizer and, with `use_chat_template`, the chat template (an error when
    /// the model has none: pass `--no-chat-template` for the plain format).
    pub fn load(spec: &str, use_chat_template: bool) -> Result<Self> {
        let dir = resolve_model_dir(spec)?;
        let (manifest, manifest_sha256) = Manifest::load(&dir)?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(Error::Model(format!(
                "{} is missing; re-export the model (the export copies the tokenizer)",
                tok_path.display()
            )));
        }
        let mut encoder = TextEncoder::from_file(&tok_path)?;
        let format = if use_chat_template {
            let t = ChatTemplate::load(&dir)?.ok_or_else(|| {
                Error::Template(format!(
                    "{} has no chat template (no chat_template.jinja and no `chat_template` in \
                     tokenizer_config.json); pass --no-chat-template to use `User:/Assistant:`",
                    dir.display()
                ))
            })?;
            encoder.protect_template_tokens(t.text())?;
            PromptFormat::Chat(Box::new(t))
        } else {
            PromptFormat::Plain
        };
        Ok(Self {
            dir,
            id: spec.to_string(),
            manifest,
            manifest_sha256,
            encoder,
            format,
        })
    }

    /// The pad id ([`Manifest::pad_id`]).
    pub fn pad_id(&self) -> u32 {
        self.manifest.pad_id()
    }
}

/// An exported model ready for inference.
pub struct Model {
    pub files: ModelFiles,
    pub decoder: Decoder,
}

impl Model {
    /// Loads the files and builds the ONNX session with the requested provider.
    pub fn load(spec: &str, use_chat_template: bool, runtime: &RuntimeOptions) -> Result<Self> {
        let files = ModelFiles::load(spec, use_chat_template)?;
        let graph = graph_path(&files)?;
        let loaded = load_session(&graph, &with_trt_profiles(runtime, &files))?;
        let decoder = Decoder::new(loaded, files.manifest.clone())?;
        Ok(Self { files, decoder })
    }

    /// Loads the model for extracting hidden states `layers` (a layer spec such as `-4,8`):
    /// the graph is pruned in memory to what those outputs need (ONNX Runtime otherwise runs
    /// every layer and the LM head whatever a run asks for). The decoder has no logits or KV
    /// outputs. Graphs with external weights are loaded whole.
    pub fn load_for_extraction(
        spec: &str,
        use_chat_template: bool,
        runtime: &RuntimeOptions,
        layers: &str,
    ) -> Result<Self> {
        let files = ModelFiles::load(spec, use_chat_template)?;
        let graph = graph_path(&files)?;
        let layers = files.manifest.parse_layers(layers)?;
        if files.manifest.graph.external_data.is_some() {
            tracing::info!("graph with external weights: extracting with the whole graph");
            return Self::load(spec, use_chat_template, runtime);
        }
        let bytes = std::fs::read(&graph).map_err(|e| Error::io(&graph, e))?;
        let keep: Vec<&str> = layers
            .iter()
            .map(|&l| files.manifest.hidden_output(l))
            .collect::<Result<_>>()?;
        let Some((pruned, stats)) = crate::runtime::prune::prune_model(&bytes, &keep)? else {
            drop(bytes);
            return Self::load(spec, use_chat_template, runtime);
        };
        drop(bytes);
        tracing::info!(
            "graph pruned to hidden states {layers:?}: {} of {} nodes, {} of {} weight tensors",
            stats.nodes_after,
            stats.nodes_before,
            stats.initializers_after,
            stats.initializers_before
        );
        let source = GraphSource::Memory {
            bytes: &pruned,
            origin: &graph,
        };
        let loaded = load_session_from(source, &with_trt_profiles(runtime, &files))?;
        let mut manifest = files.manifest.clone();
        manifest.hidden_states.retain(|h| layers.contains(&h.index));
        let decoder = Decoder::for_extraction(loaded, manifest)?;
        Ok(Self { files, decoder })
    }
}

/// TensorRT needs optimization profiles for the dynamic dimensions: up to
/// [`RuntimeOptions::trt_shape`] (the command's own batch limits), engines tuned for batch-1
/// decoding at 256 cached tokens; fp16 engines for fp16 graphs, for fp32 ones only when asked.
fn with_trt_profiles(runtime: &RuntimeOptions, files: &ModelFiles) -> RuntimeOptions {
    let mut runtime = runtime.clone();
    if runtime.device == Device::TensorRt {
        let (rows, tokens) = runtime.trt_shape;
        runtime.trt_profiles = Some(profiles(&files.manifest, rows.max(1), tokens.max(2), 256));
        if runtime.trt_fp16 && !files.manifest.is_fp16() {
            tracing::warn!(
                "--trt-fp16 on an fp32 graph: TensorRT computes in fp16, so hidden states differ \
                 (~1e-3 relative) from the fp32 ones the probe was trained on"
            );
        }
        runtime.trt_fp16 |= files.manifest.is_fp16();
    }
    runtime
}

/// The graph file named by the manifest, which must exist and match the sha256s the manifest
/// records for it and its external data (checked once per change of the file, see
/// [`crate::runtime::integrity`]).
fn graph_path(files: &ModelFiles) -> Result<PathBuf> {
    let info = &files.manifest.graph;
    let graph = files.dir.join(&info.file);
    if !graph.is_file() {
        return Err(Error::Model(format!(
            "{} is missing (named by manifest.json); re-export the model",
            graph.display()
        )));
    }
    let manifest = files.dir.join("manifest.json");
    if let Some(sha) = &info.sha256 {
        crate::runtime::integrity::verify_file(&graph, sha, &manifest)?;
    }
    if let (Some(data), Some(sha)) = (&info.external_data, &info.external_data_sha256) {
        crate::runtime::integrity::verify_file(&files.dir.join(data), sha, &manifest)?;
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorrt_profiles_follow_the_commands_limits_and_fp16_follows_the_graph() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-qwen3");
        let files = ModelFiles::load(dir, true).unwrap();
        let asked = RuntimeOptions {
            device: Device::TensorRt,
            trt_shape: (8, 300),
            ..Default::default()
        };
        let rt = with_trt_profiles(&asked, &files);
        let p = rt.trt_profiles.expect("profiles for TensorRT");
        let ids = &files.manifest.inputs.input_ids;
        assert!(p.max.contains(&format!("{ids}:8x300")), "{}", p.max);
        assert!(!rt.trt_fp16, "fp32 graph, fp16 not asked");
        let fp16 = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-gemma3-fp16");
        let files = ModelFiles::load(fp16, true).unwrap();
        assert!(with_trt_profiles(&asked, &files).trt_fp16);
        let cpu = with_trt_profiles(&RuntimeOptions::default(), &files);
        assert!(cpu.trt_profiles.is_none());
    }
}
