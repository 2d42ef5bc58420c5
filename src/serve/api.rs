//! The request side of `POST /v1/chat/completions`: OpenAI's fields parsed, every value checked
//! against its range and the operator's caps, the messages rendered with the model's chat
//! template (tools included) and encoded with user text kept as text, and the guard the request
//! asks for checked against the operator's bounds.

use super::error::ApiError;
use super::Limits;
use crate::guard::generate::{GenerateOptions, OnPause};
use crate::guard::sampling::SamplingConfig;
use crate::guard::GuardConfig;
use crate::text::model::ModelFiles;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// The chat completion fields this server reads (others, e.g. `user`, are ignored).
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<Json>,
    pub tools: Option<Json>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    /// This server's extension: a stricter guard for this request (within operator bounds).
    pub guard: Option<GuardRequest>,
    /// vLLM's extension: never stop at end-of-turn (benchmarks generate exactly `max_tokens`).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Per-request guard settings; each must stay within the operator's bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRequest {
    pub threshold: Option<f32>,
    pub pause_threshold: Option<f32>,
    pub probe_every_n_tokens: Option<usize>,
}

/// A request ready for the decode loop.
#[derive(Debug)]
pub struct Prepared {
    pub ids: Vec<u32>,
    pub opts: GenerateOptions,
    pub guard: GuardConfig,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Parses the body; serde's message (line, column, what) tells the client what is wrong.
pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::malformed(format!(
            "the request body is not a valid chat completion request: {e}"
        ))
    })
}

/// Checks every field and renders the prompt; `base` is the operator's guard.
pub fn prepare(
    req: ChatRequest,
    files: &ModelFiles,
    limits: &Limits,
    base: &GuardConfig,
) -> Result<Prepared, ApiError> {
    check_messages(&req.messages)?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let sampling = sampling(&req)?;
    let guard = guard(req.guard.as_ref(), base, limits)?;
    let stop = stops(req.stop)?;
    let ids = encode(&req.messages, req.tools, files)?;
    let max_new = max_tokens(
        req.max_tokens.or(req.max_completion_tokens),
        ids.len(),
        files,
        limits,
    )?;
    Ok(Prepared {
        ids,
        opts: GenerateOptions {
            max_new_tokens: max_new,
            sampling,
            on_pause: OnPause::Stop,
            refusal_message: String::new(),
            ignore_eos: req.ignore_eos,
            keep_withheld: false,
        },
        guard,
        stop,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn check_messages(messages: &[Json]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must be a non-empty list of {\"role\", \"content\"} objects",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Json::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid(
                &format!("messages[{i}].role"),
                format!(
                    "unknown role {role:?}: expected one of {}",
                    ROLES.join(", ")
                ),
            ));
        }
        match m.get("content") {
            Some(Json::String(_)) | Some(Json::Null) | None if role == "assistant" => {}
            Some(Json::String(_)) => {}
            Some(Json::Array(parts)) if parts.iter().all(is_text_part) => {}
            _ => return Err(ApiError::invalid(
                &format!("messages[{i}].content"),
                "content must be a string or a list of {\"type\": \"text\", \"text\": ...} parts",
            )),
        }
    }
    Ok(())
}

fn is_text_part(p: &Json) -> bool {
    p.get("type").and_then(Json::as_str) == Some("text")
        && p.get("text").is_some_and(Json::is_string)
}

fn encode(
    messages: &[Json],
    tools: Option<Json>,
    files: &ModelFiles,
) -> Result<Vec<u32>, ApiError> {
    let mut extra = BTreeMap::new();
    match tools {
        Some(t @ Json::Array(_)) => {
            extra.insert("tools".to_string(), t);
        }
        Some(Json::Null) | None => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "tools",
                "`tools` must be a list of tool definitions",
            ))
        }
    }
    let list = Json::Array(messages.to_vec());
    let rendered = files.format.messages(&list, true, &extra).map_err(|e| {
        ApiError::invalid(
            "messages",
            format!("the chat template refused the messages: {e}"),
        )
    })?;
    let enc = files
        .encoder
        .encode(&rendered)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    Ok(enc.ids)
}

