//! PKU-SafeRLHF rows: `prompt`, `response_0`/`response_1`, `is_response_{i}_safe` and optionally
//! `response_{i}_harm_category` (a category->bool map) and `split`. Each row gives two records.

use super::{category_topic, Collector, Draft, SourceKind};
use crate::data::io::Row;
use crate::data::schema::PromptIntent;
use crate::error::Result;
use std::path::Path;

/// Reads one PKU-SafeRLHF JSONL (or `.jsonl.gz`) file.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    super::load_json_lines(file, c, row_drafts)
}

fn row_drafts(row: &Row) -> Result<Vec<Draft>> {
    let prompt = row.req_str("prompt")?;
    let split = row.opt_split("split")?;
    let mut parts = Vec::with_capacity(2);
    for i in 0..2 {
        let response = row.req_str(&format!("response_{i}"))?;
        let safe = row.req_bool(&format!("is_response_{i}_safe"))?;
        let categories = row.opt_categories(&format!("response_{i}_harm_category"))?;
        parts.push((response, u8::from(!safe), categories));
    }
    // A prompt one of whose responses falls in a harm category is a harmful prompt; without
    // categories, intent is settled later from the labels of all its responses.
    let harmful = parts.iter().any(|(_, _, cats)| !cats.is_empty());
    Ok(parts
        .into_iter()
        .map(|(response, label, cats)| {
            let mut d = Draft::new(SourceKind::Pku, prompt, response, label);
            d.split = split;
            d.topic = category_topic(&cats, label);
            d.intent = harmful.then_some(PromptIntent::Harmful);
            d
        })
        .collect())
}
