//! Running the exported graph: the ONNX Runtime library and execution providers
//! ([`session`]), the manifest that names every graph input and output ([`manifest`]), one
//! graph call ([`decoder`], plain or through IoBinding), the batch's decode state
//! ([`DecodeState`]: KV cache, mask, positions),
//! pure tensor preparation ([`inputs`]), pooling on the device ([`pool`]), graph pruning for
//! extraction ([`prune`]), node-placement profiles ([`profile`]) and TensorRT optimization
//! profiles ([`trt_profile`]).

pub mod decode_state;
pub mod decoder;
pub mod inputs;
pub mod kv_cache;
pub mod manifest;
pub mod pool;
pub mod profile;
pub mod prune;
pub mod session;
pub mod trt_profile;

pub use decode_state::{DecodeState, StepOutput};
pub use decoder::{Decoder, Want};
pub use manifest::Manifest;
pub use session::{
    environment, library_candidates, load_session, load_session_from, session_from_model, Device,
    GraphSource, IoBindingMode, LoadedSession, RuntimeOptions,
};
