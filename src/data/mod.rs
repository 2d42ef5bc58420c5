//! Training data: the JSONL schema, the validating reader every training command uses, the
//! deterministic prompt-hash splits, and `prepare-data`'s adapters, hygiene and summary.

pub mod adapters;
pub(crate) mod hygiene;
pub(crate) mod io;
pub mod prepare;
pub(crate) mod prompts;
pub(crate) mod reader;
pub(crate) mod refusal;
pub(crate) mod schema;
pub(crate) mod split;
pub(crate) mod summary;

pub use adapters::{SourceKind, SourceSpec};
pub use prepare::{prepare, PrepareOptions, Prepared};
pub use prompts::{read_prompts, PromptLine};
pub use reader::{parse_examples, read_examples, ReadOptions, ReadReport};
pub use schema::{
    Example, PromptIntent, Record, ResponseBehavior, Split, PREPARE_VERSION, RECORD_FIELDS,
};
pub use split::{assign_split, normalize_prompt, prompt_hash, SplitFractions};
