//! One call of the exported decoder graph: inputs and outputs named by the manifest (checked
//! against the session at load), only the outputs a caller wants are computed, and the KV cache
//! moves from outputs back to inputs as owned ONNX values, never copied. [`Decoder::run_step`]
//! picks the plain run or the IoBinding run ([`Decoder::run_bound`], which keeps the cache in
//! device memory) as configured.

mod binding;

pub use binding::device_memory;

use crate::error::{Error, Result};
use crate::runtime::inputs::BatchInputs;
use crate::runtime::kv_cache::KvCache;
use crate::runtime::manifest::Manifest;
use crate::runtime::{Device, LoadedSession, RuntimeOptions};
use ort::session::{OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType};
use std::borrow::Cow;
use std::collections::HashSet;

/// Which outputs a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub logits: bool,
    /// Absolute hidden-state indices.
    pub hidden: Vec<usize>,
    pub present: bool,
}

/// Outputs of one call, as owned ONNX values.
pub struct Outputs {
    pub logits: Option<DynValue>,
    /// In the order of `Want::hidden`.
    pub hidden: Vec<DynValue>,
    pub present: Option<KvCache>,
}

/// The exported decoder graph behind one session.
pub struct Decoder {
    session: Session,
    manifest: Manifest,
    provider: Device,
    /// How sessions of this decoder are built (for the pooling graph).
    runtime: RuntimeOptions,
    run_options: Vec<(Want, RunOptions<ort::session::HasSelectedOutputs>)>,
    /// Whether [`Decoder::run_step`] goes through IoBinding.
    io_binding: bool,
    /// Created at the first bound run and reused.
    binding: Option<binding::Bound>,
    /// The pooling graph of [`Decoder::pooled_on_device`], built at its first use.
    pool: Option<crate::runtime::pool::DevicePool>,
    profiling: bool,
    /// Built from a graph pruned to some hidden states: no logits, no `present.*` outputs.
    extraction_only: bool,
}

impl Decoder {
    /// Wraps a session after checking its inputs and outputs against the manifest.
    pub fn new(loaded: LoadedSession, manifest: Manifest) -> Result<Self> {
        Self::build(loaded, manifest, false)
    }

    /// Wraps a session of a graph pruned to the hidden states `manifest` lists (see
    /// the graph pruning of extraction): it has no logits or `present.*` outputs, and a call that asks
    /// for them is an error.
    pub fn for_extraction(loaded: LoadedSession, manifest: Manifest) -> Result<Self> {
        Self::build(loaded, manifest, true)
    }

    fn build(loaded: LoadedSession, manifest: Manifest, extraction_only: bool) -> Result<Self> {
        validate_io(&loaded.session, &manifest, extraction_only)?;
        Ok(Self {
            session: loaded.session,
            manifest,
            provider: loaded.provider,
            runtime: loaded.resolved,
            run_options: Vec::new(),
            io_binding: loaded.io_binding,
            binding: None,
            pool: None,
            profiling: loaded.profiling,
            extraction_only,
        })
    }

    /// Whether the graph was pruned for extraction ([`Decoder::for_extraction`]).
    pub fn is_extraction_only(&self) -> bool {
        self.extraction_only
    }

    /// Whether decode steps ([`Decoder::run_step`]) use IoBinding.
    pub fn uses_io_binding(&self) -> bool {
        self.io_binding
    }

    /// Switches decode steps between IoBinding and plain runs (both give the same results).
    pub fn set_io_binding(&mut self, on: bool) {
        self.io_binding = on;
    }

    /// One decode (or prefill) step: IoBinding when enabled, else a plain run.
    pub fn run_step(&mut self, inputs: BatchInputs, past: KvCache, want: &Want) -> Result<Outputs> {
        if self.io_binding {
            self.run_bound(inputs, past, want)
        } else {
            self.run(inputs, past, want)
        }
    }

