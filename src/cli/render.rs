//! `render`: shows exactly what the model sees for an exchange, a generation prompt or a list of
//! chat messages: the formatted text and, with `--tokens`, the token ids.

use super::common::ModelArgs;
use anyhow::Context;
use open_constitution::text::model::ModelFiles;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The user's prompt.
    #[arg(long, conflicts_with = "messages")]
    pub prompt: Option<String>,
    /// The assistant's response. Without it, the generation prompt is rendered.
    #[arg(long, requires = "prompt")]
    pub response: Option<String>,
    /// JSON file with a list of chat messages (`role`: system, developer, user or assistant;
    /// `content`: a string or a list of parts like `{"type": "text", "text": ...}`).
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// With --messages: append the template's generation prompt (the assistant turn opener).
    #[arg(long)]
    pub add_generation_prompt: bool,
    /// With --messages: set the template's `enable_thinking` variable (Gemma 4, Qwen3):
    /// `--enable-thinking` (or `true`) turns thinking on, `--enable-thinking false` passes an
    /// explicit false (some templates then write an empty thinking block); unset, the template's
    /// own default applies.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enable_thinking: Option<bool>,
    /// With --messages: JSON file with a list of tool definitions, passed to the template as
    /// `tools` (as transformers' `apply_chat_template(tools=...)`).
    #[arg(long, requires = "messages")]
    pub tools: Option<PathBuf>,
    /// Also print the token ids (one line, space-separated) and their count.
    #[arg(long)]
    pub tokens: bool,
}

/// `--tools FILE`: a JSON list of tool definitions.
fn read_tools(path: &std::path::Path) -> anyhow::Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let tools: Json = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not valid JSON (expected a list of tools)",
            path.display()
        )
    })?;
    anyhow::ensure!(
        tools.is_array(),
        "{}: expected a JSON list of tool definitions",
        path.display()
    );
    Ok(tools)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let files = ModelFiles::load(&a.model.model, !a.model.no_chat_template)?;
    let rendered = match (&a.messages, &a.prompt) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let messages: Json = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not valid JSON (expected a list of messages)",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                messages.is_array(),
                "{}: expected a JSON list of {{\"role\", \"content\"}} messages",
                path.display()
            );
            let mut extra = BTreeMap::new();
            if let Some(on) = a.enable_thinking {
                extra.insert("enable_thinking".to_string(), Json::Bool(on));
            }
            if let Some(path) = &a.tools {
                extra.insert("tools".to_string(), read_tools(path)?);
            }
            files
                .format
                .messages(&messages, a.add_generation_prompt, &extra)?
        }
        (None, Some(p)) => match &a.response {
            Some(r) => files.format.exchange(p, r)?,
            None => files.format.generation_prompt(p)?,
        },
        (None, None) => anyhow::bail!("give --prompt [--response] or --messages FILE"),
    };
    print!("{}", rendered.text);
    if a.tokens {
        let enc = files.encoder.encode(&rendered)?;
        let ids: Vec<String> = enc.ids.iter().map(u32::to_string).collect();
        println!("\n--- {} tokens ---\n{}", ids.len(), ids.join(" "));
        if enc.neutralized_control_tokens {
            eprintln!(
                "note: control-token text inside a message was encoded as plain text (it cannot open or close turns)"
            );
        }
    }
    Ok(())
}
