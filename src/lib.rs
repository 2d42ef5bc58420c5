//! open-constitution: activation probes that guard open-weight LLMs. Extract hidden states from an
//! exported KV-cache decoder graph, train linear probes on them, and guard generation with them.

pub mod batch;
pub mod data;
pub mod decoder;
pub mod error;
pub mod extract;
pub mod extract_job;
pub mod fsutil;
pub mod generate;
pub mod guard;
pub mod kv_cache;
pub mod manifest;
pub mod model;
pub mod pool;
pub mod probe;
pub mod profile;
pub mod prompt;
pub mod prune;
pub mod replay;
pub mod runtime;
pub mod sampling;
pub mod select;
pub mod store;
pub mod store_set;
pub mod template;
pub mod tensors;
pub mod tokenize;
pub mod trt_profile;

pub use error::{Error, Result};
