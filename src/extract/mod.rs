//! Batched activation extraction: select rows ([`select`]: sampling, shards), plan length-grouped
//! batches under a token budget ([`plan_batches`]), run them and pool each row's hidden states
//! ([`forward`]), and drive a whole resumable run into an activation store ([`job`]).

pub mod forward;
pub mod job;
mod plan;
pub mod select;

pub use forward::{
    extract_into, forward_pooled, pooled_span, prepare_rows, warm_up, BatchSettings, ExchangeRow,
    PreparedRow,
};
pub use job::{
    default_batch_tokens, run_extract, select_rows, store_meta, ExtractJob, ExtractSummary,
};
pub use plan::plan_batches;
