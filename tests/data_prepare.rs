//! `prepare-data` as a library: each adapter on its hand-written fixture, the hygiene and split
//! rules, cap determinism, the summary, byte-identical reruns, and one run over the real public
//! files in `../shared/data` when they are present.

use open_constitution::data::adapters::AdapterOptions;
use open_constitution::data::prepare::{prepare, write_jsonl, write_summary, PrepareOptions};
use open_constitution::data::{
    normalize_prompt, PromptIntent, Record, ResponseBehavior, SourceSpec, Split,
};
use open_constitution::Error;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn spec(kind: &str, path: &Path) -> SourceSpec {
    format!("{kind}={}", path.display()).parse().unwrap()
}

fn fixture(kind: &str, rel: &str) -> SourceSpec {
    spec(kind, &fixtures().join(rel))
}

fn run(sources: Vec<SourceSpec>) -> open_constitution::data::Prepared {
    prepare(&PrepareOptions {
        sources,
        ..PrepareOptions::default()
    })
    .unwrap()
}

fn by_response<'a>(records: &'a [Record], start: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.response.starts_with(start))
        .collect()
}

/// No normalized prompt appears in two splits.
fn assert_split_invariant(records: &[Record]) {
    let mut splits: HashMap<String, BTreeSet<Split>> = HashMap::new();
    for r in records {
        splits
            .entry(normalize_prompt(&r.prompt))
            .or_default()
            .insert(r.split);
    }
    for (prompt, s) in splits {
        assert_eq!(s.len(), 1, "prompt {prompt:?} is in splits {s:?}");
    }
}

#[test]
fn pku_rows_give_two_records_with_hygiene() {
    let p = run(vec![fixture("pku", "pku.jsonl")]);
    let src = &p.summary.sources[0];
    assert_eq!((src.rows, src.records, src.empty_skipped), (5, 9, 1));
    let t = &p.summary.training;
    assert_eq!(t.total, 6);
    assert_eq!(t.duplicates_dropped, 1, "the repeated bleach answer");
    assert_eq!((t.conflicting_pairs, t.conflict_records_dropped), (1, 2));
    assert!(
        by_response(&p.training, "Mix them").is_empty(),
        "conflicting pair dropped"
    );
    let rumour = by_response(&p.training, "Spread a rumour")[0];
    assert_eq!(
        (rumour.label, rumour.topic.as_str()),
        (1, "insulting_behavior")
    );
    assert_eq!(rumour.response_behavior, ResponseBehavior::UnsafeCompliance);
    let talk = by_response(&p.training, "It's understandable")[0];
    assert_eq!((talk.label, talk.topic.as_str()), (0, "safe"));
    assert_eq!(talk.prompt_intent, PromptIntent::Harmful);
    let refusals = by_response(&p.training, "I can't help you access");
    assert_eq!(
        refusals.len(),
        2,
        "same answer to two spellings of the prompt"
    );
    assert!(refusals
        .iter()
        .all(|r| r.response_behavior == ResponseBehavior::Refusal));
    let scan = by_response(&p.training, "Scan for nearby")[0];
    assert_eq!(scan.topic, "uncategorized", "unsafe without categories");
    assert_eq!(
        by_response(&p.training, "Never mix")[0].split,
        Split::Test,
        "own split kept"
    );
    assert!(p
        .training
        .iter()
        .all(|r| r.id.starts_with("pku-") && r.id.len() == 20));
    assert!(p.training.iter().all(|r| r.source == "pku_saferlhf"));
    assert!(p
        .training
        .iter()
        .all(|r| r.dataset_version == "oc-prepare-1:pku_saferlhf"));
    assert_split_invariant(&p.training);
    assert!(p.summary.eval.is_none() && p.eval.is_empty());
}

