//! Decode steps through ONNX Runtime's IoBinding: `present.*` outputs are bound to the memory of
//! the device that runs the graph (CUDA memory under CUDA/TensorRT, host memory on CPU) and fed
//! back as the next step's `past_key_values.*` by handle, so the KV cache never crosses to the
//! host between steps; only logits and the requested hidden states are bound to host memory.
//!
//! Outputs are re-bound every step: a bound output that already holds a tensor would be reused
//! by ONNX Runtime, and the cache grows by one position per step, so its shape never matches.

use super::{take_outputs, token_inputs, Decoder, Outputs, Want};
use crate::error::{Error, Result};
use crate::runtime::inputs::BatchInputs;
use crate::runtime::kv_cache::KvCache;
use crate::runtime::pool::DevicePool;
use crate::runtime::Device;
use ndarray::{Array2, Array3};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::DynValue;

/// The binding of one session and the two memories it binds outputs to.
pub(super) struct Bound {
    io: IoBinding,
    /// Where `present.*` stays: the device that runs the graph.
    kv: MemoryInfo<'static>,
    /// Where logits and hidden states go: host memory, readable by [`super::f32_view`].
    host: MemoryInfo<'static>,
}

/// The memory a provider computes in (`device_id` is the GPU ordinal).
pub fn device_memory(provider: Device, device_id: i32) -> Result<MemoryInfo<'static>> {
    let device = match provider {
        Device::Cpu => AllocationDevice::CPU,
        Device::Cuda | Device::TensorRt => AllocationDevice::CUDA,
    };
    let id = if provider == Device::Cpu {
        0
    } else {
        device_id
    };
    MemoryInfo::new(device, id, AllocatorType::Device, MemoryType::Default)
        .map_err(Error::ort(format!("cannot describe {provider:?} memory")))
}

impl Bound {
    fn new(session: &Session, provider: Device, device_id: i32) -> Result<Self> {
        let io = session
            .create_binding()
            .map_err(Error::ort("cannot create an IoBinding"))?;
        Ok(Self {
            io,
            kv: device_memory(provider, device_id)?,
            host: device_memory(Device::Cpu, 0)?,
        })
    }
}

impl Decoder {
    /// The memory `present.*` outputs live in under IoBinding.
    pub fn kv_memory(&self) -> Result<MemoryInfo<'static>> {
        device_memory(self.provider, self.runtime.device_id)
    }

    /// Like [`Decoder::run`], through IoBinding: `past` (moved in) is bound as-is, `present.*`
    /// stay in device memory, logits and hidden states come back to the host.
    pub fn run_bound(
        &mut self,
        inputs: BatchInputs,
        past: KvCache,
        want: &Want,
    ) -> Result<Outputs> {
        self.run_bound_to(inputs, past, want, false)
    }

    /// The hidden states `layers` of a prefill from an empty cache, left in device memory (for
    /// the device pooling graph); no logits, no cache.
    pub fn hidden_on_device(
        &mut self,
        inputs: BatchInputs,
        layers: &[usize],
    ) -> Result<Vec<DynValue>> {
        let batch = inputs.input_ids.nrows();
        let want = Want {
            logits: false,
            hidden: layers.to_vec(),
            present: false,
        };
        let past = self.empty_cache(batch)?;
        Ok(self.run_bound_to(inputs, past, &want, true)?.hidden)
    }

    /// Runs `inputs` and pools the hidden states `layers` on the device (the pooling graph):
    /// `select` `[rows, seq, 1]` marks the positions of each row, `scale` `[rows, 1]` is 1 / their
    /// count. Returns one `[rows, hidden]` matrix per layer; only these cross to the host.
    pub fn pooled_on_device(
        &mut self,
        inputs: BatchInputs,
        layers: &[usize],
        select: Array3<bool>,
        scale: Array2<f32>,
    ) -> Result<Vec<Array2<f32>>> {
        let hidden = self.hidden_on_device(inputs, layers)?;
        let dtype = match hidden.first().and_then(|v| v.dtype().tensor_type()) {
            Some(t) => t,
            None => return Ok(Vec::new()),
        };
        if !self
            .pool
            .as_ref()
            .is_some_and(|p| p.fits(layers.len(), dtype))
        {
            let width = self.manifest.hidden_size;
            self.pool = Some(DevicePool::new(&self.runtime, layers.len(), dtype, width)?);
        }
        let pool = self.pool.as_mut().expect("built above");
        pool.pool(&hidden, select, scale)
    }

    /// The bound run; `hidden_on_device` binds hidden states to device memory instead of host.
    fn run_bound_to(
        &mut self,
        inputs: BatchInputs,
        past: KvCache,
        want: &Want,
        hidden_on_device: bool,
    ) -> Result<Outputs> {
        self.check_want(want)?;
        if self.binding.is_none() {
            self.binding = Some(Bound::new(
                &self.session,
                self.provider,
                self.runtime.device_id,
            )?);
        }
        let Decoder {
            session,
            manifest: m,
            binding,
            ..
        } = self;
        let b = binding.as_mut().expect("created above");
        let bind = |e: ort::Error| Error::ort("IoBinding")(e);
        for (name, value) in token_inputs(m, inputs)? {
            b.io.bind_input(name, &value).map_err(bind)?;
        }
        // The binding holds each past value (a shared handle) until it is cleared below.
        for (kv, (k, v)) in m.kv_cache.iter().zip(past.into_values()) {
            b.io.bind_input(kv.past_key.as_str(), &k).map_err(bind)?;
            b.io.bind_input(kv.past_value.as_str(), &v).map_err(bind)?;
        }
        if want.logits {
            b.io.bind_output_to_device(m.logits.name.as_str(), &b.host)
                .map_err(bind)?;
        }
        let hidden_memory = if hidden_on_device { &b.kv } else { &b.host };
        for &h in &want.hidden {
            b.io.bind_output_to_device(m.hidden_output(h)?, hidden_memory)
                .map_err(bind)?;
        }
        if want.present {
            for kv in &m.kv_cache {
                b.io.bind_output_to_device(kv.present_key.as_str(), &b.kv)
                    .map_err(bind)?;
                b.io.bind_output_to_device(kv.present_value.as_str(), &b.kv)
                    .map_err(bind)?;
            }
        }
        // Host inputs are copied to the device when bound; wait for those copies.
        b.io.synchronize_inputs().map_err(bind)?;
        let result = session
            .run_binding(&b.io)
            .map_err(Error::ort("graph run failed"))
            .and_then(|mut out| take_outputs(m, want, |name| out.remove(name)));
        // Release the past cache and let the next step bind fresh outputs.
        b.io.clear();
        result
    }
}
