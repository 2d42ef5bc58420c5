//! Several activation stores read as one: the shards of a sharded extraction (`extract --shard
//! K/N`) or any compatible stores. Checks that they come from the same model, layers, pooling and
//! chat-template setting, that no shard is missing or repeated, and that no row appears twice.

use crate::error::{Error, Result};
use crate::store::{ActivationStore, RowMeta, StoreMeta};
use ndarray::{concatenate, Array2, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Compatible stores, concatenated in the order given (shards sorted by index).
#[derive(Debug)]
pub struct ActivationSet {
    stores: Vec<ActivationStore>,
    rows: Vec<RowMeta>,
}

/// Expands each path: a store directory is itself; a directory holding stores (and no
/// `meta.json`) stands for its store subdirectories, sorted by name.
pub fn expand_store_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.join("meta.json").is_file() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| {
            Error::Store(format!(
                "{}: not an activation store or a directory of stores ({e})",
                p.display()
            ))
        })?;
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join("meta.json").is_file())
            .collect();
        if subs.is_empty() {
            return Err(Error::Store(format!(
                "{} holds no activation store (no meta.json in it or its subdirectories)",
                p.display()
            )));
        }
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

impl ActivationSet {
    /// Opens and checks the stores named by `paths` (see [`expand_store_paths`]).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let dirs = expand_store_paths(paths)?;
        if dirs.is_empty() {
            return Err(Error::Store(
                "no activation store given: pass --activations DIR (made by `extract`)".into(),
            ));
        }
        let mut stores = dirs
            .iter()
            .map(|d| ActivationStore::open(d))
            .collect::<Result<Vec<_>>>()?;
        check_compatible(&stores)?;
        check_shards(&mut stores)?;
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        for s in &stores {
            for r in s.rows() {
                if let Some(other) = seen.insert(r.id.as_str(), s.dir()) {
                    return Err(Error::Store(format!(
                        "row `{}` appears in both {} and {}; these stores overlap \
                         (the same shard twice, or the same data extracted twice)",
                        r.id,
                        other.display(),
                        s.dir().display()
                    )));
                }
            }
        }
        let rows = stores.iter().flat_map(|s| s.rows().to_vec()).collect();
        Ok(Self { stores, rows })
    }

    /// The first store's metadata (all agree on model, layers, pooling, template).
    pub fn meta(&self) -> &StoreMeta {
        self.stores[0].meta()
    }

    pub fn stores(&self) -> &[ActivationStore] {
        &self.stores
    }

    pub fn rows(&self) -> &[RowMeta] {
        &self.rows
    }

    /// The `[states, hidden]` matrix of `layer` over every store, in row order (one state per
    /// row, or each row's positions in `tokens` stores).
    pub fn layer_matrix(&self, layer: usize) -> Result<Array2<f32>> {
        self.concat(|s| s.layer_matrix(layer))
    }

    /// The `[rows, hidden]` response means of `layer` (`tokens` stores).
    pub fn mean_matrix(&self, layer: usize) -> Result<Array2<f32>> {
        self.concat(|s| s.mean_matrix(layer))
    }

    /// The states of `layers` side by side (`[states, layers x hidden]`), concatenated per
    /// state as a probe on several layers reads them.
    pub fn layers_matrix(&self, layers: &[usize]) -> Result<Array2<f32>> {
        side_by_side(layers, |l| self.layer_matrix(l))
    }

    /// The response means of `layers` side by side (`[rows, layers x hidden]`).
    pub fn means_matrix(&self, layers: &[usize]) -> Result<Array2<f32>> {
        side_by_side(layers, |l| self.mean_matrix(l))
    }

    fn concat(
        &self,
        part: impl Fn(&ActivationStore) -> Result<Array2<f32>>,
    ) -> Result<Array2<f32>> {
        let parts = self.stores.iter().map(part).collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = parts.iter().map(|m| m.view()).collect();
        concatenate(Axis(0), &views).map_err(|e| Error::Store(format!("concatenating stores: {e}")))
    }
}

fn side_by_side(
    layers: &[usize],
    matrix: impl Fn(usize) -> Result<Array2<f32>>,
) -> Result<Array2<f32>> {
    if let [one] = layers {
        return matrix(*one);
    }
    let parts = layers
        .iter()
        .map(|&l| matrix(l))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = parts.iter().map(|m| m.view()).collect();
    concatenate(Axis(1), &views).map_err(|e| Error::Store(format!("concatenating layers: {e}")))
}

