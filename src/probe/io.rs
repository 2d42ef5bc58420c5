//! The [`Probe`] type: reading and writing a probe directory (`probe.safetensors` with the float32
//! tensors `weight`, `bias`, `feature_mean`, `feature_std`, and `config.json`), checking that a
//! model or store is the one it was trained on, and scoring hidden states.

use super::config::{ProbeConfig, PROBE_FORMAT, PROBE_VERSION};
use super::fit::{LinearModel, Standardizer};
use super::scorer::Scorer;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_bytes_atomic;
use crate::runtime::manifest::Manifest;
use crate::store::tensors::{write_f32, F32Tensor, TensorFile};
use crate::store::StoreMeta;
use ndarray::ArrayView2;
use std::path::{Path, PathBuf};

/// File names inside a probe directory.
pub const PROBE_TENSORS: &str = "probe.safetensors";
pub const PROBE_CONFIG: &str = "config.json";

/// A trained linear probe: raw parameters, folded scorer and configuration.
#[derive(Debug, Clone)]
pub struct Probe {
    dir: Option<PathBuf>,
    config: ProbeConfig,
    model: LinearModel,
    standardizer: Standardizer,
    scorer: Scorer,
}

impl Probe {
    /// Assembles a probe from its parts (checks sizes and finiteness).
    pub fn new(
        config: ProbeConfig,
        model: LinearModel,
        standardizer: Standardizer,
    ) -> Result<Self> {
        let h = config.hidden_size * config.layers().len();
        let sizes = [
            model.weight.len(),
            standardizer.mean.len(),
            standardizer.std.len(),
        ];
        if sizes.iter().any(|&s| s != h) {
            return Err(Error::Probe(format!(
                "weight/feature_mean/feature_std have sizes {sizes:?}, expected {h} (hidden_size \
                 {} x {} layers)",
                config.hidden_size,
                config.layers().len()
            )));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&model.weight) || !model.bias.is_finite() || !finite(&standardizer.mean) {
            return Err(Error::Probe("probe parameters are not finite".into()));
        }
        if standardizer
            .std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::Probe("feature_std must be finite and > 0".into()));
        }
        let scorer = Scorer::fold(&model, &standardizer);
        Ok(Probe {
            dir: None,
            config,
            model,
            standardizer,
            scorer,
        })
    }

    /// Loads the probe in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join(PROBE_CONFIG);
        if !cfg_path.is_file() {
            return Err(Error::Probe(format!(
                "{} is not a probe directory (no {PROBE_CONFIG}); train one with \
                 `open-constitution train`",
                dir.display()
            )));
        }
        let bytes = std::fs::read(&cfg_path).at(&cfg_path)?;
        let config: ProbeConfig = serde_json::from_slice(&bytes).map_err(Error::json(
            &cfg_path,
            "a probe config of this version (retrain the probe)",
        ))?;
        if config.format != PROBE_FORMAT || config.version != PROBE_VERSION {
            return Err(Error::Probe(format!(
                "{}: format {} v{} is not {PROBE_FORMAT} v{PROBE_VERSION}; retrain the probe",
                cfg_path.display(),
                config.format,
                config.version
            )));
        }
        check_guard_fields(&config, &cfg_path)?;
        let path = dir.join(PROBE_TENSORS);
        let file = TensorFile::open(&path).map_err(|e| damaged_tensors(&path, e))?;
        check_integrity(&config, &file, &cfg_path, &path)?;
        let h = config.hidden_size * config.layers().len();
        let tensor = |name: &str, len: usize| -> Result<Vec<f32>> {
            let t = file.f32(name).map_err(|e| damaged_tensors(&path, e))?;
            if t.shape != [len] {
                return Err(Error::Probe(format!(
                    "{}: tensor `{name}` has shape {:?}, expected [{len}] (hidden_size {h} in \
                     {PROBE_CONFIG})",
                    path.display(),
                    t.shape
                )));
            }
            Ok(t.data)
        };
        let model = LinearModel {
            weight: tensor("weight", h)?,
            bias: tensor("bias", 1)?[0],
        };
        let standardizer = Standardizer {
            mean: tensor("feature_mean", h)?,
            std: tensor("feature_std", h)?,
            constant_features: config.training.constant_features,
        };
        let mut probe = Probe::new(config, model, standardizer)
            .map_err(|e| Error::Probe(format!("{}: {e}", dir.display())))?;
        probe.dir = Some(dir.to_path_buf());
        Ok(probe)
    }

    /// Writes `probe.safetensors` and `config.json` into `dir` (atomically, byte-identical for
    /// equal probes).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).at(dir)?;
        let bias = [self.model.bias];
        let tensors = [
            vector("weight", &self.model.weight),
            vector("bias", &bias),
            vector("feature_mean", &self.standardizer.mean),
            vector("feature_std", &self.standardizer.std),
        ];
        // The identity of the config and the tensors' data, checked at load: an edited `layer`
        // (or swapped weights) would otherwise score another layer silently.
        let note = serde_json::json!({
            "format": PROBE_FORMAT,
            "version": PROBE_VERSION,
            "model_hash": self.config.model_hash,
            "layer_index": self.config.layer_index,
            "identity_sha256": identity_sha256(&self.config),
            "data_sha256": crate::store::tensors::data_sha256(&tensors),
        });
        write_f32(&dir.join(PROBE_TENSORS), &tensors, Some(note.to_string()))?;
        write_json(&dir.join(PROBE_CONFIG), &self.config)
    }

    /// Refuses a model other than the one the probe was trained on (model hash, hidden size,
    /// layer). A different manifest of the same weights (e.g. another export dtype) only warns.
    pub fn check_model(&self, manifest: &Manifest, manifest_sha256: &str) -> Result<()> {
        let c = &self.config;
        if manifest.model_hash != c.model_hash {
            return Err(self.wrong_model(&format!("model hash {}", manifest.model_hash)));
        }
        if manifest.hidden_size != c.hidden_size {
            return Err(self.wrong_model(&format!("hidden size {}", manifest.hidden_size)));
        }
        self.check_layer(manifest.num_layers)?;
        if let Some(l) = c.layers().into_iter().find(|&l| l > manifest.num_layers) {
            return Err(Error::Probe(format!(
                "probe {} reads hidden state {l}, but the model has only {} layers",
                self.dir_text(),
                manifest.num_layers
            )));
        }
        if manifest_sha256 != c.manifest_sha256 {
            tracing::warn!(
                "probe {} was trained with another export of these weights (manifest sha256 {} \
                 vs {manifest_sha256}); scores may shift slightly",
                self.dir_text(),
                c.manifest_sha256
            );
        }
        Ok(())
    }

    /// `layer` (as the user gave it) and `layer_index` must name one hidden state of a model
    /// with `num_layers` layers: an edited config would otherwise score another layer.
    fn check_layer(&self, num_layers: usize) -> Result<()> {
        let c = &self.config;
        let resolved = crate::runtime::manifest::resolve_layer(c.layer, num_layers).ok();
        if resolved == Some(c.layer_index) {
            return Ok(());
        }
        Err(Error::Probe(format!(
            "probe {}: config.json says layer {} but layer_index {}, which disagree on a \
             {num_layers}-layer model (layer {} is hidden state {}): the config was edited; \
             restore it or retrain the probe",
            self.dir_text(),
            c.layer,
            c.layer_index,
            c.layer,
            resolved.map_or("none".into(), |r| r.to_string())
        )))
    }

    fn wrong_model(&self, this: &str) -> Error {
        let c = &self.config;
        Error::Probe(format!(
            "probe {} was trained on model hash {} (model_id {}, hidden size {}), this model has \
             {this}: train a probe for this model with `just train ...` (extract activations \
             with this model, then `open-constitution train --layer {}`)",
            self.dir_text(),
            c.model_hash,
            c.model_id,
            c.hidden_size,
            c.layer
        ))
    }

    /// Refuses an activation store of another model, without the probe's layer, or pooled
    /// differently; a different chat-template setting only warns.
    pub fn check_store(&self, meta: &StoreMeta) -> Result<()> {
        let c = &self.config;
        if meta.model_hash != c.model_hash {
            return Err(self.wrong_model(&format!("model hash {}", meta.model_hash)));
        }
        if meta.hidden_size != c.hidden_size {
            return Err(self.wrong_model(&format!("hidden size {}", meta.hidden_size)));
        }
        self.check_layer(meta.num_layers)?;
        if let Some(l) = c.layers().into_iter().find(|l| !meta.layers.contains(l)) {
            return Err(Error::Probe(format!(
                "probe {} reads layer {l}, but the store holds layers {:?}; extract with \
                 `--layers {l}`",
                self.dir_text(),
                meta.layers,
            )));
        }
        if meta.pooling != c.pooling {
            return Err(Error::Probe(format!(
                "probe {} was trained on {:?}-pooled activations, the store is {:?}-pooled; \
                 extract with `--pooling {}`",
                self.dir_text(),
                c.pooling,
                meta.pooling,
                format!("{:?}", c.pooling).to_lowercase()
            )));
        }
        if meta.chat_template != c.use_chat_template {
            tracing::warn!(
                "probe {} was trained with use_chat_template = {}, the store has {}; scores \
                 may not be comparable",
                self.dir_text(),
                c.use_chat_template,
                meta.chat_template
            );
        }
        Ok(())
    }

    fn dir_text(&self) -> String {
        self.dir
            .as_ref()
            .map_or("(in memory)".into(), |d| d.display().to_string())
    }

    /// `sigmoid(w . ((h - mean) / std) + b)`, as one dot product with folded weights.
    ///
    /// # Panics
    /// If `hidden.len() != hidden_size` (use [`Probe::check_model`] when loading).
    pub fn score(&self, hidden: &[f32]) -> f32 {
        self.scorer.score(hidden)
    }

    /// Scores every row of `x` (`[rows, hidden_size]`), bit-identical to [`Probe::score`].
    pub fn score_batch(&self, x: ArrayView2<'_, f32>) -> Vec<f32> {
        self.scorer.score_rows(x, None)
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }
    /// The config, to change before [`Probe::write`] (e.g. stream-calibrated thresholds).
    pub fn config_mut(&mut self) -> &mut ProbeConfig {
        &mut self.config
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
    pub fn threshold(&self) -> f32 {
        self.config.threshold
    }
    pub fn pause_threshold(&self) -> f32 {
        self.config.pause_threshold
    }
    pub fn probe_every_n_tokens(&self) -> usize {
        self.config.probe_every_n_tokens
    }
    pub fn smoothing_window(&self) -> usize {
        self.config.smoothing_window
    }
    pub fn layer_index(&self) -> usize {
        self.config.layer_index
    }
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }
    pub fn model_hash(&self) -> &str {
        &self.config.model_hash
    }
}

