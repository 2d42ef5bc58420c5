//! A chat template that rewrites model turns, as Gemma 4's official one drops thinking-channel
//! blocks (`<|channel>thought ... <channel|>`) from them (issue 17, item 9; `render` refused such
//! conversations with "cannot locate the message text"). Every case of
//! export/fixtures/gemma4_thinking_renders.json, rendered by transformers' `apply_chat_template`
//! (`oc_export template-fixtures`), renders byte-identically, each message's rendered text is
//! located, and the token ids with the tiny Gemma 4 tokenizer are the control-token-safe ones
//! transformers' tokenizer gives when the message text is encoded as plain text: control-token
//! text a user types cannot open or close a turn or a thinking block.

mod common;

use common::*;
use open_constitution::text::prompt::render_messages;
use open_constitution::text::{ChatTemplate, TextEncoder};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("export/fixtures/gemma4_thinking_renders.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn template(f: &Value) -> ChatTemplate {
    let tokens: BTreeMap<String, String> =
        serde_json::from_value(f["special_tokens"].clone()).unwrap();
    let src = f["chat_template"].as_str().unwrap().to_string();
    ChatTemplate::from_source(src, "gemma4_thinking (fixture)".into(), tokens).unwrap()
}

/// `apply_chat_template`'s keyword arguments other than `add_generation_prompt`.
fn kwargs(c: &Value) -> (bool, BTreeMap<String, Value>) {
    let mut extra: BTreeMap<String, Value> = serde_json::from_value(c["kwargs"].clone()).unwrap();
    let gen = extra
        .remove("add_generation_prompt")
        .is_some_and(|v| v == Value::Bool(true));
    (gen, extra)
}

#[test]
fn renders_byte_identically_and_locates_what_each_message_shows() {
    let f = fixture();
    let t = template(&f);
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "the fixture covers the issue's cases");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (gen, extra) = kwargs(c);
        let r = render_messages(&t, &c["messages"], gen, &extra)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.text, c["rendered"].as_str().unwrap(), "{name}");
        let shown: Vec<&str> = r.content.iter().map(|s| &r.text[s.clone()]).collect();
        let want: Vec<&str> = c["message_texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(shown, want, "{name}: what each message text renders as");
    }
}

#[test]
fn token_ids_are_the_control_token_safe_ones() {
    let f = fixture();
    let t = template(&f);
    let mut enc = TextEncoder::from_file(&model_dir("tiny-gemma4").join("tokenizer.json")).unwrap();
    enc.protect_template_tokens(t.text()).unwrap();
    let turn_ids: Vec<u64> = ["<|turn>", "<turn|>", "<|channel>", "<channel|>"]
        .iter()
        .map(|k| f["control_token_ids"][k].as_u64().unwrap())
        .collect();
    let count = |v: &[u64]| v.iter().filter(|t| turn_ids.contains(t)).count();
    let mut forged = 0;
    for c in f["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (gen, extra) = kwargs(c);
        let r = render_messages(&t, &c["messages"], gen, &extra).unwrap();
        let e = enc.encode(&r).unwrap();
        let ids: Vec<u64> = e.ids.iter().map(|&i| i as u64).collect();
        let safe: Vec<u64> = serde_json::from_value(c["safe_input_ids"].clone()).unwrap();
        let naive: Vec<u64> = serde_json::from_value(c["input_ids"].clone()).unwrap();
        assert_eq!(
            ids, safe,
            "{name}: the template's own tokens, message text as text"
        );
        assert_eq!(e.neutralized_control_tokens, safe != naive, "{name}");
        if safe != naive {
            forged += 1;
            assert!(count(&naive) > count(&ids), "{name}: naive ids forge turns");
        }
    }
    assert!(
        forged >= 2,
        "a user turn and a model turn's answer forge control tokens"
    );
}

/// `render --messages` on a model folder shipping the template as chat_template.jinja.
#[test]
fn render_cli_accepts_multi_turn_thinking_conversations() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for file in ["manifest.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_dir("tiny-gemma4").join(file), dir.path().join(file)).unwrap();
    }
    let src = f["chat_template"].as_str().unwrap();
    std::fs::write(dir.path().join("chat_template.jinja"), src).unwrap();
    let case = f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "thinking_dropped_from_earlier_turns")
        .unwrap();
    let (ids, stderr) = render_tokens(dir.path(), &case["messages"].to_string(), true);
    let safe: Vec<u64> = serde_json::from_value(case["safe_input_ids"].clone()).unwrap();
    assert_eq!(ids, safe, "{stderr}");
}

/// What the fixture's template writes for a message text (its `without_thoughts` macro for
/// model turns: thinking blocks dropped, an unterminated one to the end; then `| trim`).
fn shown(role: &str, text: &str) -> String {
    if role != "assistant" {
        return text.trim().to_string();
    }
    let mut pieces = text.split("<|channel>");
    let mut kept = pieces.next().unwrap_or("").to_string();
    for p in pieces {
        if let Some((_, after)) = p.split_once("<channel|>") {
            kept.push_str(after);
        }
    }
    kept.trim().to_string()
}

const FRAGMENTS: &[&str] = &[
    "<|channel>",
    "<channel|>",
    "thought\n",
    "<|turn>",
    "<turn|>",
    "model\n",
    "user\n",
    "<|think|>",
    " ",
    "\n",
    "Hi",
    "é",
    "\u{E000}",
    "\u{E001}",
    "1",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Random conversations of control-token text, thinking blocks, whitespace and sentinel
    /// characters: every one renders, each message text is located where the template wrote
    /// it, and the ids hold exactly the control tokens of the conversation's structure (those of
    /// the same turns with plain texts).
    #[test]
    fn random_thinking_conversations_are_located_and_cannot_forge(
        texts in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..8), 1..6),
        gen in proptest::bool::ANY,
    ) {
        let f = fixture();
        let t = template(&f);
        let mut enc = TextEncoder::from_file(&model_dir("tiny-gemma4").join("tokenizer.json")).unwrap();
        enc.protect_template_tokens(t.text()).unwrap();
        let role = |i: usize| if i % 2 == 0 { "user" } else { "assistant" };
        let conversation = |text: &dyn Fn(usize) -> String| -> Value {
            (0..texts.len())
                .map(|i| serde_json::json!({"role": role(i), "content": text(i)}))
                .collect()
        };
        let real = conversation(&|i| texts[i].concat());
        let r = render_messages(&t, &real, gen, &BTreeMap::new()).unwrap();
        for (i, span) in r.content.iter().enumerate() {
            proptest::prop_assert_eq!(&r.text[span.clone()], shown(role(i), &texts[i].concat()));
        }
        let plain = render_messages(&t, &conversation(&|_| "x".into()), gen, &BTreeMap::new()).unwrap();
        let control = |ids: &[u32]| -> Vec<u32> {
            ids.iter().copied().filter(|&i| (2..=22).contains(&i)).collect()
        };
        let ids = enc.encode(&r).unwrap().ids;
        proptest::prop_assert_eq!(control(&ids), control(&enc.encode(&plain).unwrap().ids));
    }
}
