//! The `--summary` JSON: what was read from each source, what hygiene removed, and the counts of
//! the training and evaluation sets by source, label, split, topic, intent and behaviour.

use crate::data::adapters::SourceStats;
use crate::data::hygiene::DedupReport;
use crate::data::schema::Record;
use crate::data::split::{normalize_prompt, SplitFractions};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// The whole summary. Every map is sorted and nothing depends on the clock, so a rerun writes the
/// same bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dataset_version: String,
    pub seed: u64,
    pub split_fractions: SplitFractions,
    pub sources: Vec<SourceStats>,
    /// Records skipped for an empty prompt or response, over all sources.
    pub empty_skipped: usize,
    /// Rows skipped as invalid, over all sources (only with `--skip-invalid`).
    pub invalid_skipped: usize,
    pub training: SetSummary,
    /// The XSTest over-blocking evaluation set, when one was prepared.
    pub eval: Option<SetSummary>,
}

/// Counts of one output file and what hygiene removed on the way to it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetSummary {
    pub total: usize,
    pub unique_prompts: usize,
    pub by_source: BTreeMap<String, usize>,
    pub by_label: BTreeMap<String, usize>,
    pub by_split: BTreeMap<String, usize>,
    pub by_split_label: BTreeMap<String, BTreeMap<String, usize>>,
    pub by_topic: BTreeMap<String, usize>,
    pub by_prompt_intent: BTreeMap<String, usize>,
    pub by_response_behavior: BTreeMap<String, usize>,
    pub duplicates_dropped: usize,
    pub conflicting_pairs: usize,
    pub conflict_records_dropped: usize,
    /// Dropped duplicates by source, then by the source whose copy was kept.
    pub duplicates_by_source: BTreeMap<String, BTreeMap<String, usize>>,
    /// Conflict-dropped records by source.
    pub conflict_records_by_source: BTreeMap<String, usize>,
    /// Records moved to a stricter split so that no prompt straddles splits.
    pub split_reassigned: usize,
    /// Training records dropped because their prompt is in the evaluation set.
    pub eval_prompt_overlap_dropped: usize,
    /// Records removed by `--cap`/`--cap-source`, per source kind.
    pub capped_dropped: BTreeMap<String, usize>,
}

impl SetSummary {
    /// Counts `records`; the hygiene fields are filled in by the caller.
    pub fn count(records: &[Record], dedup: DedupReport) -> Self {
        let mut s = SetSummary {
            total: records.len(),
            duplicates_dropped: dedup.duplicates_dropped,
            conflicting_pairs: dedup.conflicting_pairs,
            conflict_records_dropped: dedup.conflict_records_dropped,
            duplicates_by_source: dedup.duplicates_by_source,
            conflict_records_by_source: dedup.conflict_records_by_source,
            ..SetSummary::default()
        };
        let mut prompts = HashSet::new();
        for r in records {
            prompts.insert(normalize_prompt(&r.prompt));
            let label = r.label.to_string();
            *s.by_source.entry(r.source.clone()).or_default() += 1;
            *s.by_label.entry(label.clone()).or_default() += 1;
            *s.by_split.entry(r.split.to_string()).or_default() += 1;
            *s.by_split_label
                .entry(r.split.to_string())
                .or_default()
                .entry(label)
                .or_default() += 1;
            *s.by_topic.entry(r.topic.clone()).or_default() += 1;
            *s.by_prompt_intent
                .entry(r.prompt_intent.as_str().to_string())
                .or_default() += 1;
            *s.by_response_behavior
                .entry(r.response_behavior.as_str().to_string())
                .or_default() += 1;
        }
        s.unique_prompts = prompts.len();
        s
    }
}
