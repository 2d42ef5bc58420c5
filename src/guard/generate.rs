//! Guarded generation on the exported graph: prefill once, then one token per step with the KV
//! cache moved from outputs back to inputs. Every `probe_every_n_tokens` tokens the newest
//! token's hidden state at the probe layer is scored, smoothed and judged; text is released to
//! the sink only after the probe step covering it (see [`crate::guard`]). Rows of a batch decode
//! in lockstep with left padding; each has its own sampler, guard and stream ([`Row`]). The
//! decode loop is [`Batch`], which rows can join and leave at step boundaries (continuous
//! batching for `serve`); [`generate_batch`] is its fixed-batch user. Steps go through
//! [`crate::runtime::decoder::Decoder::run_step`]: under CUDA the cache stays in device memory (IoBinding).

mod batch;
mod row;

pub use batch::Batch;
pub use row::Row;

use crate::error::{Error, Result};
use crate::guard::sampling::SamplingConfig;
use crate::guard::{GuardSetup, GuardStatus, ProbeStep};
use crate::text::model::Model;
use serde::Serialize;
use std::time::Instant;

/// Where one row's released text goes (the terminal, a buffer).
pub type Sink<'s> = Box<dyn FnMut(&str) + 's>;

/// What happens when the guard pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OnPause {
    /// Stop and return the paused state with the partial (judged) response.
    Stop,
    /// Stop and answer with the refusal message instead.
    Refuse,
}

/// Generation settings.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub on_pause: OnPause,
    pub refusal_message: String,
    /// Never stop at an end-of-turn/eos id (their logits are masked), as HF's `min_new_tokens`
    /// does: benchmarks use it to generate exactly `max_new_tokens`.
    pub ignore_eos: bool,
    /// Put the text a pause withheld into [`GenerationResult::withheld_text`], for auditing the
    /// guard (never for end users: it is what the guard judged unsafe).
    pub keep_withheld: bool,
}

/// Final status of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Completed,
    Flagged,
    Paused,
    Refused,
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxNewTokens,
    Paused,
    /// The caller removed the row while it decoded (a stop sequence matched, the client left).
    Cancelled,
}

/// Wall-clock timings of one generation (milliseconds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub prefill_ms: f64,
    /// Prompt submitted -> first token sampled.
    pub time_to_first_token_ms: f64,
    /// Prompt submitted -> first text released to the user (after its probe step).
    pub time_to_first_release_ms: Option<f64>,
    pub total_ms: f64,
    /// Generated tokens per second of decoding (after prefill).
    pub decode_tokens_per_s: f64,
    /// Time the guard itself took (scoring, smoothing, deciding, holding text back and releasing
    /// it; without a guard: releasing it), inside `total_ms`. Not the sink's delivery of released
    /// text (printing, a server's channel send), which unguarded generation does too. Its share of
    /// the decode time is the guard's host-side overhead, measured without a second, unguarded run.
    pub guard_ms: f64,
}

impl Timings {
    /// Milliseconds of decoding: everything after the prefill (what `decode_tokens_per_s` and
    /// the guard's share are measured against).
    pub fn decode_ms(&self) -> f64 {
        self.total_ms - self.prefill_ms
    }
}

/// The machine-readable result (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct GenerationResult {
    pub prompt: String,
    pub status: Status,
    /// Released text, or the refusal message when refused.
    pub response: String,
    /// On pause/refusal: the text released before the pause.
    pub partial_response: Option<String>,
    /// Characters generated but never released (the window a pause withheld).
    pub withheld_chars: usize,
    /// The withheld text itself, only with [`GenerateOptions::keep_withheld`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_text: Option<String>,
    /// 0-based generated token at which the guard paused.
    pub pause_token: Option<usize>,
    /// Highest smoothed risk of any probe step (0 without a guard).
    pub max_smoothed_risk: f32,
    pub stop_reason: StopReason,
    pub tokens_generated: usize,
    /// Generated token ids (the stop token excluded).
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub probe_steps: Vec<ProbeStep>,
    pub timings: Timings,
}

/// Generates for each prompt (one batch, left-padded); `sinks[i]` receives row i's released
/// text as it is judged.
pub fn generate_batch<'s>(
    model: &mut Model,
    prompts: &[String],
    guard: Option<&GuardSetup<'_>>,
    opts: &GenerateOptions,
    sinks: Vec<Sink<'s>>,
) -> Result<Vec<GenerationResult>> {
    let start = Instant::now();
    let Model { files, decoder } = model;
    check_max_new(opts.max_new_tokens, files.manifest.max_position_embeddings)?;
    let mut rows = Vec::with_capacity(prompts.len());
    for (prompt, sink) in prompts.iter().zip(sinks) {
        rows.push(Row::new(files, prompt, opts, guard, sink, start)?);
    }
    let mut batch = Batch::new(files, guard.map(GuardSetup::scorers));
    batch.join(decoder, rows)?;
    while batch.decoding() {
        batch.step(decoder)?;
    }
    batch
        .into_rows()
        .into_iter()
        .map(|r| r.finish(false))
        .collect()
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Maps the guard's status to the result status.
fn status_of(guard: Option<GuardStatus>, refused: bool) -> Status {
    match (refused, guard) {
        (true, _) => Status::Refused,
        (false, Some(GuardStatus::Paused)) => Status::Paused,
        (false, Some(GuardStatus::Flagged)) => Status::Flagged,
        _ => Status::Completed,
    }
}

/// Refuses a `--max-new-tokens` no prompt could fit with (at least one prompt token is needed),
/// before any prompt is rendered.
pub fn check_max_new(max_new: usize, context: Option<usize>) -> Result<()> {
    match context {
        Some(ctx) if max_new >= ctx => Err(Error::Generate(format!(
            "with the prompt, --max-new-tokens {max_new} exceeds the model's context of {ctx} \
             tokens: lower --max-new-tokens"
        ))),
        _ => Ok(()),
    }
}

/// Checks a prompt fits: `prompt_tokens + max_new_tokens` within the model's context. The sum
/// is checked: `--max-new-tokens` is user input, and a wrapped sum would pass.
fn check_length(prompt_tokens: usize, max_new: usize, context: Option<usize>) -> Result<()> {
    if let Some(ctx) = context {
        if prompt_tokens
            .checked_add(max_new)
            .is_none_or(|total| total > ctx)
        {
            return Err(Error::Generate(format!(
                "the prompt is {prompt_tokens} tokens; with --max-new-tokens {max_new} that \
                 exceeds the model's context of {ctx} tokens: shorten the prompt or lower \
                 --max-new-tokens"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17 item 3: `prompt + usize::MAX` wrapped to a small number and passed.
    #[test]
    fn huge_max_new_tokens_are_refused_not_wrapped() {
        let err = check_length(10, usize::MAX, Some(8192)).unwrap_err();
        assert!(
            err.to_string().contains("exceeds the model's context"),
            "{err}"
        );
        assert!(check_length(10, 8182, Some(8192)).is_ok());
        assert!(check_length(10, 8183, Some(8192)).is_err());
        let err = check_max_new(usize::MAX, Some(8192))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--max-new-tokens 18446744073709551615"),
            "{err}"
        );
        assert!(check_max_new(8191, Some(8192)).is_ok());
        assert!(
            check_max_new(usize::MAX, None).is_ok(),
            "no context known: nothing to check"
        );
    }
}
