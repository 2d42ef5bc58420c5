//! Pooling on the device for extraction: a small graph built in code (ONNX Runtime's model
//! editor) that runs on the decoder's provider and turns each `[batch, seq, hidden]` hidden state,
//! left in device memory by the decoder, into `[batch, hidden]` pooled rows. Only those rows
//! cross to the host, instead of every position of every layer (on a GPU that copy costs about
//! as much as the forward pass for all-layer extraction).
//!
//! Per layer: `Where(select, Cast<f32>(h), 0)`, `ReduceSum` over positions, times `scale`
//! (1 / selected count). `Where` rather than a weighted sum, so that a non-finite value at an
//! unselected position (fp16 overflow at `<bos>`, see export/CONTRACT.md) cannot leak in as
//! `0 * inf = NaN`; the sum is in f32, so fp16 means cannot overflow.

use crate::error::{Error, Result};
use crate::runtime::decoder::device_memory;
use crate::runtime::{session_from_model, RuntimeOptions};
use ndarray::{Array2, Array3};
use ort::editor::{Graph, Model, Node, Opset, ONNX_DOMAIN};
use ort::memory::{Allocator, MemoryInfo};
use ort::operator::Attribute;
use ort::session::{IoBinding, Session};
use ort::value::{
    DynValue, Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType,
};

/// The pooling graph's session for a fixed number of layers and hidden-state dtype.
pub struct DevicePool {
    session: Session,
    binding: IoBinding,
    host: MemoryInfo<'static>,
    layers: usize,
    dtype: TensorElementType,
}

fn tensor(ty: TensorElementType, dims: &[i64]) -> ValueType {
    ValueType::Tensor {
        ty,
        shape: Shape::new(dims.iter().copied()),
        dimension_symbols: SymbolicDimensions::empty(dims.len()),
    }
}

fn rt(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::ort(format!("pooling graph: {what}"))(e)
}

/// `h{j}` `[B, S, hidden]` (dtype), `select` `[B, S, 1]` bool, `scale` `[B, 1]` f32 -> `p{j}`
/// `[B, hidden]` f32.
fn graph(layers: usize, dtype: TensorElementType, hidden: usize) -> ort::Result<Model> {
    let h = hidden as i64;
    let mut g = Graph::new()?;
    let mut inputs: Vec<Outlet> = (0..layers)
        .map(|j| Outlet::new(format!("h{j}"), tensor(dtype, &[-1, -1, h])))
        .collect();
    inputs.push(Outlet::new(
        "select",
        tensor(TensorElementType::Bool, &[-1, -1, 1]),
    ));
    inputs.push(Outlet::new(
        "scale",
        tensor(TensorElementType::Float32, &[-1, 1]),
    ));
    g.set_inputs(inputs)?;
    g.set_outputs((0..layers).map(|j| {
        Outlet::new(
            format!("p{j}"),
            tensor(TensorElementType::Float32, &[-1, h]),
        )
    }))?;
    let mut zero = Tensor::<f32>::new(&Allocator::default(), [0usize; 0])?;
    zero.extract_tensor_mut().1[0] = 0.0;
    g.add_initializer("zero", zero, false)?;
    let mut axes = Tensor::<i64>::new(&Allocator::default(), [1usize])?;
    axes.extract_tensor_mut().1[0] = 1;
    g.add_initializer("axes", axes, false)?;
    for j in 0..layers {
        let (c, w, s) = (format!("c{j}"), format!("w{j}"), format!("s{j}"));
        let to = Attribute::new("to", 1i64)?; // TensorProto.FLOAT
        g.add_node(Node::new(
            "Cast",
            ONNX_DOMAIN,
            format!("cast{j}"),
            [format!("h{j}")],
            [&c],
            [to],
        )?)?;
        g.add_node(Node::new(
            "Where",
            ONNX_DOMAIN,
            format!("where{j}"),
            ["select", &c, "zero"],
            [&w],
            [],
        )?)?;
        let keep = Attribute::new("keepdims", 0i64)?;
        g.add_node(Node::new(
            "ReduceSum",
            ONNX_DOMAIN,
            format!("sum{j}"),
            [&w, "axes"],
            [&s],
            [keep],
        )?)?;
        g.add_node(Node::new(
            "Mul",
            ONNX_DOMAIN,
            format!("mul{j}"),
            [&s, "scale"],
            [format!("p{j}")],
            [],
        )?)?;
    }
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 18)?])?;
    model.set_graph(g)?;
    Ok(model)
}

impl DevicePool {
    /// Builds the graph for `layers` hidden states of `dtype` and width `hidden` and a session
    /// for it with `runtime` (the decoder's resolved options: same provider and device).
    pub fn new(
        runtime: &RuntimeOptions,
        layers: usize,
        dtype: TensorElementType,
        hidden: usize,
    ) -> Result<Self> {
        let model = graph(layers, dtype, hidden).map_err(rt("build"))?;
        let session = session_from_model(model, runtime)?;
        let binding = session.create_binding().map_err(rt("IoBinding"))?;
        Ok(Self {
            session,
            binding,
            host: device_memory(crate::runtime::Device::Cpu, 0)?,
            layers,
            dtype,
        })
    }

    /// Whether this pool fits `layers` hidden states of `dtype`.
    pub fn fits(&self, layers: usize, dtype: TensorElementType) -> bool {
        self.layers == layers && self.dtype == dtype
    }

    /// Pools `hidden` (device values, one per layer) with the row selection `select`
    /// (`[B, S, 1]`) and `scale` (`[B, 1]`); returns one `[B, hidden]` matrix per layer.
    pub fn pool(
        &mut self,
        hidden: &[DynValue],
        select: Array3<bool>,
        scale: Array2<f32>,
    ) -> Result<Vec<Array2<f32>>> {
        let b = &mut self.binding;
        for (j, h) in hidden.iter().enumerate() {
            b.bind_input(format!("h{j}"), h).map_err(rt("bind"))?;
        }
        let select = Tensor::from_array(select).map_err(rt("select"))?;
        let scale = Tensor::from_array(scale).map_err(rt("scale"))?;
        b.bind_input("select", &select).map_err(rt("bind"))?;
        b.bind_input("scale", &scale).map_err(rt("bind"))?;
        for j in 0..self.layers {
            b.bind_output_to_device(format!("p{j}"), &self.host)
                .map_err(rt("bind"))?;
        }
        b.synchronize_inputs().map_err(rt("synchronize"))?;
        let result = self
            .session
            .run_binding(b)
            .map_err(rt("run"))
            .and_then(|out| {
                (0..self.layers)
                    .map(|j| {
                        let (shape, data) = out[format!("p{j}").as_str()]
                            .try_extract_tensor::<f32>()
                            .map_err(rt("output"))?;
                        let dims = (shape[0] as usize, shape[1] as usize);
                        Array2::from_shape_vec(dims, data.to_vec())
                            .map_err(|e| Error::Runtime(format!("pooling graph: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()
            });
        b.clear();
        result
    }
}