/// sha256 of the config fields that say what the weights mean (model, layer, size, pooling,
/// template). Thresholds and cadence stay out: they are the guard's settings, tuned by hand.
fn identity_sha256(c: &ProbeConfig) -> String {
    let identity = serde_json::json!({
        "model_hash": c.model_hash,
        "manifest_sha256": c.manifest_sha256,
        "layer": c.layer,
        "layer_index": c.layer_index,
        "hidden_size": c.hidden_size,
        "pooling": c.pooling,
        "use_chat_template": c.use_chat_template,
        "feature_layers": c.feature_layers,
    });
    crate::fsutil::sha256_bytes(identity.to_string().as_bytes())
}

/// What `probe.safetensors` recorded at train time (fields absent in older probes).
#[derive(serde::Deserialize)]
struct TensorsNote {
    layer_index: Option<usize>,
    identity_sha256: Option<String>,
    data_sha256: Option<String>,
}

/// Checks `config.json` and `probe.safetensors` against the record written with them.
fn check_integrity(
    config: &ProbeConfig,
    file: &TensorFile,
    cfg_path: &Path,
    path: &Path,
) -> Result<()> {
    let Some(note) = file.metadata() else {
        return Ok(());
    };
    let note: TensorsNote = serde_json::from_str(&note).map_err(|e| {
        Error::Probe(format!(
            "{}: unreadable metadata ({e}); retrain the probe",
            path.display()
        ))
    })?;
    let edited = |what: &str| {
        Error::Probe(format!(
            "{} does not match {}: {what} changed since training; restore the probe's files or \
             retrain it",
            cfg_path.display(),
            path.display()
        ))
    };
    if note.layer_index.is_some_and(|l| l != config.layer_index) {
        return Err(edited("layer_index"));
    }
    if note
        .identity_sha256
        .is_some_and(|h| h != identity_sha256(config))
    {
        return Err(edited(
            "its model, layer, layer_index, hidden_size, pooling or use_chat_template",
        ));
    }
    if note.data_sha256.is_some_and(|h| h != file.data_sha256()) {
        return Err(Error::Probe(format!(
            "{}: the weights changed since training (sha256 differs); restore the file or \
             retrain the probe",
            path.display()
        )));
    }
    Ok(())
}

