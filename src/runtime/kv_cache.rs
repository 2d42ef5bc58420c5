//! The KV cache as owned ONNX values, one key/value pair per manifest KV entry (Gemma 4 entries
//! differ in heads and head_dim; shared-KV layers have none). A step's `present.*` outputs become
//! the next step's `past_key_values.*` inputs by move: the cache is never copied on the host.
//! Only [`KvCache::select`] (rows leaving a batch, a rewind; never a decode step) copies, in
//! [`reshape`].

mod reshape;

use crate::error::{Error, Result};
use crate::runtime::manifest::Manifest;
use ort::memory::Allocator;
use ort::value::{DynTensor, DynValue, TensorElementType};

/// Past keys and values for every KV entry, `[batch, heads, past_len, head_dim]` each.
pub struct KvCache {
    values: Vec<(DynValue, DynValue)>,
    batch: usize,
    past_len: usize,
}

impl KvCache {
    /// A cache of `past_len = 0` in the graph's dtype, allocated where the session allocates.
    pub fn empty(manifest: &Manifest, batch: usize, allocator: &Allocator) -> Result<Self> {
        let dtype = if manifest.is_fp16() {
            TensorElementType::Float16
        } else {
            TensorElementType::Float32
        };
        let mut values = Vec::with_capacity(manifest.kv_cache.len());
        for kv in &manifest.kv_cache {
            let shape = [batch as i64, kv.num_heads as i64, 0, kv.head_dim as i64];
            let make = || {
                DynTensor::new(allocator, dtype, shape)
                    .map(|t| t.into_dyn())
                    .map_err(Error::ort(format!("cannot allocate {}", kv.past_key)))
            };
            values.push((make()?, make()?));
        }
        Ok(Self {
            values,
            batch,
            past_len: 0,
        })
    }

    /// Wraps `present.*` outputs; their shapes give batch and length.
    pub fn from_values(values: Vec<(DynValue, DynValue)>) -> Result<Self> {
        let (batch, past_len) = match values.first() {
            Some((k, _)) => {
                let shape = k
                    .dtype()
                    .tensor_shape()
                    .ok_or_else(|| Error::Runtime("present key is not a tensor".into()))?;
                if shape.len() != 4 {
                    return Err(Error::Runtime(format!(
                        "present key has shape {shape:?}, expected [batch, heads, len, head_dim]"
                    )));
                }
                (shape[0] as usize, shape[2] as usize)
            }
            None => (0, 0),
        };
        Ok(Self {
            values,
            batch,
            past_len,
        })
    }

    /// Number of cached positions.
    pub fn past_len(&self) -> usize {
        self.past_len
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of key/value pairs.
    pub fn entries(&self) -> usize {
        self.values.len()
    }

    /// The keys and values, in manifest order (key, value, key, value, ...), for inspection
    /// (shape, dtype, where they live).
    pub fn values(&self) -> impl Iterator<Item = &DynValue> {
        self.values.iter().flat_map(|(k, v)| [k, v])
    }

    /// Gives the values up, to be fed as the next call's past inputs.
    pub fn into_values(self) -> Vec<(DynValue, DynValue)> {
        self.values
    }
}
