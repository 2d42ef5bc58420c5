//! Writing the activation store: a directory with `meta.json`, shards `shard-NNNNN.safetensors` (one
//! `[n, hidden]` float32 tensor `layer.{j}` per stored layer) and `shard-NNNNN.rows.jsonl` (one
//! row record per line), plus `rows.jsonl` with every row once the store is complete.
//!
//! Every file is written atomically; a shard's tensors file is written last and is its commit
//! point, so a killed run resumes after the last complete shard and loses nothing.

use crate::data::Split;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{sha256_file, write_atomic, write_bytes_atomic};
use crate::store::layout::{self, Owned, WriterLock};
use crate::store::tensors::{data_sha256, write_f32, F32Tensor, TensorFile};

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub const STORE_FORMAT: &str = "open-constitution/activation-store";
pub const STORE_VERSION: u32 = 1;

/// How a row's hidden states are reduced to one vector per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last real token of the exchange.
    Last,
    /// The mean over the response tokens.
    Mean,
    /// One response token per exchange, chosen by a hash of the row id: the kind of state the
    /// guard scores mid-generation (the newest token given the text so far).
    Token,
    /// Many response tokens per exchange (every one, or at most `max_states`: the first half of
    /// them and an even sample of the rest ending at the last), each with its position, plus the mean over
    /// the response (`mean.{j}`): what a streaming probe trains on and a cascade's second stage
    /// scores. `layer.{j}` then has one row per stored state, not per exchange.
    Tokens,
}

/// Which of N shards a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

/// `meta.json` of a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreMeta {
    pub format: String,
    pub version: u32,
    pub model_hash: String,
    pub manifest_sha256: String,
    /// The model folder or hub id the rows were extracted from.
    pub model: String,
    pub num_layers: usize,
    /// Absolute hidden-state indices stored, in order.
    pub layers: Vec<usize>,
    pub hidden_size: usize,
    pub pooling: Pooling,
    pub dtype: String,
    pub chat_template: bool,
    pub shard: Option<ShardSpec>,
    pub rows_per_shard: usize,
    /// Every argument that determines the content (data file hash, sampling, truncation...).
    pub args: serde_json::Value,
    /// Rows the run will write in total (after sampling and sharding).
    pub planned_rows: usize,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub row_count: usize,
    #[serde(default)]
    pub truncated: usize,
    /// `tokens` pooling: the most states stored per exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_states: Option<usize>,
}

impl StoreMeta {
    /// Whether shards hold per-token states (`layer.{j}` ragged) and response means.
    pub fn per_token(&self) -> bool {
        self.pooling == Pooling::Tokens
    }
}

impl StoreMeta {
    /// The fields that must agree for a rerun to resume into an existing store.
    fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("meta serializes");
        let obj = v.as_object_mut().expect("object");
        for k in ["complete", "row_count", "truncated"] {
            obj.remove(k);
        }
        // `models/x`, `./models/x` and `/abs/models/x` are one model folder (the hashes compared
        // alongside say it is the same model; the spelling must not block a resume).
        if Path::new(&self.model).exists() {
            let key = crate::fsutil::path_key(Path::new(&self.model));
            obj.insert("model".into(), key.display().to_string().into());
        }
        v
    }

    fn differences(&self, other: &StoreMeta) -> Vec<String> {
        let (a, b) = (self.identity(), other.identity());
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        let mut diffs = Vec::new();
        for (k, va) in a {
            let vb = &b[k];
            if k == "args" {
                for (ak, av) in va.as_object().into_iter().flatten() {
                    let bv = vb.get(ak).unwrap_or(&serde_json::Value::Null);
                    if av != bv {
                        diffs.push(format!("{ak}: {av} (existing) vs {bv} (now)"));
                    }
                }
            } else if va != vb {
                diffs.push(format!("{k}: {va} (existing) vs {vb} (now)"));
            }
        }
        diffs
    }
}

