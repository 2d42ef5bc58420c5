//! The split invariant as a property: however a prompt is cased or spaced, and whatever splits the
//! source claims for its copies, every record of one normalized prompt ends in one split.

use open_constitution::data::prepare::{prepare, PrepareOptions};
use open_constitution::data::{assign_split, normalize_prompt, SplitFractions};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

const WORDS: [&str; 6] = ["how", "do", "I", "Kill", "a", "process"];

/// A prompt of 1-4 words from a small vocabulary (so prompts repeat), randomly cased and spaced.
fn prompt() -> impl Strategy<Value = String> {
    prop::collection::vec((0..WORDS.len(), any::<bool>(), 0..3usize), 1..4).prop_map(|words| {
        let mut s = String::new();
        for (w, upper, spaces) in words {
            let word = if upper {
                WORDS[w].to_uppercase()
            } else {
                WORDS[w].to_lowercase()
            };
            s.push_str(&word);
            s.push_str(&" \t "[..spaces + 1]);
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn assignment_ignores_case_and_spacing(p in prompt()) {
        let f = SplitFractions::default();
        let squeezed = normalize_prompt(&p).to_uppercase();
        prop_assert_eq!(assign_split(&p, &f), assign_split(&squeezed, &f));
    }

    #[test]
    fn no_prompt_in_two_splits(
        rows in prop::collection::vec((prompt(), 0..2u8, prop::option::of(0..3usize)), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut text = String::new();
        for (i, (p, label, split)) in rows.iter().enumerate() {
            let mut row = serde_json::json!({"prompt": p, "response": format!("r{i}"), "label": label});
            if let Some(s) = split {
                row["split"] = ["train", "validation", "test"][*s].into();
            }
            text.push_str(&format!("{row}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let opts = PrepareOptions {
            sources: vec![format!("jsonl={}", path.display()).parse().unwrap()],
            ..PrepareOptions::default()
        };
        let p = prepare(&opts).unwrap();
        let mut splits: HashMap<String, BTreeSet<_>> = HashMap::new();
        for r in &p.training {
            splits.entry(normalize_prompt(&r.prompt)).or_default().insert(r.split);
        }
        prop_assert!(splits.values().all(|s| s.len() == 1), "{:?}", splits);
        prop_assert_eq!(p.training.len(), rows.len());
    }
}
