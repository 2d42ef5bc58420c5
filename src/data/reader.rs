//! The one validating reader for training JSONL (`.jsonl` or `.jsonl.gz`) that every command which
//! consumes examples uses. Each invalid line is an [`Error::Data`] naming file, line and field; with
//! `skip_invalid` such lines are skipped and counted instead. It never panics on any input bytes.

use crate::data::io::{for_each_json_line, open_input, type_name, Row};
use crate::data::schema::{content_hash, Example};
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

/// How many skipped-line messages a [`ReadReport`] keeps.
pub const MAX_REPORTED_ERRORS: usize = 5;

/// Options of [`read_examples`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip and count invalid lines instead of failing on the first one.
    pub skip_invalid: bool,
}

/// What [`read_examples`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Non-blank lines read.
    pub lines: usize,
    /// Blank (whitespace-only) lines, ignored.
    pub blank_lines: usize,
    /// Examples returned.
    pub examples: usize,
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped: usize,
    /// Examples whose `id` was derived from their content because the line had none.
    pub derived_ids: usize,
    /// The first `MAX_REPORTED_ERRORS` (5) skip reasons, as `file:line: field ...` messages.
    pub first_errors: Vec<String>,
}

/// Reads and validates a training JSONL file.
///
/// Each line is an object with `prompt` and `response` (non-empty strings) and `label` (0 or 1);
/// optional `id` (string or integer), `split`, `topic` and `source`; other fields are ignored.
/// Lines without an `id` get the first 16 hex digits of sha256(prompt `\x1f` response), with `-2`,
/// `-3`, ... appended for repeats, so ids are unique and stable. A duplicate explicit `id` is an
/// error naming both lines.
pub fn read_examples(path: &Path, opts: &ReadOptions) -> Result<(Vec<Example>, ReadReport)> {
    let (examples, report) = parse_examples(open_input(path)?, path, opts)?;
    if report.skipped > 0 {
        tracing::warn!(
            file = %path.display(),
            skipped = report.skipped,
            first = ?report.first_errors,
            "skipped invalid lines"
        );
    }
    Ok((examples, report))
}