fn sampling(req: &ChatRequest) -> Result<SamplingConfig, ApiError> {
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be in [0, 2], got {temperature}"),
        ));
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("top_p must be in (0, 1], got {p}"),
            ));
        }
    }
    let s = SamplingConfig {
        temperature,
        top_k: None,
        top_p: req.top_p.filter(|&p| p < 1.0),
        repetition_penalty: 1.0,
        seed: req.seed.map(|s| s as u64).unwrap_or_else(rand_seed),
    };
    s.validate()
        .map_err(|e| ApiError::invalid("temperature", e.to_string()))?;
    Ok(s)
}

/// A seed for a request without one: sampling without `seed` is not reproducible, as OpenAI's.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

fn stops(stop: Option<Stop>) -> Result<Vec<String>, ApiError> {
    let list = match stop {
        None => vec![],
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if list.len() > 4 || list.iter().any(|s| s.len() > 256) {
        return Err(ApiError::invalid(
            "stop",
            "`stop` takes at most 4 strings of at most 256 bytes",
        ));
    }
    Ok(list)
}

fn max_tokens(
    asked: Option<u64>,
    prompt: usize,
    files: &ModelFiles,
    limits: &Limits,
) -> Result<usize, ApiError> {
    let context = files.manifest.max_position_embeddings.unwrap_or(usize::MAX);
    if prompt >= context {
        return Err(context_error(prompt, 1, context));
    }
    let room = context - prompt;
    match asked {
        None => Ok(limits.max_tokens.min(room)),
        Some(0) => Err(ApiError::invalid("max_tokens", "max_tokens must be >= 1")),
        Some(n) if n > limits.max_tokens as u64 => Err(ApiError::invalid(
            "max_tokens",
            format!(
                "max_tokens {n} exceeds this server's cap of {} (--max-tokens-cap)",
                limits.max_tokens
            ),
        )),
        Some(n) if n as usize > room => Err(context_error(prompt, n as usize, context)),
        Some(n) => Ok(n as usize),
    }
}

fn context_error(prompt: usize, new: usize, context: usize) -> ApiError {
    let mut e = ApiError::invalid(
        "messages",
        format!(
            "the prompt is {prompt} tokens; with max_tokens {new} that exceeds the model's context \
             of {context} tokens: shorten the messages or lower max_tokens"
        ),
    );
    e.code = Some("context_length_exceeded");
    e
}

/// The operator's guard, made stricter where the request asks: thresholds may only go down to
/// the operator's floor (`--min-pause-threshold`) and never above the operator's values,
/// probing may only get more frequent.
fn guard(
    asked: Option<&GuardRequest>,
    base: &GuardConfig,
    limits: &Limits,
) -> Result<GuardConfig, ApiError> {
    let Some(g) = asked else { return Ok(*base) };
    let mut cfg = *base;
    let floor = limits.min_guard_threshold;
    let within = |name: &str, v: f32, max: f32| {
        if v.is_finite() && v >= floor && v <= max {
            Ok(v)
        } else {
            Err(ApiError::invalid(
                &format!("guard.{name}"),
                format!(
                    "guard.{name} must be in [{floor}, {max}] (the operator's bounds), got {v}"
                ),
            ))
        }
    };
    if let Some(p) = g.pause_threshold {
        cfg.pause_threshold = within("pause_threshold", p, base.pause_threshold)?;
    }
    if let Some(t) = g.threshold {
        cfg.threshold = within("threshold", t, base.threshold.min(cfg.pause_threshold))?;
    }
    cfg.threshold = cfg.threshold.min(cfg.pause_threshold);
    if let Some(n) = g.probe_every_n_tokens {
        if n == 0 || n > base.probe_every_n_tokens {
            return Err(ApiError::invalid(
                "guard.probe_every_n_tokens",
                format!("guard.probe_every_n_tokens must be in [1, {}] (the operator's cadence), got {n}", base.probe_every_n_tokens),
            ));
        }
        cfg.probe_every_n_tokens = n;
    }
    cfg.validate()
        .map_err(|e| ApiError::invalid("guard", e.to_string()))?;
    Ok(cfg)
}
