//! BeaverTails rows: `prompt`, `response`, `is_safe` and a `category` map (category->bool);
//! optional `split`. One record per row.

use super::{category_topic, Collector, Draft, SourceKind};
use crate::data::io::Row;
use crate::data::schema::PromptIntent;
use crate::error::Result;
use std::path::Path;

/// Reads one BeaverTails JSONL (or `.jsonl.gz`) file.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    super::load_json_lines(file, c, row_draft)
}

fn row_draft(row: &Row) -> Result<Vec<Draft>> {
    let prompt = row.req_str("prompt")?;
    let response = row.req_str("response")?;
    let label = u8::from(!row.req_bool("is_safe")?);
    let categories = row.opt_categories("category")?;
    let mut d = Draft::new(SourceKind::BeaverTails, prompt, response, label);
    d.split = row.opt_split("split")?;
    d.topic = category_topic(&categories, label);
    // BeaverTails flags categories on the exchange; any active one means the prompt sought harm.
    d.intent = (!categories.is_empty()).then_some(PromptIntent::Harmful);
    Ok(vec![d])
}
