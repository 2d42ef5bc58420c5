//! Source adapters: one per published format, each turning its rows into [`Draft`] records (prompt,
//! response, label and whatever the source says about split, topic and intent). Everything that is
//! the same for all sources (ids, splits, hygiene) happens later, in `prepare`.

mod beavertails;
mod coconot;
mod gptfuzz;
mod guardreasoner;
mod jailbreakeval;
mod jsonl;
mod paths;
mod pku;
mod xstest;

use crate::data::schema::{snake_case, PromptIntent, ResponseBehavior, Split, UNCATEGORIZED};
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::str::FromStr;

/// The published formats `prepare-data` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// PKU-SafeRLHF rows: two responses per prompt, each with its own safety flag.
    Pku,
    /// BeaverTails rows: one response, `is_safe` and a category map (JSONL), or GuardReasoner's
    /// JSON list of `{"instruction","input","output"}` classifier prompts.
    BeaverTails,
    /// JailbreakEval's Safe-RLHF-mini CSV (`question,answer,label`, 1 = unsafe).
    SafeRlhfMini,
    /// JailbreakEval's JAILJUDGE-mini CSV (jailbreak-style prompts, 1 = jailbroken).
    JailJudge,
    /// GPTFuzz labelled responses (CSV) with their question list.
    GptFuzz,
    /// CoCoNot preference pairs: benign-but-risky prompts with a helpful and a refusing answer.
    CoCoNot,
    /// XSTest v2 completion CSVs: the over-blocking evaluation set, never training data.
    XsTest,
    /// The simple `{"prompt","response","label"}` JSONL (extra schema fields kept).
    Jsonl,
}

impl SourceKind {
    /// Every kind, in the order sources are processed and reported.
    pub const ALL: [SourceKind; 8] = [
        SourceKind::Pku,
        SourceKind::BeaverTails,
        SourceKind::SafeRlhfMini,
        SourceKind::JailJudge,
        SourceKind::GptFuzz,
        SourceKind::CoCoNot,
        SourceKind::XsTest,
        SourceKind::Jsonl,
    ];

    /// The command-line name (`pku`, `beavertails`, `saferlhf-mini`, `jailjudge`, `gptfuzz`,
    /// `coconot`, `xstest`, `jsonl`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pku => "pku",
            SourceKind::BeaverTails => "beavertails",
            SourceKind::SafeRlhfMini => "saferlhf-mini",
            SourceKind::JailJudge => "jailjudge",
            SourceKind::CoCoNot => "coconot",
            SourceKind::GptFuzz => "gptfuzz",
            SourceKind::XsTest => "xstest",
            SourceKind::Jsonl => "jsonl",
        }
    }

    /// The `source` field written for records of this kind (JSONL records keep their own).
    pub fn source_name(self) -> &'static str {
        match self {
            SourceKind::Pku => "pku_saferlhf",
            SourceKind::BeaverTails => "beavertails",
            SourceKind::SafeRlhfMini => "safe_rlhf_mini",
            SourceKind::JailJudge => "jailjudge_mini",
            SourceKind::CoCoNot => "coconot",
            SourceKind::GptFuzz => "gptfuzz",
            SourceKind::XsTest => "xstest",
            SourceKind::Jsonl => "jsonl",
        }
    }

    /// True for the evaluation-only kinds, whose records go to the separate eval file.
    pub fn is_eval_only(self) -> bool {
        self == SourceKind::XsTest
    }
}

impl FromStr for SourceKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
                let names = names.join(", ");
                Error::Argument(format!(
                    "unknown source kind `{s}` (expected one of {names})"
                ))
            })
    }
}

/// One `--source KIND=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub kind: SourceKind,
    pub path: PathBuf,
}

impl FromStr for SourceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, path) = s.split_once('=').ok_or_else(|| {
            Error::Argument(format!(
                "source `{s}`: expected KIND=PATH, e.g. pku=raw/pku.jsonl"
            ))
        })?;
        if path.is_empty() {
            return Err(Error::Argument(format!("source `{s}`: empty path")));
        }
        Ok(SourceSpec {
            kind: kind.parse()?,
            path: PathBuf::from(path),
        })
    }
}

/// A record as an adapter produced it, before ids, splits and hygiene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub kind: SourceKind,
    pub source: String,
    /// An id the source gave (JSONL only); others are derived from the content later.
    pub id: Option<String>,
    pub prompt: String,
    pub response: String,
    pub label: u8,
    pub split: Option<Split>,
    pub topic: String,
    pub intent: Option<PromptIntent>,
    pub behavior: Option<ResponseBehavior>,
    pub dataset_version: Option<String>,
}

impl Draft {
    /// A draft with the kind's source name, no topic and nothing explicit.
    pub fn new(kind: SourceKind, prompt: &str, response: &str, label: u8) -> Self {
        Draft {
            kind,
            source: kind.source_name().to_string(),
            id: None,
            prompt: prompt.to_string(),
            response: response.to_string(),
            label,
            split: None,
            topic: UNCATEGORIZED.to_string(),
            intent: None,
            behavior: None,
            dataset_version: None,
        }
    }
}

