//! SmolLM2-135M-Instruct's ChatML template against transformers: every case of the fixture that
//! `oc_export smollm2` wrote with `apply_chat_template` (default and explicit system message,
//! multi-turn, with and without the generation prompt) renders byte-identically from the
//! fixture's template alone. When the model is exported (`just smollm2`), the token ids match
//! too, and control-token text inside a message (`<|im_start|>`, `<|im_end|>`) cannot open or
//! close a turn, checked through `render --tokens`.

mod common;

use common::*;
use open_constitution::text::prompt::render_messages;
use open_constitution::text::ChatTemplate;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const MODEL: &str = "smollm2-135m-instruct";

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("export/fixtures/smollm2_chatml_renders.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn template(f: &Value) -> ChatTemplate {
    let tokens: BTreeMap<String, String> =
        serde_json::from_value(f["special_tokens"].clone()).unwrap();
    let src = f["chat_template"].as_str().unwrap().to_string();
    ChatTemplate::from_source(src, "chat_template (fixture)".into(), tokens).unwrap()
}

#[test]
fn chatml_renders_byte_identically_to_transformers() {
    let f = fixture();
    let t = template(&f);
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "the fixture covers the issue's cases");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let r = render_messages(&t, &c["messages"], gen, &BTreeMap::new()).unwrap();
        assert_eq!(r.text, c["rendered"].as_str().unwrap(), "{name}");
    }
    let default_system = cases
        .iter()
        .find(|c| c["name"] == "default_system_user_only");
    let text = default_system.unwrap()["rendered"].as_str().unwrap();
    assert!(
        text.starts_with("<|im_start|>system\n"),
        "default system message: {text}"
    );
}

#[test]
fn token_ids_match_and_control_text_cannot_open_or_close_a_turn() {
    let dir = model_dir(MODEL);
    if !dir.join("manifest.json").is_file() {
        eprintln!("models/{MODEL} not exported (just smollm2): token ids not checked");
        return;
    }
    let f = fixture();
    let im_start = f["control_token_ids"]["<|im_start|>"].as_u64().unwrap();
    let mut forged = 0;
    for c in f["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let (ids, stderr) = render_tokens(&dir, &c["messages"].to_string(), gen);
        let safe: Vec<u64> = serde_json::from_value(c["safe_input_ids"].clone()).unwrap();
        assert_eq!(
            ids, safe,
            "{name}: ids as the template's own turns and plain message text"
        );
        let naive: Vec<u64> = serde_json::from_value(c["input_ids"].clone()).unwrap();
        if c["message_has_control_text"].as_bool().unwrap() {
            forged += 1;
            let count = |v: &[u64]| v.iter().filter(|&&t| t == im_start).count();
            assert!(
                count(&naive) > count(&ids),
                "{name}: the naive encoding forges a turn"
            );
            assert!(stderr.contains("encoded as plain text"), "{name}: {stderr}");
        } else {
            assert_eq!(ids, naive, "{name}");
        }
    }
    assert!(forged >= 2, "user and assistant control-text cases");
}
