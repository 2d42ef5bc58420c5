//! Cutting a cache to fewer rows or positions, for the rare events that need it: requests that
//! leave a running batch and rewinds. Values in device memory make a round trip through the
//! host here; the decode loop never comes here.

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

/// One `[batch, heads, len, head_dim]` value cut to `rows` x `cols`, in the memory it was in.
fn select_value(value: DynValue, rows: &[usize], cols: Range<usize>) -> Result<DynValue> {
    let rt = |e: ort::Error| Error::ort("cutting the KV cache")(e);
    let tensor = value.downcast::<DynTensorValueType>().map_err(rt)?;
    let (device, device_id, on_host) = {
        let memory = tensor.memory_info();
        (
            AllocationDevice::new(memory.allocation_device().as_str()),
            memory.device_id(),
            memory.is_cpu_accessible(),
        )
    };
    let host = if on_host {
        tensor
    } else {
        tensor.to(AllocationDevice::CPU, 0).map_err(rt)?
    };
    let cut = match host.dtype().tensor_type() {
        Some(TensorElementType::Float32) => cut_rows::<f32>(&host, rows, &cols)?,
        Some(TensorElementType::Float16) => cut_rows::<half::f16>(&host, rows, &cols)?,
        other => {
            return Err(Error::Runtime(format!(
                "KV cache: unexpected element type {other:?}"
            )))
        }
    };
    let cut = if on_host {
        cut
    } else {
        cut.to(device, device_id).map_err(rt)?
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