/// One stored row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowMeta {
    pub id: String,
    pub label: u8,
    /// The row's split as prepare-data assigned it (`train`, `validation`, `test` on disk).
    #[serde(default)]
    pub split: Option<Split>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// Tokens fed to the model for this row (after truncation).
    pub tokens: usize,
    /// Hash of the normalized prompt, for prompt-grouped splits when `split` is absent.
    pub prompt_hash: String,
    #[serde(default)]
    pub truncated: bool,
    /// `tokens` pooling: 0-based indices, among the response tokens, of the stored states (in
    /// order; the last response token always included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<u32>>,
    /// `tokens` pooling: how many response tokens the exchange has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_tokens: Option<usize>,
}

impl RowMeta {
    /// Stored states of this row: its positions in a `tokens` store, else one.
    pub fn states(&self) -> usize {
        self.positions.as_ref().map_or(1, Vec::len)
    }
}

/// Stored states of `rows` (the first dimension of their `layer.{j}` tensors).
pub fn state_count(rows: &[RowMeta]) -> usize {
    rows.iter().map(RowMeta::states).sum()
}

pub(super) fn shard_stem(index: usize) -> String {
    format!("shard-{index:05}")
}

pub(super) fn layer_tensor(layer: usize) -> String {
    format!("layer.{layer}")
}

/// The response-mean tensor of a `tokens` store.
pub(super) fn mean_tensor(layer: usize) -> String {
    format!("mean.{layer}")
}

pub(super) fn read_meta(dir: &Path) -> Result<StoreMeta> {
    let path = dir.join("meta.json");
    let bytes = std::fs::read(&path).at(&path)?;
    serde_json::from_slice(&bytes).map_err(Error::json(
        &path,
        "activation store metadata (delete the folder and rerun the extraction)",
    ))
}

fn write_meta(dir: &Path, meta: &StoreMeta) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(meta).expect("meta serializes");
    bytes.push(b'\n');
    write_bytes_atomic(&dir.join("meta.json"), &bytes)
}

pub(super) fn read_rows(path: &Path) -> Result<Vec<RowMeta>> {
    let file = std::fs::File::open(path).at(path)?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.at(path)?;
        let row = serde_json::from_str(&line)
            .map_err(|e| Error::data(path, i + 1, "row", format!("invalid row record: {e}")))?;
        rows.push(row);
    }
    Ok(rows)
}

