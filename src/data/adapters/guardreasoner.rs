//! BeaverTails as GuardReasoner redistributes it (`data/benchmark/0_A_beaver_tails.json`): one JSON
//! *list* of classifier prompts `{"instruction","input","output"}`, where `input` is
//! `"Human user:\n{prompt}\n\nAI assistant:\n{response}\n\n"` and `output` ends in
//! `Response: harmful` (label 1) or `Response: unharmful` (label 0). One record per element.
//!
//! A JSON list has no lines, so errors put the element's 1-based position in the list where the
//! other adapters put a line number, and say `record N` in the message.

use super::{Collector, Draft, SourceKind};
use crate::data::io::{open_input, type_name, Row, RECORD_FIELD};
use crate::error::{Error, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// What opens the human turn of `input`.
const HUMAN: &str = "Human user:\n";
/// What separates the human turn from the assistant turn.
const ASSISTANT: &str = "\n\nAI assistant:\n";
/// The label markers GuardReasoner writes into `output`.
const HARMFUL: &str = "Response: harmful";
const UNHARMFUL: &str = "Response: unharmful";

/// True when the file's first non-blank byte opens a JSON list (the GuardReasoner form); the
/// upstream JSONL form opens with an object. Sniffing the shape, not the extension, also reads a
/// list saved as `.jsonl` or gzipped.
pub fn is_json_list(file: &Path) -> Result<bool> {
    let mut input = open_input(file)?;
    let buf = input.fill_buf().map_err(|e| Error::io(file, e))?;
    let buf = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(buf);
    Ok(buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
}

/// Reads one GuardReasoner BeaverTails JSON list.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    let value: Value = serde_json::from_reader(open_input(file)?)
        .map_err(|e| Error::data(file, e.line(), RECORD_FIELD, format!("not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        let msg = format!("expected a JSON list, found {}", type_name(&value));
        return Err(Error::data(file, 1, RECORD_FIELD, msg));
    };
    for (i, item) in items.iter().enumerate() {
        c.row(item_draft(file, i + 1, item).map_err(|e| in_record(e, i + 1)))?;
    }
    Ok(())
}

/// Says which list element a data error is about (its "line" is the element's position).
fn in_record(e: Error, n: usize) -> Error {
    match e {
        Error::Data {
            file,
            line,
            field,
            message,
        } => Error::Data {
            file,
            line,
            field,
            message: format!("record {n} of the list: {message}"),
        },
        other => other,
    }
}

fn item_draft(file: &Path, n: usize, item: &Value) -> Result<Vec<Draft>> {
    let Value::Object(obj) = item else {
        let msg = format!("expected an object, found {}", type_name(item));
        return Err(Error::data(file, n, RECORD_FIELD, msg));
    };
    let row = Row { file, line: n, obj };
    let (prompt, response) = split_exchange(&row, row.req_str("input")?)?;
    let label = output_label(&row, row.req_str("output")?)?;
    let mut d = Draft::new(SourceKind::BeaverTails, prompt, response, label);
    // The list carries no harm category; like PKU without categories, the topic says only
    // safe/uncategorized and the intent is settled from all responses to the prompt.
    d.topic = super::category_topic(&[], label);
    Ok(vec![d])
}

/// The prompt and response inside `input`. The first separator splits them (a prompt that
/// contained the separator would be ambiguous; the published file has none). The trailing blank
/// line is the template's, not the response's.
fn split_exchange<'a>(row: &Row, input: &'a str) -> Result<(&'a str, &'a str)> {
    let body = input
        .strip_prefix(HUMAN)
        .ok_or_else(|| row.err("input", format!("does not start with {HUMAN:?}")))?;
    let (prompt, response) = body.split_once(ASSISTANT).ok_or_else(|| {
        row.err(
            "input",
            format!("has no {ASSISTANT:?} between prompt and response"),
        )
    })?;
    Ok((prompt, response.strip_suffix("\n\n").unwrap_or(response)))
}

/// The label GuardReasoner's answer gives the response (the markers include `Response: `, so
/// `unharmful` does not also match `harmful`); an answer naming both is refused as contradictory.
fn output_label(row: &Row, output: &str) -> Result<u8> {
    let (harmful, unharmful) = (output.contains(HARMFUL), output.contains(UNHARMFUL));
    match (harmful, unharmful) {
        (true, false) => Ok(1),
        (false, true) => Ok(0),
        (true, true) => Err(row.err("output", format!("has both {HARMFUL:?} and {UNHARMFUL:?}"))),
        (false, false) => Err(row.err(
            "output",
            format!("has neither {HARMFUL:?} nor {UNHARMFUL:?}"),
        )),
    }
}