/// The topic of a record from its active harm categories: the first one in sorted snake_case
/// order; with none active, `safe` for a safe response and `uncategorized` for an unsafe one (an
/// unsafe response the source did not categorize is not "safe").
/// Feeds every line of a JSONL (or `.jsonl.gz`) source through `drafts`, one row at a time,
/// into `c` (which decides whether a bad row is fatal or skipped).
fn load_json_lines(
    file: &std::path::Path,
    c: &mut Collector,
    drafts: impl Fn(&crate::data::io::Row) -> Result<Vec<Draft>>,
) -> Result<()> {
    use crate::data::io::{for_each_json_line, open_input, Row};
    for_each_json_line(open_input(file)?, file, |line, obj| {
        c.row(obj.and_then(|obj| {
            drafts(&Row {
                file,
                line,
                obj: &obj,
            })
        }))
    })?;
    Ok(())
}

pub fn category_topic(active: &[String], label: u8) -> String {
    let mut names: Vec<String> = active.iter().map(|c| snake_case(c)).collect();
    names.sort();
    match names.into_iter().next() {
        Some(first) => first,
        None if label == 0 => "safe".to_string(),
        None => UNCATEGORIZED.to_string(),
    }
}

/// Per-source counts, reported in the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    pub kind: String,
    pub path: String,
    pub files: usize,
    /// Rows (lines or CSV records) read.
    pub rows: usize,
    /// Records produced (before hygiene).
    pub records: usize,
    /// Records skipped because the prompt or response was empty or whitespace.
    pub empty_skipped: usize,
    /// Rows skipped as invalid (only with `skip_invalid`).
    pub invalid_skipped: usize,
    /// The first few invalid-row messages.
    pub first_errors: Vec<String>,
}

/// Options every adapter sees.
#[derive(Debug, Clone, Default)]
pub struct AdapterOptions {
    /// Skip and count invalid rows instead of failing.
    pub skip_invalid: bool,
    /// GPTFuzz `question_list.csv` when it is not beside the responses CSV.
    pub gptfuzz_questions: Option<PathBuf>,
}

/// Collects an adapter's drafts and counts, applying the skip-invalid and empty-text rules.
pub struct Collector {
    skip_invalid: bool,
    pub stats: SourceStats,
    pub drafts: Vec<Draft>,
}

impl Collector {
    fn new(spec: &SourceSpec, skip_invalid: bool) -> Self {
        let stats = SourceStats {
            kind: spec.kind.as_str().to_string(),
            path: spec.path.display().to_string(),
            ..SourceStats::default()
        };
        Collector {
            skip_invalid,
            stats,
            drafts: Vec::new(),
        }
    }

    /// Takes one row's result: its drafts, or an error that is fatal unless skipping is on.
    pub fn row(&mut self, result: Result<Vec<Draft>>) -> Result<()> {
        self.stats.rows += 1;
        match result {
            Ok(drafts) => {
                for d in drafts {
                    if d.prompt.trim().is_empty() || d.response.trim().is_empty() {
                        self.stats.empty_skipped += 1;
                    } else {
                        self.drafts.push(d);
                    }
                }
                Ok(())
            }
            Err(e @ Error::Data { .. }) if self.skip_invalid => {
                self.stats.invalid_skipped += 1;
                if self.stats.first_errors.len() < crate::data::reader::MAX_REPORTED_ERRORS {
                    self.stats.first_errors.push(e.to_string());
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Reads one source into drafts.
pub fn load(spec: &SourceSpec, opts: &AdapterOptions) -> Result<(Vec<Draft>, SourceStats)> {
    let files = paths::expand_paths(spec)?;
    let mut c = Collector::new(spec, opts.skip_invalid);
    for file in &files {
        paths::check_extension(spec.kind, file)?;
        match spec.kind {
            SourceKind::Pku => pku::load(file, &mut c)?,
            SourceKind::BeaverTails if guardreasoner::is_json_list(file)? => {
                guardreasoner::load(file, &mut c)?
            }
            SourceKind::BeaverTails => beavertails::load(file, &mut c)?,
            SourceKind::SafeRlhfMini | SourceKind::JailJudge => {
                jailbreakeval::load(spec.kind, file, &mut c)?
            }
            SourceKind::CoCoNot => coconot::load(file, &mut c)?,
            SourceKind::GptFuzz => gptfuzz::load(file, opts, &mut c)?,
            SourceKind::XsTest => xstest::load(file, &mut c)?,
            SourceKind::Jsonl => jsonl::load(file, &mut c)?,
        }
    }
    c.stats.files = files.len();
    c.stats.records = c.drafts.len();
    tracing::info!(
        kind = spec.kind.as_str(),
        path = %spec.path.display(),
        files = files.len(),
        rows = c.stats.rows,
        records = c.stats.records,
        empty_skipped = c.stats.empty_skipped,
        invalid_skipped = c.stats.invalid_skipped,
        "read source"
    );
    Ok((c.drafts, c.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_specs() {
        let s: SourceSpec = "xstest=raw/x/*.csv".parse().unwrap();
        assert_eq!(s.kind, SourceKind::XsTest);
        assert_eq!(s.path, PathBuf::from("raw/x/*.csv"));
        assert!("pku".parse::<SourceSpec>().is_err());
        assert!("parquet=x".parse::<SourceSpec>().is_err());
        assert!("pku=".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn topics_from_categories() {
        let cats = vec!["Violence".to_string(), "Animal Abuse".to_string()];
        assert_eq!(category_topic(&cats, 1), "animal_abuse");
        assert_eq!(category_topic(&[], 0), "safe");
        assert_eq!(category_topic(&[], 1), UNCATEGORIZED);
    }
}
