//! Batched activation extraction: select rows ([`select`]: sampling, shards), plan length-grouped
//! batches under a token budget ([`plan_batches`]), run them and pool each row's hidden states
//! ([`forward_pooled`], [`extract_into`]), and drive a whole resumable run into an activation
//! store ([`ExtractJob`], [`run_extract`]).

pub(crate) mod forward;
pub(crate) mod job;
mod plan;
pub mod select;

pub use forward::{
    extract_into, forward_pooled, hashed_index, pooled_span, prepare_rows, warm_up, BatchSettings,
    PreparedRow,
};
pub use job::{
    default_batch_tokens, run_extract, select_rows, store_meta, ExtractJob, ExtractSummary,
};
pub use plan::plan_batches;