fn write_rows(path: &Path, rows: &[RowMeta]) -> Result<()> {
    write_atomic(path, |w| {
        for r in rows {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// The metadata a shard's tensors file records at commit.
#[derive(Debug, Serialize, Deserialize)]
struct ShardNote {
    first_row: usize,
    rows: usize,
    /// sha256 of the shard's rows file (absent in stores written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows_sha256: Option<String>,
    /// sha256 of the tensors' data, in name order (see [`data_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_sha256: Option<String>,
}

/// Every tensor a shard holds, with its expected first dimension: `layer.{j}` has one row per
/// stored state, `mean.{j}` (tokens pooling) one per exchange.
fn shard_tensor_names(meta: &StoreMeta, states: usize, rows: usize) -> Vec<(String, usize)> {
    let mut names: Vec<(String, usize)> = meta
        .layers
        .iter()
        .map(|&l| (layer_tensor(l), states))
        .collect();
    if meta.per_token() {
        names.extend(meta.layers.iter().map(|&l| (mean_tensor(l), rows)));
    }
    names
}

/// Checks a committed shard against what its commit recorded: it parses, its rows file has the
/// rows and checksum recorded, every layer tensor is `[rows, hidden]`. Returns its row count.
fn verify_shard(
    meta: &StoreMeta,
    tensors: &Path,
    rows_path: &Path,
    first_row: usize,
) -> Result<usize> {
    let damaged = |why: String| {
        Error::Store(format!(
            "{} is damaged: {why}; delete it and {} (and any later shards) and rerun the same \
             command to extract them again",
            tensors.display(),
            rows_path.display()
        ))
    };
    let file = TensorFile::open(tensors).map_err(|e| damaged(e.to_string()))?;
    let row_metas = read_rows(rows_path).map_err(|e| damaged(e.to_string()))?;
    let rows = row_metas.len();
    let states = state_count(&row_metas);
    for (name, want) in shard_tensor_names(meta, states, rows) {
        let t = file.f32(&name).map_err(|e| damaged(e.to_string()))?;
        if t.shape != [want, meta.hidden_size] {
            return Err(damaged(format!(
                "tensor {name} has shape {:?}, but {} has {want} states of hidden size {}",
                t.shape,
                rows_path.display(),
                meta.hidden_size
            )));
        }
    }
    let Some(note) = file.metadata() else {
        return Err(damaged("no commit record in its metadata".into()));
    };
    let note: ShardNote = serde_json::from_str(&note)
        .map_err(|e| damaged(format!("unreadable commit record ({e})")))?;
    if note.rows != rows || note.first_row != first_row {
        return Err(damaged(format!(
            "committed rows {}..{}, its rows file holds {rows} rows from {first_row}",
            note.first_row,
            note.first_row + note.rows
        )));
    }
    if let Some(want) = &note.rows_sha256 {
        if sha256_file(rows_path)? != *want {
            return Err(damaged(format!(
                "{} changed since it was committed (sha256 differs)",
                rows_path.display()
            )));
        }
    }
    if let Some(want) = &note.data_sha256 {
        if file.data_sha256() != *want {
            return Err(damaged(
                "its tensor data changed since it was committed".into(),
            ));
        }
    }
    Ok(rows)
}

/// Writes a store shard by shard; reopening with equal metadata resumes.
pub struct StoreWriter {
    dir: PathBuf,
    meta: StoreMeta,
    shards_done: usize,
    rows_done: usize,
    /// Held while writing: another writer on the same directory is refused.
    _lock: WriterLock,
}

impl StoreWriter {
    /// Creates `dir` or resumes the store in it. A store made with other arguments is refused,
    /// listing what differs, and so is a non-empty folder that holds no store; leftovers of an
    /// interrupted shard are removed, and committed shards are verified before resuming after
    /// them. Holds `dir`'s writer lock until dropped: a second writer is refused.
    pub fn create_or_resume(dir: &Path, meta: StoreMeta) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Store(format!(
                "cannot create output directory {}: {e}",
                dir.display()
            ))
        })?;
        layout::check_not_foreign(dir)?;
        let lock = WriterLock::acquire(dir)?;
        let meta_path = dir.join("meta.json");
        if meta_path.exists() {
            let existing = read_meta(dir)?;
            if existing.format != STORE_FORMAT {
                return Err(Error::Store(format!(
                    "{} is not an activation store ({} has format `{}`): pass a new or empty \
                     folder as --out",
                    dir.display(),
                    meta_path.display(),
                    existing.format
                )));
            }
            let diffs = existing.differences(&meta);
            if !diffs.is_empty() {
                return Err(Error::Store(format!(
                    "{} holds a store made with other arguments; refusing to mix them \
                     (use another --out, or delete it to start over). Differences: {}",
                    dir.display(),
                    diffs.join("; ")
                )));
            }
        } else {
            write_meta(dir, &meta)?;
        }
        let (shards_done, rows_done) = Self::scan(dir, &meta)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            shards_done,
            rows_done,
            _lock: lock,
        })
    }

    /// Counts (and verifies) complete shards and removes files of an interrupted one: only
    /// names the store writes itself, never anything else in the folder.
    fn scan(dir: &Path, meta: &StoreMeta) -> Result<(usize, usize)> {
        let mut shards = 0;
        let mut rows = 0;
        loop {
            let stem = shard_stem(shards);
            let tensors = dir.join(format!("{stem}.safetensors"));
            let rows_path = dir.join(format!("{stem}.rows.jsonl"));
            if !tensors.exists() {
                break;
            }
            if !rows_path.exists() {
                return Err(Error::Store(format!(
                    "{} exists without {}; the store was modified by hand: delete the shard",
                    tensors.display(),
                    rows_path.display()
                )));
            }
            rows += verify_shard(meta, &tensors, &rows_path, rows)?;
            shards += 1;
        }
        for entry in std::fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let later_shard = matches!(layout::owned(&name), Some(Owned::Shard(n)) if n >= shards);
            if layout::owned_temp(&name) || later_shard {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok((shards, rows))
    }

    /// Rows already stored (a resumed run skips this many of its planned rows).
    pub fn rows_done(&self) -> usize {
        self.rows_done
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Writes one shard: `layers[k]` is the `[states, hidden]` matrix of `meta.layers[k]` (one
    /// state per row, or the rows' positions in a `tokens` store), and `means[k]` (`tokens`
    /// stores only, else empty) the `[rows, hidden]` response means.
    pub fn write_shard(
        &mut self,
        rows: &[RowMeta],
        layers: &[Array2<f32>],
        means: &[Array2<f32>],
    ) -> Result<()> {
        let want_means = if self.meta.per_token() {
            layers.len()
        } else {
            0
        };
        if layers.len() != self.meta.layers.len() || means.len() != want_means {
            return Err(Error::Store(format!(
                "shard has {} layer and {} mean matrices, store has {} layers (pooling {:?})",
                layers.len(),
                means.len(),
                self.meta.layers.len(),
                self.meta.pooling
            )));
        }
        let stem = shard_stem(self.shards_done);
        write_rows(&self.dir.join(format!("{stem}.rows.jsonl")), rows)?;
        let contiguous: Vec<Array2<f32>> = layers
            .iter()
            .chain(means)
            .map(|m| m.as_standard_layout().into_owned())
            .collect();
        let names = shard_tensor_names(&self.meta, state_count(rows), rows.len());
        let tensors: Vec<F32Tensor<'_>> = names
            .iter()
            .zip(&contiguous)
            .map(|((name, _), m)| F32Tensor {
                name: name.clone(),
                shape: vec![m.nrows(), m.ncols()],
                data: m.as_slice().expect("standard layout"),
            })
            .collect();
        for ((name, want), t) in names.iter().zip(&tensors) {
            if t.shape != [*want, self.meta.hidden_size] {
                return Err(Error::Store(format!(
                    "tensor {name} has shape {:?}, expected [{want}, {}]",
                    t.shape, self.meta.hidden_size
                )));
            }
        }
        let rows_path = self.dir.join(format!("{stem}.rows.jsonl"));
        // Checksums of both files, recorded in the commit point: resume verifies them.
        let note = ShardNote {
            first_row: self.rows_done,
            rows: rows.len(),
            rows_sha256: Some(sha256_file(&rows_path)?),
            data_sha256: Some(data_sha256(&tensors)),
        };
        let note = serde_json::to_string(&note).expect("note serializes");
        write_f32(
            &self.dir.join(format!("{stem}.safetensors")),
            &tensors,
            Some(note),
        )?;
        self.shards_done += 1;
        self.rows_done += rows.len();
        Ok(())
    }

    /// Marks the store complete: writes `rows.jsonl` and the final `meta.json`.
    pub fn finish(mut self, truncated: usize) -> Result<StoreMeta> {
        let mut rows = Vec::with_capacity(self.rows_done);
        for s in 0..self.shards_done {
            rows.extend(read_rows(
                &self.dir.join(format!("{}.rows.jsonl", shard_stem(s))),
            )?);
        }
        write_rows(&self.dir.join("rows.jsonl"), &rows)?;
        self.meta.complete = true;
        self.meta.row_count = rows.len();
        self.meta.truncated = truncated;
        write_meta(&self.dir, &self.meta)?;
        Ok(self.meta)
    }
}