    /// Ends ONNX Runtime profiling and returns the profile file, if profiling is on.
    pub fn end_profiling(&mut self) -> Result<Option<std::path::PathBuf>> {
        if !self.profiling {
            return Ok(None);
        }
        self.profiling = false;
        let file = self
            .session
            .end_profiling()
            .map_err(Error::ort("cannot end profiling"))?;
        Ok(Some(file.into()))
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The provider that actually runs the graph.
    pub fn provider(&self) -> Device {
        self.provider
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A cache with no past tokens for `batch` rows.
    pub fn empty_cache(&self, batch: usize) -> Result<KvCache> {
        KvCache::empty(&self.manifest, batch, self.session.allocator())
    }

    /// A pruned graph has no logits or cache outputs to give.
    fn check_want(&self, want: &Want) -> Result<()> {
        if self.extraction_only && (want.logits || want.present) {
            return Err(Error::Runtime(
                "this decoder runs a graph pruned for extraction (hidden states only): it has no \
                 logits or KV cache outputs; load the model with Model::load to decode"
                    .into(),
            ));
        }
        Ok(())
    }

    fn options_for(&mut self, want: &Want) -> Result<usize> {
        if let Some(i) = self.run_options.iter().position(|(w, _)| w == want) {
            return Ok(i);
        }
        let m = &self.manifest;
        let mut sel = OutputSelector::no_default();
        if want.logits {
            sel = sel.with(m.logits.name.clone());
        }
        for &h in &want.hidden {
            sel = sel.with(m.hidden_output(h)?.to_string());
        }
        if want.present {
            for kv in &m.kv_cache {
                sel = sel
                    .with(kv.present_key.clone())
                    .with(kv.present_value.clone());
            }
        }
        let opts = RunOptions::new().map_err(Error::ort("cannot create run options"))?;
        self.run_options
            .push((want.clone(), opts.with_outputs(sel)));
        Ok(self.run_options.len() - 1)
    }

    /// Runs the graph on `inputs` with `past` (moved in; see [`KvCache`]). Every output comes
    /// back in host memory.
    pub fn run(&mut self, inputs: BatchInputs, past: KvCache, want: &Want) -> Result<Outputs> {
        self.check_want(want)?;
        let opt = self.options_for(want)?;
        let m = &self.manifest;
        let mut feed: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(3 + 2 * m.kv_cache.len());
        for (name, value) in token_inputs(m, inputs)? {
            feed.push((name.into(), value.into()));
        }
        for (kv, (k, v)) in m.kv_cache.iter().zip(past.into_values()) {
            feed.push((kv.past_key.as_str().into(), k.into()));
            feed.push((kv.past_value.as_str().into(), v.into()));
        }
        let run_options = &self.run_options[opt].1;
        let mut out = self
            .session
            .run_with_options(feed, run_options)
            .map_err(Error::ort("graph run failed"))?;
        take_outputs(m, want, |name| out.remove(name))
    }
}

/// The three token inputs as owned tensors, named by the manifest.
fn token_inputs(m: &Manifest, inputs: BatchInputs) -> Result<[(&str, DynValue); 3]> {
    let rt = |e: ort::Error| Error::ort("cannot build the token input tensors")(e);
    Ok([
        (
            m.inputs.input_ids.as_str(),
            Tensor::from_array(inputs.input_ids).map_err(rt)?.into_dyn(),
        ),
        (
            m.inputs.attention_mask.as_str(),
            Tensor::from_array(inputs.attention_mask)
                .map_err(rt)?
                .into_dyn(),
        ),
        (
            m.inputs.position_ids.as_str(),
            Tensor::from_array(inputs.position_ids)
                .map_err(rt)?
                .into_dyn(),
        ),
    ])
}

/// Moves the wanted outputs out of a run's results (`remove` gives each value up by name).
fn take_outputs(
    m: &Manifest,
    want: &Want,
    mut remove: impl FnMut(&str) -> Option<DynValue>,
) -> Result<Outputs> {
    let mut take = |name: &str| {
        remove(name).ok_or_else(|| Error::Runtime(format!("the graph returned no `{name}`")))
    };
    let logits = if want.logits {
        Some(take(&m.logits.name)?)
    } else {
        None
    };
    let hidden = want
        .hidden
        .iter()
        .map(|&h| take(m.hidden_output(h)?))
        .collect::<Result<Vec<_>>>()?;
    let present = if want.present {
        let mut values = Vec::with_capacity(m.kv_cache.len());
        for kv in &m.kv_cache {
            values.push((take(&kv.present_key)?, take(&kv.present_value)?));
        }
        Some(KvCache::from_values(values)?)
    } else {
        None
    };
    Ok(Outputs {
        logits,
        hidden,
        present,
    })
}

/// The graph's inputs must be exactly the manifest's; its outputs must include the manifest's.
fn validate_io(session: &Session, m: &Manifest, extraction_only: bool) -> Result<()> {
    let have_in: HashSet<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let have_out: HashSet<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let mut want_in = vec![
        m.inputs.input_ids.as_str(),
        m.inputs.attention_mask.as_str(),
        m.inputs.position_ids.as_str(),
    ];
    let mut want_out = Vec::new();
    if !extraction_only {
        want_out.push(m.logits.name.as_str());
    }
    for kv in &m.kv_cache {
        want_in.extend([kv.past_key.as_str(), kv.past_value.as_str()]);
        if !extraction_only {
            want_out.extend([kv.present_key.as_str(), kv.present_value.as_str()]);
        }
    }
    want_out.extend(m.hidden_states.iter().map(|h| h.name.as_str()));
    let missing_in: Vec<&str> = want_in
        .iter()
        .copied()
        .filter(|n| !have_in.contains(n))
        .collect();
    let extra_in: Vec<&str> = have_in
        .iter()
        .copied()
        .filter(|n| !want_in.contains(n))
        .collect();
    let missing_out: Vec<&str> = want_out
        .iter()
        .copied()
        .filter(|n| !have_out.contains(n))
        .collect();
    if missing_in.is_empty() && extra_in.is_empty() && missing_out.is_empty() {
        return Ok(());
    }
    let sorted = |s: &HashSet<&str>| {
        let mut v: Vec<&str> = s.iter().copied().collect();
        v.sort();
        v.join(", ")
    };
    Err(Error::Model(format!(
        "the graph does not match manifest.json (re-export the model):{}{}{} \
         The graph has inputs [{}] and outputs [{}]",
        if missing_in.is_empty() {
            String::new()
        } else {
            format!(" missing inputs {missing_in:?};")
        },
        if extra_in.is_empty() {
            String::new()
        } else {
            format!(" unexpected inputs {extra_in:?};")
        },
        if missing_out.is_empty() {
            String::new()
        } else {
            format!(" missing outputs {missing_out:?};")
        },
        sorted(&have_in),
        sorted(&have_out)
    )))
}

/// A float tensor's values in the graph's own element type (borrowed, never widened).
pub enum FloatData<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

/// A float tensor's shape and borrowed values (fp16 graphs stay fp16: pool first, widen after).
pub fn float_view(v: &DynValue) -> Result<(Vec<usize>, FloatData<'_>)> {
    let err = |e: ort::Error| Error::ort("cannot read an output tensor")(e);
    let dtype = v
        .dtype()
        .tensor_type()
        .ok_or_else(|| Error::Runtime("expected a tensor output".into()))?;
    let dims = |shape: &ort::value::Shape| shape.iter().map(|&d| d as usize).collect();
    match dtype {
        TensorElementType::Float32 => {
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(err)?;
            Ok((dims(shape), FloatData::F32(data)))
        }
        TensorElementType::Float16 => {
            let (shape, data) = v.try_extract_tensor::<half::f16>().map_err(err)?;
            Ok((dims(shape), FloatData::F16(data)))
        }
        other => Err(Error::Runtime(format!("unexpected output dtype {other:?}"))),
    }
}

/// A float tensor's shape and values as f32 (fp16 graphs are widened; f32 is borrowed).
pub fn f32_view(v: &DynValue) -> Result<(Vec<usize>, Cow<'_, [f32]>)> {
    let (shape, data) = float_view(v)?;
    Ok(match data {
        FloatData::F32(d) => (shape, Cow::Borrowed(d)),
        FloatData::F16(d) => (shape, Cow::Owned(d.iter().map(|x| x.to_f32()).collect())),
    })
}