fn check_compatible(stores: &[ActivationStore]) -> Result<()> {
    let first = stores[0].meta();
    for s in &stores[1..] {
        let m = s.meta();
        let mut diffs = Vec::new();
        if m.model_hash != first.model_hash {
            diffs.push(format!(
                "model_hash {} vs {}",
                m.model_hash, first.model_hash
            ));
        }
        if m.layers != first.layers {
            diffs.push(format!("layers {:?} vs {:?}", m.layers, first.layers));
        }
        if m.pooling != first.pooling {
            diffs.push(format!("pooling {:?} vs {:?}", m.pooling, first.pooling));
        }
        if m.chat_template != first.chat_template {
            diffs.push(format!(
                "chat_template {} vs {}",
                m.chat_template, first.chat_template
            ));
        }
        if m.hidden_size != first.hidden_size {
            diffs.push(format!(
                "hidden_size {} vs {}",
                m.hidden_size, first.hidden_size
            ));
        }
        if !diffs.is_empty() {
            return Err(Error::Store(format!(
                "{} does not match {}: {}",
                s.dir().display(),
                stores[0].dir().display(),
                diffs.join("; ")
            )));
        }
    }
    Ok(())
}

/// Sharded stores must be all N shards of one run, each once; they are sorted by index.
fn check_shards(stores: &mut [ActivationStore]) -> Result<()> {
    let sharded: Vec<bool> = stores.iter().map(|s| s.meta().shard.is_some()).collect();
    if !sharded.iter().any(|&b| b) {
        return Ok(());
    }
    if let Some(i) = sharded.iter().position(|&b| !b) {
        return Err(Error::Store(format!(
            "{} is not a shard, but other stores given are shards of a sharded run",
            stores[i].dir().display()
        )));
    }
    stores.sort_by_key(|s| s.meta().shard.map(|x| x.index));
    let count = stores[0].meta().shard.unwrap().count;
    let mut by_index: Vec<Vec<&Path>> = vec![Vec::new(); count];
    for s in stores.iter() {
        let sh = s.meta().shard.unwrap();
        if sh.count != count || sh.index >= count {
            return Err(Error::Store(format!(
                "{} is shard {}/{}, but another store is a shard of {count}",
                s.dir().display(),
                sh.index,
                sh.count
            )));
        }
        by_index[sh.index].push(s.dir());
    }
    for (i, dirs) in by_index.iter().enumerate() {
        match dirs.len() {
            1 => {}
            0 => {
                return Err(Error::Store(format!(
                "shard {i}/{count} is missing: run `extract --shard {i}/{count}` (same arguments) \
                     and pass its store too"
            )))
            }
            _ => {
                let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                return Err(Error::Store(format!(
                    "shard {i}/{count} is given more than once: {}",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(())
}

impl ActivationSet {
    /// Writes every row into one new store at `out` (shards of `rows_per_shard` rows), recording
    /// the source stores in its `args`.
    pub fn merge_into(&self, out: &Path, rows_per_shard: usize) -> Result<StoreMeta> {
        if out.join("meta.json").exists() {
            return Err(Error::Store(format!(
                "{} already holds a store; merge into a new directory",
                out.display()
            )));
        }
        let first = self.meta();
        let sources: Vec<String> = self
            .stores
            .iter()
            .map(|s| s.dir().display().to_string())
            .collect();
        let meta = StoreMeta {
            shard: None,
            rows_per_shard,
            args: serde_json::json!({ "merged_from": sources, "source_args": first.args }),
            planned_rows: self.rows.len(),
            complete: false,
            row_count: 0,
            truncated: self.stores.iter().map(|s| s.meta().truncated).sum(),
            ..first.clone()
        };
        let matrices = first
            .layers
            .iter()
            .map(|&l| self.layer_matrix(l))
            .collect::<Result<Vec<_>>>()?;
        let means = match first.per_token() {
            true => first
                .layers
                .iter()
                .map(|&l| self.mean_matrix(l))
                .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        let mut writer = crate::store::StoreWriter::create_or_resume(out, meta)?;
        let per = rows_per_shard.max(1);
        let mut state = 0;
        for start in (0..self.rows.len()).step_by(per) {
            let end = (start + per).min(self.rows.len());
            let states = crate::store::state_count(&self.rows[start..end]);
            let cut = |ms: &[Array2<f32>], range: std::ops::Range<usize>| -> Vec<Array2<f32>> {
                ms.iter()
                    .map(|m| m.slice(ndarray::s![range.clone(), ..]).to_owned())
                    .collect()
            };
            writer.write_shard(
                &self.rows[start..end],
                &cut(&matrices, state..state + states),
                &cut(&means, start..end),
            )?;
            state += states;
        }
        let truncated = writer.meta().truncated;
        writer.finish(truncated)
    }
}