#[test]
fn beavertails_rows_use_category_maps() {
    let p = run(vec![fixture("beavertails", "beavertails.jsonl")]);
    assert_eq!(p.training.len(), 4);
    let tool = by_response(&p.training, "Get a tension tool")[0];
    assert_eq!(
        tool.topic, "financial_crime_property_crime_theft",
        "first sorted category"
    );
    assert_eq!(tool.label, 1);
    let locksmith = by_response(&p.training, "Locksmiths")[0];
    assert_eq!((locksmith.label, locksmith.topic.as_str()), (0, "safe"));
    assert_eq!(
        locksmith.prompt_intent,
        PromptIntent::Harmful,
        "its prompt got an unsafe answer"
    );
    let address = by_response(&p.training, "Sure, look them up")[0];
    assert_eq!(
        (address.split, address.topic.as_str()),
        (Split::Train, "privacy_violation")
    );
    let breakfast = by_response(&p.training, "Oats")[0];
    assert_eq!(breakfast.prompt_intent, PromptIntent::Unknown);
    assert_eq!(breakfast.response_behavior, ResponseBehavior::SafeAnswer);
}

#[test]
fn gptfuzz_maps_question_indices() {
    let p = run(vec![fixture("gptfuzz", "gptfuzz/train.csv")]);
    assert_eq!(
        p.training.len(),
        6,
        "same text for different questions is no duplicate"
    );
    assert!(p.training.iter().all(|r| r.topic == "jailbreak"));
    assert!(p
        .training
        .iter()
        .all(|r| r.prompt_intent == PromptIntent::Harmful));
    let multi = by_response(&p.training, "As an AI I shouldn't")[0];
    assert!(multi
        .prompt
        .starts_with("What is the easiest way to shoplift"));
    assert!(multi.response.contains('\n') && multi.label == 1);
    let zh = by_response(&p.training, "抱歉")[0];
    assert_eq!(zh.response_behavior, ResponseBehavior::Refusal);
    let count = |b| {
        p.training
            .iter()
            .filter(|r| r.response_behavior == b)
            .count()
    };
    assert_eq!(count(ResponseBehavior::Refusal), 3);
    assert_eq!(count(ResponseBehavior::UnsafeCompliance), 2);
}

#[test]
fn gptfuzz_question_list_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("responses.csv");
    std::fs::copy(fixtures().join("gptfuzz/train.csv"), &csv).unwrap();
    let mut opts = PrepareOptions {
        sources: vec![spec("gptfuzz", &csv)],
        ..PrepareOptions::default()
    };
    let err = prepare(&opts).unwrap_err();
    assert!(matches!(err, Error::Prepare(_)), "{err}");
    assert!(err.to_string().contains("--gptfuzz-questions"), "{err}");
    opts.adapter = AdapterOptions {
        gptfuzz_questions: Some(fixtures().join("gptfuzz/question_list.csv")),
        ..AdapterOptions::default()
    };
    assert_eq!(prepare(&opts).unwrap().training.len(), 6);
}

#[test]
fn xstest_is_a_separate_eval_set() {
    let dir = fixtures().join("xstest");
    let glob = dir.join("*modelb.csv");
    for (source, n) in [(spec("xstest", &dir), 6), (spec("xstest", &glob), 3)] {
        let p = run(vec![source]);
        assert!(p.training.is_empty());
        assert_eq!(p.eval.len(), n);
        assert!(p
            .eval
            .iter()
            .all(|r| r.split == Split::Test && r.source == "xstest"));
    }
    let p = run(vec![spec("xstest", &dir), fixture("jsonl", "simple.jsonl")]);
    let label1: Vec<_> = p.eval.iter().filter(|r| r.label == 1).collect();
    assert_eq!(
        label1.len(),
        1,
        "only the contrast prompt fully complied with"
    );
    assert_eq!(label1[0].topic, "contrast_homonyms");
    let python: Vec<_> = p
        .eval
        .iter()
        .filter(|r| r.prompt.contains("Python"))
        .collect();
    assert!(python
        .iter()
        .all(|r| r.label == 0 && r.prompt_intent == PromptIntent::Benign));
    let behaviors: BTreeSet<_> = python.iter().map(|r| r.response_behavior).collect();
    assert_eq!(
        behaviors.len(),
        2,
        "compliance is a safe answer, refusal a refusal"
    );
    let partial = by_response(&p.eval, "I can help with party tips")[0];
    assert_eq!(partial.response_behavior, ResponseBehavior::Refusal);
    assert!(p.training.iter().all(|r| r.source != "xstest"));
}

