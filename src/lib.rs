//! open-constitution: activation probes that guard open-weight LLMs. Extract hidden states from an
//! exported KV-cache decoder graph, train linear probes on them, and guard generation with them.

pub mod error;
pub mod fsutil;
pub mod manifest;
pub mod probe;
pub mod store;
pub mod store_set;
pub mod tensors;

pub use error::{Error, Result};
