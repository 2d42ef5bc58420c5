//! Running the exported graph: the ONNX Runtime library, execution providers and sessions
//! ([`RuntimeOptions`], [`Device`], [`load_session`]), the [`Manifest`] that names every graph
//! input and output, one graph call ([`Decoder`], plain or through IoBinding), the batch's
//! decode state ([`DecodeState`]: it owns the [`KvCache`], the attention mask and the
//! positions), pure tensor preparation ([`inputs`]), pooling on the device, graph pruning for
//! extraction, node-placement profiles ([`profile`]) and TensorRT optimization profiles
//! ([`TrtProfiles`]).

pub(crate) mod decode_state;
pub mod decoder;
pub mod inputs;
pub mod integrity;
pub(crate) mod kv_cache;
pub mod manifest;
pub(crate) mod pool;
pub mod profile;
pub(crate) mod prune;
pub(crate) mod session;
pub(crate) mod trt_profile;

pub use decode_state::{DecodeState, StepOutput};
pub use decoder::{Decoder, Want};
pub use kv_cache::KvCache;
pub use manifest::Manifest;
pub use session::{
    environment, library_candidates, load_session, load_session_from, session_from_model, Device,
    GraphSource, IoBindingMode, LoadedSession, RuntimeOptions,
};
pub use trt_profile::TrtProfiles;