/// [`read_examples`] over any buffered reader; `file` is the name used in errors.
pub fn parse_examples<R: BufRead>(
    reader: R,
    file: &Path,
    opts: &ReadOptions,
) -> Result<(Vec<Example>, ReadReport)> {
    let mut report = ReadReport::default();
    let mut parsed: Vec<(Example, bool)> = Vec::new();
    let mut explicit: HashMap<String, usize> = HashMap::new();
    report.blank_lines = for_each_json_line(reader, file, |line, obj| {
        report.lines += 1;
        let result = obj.and_then(|obj| {
            parse_example(&Row {
                file,
                line,
                obj: &obj,
            })
        });
        let result = result.and_then(|(example, has_id)| {
            if has_id {
                if let Some(first) = explicit.get(&example.id) {
                    let msg = format!("duplicate id `{}` (first used on line {first})", example.id);
                    return Err(Error::data(file, line, "id", msg));
                }
                explicit.insert(example.id.clone(), line);
            }
            Ok((example, has_id))
        });
        match result {
            Ok(item) => {
                parsed.push(item);
                Ok(())
            }
            Err(e) if opts.skip_invalid && matches!(e, Error::Data { .. }) => {
                report.skipped += 1;
                if report.first_errors.len() < MAX_REPORTED_ERRORS {
                    report.first_errors.push(e.to_string());
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    })?;
    let examples = assign_missing_ids(parsed, explicit.into_keys().collect(), &mut report);
    report.examples = examples.len();
    Ok((examples, report))
}

/// Gives every example without an explicit id its content id, after all explicit ids are known
/// so a derived id never takes one a later line names.
fn assign_missing_ids(
    parsed: Vec<(Example, bool)>,
    mut taken: HashSet<String>,
    report: &mut ReadReport,
) -> Vec<Example> {
    let mut out = Vec::with_capacity(parsed.len());
    for (mut example, has_id) in parsed {
        if !has_id {
            let base = content_hash(&example.prompt, &example.response);
            let mut candidate = base.clone();
            let mut n = 1;
            while taken.contains(&candidate) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            taken.insert(candidate.clone());
            example.id = candidate;
            report.derived_ids += 1;
        }
        out.push(example);
    }
    out
}

/// Validates one object; returns the example (id empty when absent) and whether it had an id.
fn parse_example(row: &Row) -> Result<(Example, bool)> {
    let prompt = row.req_text("prompt")?.to_string();
    let response = row.req_text("response")?.to_string();
    let label = row.label("label")?;
    let id = parse_id(row)?;
    let split = row.opt_split("split")?;
    let topic = row.opt_str("topic")?.map(str::to_string);
    let source = row.opt_str("source")?.map(str::to_string);
    let has_id = id.is_some();
    let example = Example {
        id: id.unwrap_or_default(),
        prompt,
        response,
        label,
        split,
        topic,
        source,
    };
    Ok((example, has_id))
}

/// An optional `id`: a non-empty string, or a non-negative integer (kept as its decimal text).
pub(crate) fn parse_id(row: &Row) -> Result<Option<String>> {
    match row.get("id") {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(row.err("id", "empty string")),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(v) => Err(row.err(
            "id",
            format!(
                "expected a string or non-negative integer, found {}",
                type_name(v)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::schema::Split;

    fn parse(text: &str, skip: bool) -> Result<(Vec<Example>, ReadReport)> {
        let opts = ReadOptions { skip_invalid: skip };
        parse_examples(text.as_bytes(), Path::new("t.jsonl"), &opts)
    }

    #[test]
    fn reads_optional_fields_and_derives_ids() {
        let text = concat!(
            "{\"prompt\":\"p\",\"response\":\"r\",\"label\":0}\n",
            "\n",
            "{\"prompt\":\"p\",\"response\":\"r\",\"label\":0,\"split\":\"val\",\"topic\":\"t\"}\n",
            "{\"id\":7,\"prompt\":\"q\",\"response\":\"s\",\"label\":1,\"source\":\"x\"}\n",
        );
        let (ex, report) = parse(text, false).unwrap();
        let base = content_hash("p", "r");
        assert_eq!(ex[0].id, base);
        assert_eq!(ex[1].id, format!("{base}-2"));
        assert_eq!(ex[1].split, Some(Split::Validation));
        assert_eq!(ex[1].topic.as_deref(), Some("t"));
        assert_eq!(ex[2].id, "7");
        assert_eq!(ex[2].source.as_deref(), Some("x"));
        assert_eq!(report.blank_lines, 1);
        assert_eq!(report.derived_ids, 2);
    }

    #[test]
    fn derived_id_never_takes_a_later_explicit_id() {
        let base = content_hash("p", "r");
        let text = format!(
            "{{\"prompt\":\"p\",\"response\":\"r\",\"label\":0}}\n\
             {{\"id\":\"{base}\",\"prompt\":\"a\",\"response\":\"b\",\"label\":0}}\n"
        );
        let (ex, _) = parse(&text, false).unwrap();
        assert_eq!(ex[0].id, format!("{base}-2"));
        assert_eq!(ex[1].id, base);
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("{\"prompt\":\"p\",\"label\":0}", "response", "missing"),
            (
                "{\"prompt\":\"p\",\"response\":\" \",\"label\":0}",
                "response",
                "empty",
            ),
            (
                "{\"prompt\":\"p\",\"response\":\"r\",\"label\":2}",
                "label",
                "0 or 1",
            ),
            (
                "{\"prompt\":\"p\",\"response\":\"r\",\"label\":\"1\"}",
                "label",
                "string",
            ),
            (
                "{\"prompt\":1,\"response\":\"r\",\"label\":0}",
                "prompt",
                "number",
            ),
            (
                "{\"prompt\":\"p\",\"response\":\"r\",\"label\":0,\"split\":\"x\"}",
                "split",
                "unknown",
            ),
            ("[1,2]", "<record>", "array"),
            ("{\"prompt\":", "<record>", "JSON"),
        ];
        for (line, field, needle) in cases {
            let text = format!("{{\"prompt\":\"ok\",\"response\":\"ok\",\"label\":0}}\n{line}\n");
            let err = parse(&text, false).unwrap_err().to_string();
            assert!(err.starts_with("t.jsonl:2: field `"), "{err}");
            assert!(err.contains(&format!("`{field}`")), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn bad_utf8_and_duplicate_ids() {
        let err = parse_examples(
            &b"{\"prompt\":\"\xff\"}\n"[..],
            Path::new("t"),
            &ReadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t:1:") && err.contains("UTF-8"), "{err}");
        let text = "{\"id\":\"a\",\"prompt\":\"p\",\"response\":\"r\",\"label\":0}\n\
                    {\"id\":\"a\",\"prompt\":\"q\",\"response\":\"r\",\"label\":0}\n";
        let err = parse(text, false).unwrap_err().to_string();
        assert!(
            err.contains("t.jsonl:2: field `id`") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn skip_invalid_counts_and_reports() {
        let text = "nope\n{\"prompt\":\"p\",\"response\":\"r\",\"label\":1}\n{\"label\":0}\n";
        let (ex, report) = parse(text, true).unwrap();
        assert_eq!(ex.len(), 1);
        assert_eq!(report.skipped, 2);
        assert_eq!(report.lines, 3);
        assert!(report.first_errors[0].starts_with("t.jsonl:1:"));
    }
}
