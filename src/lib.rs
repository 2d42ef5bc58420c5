//! open-constitution: activation probes that guard open-weight LLMs. Extract hidden states from an
//! exported KV-cache decoder graph, train linear probes on them, and guard generation with them.
//!
//! The parts, in pipeline order:
//! - [`data`]: public safety sources into one JSONL schema of labelled exchanges, and its reader;
//! - [`text`]: an exported model's files, chat template, prompt rendering and tokenization;
//! - [`runtime`]: ONNX Runtime, execution providers, the decoder graph and its decode state;
//! - [`extract`]: batched, resumable activation extraction;
//! - [`store`]: the activation store that extraction writes and training reads;
//! - [`probe`]: probe fitting, calibration, metrics, sweeps and evaluation;
//! - [`guard`]: the guard decision, the held stream, sampling, guarded generation and replay;
//! - [`serve`] (feature `serve`): the OpenAI-compatible guarded server with continuous batching.
//!
//! The command line (`src/cli`, the only place with terminal UI and `anyhow`) drives them.

pub mod data;
pub mod error;
pub mod extract;
pub mod fsutil;
pub mod guard;
pub mod probe;
pub mod progress;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
pub mod text;

pub use error::{Error, Result};