#[test]
fn simple_jsonl_keeps_extra_fields() {
    let p = run(vec![fixture("jsonl", "simple.jsonl")]);
    let t = &p.summary.training;
    assert_eq!(
        (t.total, t.duplicates_dropped, t.split_reassigned),
        (3, 1, 1)
    );
    let kept = p.training.iter().find(|r| r.id == "simple-7").unwrap();
    assert_eq!(
        (kept.topic.as_str(), kept.source.as_str()),
        ("harassment", "hand-written")
    );
    assert_eq!(kept.response_behavior, ResponseBehavior::Refusal);
    let note = by_response(&p.training, "Here's a note")[0];
    assert_eq!(
        note.split,
        Split::Validation,
        "moved to its prompt's stricter split"
    );
    let bread = by_response(&p.training, "Feed your starter")[0];
    assert!(bread.id.starts_with("simple-") && bread.source == "simple");
    assert_eq!(bread.topic, "uncategorized");
    assert_split_invariant(&p.training);
}

#[test]
fn training_drops_eval_prompts_and_cross_source_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let line = |p: &str, r: &str, l: u8| {
        format!(
            "{}\n",
            serde_json::json!({"prompt": p, "response": r, "label": l})
        )
    };
    let text = line("how do I kill a python   process?", "Use kill.", 0) + &line("Q", "A", 0);
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, line("Q", "A", 0)).unwrap();
    let p = run(vec![
        spec("jsonl", &a),
        spec("jsonl", &b),
        fixture("xstest", "xstest"),
    ]);
    assert_eq!(p.training.len(), 1);
    assert_eq!(p.training[0].source, "a", "first source's copy kept");
    assert_eq!(p.summary.training.eval_prompt_overlap_dropped, 1);
    assert_eq!(p.summary.training.duplicates_dropped, 1);
}

/// A source with unbalanced labels and topics, written to `dir`.
fn unbalanced_source(dir: &Path) -> SourceSpec {
    let mut text = String::new();
    for i in 0..200 {
        let (label, topic) = match i % 10 {
            0 => (1, "cyber"),
            1 | 2 => (1, "fraud"),
            3 => (0, "cooking"),
            _ => (0, "travel"),
        };
        let row = serde_json::json!({
            "prompt": format!("prompt {}", i / 2), "response": format!("response {i}"),
            "label": label, "topic": topic,
        });
        text.push_str(&format!("{row}\n"));
    }
    let path = dir.join("many.jsonl");
    std::fs::write(&path, text).unwrap();
    spec("jsonl", &path)
}

#[test]
fn cap_is_deterministic_and_balanced() {
    let dir = tempfile::tempdir().unwrap();
    let source = unbalanced_source(dir.path());
    let capped = |seed: u64, cap: usize| {
        let opts = PrepareOptions {
            sources: vec![source.clone()],
            cap: Some(cap),
            seed,
            ..PrepareOptions::default()
        };
        prepare(&opts).unwrap()
    };
    let a = capped(1, 40);
    assert_eq!(a.training, capped(1, 40).training, "same seed, same sample");
    assert_ne!(
        a.training,
        capped(2, 40).training,
        "another seed, another sample"
    );
    let count = |f: &dyn Fn(&Record) -> bool| a.training.iter().filter(|r| f(r)).count();
    assert_eq!(count(&|r| r.label == 1), 20, "labels balanced");
    assert_eq!(
        count(&|r| r.topic == "cyber"),
        10,
        "topics balanced within a label"
    );
    assert_eq!(count(&|r| r.topic == "cooking"), 10);
    assert_eq!(a.summary.training.capped_dropped["jsonl"], 160);
    assert_eq!(
        capped(1, 500).training.len(),
        200,
        "a cap above the size keeps all"
    );
    let mut per = BTreeMap::new();
    per.insert(open_constitution::data::SourceKind::Jsonl, 30);
    let opts = PrepareOptions {
        sources: vec![source],
        cap: Some(100),
        cap_source: per,
        ..PrepareOptions::default()
    };
    assert_eq!(
        prepare(&opts).unwrap().training.len(),
        30,
        "per-kind cap wins"
    );
}

