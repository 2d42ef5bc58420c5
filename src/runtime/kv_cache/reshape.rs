//! Cutting a cache to fewer rows or positions and joining two caches into one batch, for the
//! rare events that need it: requests that leave or join a running batch, and rewinds. Values in
//! device memory make a round trip through the host here; the decode loop never comes here.

use super::KvCache;
use crate::error::{Error, Result};
use ort::memory::AllocationDevice;
use ort::value::{DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType};
use std::ops::Range;

impl KvCache {
    /// Keeps batch rows `rows` (in that order) and cached positions `cols` of every entry. Values
    /// in device memory make a round trip through the host: this runs when a request leaves a
    /// batch or a batch rewinds, never per decode step.
    pub fn select(&mut self, rows: &[usize], cols: Range<usize>) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= self.batch) {
            return Err(Error::Runtime(format!(
                "KV cache: row {r} does not exist in a batch of {}",
                self.batch
            )));
        }
        if cols.start > cols.end || cols.end > self.past_len {
            return Err(Error::Runtime(format!(
                "KV cache: positions {cols:?} are outside the {} cached ones",
                self.past_len
            )));
        }
        let values = std::mem::take(&mut self.values);
        self.values = values
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    select_value(k, rows, cols.clone())?,
                    select_value(v, rows, cols.clone())?,
                ))
            })
            .collect::<Result<_>>()?;
        self.batch = rows.len();
        self.past_len = cols.len();
        Ok(())
    }
}

impl KvCache {
    /// Appends `other`'s rows after this cache's, both left-padded with zeros to the longer
    /// past length (the joined mask marks the padding, see `inputs::join_masks`). Runs when
    /// requests join a running batch, never per decode step; the result stays in the memory this
    /// cache was in.
    pub fn join(&mut self, other: KvCache) -> Result<()> {
        if self.values.len() != other.values.len() {
            return Err(Error::Runtime(format!(
                "KV cache: cannot join a cache of {} entries to one of {}",
                other.values.len(),
                self.values.len()
            )));
        }
        let len = self.past_len.max(other.past_len);
        let ours = std::mem::take(&mut self.values);
        self.values = ours
            .into_iter()
            .zip(other.values)
            .map(|((k, v), (k2, v2))| Ok((join_value(k, k2, len)?, join_value(v, v2, len)?)))
            .collect::<Result<_>>()?;
        self.batch += other.batch;
        self.past_len = len;
        Ok(())
    }
}

/// A value's host copy and where it lived.
struct OnHost {
    tensor: DynTensor,
    device: AllocationDevice<'static>,
    device_id: i32,
    on_host: bool,
}

fn to_host(value: DynValue) -> Result<OnHost> {
    let rt = |e: ort::Error| Error::ort("moving the KV cache")(e);
    let tensor = value.downcast::<DynTensorValueType>().map_err(rt)?;
    let (device, device_id, on_host) = {
        let memory = tensor.memory_info();
        (
            AllocationDevice::new(memory.allocation_device().as_str()),
            memory.device_id(),
            memory.is_cpu_accessible(),
        )
    };
    let tensor = if on_host {
        tensor
    } else {
        tensor.to(AllocationDevice::CPU, 0).map_err(rt)?
    };
    Ok(OnHost {
        tensor,
        device,
        device_id,
        on_host,
    })
}

/// `a` then `b` along the batch axis, each left-padded with zeros to `len` positions.
fn join_value(a: DynValue, b: DynValue, len: usize) -> Result<DynValue> {
    let (a, b) = (to_host(a)?, to_host(b)?);
    let joined = match a.tensor.dtype().tensor_type() {
        Some(TensorElementType::Float32) => stack_rows::<f32>(&a.tensor, &b.tensor, len)?,
        Some(TensorElementType::Float16) => stack_rows::<half::f16>(&a.tensor, &b.tensor, len)?,
        other => {
            return Err(Error::Runtime(format!(
                "KV cache: unexpected element type {other:?}"
            )))
        }
    };
    let joined = if a.on_host {
        joined
    } else {
        let rt = |e: ort::Error| Error::ort("moving the KV cache")(e);
        joined.to(a.device, a.device_id).map_err(rt)?
    };
    Ok(joined.into_dyn())
}

