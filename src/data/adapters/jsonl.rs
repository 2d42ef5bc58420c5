//! The simple schema: `{"prompt","response","label"}` per line, optionally with the prepared
//! schema's other fields (`id`, `split`, `topic`, `source`, `prompt_intent`, `response_behavior`,
//! `dataset_version`), which are kept, so preparing an already prepared file changes nothing.

use super::{Collector, Draft, SourceKind};
use crate::data::io::{for_each_json_line, open_input, Row};
use crate::data::reader::parse_id;
use crate::data::schema::{snake_case, PromptIntent, ResponseBehavior};
use crate::error::Result;
use std::path::Path;

/// Reads one simple-schema JSONL (or `.jsonl.gz`) file. Records without a `source` get the file
/// name's stem (snake_case), so two files stay distinguishable in the summary.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    let default_source = default_source(file);
    for_each_json_line(open_input(file)?, file, |line, obj| {
        let row = obj.map(|obj| (line, obj));
        c.row(row.and_then(|(line, obj)| {
            row_draft(
                &Row {
                    file,
                    line,
                    obj: &obj,
                },
                &default_source,
            )
        }))
    })?;
    Ok(())
}

fn default_source(file: &Path) -> String {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("jsonl");
    let stem = name.split('.').next().unwrap_or(name);
    snake_case(stem)
}

fn row_draft(row: &Row, default_source: &str) -> Result<Vec<Draft>> {
    let prompt = row.req_str("prompt")?;
    let response = row.req_str("response")?;
    let label = row.label("label")?;
    let mut d = Draft::new(SourceKind::Jsonl, prompt, response, label);
    d.id = parse_id(row)?;
    d.split = row.opt_split("split")?;
    d.source = match row.opt_str("source")? {
        Some(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => default_source.to_string(),
    };
    if let Some(topic) = row.opt_str("topic")? {
        d.topic = snake_case(topic);
    }
    if let Some(s) = row.opt_str("prompt_intent")? {
        let intent = PromptIntent::parse(s).ok_or_else(|| {
            row.err(
                "prompt_intent",
                format!("expected benign, harmful or unknown, found `{s}`"),
            )
        })?;
        d.intent = Some(intent);
    }
    d.behavior = behavior(row, label)?;
    d.dataset_version = row.opt_str("dataset_version")?.map(str::to_string);
    Ok(vec![d])
}

/// An explicit `response_behavior`, checked against the label: unsafe compliance is exactly the
/// label-1 behaviour, so any other pairing is a contradiction in the file.
fn behavior(row: &Row, label: u8) -> Result<Option<ResponseBehavior>> {
    let Some(s) = row.opt_str("response_behavior")? else {
        return Ok(None);
    };
    let b = ResponseBehavior::parse(s).ok_or_else(|| {
        row.err(
            "response_behavior",
            format!("expected safe_answer, refusal or unsafe_compliance, found `{s}`"),
        )
    })?;
    if (b == ResponseBehavior::UnsafeCompliance) != (label == 1) {
        let msg = format!("`{s}` contradicts label {label}");
        return Err(row.err("response_behavior", msg));
    }
    Ok(Some(b))
}
