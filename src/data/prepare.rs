//! `prepare-data` as a library call: read every source, settle intents, apply hygiene, assign ids
//! and splits, cap, and sort, producing the training set, the XSTest evaluation set and the
//! summary. Everything is deterministic, so a rerun writes byte-identical files.
//!
//! Rules, in order:
//! * `prompt_intent`: what the source says (GPTFuzz questions, JAILJUDGE prompts and XSTest
//!   `contrast_*` prompts are harmful, other XSTest prompts and CoCoNot's benign-but-risky ones
//!   benign; an active PKU/BeaverTails harm category or an explicit JSONL field); otherwise `harmful` when any response to the same normalized prompt in the set is
//!   labelled 1, else `unknown`.
//! * `response_behavior`: explicit (XSTest final label, CoCoNot chosen/rejected, JSONL field); else `unsafe_compliance` for
//!   label 1, `refusal` for a label-0 response to a prompt not known to be benign that opens with a
//!   refusal phrase (`data::refusal`), `safe_answer` otherwise.
//! * `id`: explicit (JSONL) or `<kind>-<content_hash>` (`<source>-<hash>` for JSONL).
//! * `split`: the source's own, else [`assign_split`] of the prompt; XSTest is always `test`; a
//!   prompt whose records disagree moves wholly to the most held-out split among them.

use crate::data::adapters::{self, AdapterOptions, Draft, SourceKind, SourceSpec, SourceStats};
use crate::data::hygiene::{self, DedupReport, Staged};
use crate::data::refusal::looks_like_refusal;
use crate::data::schema::{
    content_hash, PromptIntent, Record, ResponseBehavior, Split, PREPARE_VERSION,
};
use crate::data::split::{assign_split, normalize_prompt, SplitFractions};
use crate::data::summary::{SetSummary, Summary};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default `--seed` of the cap sample.
pub const DEFAULT_SEED: u64 = 20_240_601;

/// Everything `prepare` needs.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub sources: Vec<SourceSpec>,
    pub fractions: SplitFractions,
    /// Cap for every source kind.
    pub cap: Option<usize>,
    /// Per-kind caps, overriding `cap`.
    pub cap_source: BTreeMap<SourceKind, usize>,
    pub seed: u64,
    pub adapter: AdapterOptions,
}

impl Default for PrepareOptions {
    /// No sources, 80/10/10, no caps, [`DEFAULT_SEED`], failing on invalid rows.
    fn default() -> Self {
        PrepareOptions {
            sources: Vec::new(),
            fractions: SplitFractions::default(),
            cap: None,
            cap_source: BTreeMap::new(),
            seed: DEFAULT_SEED,
            adapter: AdapterOptions::default(),
        }
    }
}

/// The prepared sets, sorted by id.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub training: Vec<Record>,
    pub eval: Vec<Record>,
    pub summary: Summary,
}

/// Reads, cleans and splits every source.
pub fn prepare(opts: &PrepareOptions) -> Result<Prepared> {
    if opts.sources.is_empty() {
        return Err(Error::Prepare("no sources given".into()));
    }
    let mut train_drafts = Vec::new();
    let mut eval_drafts = Vec::new();
    let mut stats: Vec<SourceStats> = Vec::new();
    for spec in &opts.sources {
        let (drafts, s) = adapters::load(spec, &opts.adapter)?;
        stats.push(s);
        let target = if spec.kind.is_eval_only() {
            &mut eval_drafts
        } else {
            &mut train_drafts
        };
        target.extend(drafts);
    }
    let has_eval = opts.sources.iter().any(|s| s.kind.is_eval_only());
    let (eval, eval_summary) = finish_set(eval_drafts, opts, None)?;
    let eval_prompts: HashSet<String> = eval
        .iter()
        .map(|s| normalize_prompt(&s.record.prompt))
        .collect();
    let (training, train_summary) = finish_set(train_drafts, opts, Some(&eval_prompts))?;
    check_unique_ids(training.iter().chain(&eval))?;
    let summary = Summary {
        dataset_version: PREPARE_VERSION.to_string(),
        seed: opts.seed,
        split_fractions: opts.fractions,
        empty_skipped: stats.iter().map(|s| s.empty_skipped).sum(),
        invalid_skipped: stats.iter().map(|s| s.invalid_skipped).sum(),
        sources: stats,
        training: train_summary,
        eval: has_eval.then_some(eval_summary),
    };
    let strip = |v: Vec<Staged>| v.into_iter().map(|s| s.record).collect();
    Ok(Prepared {
        training: strip(training),
        eval: strip(eval),
        summary,
    })
}

/// Intent, dedup, records, split reconciliation, eval-overlap removal (training only), cap, sort.
fn finish_set(
    mut drafts: Vec<Draft>,
    opts: &PrepareOptions,
    eval_prompts: Option<&HashSet<String>>,
) -> Result<(Vec<Staged>, SetSummary)> {
    settle_intents(&mut drafts);
    let (drafts, dedup): (Vec<Draft>, DedupReport) = hygiene::dedup(drafts);
    if dedup.conflicting_pairs > 0 {
        tracing::warn!(
            pairs = dedup.conflicting_pairs,
            records = dedup.conflict_records_dropped,
            "dropped prompt+response pairs that occur with both labels"
        );
    }
    let mut staged: Vec<Staged> = drafts
        .into_iter()
        .map(|d| stage(d, &opts.fractions))
        .collect();
    let split_reassigned = hygiene::reconcile_splits(&mut staged);
    let mut overlap = 0;
    if let Some(prompts) = eval_prompts {
        (staged, overlap) = hygiene::drop_prompts(staged, prompts);
    }
    let cap = |k: SourceKind| opts.cap_source.get(&k).copied().or(opts.cap);
    let (mut staged, capped) = hygiene::cap_balanced(staged, cap, opts.seed);
    staged.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    let records: Vec<Record> = staged.iter().map(|s| s.record.clone()).collect();
    let mut summary = SetSummary::count(&records, dedup);
    summary.split_reassigned = split_reassigned;
    summary.eval_prompt_overlap_dropped = overlap;
    summary.capped_dropped = capped;
    Ok((staged, summary))
}