fn stack_rows<T>(a: &DynTensor, b: &DynTensor, len: usize) -> Result<DynTensor>
where
    T: ort::value::PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static,
{
    let rt = |e: ort::Error| Error::ort("joining KV caches")(e);
    let (sa, da) = a.try_extract_tensor::<T>().map_err(rt)?;
    let (sb, db) = b.try_extract_tensor::<T>().map_err(rt)?;
    let (&[ba, ha, la, dim], &[bb, hb, lb, dim_b]) = (sa.as_ref(), sb.as_ref()) else {
        return Err(Error::Runtime(format!(
            "KV cache values have shapes {sa:?} and {sb:?}, expected [batch, heads, len, head_dim]"
        )));
    };
    if ha != hb || dim != dim_b {
        return Err(Error::Runtime(format!(
            "KV cache: cannot join values of shapes {sa:?} and {sb:?} (heads and head_dim differ)"
        )));
    }
    let (heads, dim) = (ha as usize, dim as usize);
    let mut out = vec![T::default(); (ba + bb) as usize * heads * len * dim];
    let mut at = 0;
    for (data, rows, old) in [
        (da, ba as usize, la as usize),
        (db, bb as usize, lb as usize),
    ] {
        if old == 0 {
            at += rows * heads;
            continue;
        }
        for block in data.chunks_exact(old * dim).take(rows * heads) {
            let start = at * len * dim + (len - old) * dim;
            out[start..start + old * dim].copy_from_slice(block);
            at += 1;
        }
    }
    let shape = [(ba + bb) as usize, heads, len, dim];
    Ok(Tensor::from_array((shape, out)).map_err(rt)?.upcast())
}

/// One `[batch, heads, len, head_dim]` value cut to `rows` x `cols`, in the memory it was in.
fn select_value(value: DynValue, rows: &[usize], cols: Range<usize>) -> Result<DynValue> {
    let rt = |e: ort::Error| Error::ort("cutting the KV cache")(e);
    let host = to_host(value)?;
    let cut = match host.tensor.dtype().tensor_type() {
        Some(TensorElementType::Float32) => cut_rows::<f32>(&host.tensor, rows, &cols)?,
        Some(TensorElementType::Float16) => cut_rows::<half::f16>(&host.tensor, rows, &cols)?,
        other => {
            return Err(Error::Runtime(format!(
                "KV cache: unexpected element type {other:?}"
            )))
        }
    };
    let cut = if host.on_host {
        cut
    } else {
        cut.to(host.device, host.device_id).map_err(rt)?
    };
    Ok(cut.into_dyn())
}

fn cut_rows<T>(value: &DynTensor, rows: &[usize], cols: &Range<usize>) -> Result<DynTensor>
where
    T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static,
{
    let rt = |e: ort::Error| Error::ort("cutting the KV cache")(e);
    let (shape, data) = value.try_extract_tensor::<T>().map_err(rt)?;
    let &[_, heads, len, dim] = shape.as_ref() else {
        return Err(Error::Runtime(format!(
            "KV cache value has shape {shape:?}, expected [batch, heads, len, head_dim]"
        )));
    };
    let (heads, len, dim) = (heads as usize, len as usize, dim as usize);
    let mut out = Vec::with_capacity(rows.len() * heads * cols.len() * dim);
    for &r in rows {
        for h in 0..heads {
            let base = (r * heads + h) * len * dim;
            out.extend_from_slice(&data[base + cols.start * dim..base + cols.end * dim]);
        }
    }
    let shape = [rows.len(), heads, cols.len(), dim];
    Ok(Tensor::from_array((shape, out)).map_err(rt)?.upcast())
}
