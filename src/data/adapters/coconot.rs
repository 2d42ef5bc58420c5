//! CoCoNot preference pairs (allenai/noncompliance `coconot_pref.jsonl`):
//! `{"id","category","subcategory","prompt","chosen","rejected"}`. Only rows of the category
//! `Requests with safety concerns` are used: benign prompts that look risky, where `chosen`
//! answers helpfully and `rejected` refuses. Both answers are safe behaviour (label 0), which makes
//! them hard negatives against over-blocking: the probe must flag neither a helpful answer to a
//! risky-looking prompt nor a needless refusal. Other categories (incomplete or unsupported
//! requests) are about a different kind of non-compliance and yield no records.

use super::{Collector, Draft, SourceKind};
use crate::data::io::Row;
use crate::data::schema::{snake_case, PromptIntent, ResponseBehavior};
use crate::error::Result;
use std::path::Path;

/// The category whose rows are read.
pub const SAFETY_CATEGORY: &str = "Requests with safety concerns";

/// Reads one CoCoNot preference JSONL (or `.jsonl.gz`) file.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    super::load_json_lines(file, c, row_drafts)
}

fn row_drafts(row: &Row) -> Result<Vec<Draft>> {
    if row.req_str("category")? != SAFETY_CATEGORY {
        return Ok(Vec::new());
    }
    let prompt = row.req_str("prompt")?;
    let topic = snake_case(row.opt_str("subcategory")?.unwrap_or(""));
    let answers = [
        (row.req_str("chosen")?, ResponseBehavior::SafeAnswer),
        (row.req_str("rejected")?, ResponseBehavior::Refusal),
    ];
    Ok(answers
        .into_iter()
        .map(|(response, behavior)| {
            let mut d = Draft::new(SourceKind::CoCoNot, prompt, response, 0);
            d.topic = topic.clone();
            // The dataset's premise: these prompts should be answered, so they are benign.
            d.intent = Some(PromptIntent::Benign);
            d.behavior = Some(behavior);
            d
        })
        .collect())
}
