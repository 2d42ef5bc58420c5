//! Reading a complete activation store: rows from the shard row files, one layer's matrix at a
//! time from the shard tensors.

use super::writer::{
    layer_tensor, mean_tensor, read_meta, read_rows, shard_stem, state_count, RowMeta, StoreMeta,
    STORE_FORMAT, STORE_VERSION,
};
use crate::error::{Error, Result};
use crate::store::tensors::TensorFile;
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// A complete store opened for reading.
#[derive(Debug)]
pub struct ActivationStore {
    dir: PathBuf,
    meta: StoreMeta,
    rows: Vec<RowMeta>,
    shards: usize,
}

impl ActivationStore {
    /// Opens a complete store.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("meta.json").is_file() {
            return Err(Error::Store(format!(
                "{} is not an activation store (no meta.json); create one with `open-constitution extract`",
                dir.display()
            )));
        }
        let meta = read_meta(dir)?;
        if meta.format != STORE_FORMAT || meta.version != STORE_VERSION {
            return Err(Error::Store(format!(
                "{}: format {} v{} is not {STORE_FORMAT} v{STORE_VERSION}",
                dir.display(),
                meta.format,
                meta.version
            )));
        }
        if !meta.complete {
            return Err(Error::Store(format!(
                "{} is incomplete (an extraction was interrupted); rerun the same extract \
                 command to resume it",
                dir.display()
            )));
        }
        let mut rows = Vec::new();
        let mut shards = 0;
        while dir
            .join(format!("{}.safetensors", shard_stem(shards)))
            .exists()
        {
            rows.extend(read_rows(
                &dir.join(format!("{}.rows.jsonl", shard_stem(shards))),
            )?);
            shards += 1;
        }
        if rows.len() != meta.row_count {
            return Err(Error::Store(format!(
                "{}: meta.json says {} rows, shards hold {}; the store is damaged: re-extract it",
                dir.display(),
                meta.row_count,
                rows.len()
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            rows,
            shards,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    pub fn rows(&self) -> &[RowMeta] {
        &self.rows
    }

    /// The `[states, hidden]` matrix of absolute hidden-state index `layer`: one row per stored
    /// row, or per stored state of a `tokens` store (rows' `positions`, in row order).
    pub fn layer_matrix(&self, layer: usize) -> Result<Array2<f32>> {
        self.read_matrix(layer, layer_tensor(layer), state_count(&self.rows))
    }

    /// The `[rows, hidden]` response means of `layer` in a `tokens` store.
    pub fn mean_matrix(&self, layer: usize) -> Result<Array2<f32>> {
        if !self.meta.per_token() {
            return Err(Error::Store(format!(
                "{} has {:?} pooling, which stores no response means; extract with \
                 `--pooling tokens` (or `--pooling mean`)",
                self.dir.display(),
                self.meta.pooling
            )));
        }
        self.read_matrix(layer, mean_tensor(layer), self.rows.len())
    }

    fn read_matrix(&self, layer: usize, name: String, n: usize) -> Result<Array2<f32>> {
        if !self.meta.layers.contains(&layer) {
            return Err(Error::Store(format!(
                "{} has no layer {layer}; it stores layers {:?}",
                self.dir.display(),
                self.meta.layers
            )));
        }
        let hidden = self.meta.hidden_size;
        let mut data = Vec::with_capacity(n * hidden);
        for s in 0..self.shards {
            let path = self.dir.join(format!("{}.safetensors", shard_stem(s)));
            let t = TensorFile::open(&path)?.f32(&name)?;
            if t.shape.len() != 2 || t.shape[1] != hidden {
                return Err(Error::Store(format!(
                    "{}: tensor {name} has shape {:?}, expected [n, {hidden}]",
                    path.display(),
                    t.shape
                )));
            }
            data.extend_from_slice(&t.data);
        }
        Array2::from_shape_vec((n, hidden), data).map_err(|e| {
            Error::Store(format!(
                "{}: shard rows and tensors disagree ({e})",
                self.dir.display()
            ))
        })
    }
}
