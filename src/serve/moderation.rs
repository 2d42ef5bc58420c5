//! `POST /v1/moderations`, shaped as OpenAI's: each input is a finished exchange, scored with the
//! whole-exchange probe in one batched forward pass on the decode thread (between decode steps).
//! An input is `{"prompt", "response"}`, or a string (the response to an empty prompt). The
//! state scored is the probe's pooling (the last token, or the mean over the response); a probe
//! trained on per-token states is read at the last token, where the guard's last judgement of a
//! finished response falls.

use super::error::ApiError;
use crate::extract::PreparedRow;
use crate::store::{Pooling, RowMeta};
use crate::text::model::ModelFiles;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::sync::oneshot;

/// Most exchanges one moderation request may score.
pub const MAX_INPUTS: usize = 32;

#[derive(Debug, Deserialize)]
pub struct ModerationRequest {
    pub model: Option<String>,
    pub input: Input,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(Item),
    Many(Vec<Item>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Item {
    Text(String),
    Exchange { prompt: String, response: String },
}

/// Exchanges for the decode thread, and where their risks go.
pub struct ScoreJob {
    pub rows: Vec<PreparedRow>,
    pub pooling: Pooling,
    pub reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

/// Renders and encodes every input; refuses empty lists and exchanges over the context.
pub fn prepare(req: ModerationRequest, files: &ModelFiles) -> Result<Vec<PreparedRow>, ApiError> {
    let items = match req.input {
        Input::One(i) => vec![i],
        Input::Many(v) => v,
    };
    if items.is_empty() || items.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("`input` takes 1 to {MAX_INPUTS} exchanges"),
        ));
    }
    let context = files.manifest.max_position_embeddings.unwrap_or(usize::MAX);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let (prompt, response) = match item {
                Item::Text(r) => (String::new(), r),
                Item::Exchange { prompt, response } => (prompt, response),
            };
            let param = format!("input[{i}]");
            let rendered = files
                .format
                .exchange(&prompt, &response)
                .map_err(|e| ApiError::invalid(&param, e.to_string()))?;
            let enc = files
                .encoder
                .encode(&rendered)
                .map_err(|e| ApiError::invalid(&param, e.to_string()))?;
            if enc.ids.len() > context {
                return Err(ApiError::invalid(
                    &param,
                    format!(
                        "{} tokens exceed the model's context of {context}",
                        enc.ids.len()
                    ),
                ));
            }
            let response = enc
                .response
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or(enc.ids.len() - 1..enc.ids.len());
            Ok(PreparedRow {
                meta: meta(i, enc.ids.len()),
                response,
                ids: enc.ids,
            })
        })
        .collect()
}

fn meta(i: usize, tokens: usize) -> RowMeta {
    RowMeta {
        id: format!("input-{i}"),
        label: 0,
        split: None,
        topic: None,
        source: None,
        tokens,
        prompt_hash: String::new(),
        truncated: false,
        positions: None,
        response_tokens: None,
    }
}

/// The pooling moderation scores with, for a probe trained with `trained`.
pub fn pooling_for(trained: Pooling) -> Pooling {
    match trained {
        Pooling::Mean => Pooling::Mean,
        // A streaming probe judged every response state, the last one included.
        Pooling::Last | Pooling::Token | Pooling::Tokens => Pooling::Last,
    }
}

/// OpenAI's moderation response, with the probe's risk as the one category score.
pub fn response(id: &str, model: &str, risks: &[f32], threshold: f32) -> Json {
    let results: Vec<Json> = risks
        .iter()
        .map(|&r| {
            json!({"flagged": r >= threshold, "categories": {"unsafe": r >= threshold},
                   "category_scores": {"unsafe": r}, "score": r, "threshold": threshold})
        })
        .collect();
    json!({"id": id, "model": model, "results": results})
}
