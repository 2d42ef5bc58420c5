//! The activation store: a directory with `meta.json`, shards `shard-NNNNN.safetensors` (one
//! `[n, hidden]` float32 tensor `layer.{j}` per stored layer) and `shard-NNNNN.rows.jsonl` (one
//! row record per line), plus `rows.jsonl` with every row once the store is complete. Written by
//! [`StoreWriter`] (resumable, atomic), read by [`ActivationStore`], several read as one by
//! [`ActivationSet`]; [`tensors`] is the safetensors I/O underneath. The writer owns only the
//! names it writes (`layout`), refuses a folder of other files, and holds `writer.lock` while
//! it writes.

mod layout;
mod reader;
pub mod set;
pub mod tensors;
mod writer;

pub use layout::LOCK_FILE;
pub use reader::ActivationStore;
pub use set::{expand_store_paths, ActivationSet};
pub use writer::*;
