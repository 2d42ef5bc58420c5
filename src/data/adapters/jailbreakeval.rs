//! JailbreakEval's labelled exchange CSVs, both `question,answer,label` with label 1 = unsafe:
//! * Safe-RLHF-mini: PKU-SafeRLHF QA pairs (1 = unsafe response); intent is settled later from
//!   all responses to the prompt, as for PKU without categories.
//! * JAILJUDGE-mini: jailbreak-style prompts (1 = jailbroken) with `hazard_cate_llamaguard3`, a
//!   Llama Guard 3 hazard code kept as the topic. Every prompt wraps a harmful request, so the
//!   intent is harmful, as for GPTFuzz.

use super::{category_topic, Collector, Draft, SourceKind};
use crate::data::io::{CsvInput, CsvRow};
use crate::data::schema::{snake_case, PromptIntent};
use crate::error::Result;
use std::path::Path;

/// Column holding JAILJUDGE's hazard code.
const HAZARD: &str = "hazard_cate_llamaguard3";

/// Llama Guard 3's hazard taxonomy (S1..S14), so topics read as names rather than codes.
const LLAMA_GUARD_3: [&str; 14] = [
    "violent_crimes",
    "non_violent_crimes",
    "sex_related_crimes",
    "child_sexual_exploitation",
    "defamation",
    "specialized_advice",
    "privacy",
    "intellectual_property",
    "indiscriminate_weapons",
    "hate",
    "suicide_and_self_harm",
    "sexual_content",
    "elections",
    "code_interpreter_abuse",
];

/// Reads one Safe-RLHF-mini or JAILJUDGE-mini CSV, as `kind` says.
pub fn load(kind: SourceKind, file: &Path, c: &mut Collector) -> Result<()> {
    let mut csv = CsvInput::open(file)?;
    let cols = [
        csv.column("question")?,
        csv.column("answer")?,
        csv.column("label")?,
    ];
    let hazard = match kind {
        SourceKind::JailJudge => Some(csv.column(HAZARD)?),
        _ => None,
    };
    for row in csv.records()? {
        c.row(row_draft(kind, file, &row, cols, hazard))?;
    }
    Ok(())
}

fn row_draft(
    kind: SourceKind,
    file: &Path,
    row: &CsvRow,
    [q, a, l]: [usize; 3],
    hazard: Option<usize>,
) -> Result<Vec<Draft>> {
    let prompt = row.get(file, q, "question")?;
    let response = row.get(file, a, "answer")?;
    let label = row.label(file, l, "label")?;
    let mut d = Draft::new(kind, prompt, response, label);
    match hazard {
        Some(h) => {
            d.topic = hazard_topic(row.get(file, h, HAZARD)?);
            d.intent = Some(PromptIntent::Harmful);
        }
        None => d.topic = category_topic(&[], label),
    }
    Ok(vec![d])
}

/// `S7` -> `privacy`; an unknown or empty code is kept as written (snake_case), so a new
/// taxonomy version still yields a stable topic instead of an error.
pub fn hazard_topic(code: &str) -> String {
    let code = code.trim();
    code.strip_prefix(['S', 's'])
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| LLAMA_GUARD_3.get(i))
        .map_or_else(|| snake_case(code), |name| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazard_codes_become_names() {
        assert_eq!(hazard_topic("S7"), "privacy");
        assert_eq!(hazard_topic(" S14 "), "code_interpreter_abuse");
        assert_eq!(hazard_topic("S1"), "violent_crimes");
        assert_eq!(hazard_topic("S15"), "s15");
        assert_eq!(hazard_topic("S0"), "s0");
        assert_eq!(hazard_topic(""), crate::data::schema::UNCATEGORIZED);
    }
}