fn all_fixtures() -> Vec<SourceSpec> {
    vec![
        fixture("pku", "pku.jsonl"),
        fixture("beavertails", "beavertails.jsonl"),
        fixture("gptfuzz", "gptfuzz/train.csv"),
        fixture("xstest", "xstest"),
        fixture("jsonl", "simple.jsonl"),
    ]
}

#[test]
fn summary_counts_everything() {
    let p = run(all_fixtures());
    let s = serde_json::to_value(&p.summary).unwrap();
    assert_eq!(s["empty_skipped"], 1);
    assert_eq!(s["sources"].as_array().unwrap().len(), 5);
    let t = &s["training"];
    assert_eq!(t["total"], 6 + 4 + 6 + 3);
    assert_eq!(t["by_source"]["pku_saferlhf"], 6);
    assert_eq!(t["by_source"]["gptfuzz"], 6);
    let labels = t["by_label"]["0"].as_u64().unwrap() + t["by_label"]["1"].as_u64().unwrap();
    assert_eq!(labels, 19);
    let split_sum: u64 = t["by_split"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(split_sum, 19);
    assert_eq!(t["duplicates_dropped"], 2);
    assert_eq!(t["conflicting_pairs"], 1);
    assert_eq!(t["unique_prompts"], 11);
    assert_eq!(s["eval"]["total"], 6);
    assert_eq!(s["eval"]["by_label"]["1"], 1);
    assert_split_invariant(&p.training);
}

#[test]
fn rerun_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for round in 0..2 {
        let p = run(all_fixtures());
        let base = dir.path().join(format!("r{round}"));
        write_jsonl(&base.join("train.jsonl"), &p.training).unwrap();
        write_jsonl(&base.join("eval.jsonl"), &p.eval).unwrap();
        write_summary(&base.join("summary.json"), &p.summary).unwrap();
        let read = |n: &str| std::fs::read(base.join(n)).unwrap();
        outputs.push([
            read("train.jsonl"),
            read("eval.jsonl"),
            read("summary.json"),
        ]);
    }
    assert_eq!(outputs[0], outputs[1]);
    let ids: Vec<_> = run(all_fixtures())
        .training
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by unique id");
}

#[test]
fn real_shared_data_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let sources = open_constitution::data::prepare::default_sources(&shared);
    if sources.len() < 3 {
        eprintln!(
            "skipping: the public sources are not under {}",
            shared.display()
        );
        return;
    }
    let p = run(sources);
    let s = &p.summary;
    assert_eq!(s.sources[0].rows, 5135, "PKU rows");
    assert_eq!(s.sources[0].records, 10270);
    assert_eq!(s.sources[1].rows, 6160, "GPTFuzz responses");
    assert_eq!(s.sources[2].rows, 2250, "XSTest: 5 models x 450");
    assert!(
        s.training.conflicting_pairs > 0,
        "the PKU subset has contradicting pairs"
    );
    assert_eq!(s.training.by_source.len(), 2);
    assert!(p.training.iter().all(|r| r.source != "xstest"));
    assert!(p
        .eval
        .iter()
        .all(|r| r.source == "xstest" && r.split == Split::Test));
    assert_split_invariant(&p.training);
    for split in ["train", "validation", "test"] {
        let labels = &s.training.by_split_label[split];
        assert!(
            labels["0"] > 0 && labels["1"] > 0,
            "{split} has both labels"
        );
    }
    let ids: BTreeSet<_> = p.training.iter().chain(&p.eval).map(|r| &r.id).collect();
    assert_eq!(ids.len(), p.training.len() + p.eval.len());
}
