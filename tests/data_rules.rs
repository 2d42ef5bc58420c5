//! `prepare-data` rules across sources: eval-prompt overlap and cross-source duplicates, cap
//! determinism and balance, the summary, byte-identical reruns, and one run over the real public
//! files in `../shared/data` when they are present.

mod data_common;

use data_common::*;
use open_constitution::data::prepare::{prepare, write_jsonl, write_summary, PrepareOptions};
use open_constitution::data::{Record, SourceSpec, Split};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
    let source = |kind: &str| s.sources.iter().find(|x| x.kind == kind).unwrap();
    assert_eq!(source("pku").rows, 5135, "PKU rows");
    assert_eq!(source("pku").records, 10270);
    assert_eq!(source("gptfuzz").rows, 6160, "GPTFuzz responses");
    assert_eq!(source("xstest").rows, 2250, "XSTest: 5 models x 450");
    assert!(
        s.training.conflicting_pairs > 0,
        "the PKU subset has contradicting pairs"
    );
    // Every training source of the shared folder (tests/data_sources.rs checks each one).
    assert_eq!(s.training.by_source.len(), s.sources.len() - 1);
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
