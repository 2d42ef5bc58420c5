//! `render` as a user drives it (issue 17, item 9's smaller parts): an empty conversation is
//! refused as transformers refuses it, `--enable-thinking false` passes an explicit false, and
//! `--tools FILE` hands tool definitions to the template.

mod common;

use common::*;
use std::process::{Command, Output};

fn render(model: &str, messages: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messages.json");
    std::fs::write(&file, messages).unwrap();
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "get_weather"}}]"#,
    )
    .unwrap();
    let extra: Vec<String> = extra
        .iter()
        .map(|a| a.replace("TOOLS", tools.to_str().unwrap()))
        .collect();
    Command::new(bin())
        .args([
            "render",
            "--model",
            model_dir(model).to_str().unwrap(),
            "--messages",
        ])
        .arg(&file)
        .args(&extra)
        .output()
        .unwrap()
}

const HI: &str = r#"[{"role": "user", "content": "Hi"}]"#;

#[test]
fn an_empty_conversation_is_refused() {
    for model in ["tiny-gemma4", "tiny-qwen3"] {
        let e = fail(render(model, "[]", &["--add-generation-prompt"]));
        assert!(e.contains("empty conversation"), "{model}: {e}");
    }
}

#[test]
fn enable_thinking_true_false_and_unset_differ() {
    let gen = ["--add-generation-prompt"];
    let unset = ok(render("tiny-qwen3", HI, &gen));
    let off = ok(render(
        "tiny-qwen3",
        HI,
        &["--add-generation-prompt", "--enable-thinking", "false"],
    ));
    let on = ok(render(
        "tiny-qwen3",
        HI,
        &["--add-generation-prompt", "--enable-thinking"],
    ));
    assert!(
        !unset.contains("<think>") && !on.contains("<think>"),
        "{unset}\n{on}"
    );
    assert!(
        off.ends_with("<think>\n\n</think>\n\n"),
        "explicit false: {off:?}"
    );
    let gemma_on = ok(render("tiny-gemma4", HI, &["--enable-thinking", "true"]));
    assert!(gemma_on.contains("<|think|>"), "{gemma_on}");
}

#[test]
fn tools_reach_the_template() {
    let out = ok(render("tiny-gemma4", HI, &["--tools", "TOOLS"]));
    assert!(
        out.contains("<|tool>") && out.contains("get_weather"),
        "{out}"
    );
    let e = fail(render(
        "tiny-gemma4",
        HI,
        &["--tools", "/nonexistent/tools.json"],
    ));
    assert!(e.contains("/nonexistent/tools.json"), "{e}");
}