/// Fills in intents the sources left open: harmful when any response to the same normalized
/// prompt is labelled unsafe (or the source marked one of them harmful), unknown otherwise.
fn settle_intents(drafts: &mut [Draft]) {
    let harmful: HashSet<String> = drafts
        .iter()
        .filter(|d| d.label == 1 || d.intent == Some(PromptIntent::Harmful))
        .map(|d| normalize_prompt(&d.prompt))
        .collect();
    for d in drafts.iter_mut().filter(|d| d.intent.is_none()) {
        let h = harmful.contains(&normalize_prompt(&d.prompt));
        d.intent = Some(if h {
            PromptIntent::Harmful
        } else {
            PromptIntent::Unknown
        });
    }
}

/// Turns a draft into a finished record.
fn stage(d: Draft, fractions: &SplitFractions) -> Staged {
    let intent = d.intent.unwrap_or(PromptIntent::Unknown);
    let behavior = d.behavior.unwrap_or(if d.label == 1 {
        ResponseBehavior::UnsafeCompliance
    } else if intent != PromptIntent::Benign && looks_like_refusal(&d.response) {
        ResponseBehavior::Refusal
    } else {
        ResponseBehavior::SafeAnswer
    });
    let prefix = match d.kind {
        SourceKind::Jsonl => d.source.replace('_', "-"),
        k => k.as_str().to_string(),
    };
    let id =
        d.id.unwrap_or_else(|| format!("{prefix}-{}", content_hash(&d.prompt, &d.response)));
    let split = match d.kind {
        SourceKind::XsTest => Split::Test,
        _ => d
            .split
            .unwrap_or_else(|| assign_split(&d.prompt, fractions)),
    };
    let dataset_version = d
        .dataset_version
        .unwrap_or_else(|| format!("{PREPARE_VERSION}:{}", d.source));
    let record = Record {
        id,
        prompt: d.prompt,
        response: d.response,
        label: d.label,
        split,
        topic: d.topic,
        prompt_intent: intent,
        response_behavior: behavior,
        dataset_version,
        source: d.source,
    };
    Staged {
        kind: d.kind,
        record,
    }
}

/// Ids must be unique across both outputs; only explicit JSONL ids (or a 64-bit hash collision)
/// can clash after dedup.
fn check_unique_ids<'a>(records: impl Iterator<Item = &'a Staged>) -> Result<()> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for s in records {
        if let Some(other) = seen.insert(&s.record.id, &s.record.source) {
            return Err(Error::Prepare(format!(
                "id `{}` is used by two different records (sources {other} and {}); give them distinct ids",
                s.record.id, s.record.source
            )));
        }
    }
    Ok(())
}

/// Writes records as JSONL (one compact object per line, schema field order), atomically.
pub fn write_jsonl(path: &Path, records: &[Record]) -> Result<()> {
    write_atomic(path, |w| {
        for r in records {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Writes the summary as pretty JSON with a trailing newline, atomically.
pub fn write_summary(path: &Path, summary: &Summary) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(summary)
        .map_err(|e| Error::Prepare(format!("serializing the summary: {e}")))?;
    bytes.push(b'\n');
    crate::fsutil::write_bytes_atomic(path, &bytes)
}

/// The public sources under a shared data folder (`../shared/data` by default) that exist there,
/// in their published layout (see its README). The order matters: when two sources carry the same
/// prompt+response, dedup keeps the first copy, so PKU-SafeRLHF (whose label rule is ours) comes
/// first and its JailbreakEval mini copy next, before BeaverTails' broader crowd labels.
pub fn default_sources(shared: &Path) -> Vec<SourceSpec> {
    let raw = shared.join("raw");
    let candidates: [(SourceKind, PathBuf); 7] = [
        (
            SourceKind::Pku,
            raw.join("pku_saferlhf/pku_saferlhf_test_subset.jsonl"),
        ),
        (
            SourceKind::SafeRlhfMini,
            raw.join("jailbreakeval/Safe-RLHFmini.csv"),
        ),
        (
            SourceKind::BeaverTails,
            raw.join("beavertails/beavertails_3k.json"),
        ),
        (
            SourceKind::JailJudge,
            raw.join("jailbreakeval/JAILJUDGEmini.csv"),
        ),
        (SourceKind::GptFuzz, raw.join("gptfuzz/train.csv")),
        (SourceKind::CoCoNot, raw.join("coconot/coconot_pref.jsonl")),
        (SourceKind::XsTest, raw.join("xstest")),
    ];
    candidates
        .into_iter()
        .filter(|(_, p)| p.exists())
        .map(|(kind, path)| SourceSpec { kind, path })
        .collect()
}
