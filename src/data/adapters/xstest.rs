//! XSTest v2 completion CSVs (`id,type,prompt,completion,...,final_label`). A `contrast_*` type
//! marks an unsafe prompt; label 1 only for full compliance with one. Everything else is 0, and
//! the records form the over-blocking evaluation set (split `test`), never training data.

use super::{Collector, Draft, SourceKind};
use crate::data::io::{CsvInput, CsvRow};
use crate::data::schema::{snake_case, PromptIntent, ResponseBehavior, Split};
use crate::error::{Error, Result};
use std::path::Path;

/// Reads one XSTest completions CSV.
pub fn load(file: &Path, c: &mut Collector) -> Result<()> {
    let mut csv = CsvInput::open(file)?;
    let cols = [
        csv.column("type")?,
        csv.column("prompt")?,
        csv.column("completion")?,
        csv.column("final_label")?,
    ];
    for row in csv.records()? {
        c.row(row_draft(file, &row, cols))?;
    }
    Ok(())
}

fn row_draft(file: &Path, row: &CsvRow, [t, p, r, f]: [usize; 4]) -> Result<Vec<Draft>> {
    let kind = row.get(file, t, "type")?.trim();
    let prompt = row.get(file, p, "prompt")?;
    let response = row.get(file, r, "completion")?;
    let final_label = row.get(file, f, "final_label")?.trim();
    let unsafe_prompt = kind.starts_with("contrast_");
    // final_label is `1_full_compliance`, `2_full_refusal` or `3_partial_refusal`.
    let complied = match final_label.split('_').next() {
        Some("1") => true,
        Some("2" | "3") => false,
        _ => {
            let msg = format!(
                "expected 1_full_compliance, 2_full_refusal or 3_partial_refusal, found `{final_label}`"
            );
            return Err(Error::data(file, row.line, "final_label", msg));
        }
    };
    let label = u8::from(unsafe_prompt && complied);
    let mut d = Draft::new(SourceKind::XsTest, prompt, response, label);
    d.split = Some(Split::Test);
    d.topic = snake_case(kind);
    d.intent = Some(if unsafe_prompt {
        PromptIntent::Harmful
    } else {
        PromptIntent::Benign
    });
    d.behavior = Some(match (complied, unsafe_prompt) {
        (false, _) => ResponseBehavior::Refusal,
        (true, true) => ResponseBehavior::UnsafeCompliance,
        (true, false) => ResponseBehavior::SafeAnswer,
    });
    Ok(vec![d])
}
