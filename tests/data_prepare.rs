//! `prepare-data` adapters, each on its hand-written fixture in its source's own format.

mod data_common;

use data_common::*;
use open_constitution::data::adapters::AdapterOptions;
use open_constitution::data::prepare::{prepare, PrepareOptions};
use open_constitution::data::{PromptIntent, ResponseBehavior, Split};
use open_constitution::Error;
use std::collections::BTreeSet;

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
