//! Bounded fuzzing of the parsers a user's files reach: random and mutated JSONL data lines,
//! chat templates and probe `config.json` files. Every input must give a value or a clean error
//! (a message naming the file where there is one), never a panic. Seeded, so a failure
//! reproduces; each part stops at its iteration count or its time budget, whichever comes first.

mod probe_common;

use open_constitution::data::{read_examples, ReadOptions};
use open_constitution::probe::split::SplitIndices;
use open_constitution::probe::train::{load_layer, store_info};
use open_constitution::probe::{train_layer, LayerInput, Probe, TrainOptions};
use open_constitution::progress::Silent;
use open_constitution::store::set::ActivationSet;
use open_constitution::text::ChatTemplate;
use probe_common::*;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, and enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that tend to matter to JSON and Jinja parsers.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "1e999",
    "NaN",
    "0.5",
    "\u{feff}",
    "\n",
    "\r\n",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "endfor",
    "for x in",
    "if",
    "endif",
    "messages",
    "loop.index",
    "|tojson",
    "raise_exception('x')",
    "\u{7f}",
    "\u{fffd}",
    "\"label\": 2",
    "\"prompt\": \"\"",
    "\"split\": \"x\"",
    "\"layer\": -99",
    "\"threshold\": 2",
];

/// One random change of `input`: flip, delete, duplicate or insert bytes, or truncate.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(32)).min(v.len());
                let copy = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            3 => v.truncate(at),
            4 => {
                let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

/// Random bytes, or random tokens.
fn random(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(64);
    if rng.below(2) == 0 {
        (0..n).map(|_| rng.next() as u8).collect()
    } else {
        (0..n)
            .flat_map(|_| TOKENS[rng.below(TOKENS.len())].bytes())
            .collect()
    }
}

/// Runs `f` on inputs from `make` for `n` iterations or `budget`, failing on the first panic with
/// the input that caused it.
fn fuzz(
    name: &str,
    n: usize,
    budget: Duration,
    mut make: impl FnMut(&mut Rng) -> Vec<u8>,
    mut f: impl FnMut(&[u8]),
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let start = Instant::now();
    let mut done = 0;
    while done < n && start.elapsed() < budget {
        let input = make(&mut rng);
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            panic!(
                "{name}: panicked on input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        done += 1;
    }
    eprintln!("{name}: {done} inputs in {:?}", start.elapsed());
}

fn seeds(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn data_lines_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fuzz.jsonl");
    let lines: Vec<Vec<u8>> = seeds("data/examples/examples.jsonl")
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(20)
        .map(<[u8]>::to_vec)
        .collect();
    let make = |rng: &mut Rng| match rng.below(4) {
        0 => random(rng),
        _ => {
            let a = &lines[rng.below(lines.len())];
            let mut text = mutate(rng, a);
            text.push(b'\n');
            let b = &lines[rng.below(lines.len())];
            text.extend(mutate(rng, b));
            text
        }
    };
    fuzz("data", 3000, Duration::from_secs(5), make, |input| {
        std::fs::write(&file, input).unwrap();
        for skip_invalid in [false, true] {
            if let Err(e) = read_examples(&file, &ReadOptions { skip_invalid }) {
                let msg = e.to_string();
                assert!(msg.contains("fuzz.jsonl"), "error without the file: {msg}");
            }
        }
    });
}

#[test]
fn chat_templates_never_panic() {
    let tokenizer_config: serde_json::Value =
        serde_json::from_slice(&seeds("models/tiny-qwen3/tokenizer_config.json")).unwrap();
    let qwen = tokenizer_config["chat_template"]
        .as_str()
        .unwrap_or("{{ messages }}")
        .as_bytes()
        .to_vec();
    let templates = [seeds("models/tiny-gemma4/chat_template.jinja"), qwen];
    let messages = serde_json::json!([
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi {{ x }}"},
        {"role": "assistant", "content": "<think>a</think>hello"},
        {"role": "user", "content": "again"}
    ]);
    let make = |rng: &mut Rng| match rng.below(5) {
        0 => random(rng),
        _ => {
            let t = &templates[rng.below(templates.len())];
            mutate(rng, t)
        }
    };
    let mut rendered = 0;
    fuzz("template", 20000, Duration::from_secs(6), make, |input| {
        let source = String::from_utf8_lossy(input).into_owned();
        match ChatTemplate::from_source(source, "fuzz.jinja".into(), BTreeMap::new()) {
            Ok(t) => {
                rendered += 1;
                if let Err(e) = t.render(&messages, true, &BTreeMap::new()) {
                    let msg = e.to_string();
                    assert!(msg.contains("fuzz.jinja"), "error without the file: {msg}");
                }
            }
            Err(e) => assert!(e.to_string().contains("fuzz.jinja"), "{e}"),
        }
    });
    eprintln!("templates that compiled and were rendered: {rendered}");
    assert!(
        rendered > 0,
        "the mutations must leave some templates valid"
    );
}

#[test]
fn probe_configs_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    write_store(
        &store,
        &Synth {
            rows: 400,
            ..Synth::default()
        },
    );
    let given = vec![store.clone()];
    let set = ActivationSet::open(&given).unwrap();
    let splits = SplitIndices::assign(set.rows()).unwrap();
    let (layer_index, x) = load_layer(&set, 4).unwrap();
    let input = LayerInput {
        x: x.view(),
        rows: set.rows(),
        splits: &splits,
        meta: set.meta(),
        store: store_info(&set, &given),
        layer: 4,
        layer_index,
        feature_layers: None,
    };
    let opts = TrainOptions {
        alphas: vec![1.0],
        ..TrainOptions::default()
    };
    let dir = tmp.path().join("probe");
    train_layer(&input, &opts, &Silent)
        .unwrap()
        .write(&dir)
        .unwrap();
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let make = |rng: &mut Rng| match rng.below(6) {
        0 => random(rng),
        _ => mutate(rng, &config),
    };
    fuzz(
        "probe config",
        2000,
        Duration::from_secs(5),
        make,
        |input| {
            std::fs::write(dir.join("config.json"), input).unwrap();
            if let Err(e) = Probe::load(&dir) {
                assert!(!e.to_string().is_empty());
            }
        },
    );
    std::fs::write(dir.join("config.json"), &config).unwrap();
    Probe::load(&dir).expect("the original still loads");
}