/// A probe's tensors file that does not parse or lacks a tensor, reported as the probe's.
fn damaged_tensors(path: &Path, e: Error) -> Error {
    let why = match e {
        Error::Store(m) => m,
        Error::Safetensors { source, .. } => format!("{}: {source}", path.display()),
        other => other.to_string(),
    };
    Error::Probe(format!(
        "{why}; {} is damaged or not a probe's tensors file: retrain the probe (or restore it)",
        path.display()
    ))
}

/// The guard settings of `config.json` must be usable; a bad one is reported as that field of
/// that file (not as the command-line flag that could override it).
fn check_guard_fields(c: &ProbeConfig, path: &Path) -> Result<()> {
    let field = |name: &str, why: String| {
        Err(Error::Probe(format!(
            "{}: field `{name}`: {why}; fix it or retrain the probe",
            path.display()
        )))
    };
    for (name, v) in [
        ("threshold", c.threshold),
        ("pause_threshold", c.pause_threshold),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return field(name, format!("must be in [0, 1], got {v}"));
        }
    }
    if c.probe_every_n_tokens == 0 {
        return field("probe_every_n_tokens", "must be >= 1".into());
    }
    if c.smoothing_window == 0 {
        return field("smoothing_window", "must be >= 1 (1 = no smoothing)".into());
    }
    Ok(())
}

fn vector<'a>(name: &str, data: &'a [f32]) -> F32Tensor<'a> {
    F32Tensor {
        name: name.into(),
        shape: vec![data.len()],
        data,
    }
}

/// Writes pretty JSON plus a newline, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Probe(format!("{}: {e}", path.display())))?;
    bytes.push(b'\n');
    write_bytes_atomic(path, &bytes)
}
