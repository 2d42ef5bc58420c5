//! One row of a generation batch: its prompt, options, token history, sampler, guard and
//! hold-back stream, and the per-step rule: feed token n, judge it (when a probe step is due, or
//! when it is the last), then sample token n+1 unless the row stops. `generate` and `serve` both
//! decode through it (see [`super::Batch`]).

use super::{check_length, check_max_new, ms, status_of, GenerateOptions, GenerationResult};
use super::{OnPause, StopReason, Timings};
use crate::error::Result;
use crate::guard::sampling::LogitsProcessor;
use crate::guard::{Decision, Guard, HeldStream, IncrementalDecoder, RunningMean, TokenDecoder};
use crate::guard::{GuardSetup, Scorers};
use crate::text::model::ModelFiles;
use std::time::Instant;

type Stream<'t, 's> = HeldStream<Box<dyn TokenDecoder + 't>, super::Sink<'s>>;

/// One request in a batch: its own options, sampler, guard and stream.
pub struct Row<'t, 's> {
    prompt: String,
    prompt_tokens: usize,
    /// Prompt and generated ids (the repetition penalty reads all of them, as HF does).
    pub(super) history: Vec<u32>,
    /// Sampled token not yet fed to the graph.
    pub(super) pending: Option<u32>,
    opts: GenerateOptions,
    /// When the request was submitted (timings count from here).
    start: Instant,
    prefill_ms: f64,
    generated: usize,
    sampler: LogitsProcessor,
    guard: Option<Guard>,
    stream: Stream<'t, 's>,
    stop: Option<StopReason>,
    ttft_ms: Option<f64>,
    first_release_ms: Option<f64>,
    /// A cascade's running mean of the response's states at the second stage's layers, and
    /// where those layers are among a step's states (fixed by the row's guard, so found once).
    second_mean: RunningMean,
    second_at: Option<Vec<usize>>,
    /// Time spent judging (scoring, smoothing, deciding, the held stream; not the sink): the guard's own
    /// share of the decode loop, reported as [`Timings::guard_ms`].
    guard_time: std::time::Duration,
}

impl<'t, 's> Row<'t, 's> {
    /// A row for a user prompt, rendered with the model's prompt format (`generate`).
    pub fn new(
        files: &'t ModelFiles,
        prompt: &str,
        opts: &GenerateOptions,
        guard: Option<&GuardSetup<'_>>,
        sink: super::Sink<'s>,
        start: Instant,
    ) -> Result<Self> {
        if prompt.trim().is_empty() {
            return Err(crate::Error::Generate(
                "the prompt is empty: give a non-empty --prompt (or remove the empty line from --prompts-file)".into(),
            ));
        }
        let rendered = files.format.generation_prompt(prompt)?;
        let ids = files.encoder.encode(&rendered)?.ids;
        Self::from_ids(files, prompt, ids, opts, guard, sink, start)
    }

    /// A row for an already rendered and encoded prompt (`serve`'s chat messages); `label` is
    /// what the result's `prompt` field says. Refused when prompt and `max_new_tokens` exceed
    /// the model's context.
    pub fn from_ids(
        files: &'t ModelFiles,
        label: &str,
        ids: Vec<u32>,
        opts: &GenerateOptions,
        guard: Option<&GuardSetup<'_>>,
        sink: super::Sink<'s>,
        start: Instant,
    ) -> Result<Self> {
        let context = files.manifest.max_position_embeddings;
        check_max_new(opts.max_new_tokens, context)?;
        check_length(ids.len(), opts.max_new_tokens, context)?;
        let decoder: Box<dyn TokenDecoder + 't> =
            Box::new(IncrementalDecoder::new(files.encoder.tokenizer()));
        Ok(Self {
            prompt: label.to_string(),
            prompt_tokens: ids.len(),
            history: ids,
            pending: None,
            opts: opts.clone(),
            start,
            prefill_ms: 0.0,
            generated: 0,
            sampler: LogitsProcessor::new(opts.sampling.clone())?,
            guard: guard.map(|g| Guard::new(g.config)).transpose()?,
            stream: HeldStream::new(decoder, sink),
            stop: None,
            ttft_ms: None,
            first_release_ms: None,
            second_mean: RunningMean::default(),
            second_at: guard.and_then(|g| g.second_indices()),
            guard_time: std::time::Duration::ZERO,
        })
    }

    /// Whether the row still decodes (it has a sampled token to feed).
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Tokens generated so far, and the prompt's length in tokens.
    pub fn token_counts(&self) -> (usize, usize) {
        (self.generated, self.prompt_tokens)
    }

    /// Samples from `logits`; returns the token unless it ends generation.
    fn sample(&mut self, logits: &[f32], eos: &[u32]) -> Result<Option<u32>> {
        let mut l = logits.to_vec();
        if self.opts.ignore_eos {
            for &e in eos {
                if let Some(x) = l.get_mut(e as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        let t = self.sampler.sample(&mut l, &self.history)?;
        let start = self.start;
        self.ttft_ms.get_or_insert_with(|| ms(start));
        Ok((!eos.contains(&t)).then_some(t))
    }

    /// Queues `t` (held, not shown) as the next token to feed.
    fn accept(&mut self, t: u32) -> Result<()> {
        self.stream.push(t)?;
        self.history.push(t);
        self.generated += 1;
        self.pending = Some(t);
        Ok(())
    }

    pub(super) fn after_prefill(&mut self, logits: &[f32], eos: &[u32]) -> Result<()> {
        self.prefill_ms = ms(self.start);
        if self.opts.max_new_tokens == 0 {
            self.stop = Some(StopReason::MaxNewTokens);
            return Ok(());
        }
        match self.sample(logits, eos)? {
            Some(t) => self.accept(t),
            None => {
                self.stop = Some(StopReason::Eos);
                Ok(())
            }
        }
    }

    /// After the graph consumed the pending token: judge, then sample the next one. `judged`
    /// carries the scorers and this row's hidden states at their layers ([`Scorers::layers`]); a
    /// row with a guard must get them, so no text is ever released unjudged.
    pub(super) fn after_step(
        &mut self,
        logits: &[f32],
        judged: Option<(Scorers<'_>, &[&[f32]])>,
        eos: &[u32],
    ) -> Result<()> {
        self.pending = None;
        let n = self.generated;
        let next = if n >= self.opts.max_new_tokens {
            self.stop = Some(StopReason::MaxNewTokens);
            None
        } else {
            let t = self.sample(logits, eos)?;
            if t.is_none() {
                self.stop = Some(StopReason::Eos);
            }
            t
        };
        let last = next.is_none();
        // The guard's own time: judging and the held stream, less the sink's delivery of the
        // released text (an unguarded stream delivers the same text).
        let (judging, emitted) = (Instant::now(), self.stream.emit_time());
        let paused = self.judge(n, last, judged)?;
        self.guard_time += judging
            .elapsed()
            .saturating_sub(self.stream.emit_time() - emitted);
        if paused {
            self.stop = Some(StopReason::Paused);
            return Ok(());
        }
        if self.first_release_ms.is_none() && self.stream.released_tokens() > 0 {
            self.first_release_ms = Some(ms(self.start));
        }
        if let Some(t) = next {
            self.accept(t)?;
        }
        Ok(())
    }

    /// Judges generated token `n` (when a probe step is due, or it is the `last`) and applies the
    /// decision to the held stream; without a guard, releases it. True when the guard paused.
    fn judge(
        &mut self,
        n: usize,
        last: bool,
        judged: Option<(Scorers<'_>, &[&[f32]])>,
    ) -> Result<bool> {
        match (&mut self.guard, judged) {
            (Some(g), Some((scorers, states))) => {
                let second = scorers.second.zip(self.second_at.as_ref());
                if let Some((_, idx)) = second {
                    let parts: Vec<&[f32]> = idx.iter().map(|&i| states[i]).collect();
                    self.second_mean.push_parts(&parts);
                }
                if g.is_due(n, last) {
                    let k = scorers.scorer.layers().len();
                    let risk = scorers.scorer.score_states(&states[..k]);
                    let step = match second {
                        Some((s, _)) => {
                            let v = s.scorer.score(self.second_mean.mean());
                            g.observe_cascade(n, risk, Some((s.threshold, &|| v)))?
                        }
                        None => g.observe(n, risk)?,
                    };
                    self.stream.apply(&step)?;
                    return Ok(step.decision == Decision::Pause);
                }
                Ok(false)
            }
            (None, _) => {
                self.stream.release(n)?;
                Ok(false)
            }
            (Some(_), None) => Err(crate::Error::Generate(
                "a guarded row got no hidden state to judge; nothing was released".into(),
            )),
        }
    }

    fn timings(&self, prefill_ms: f64, total_ms: f64) -> Timings {
        let mut t = Timings {
            prefill_ms,
            time_to_first_token_ms: self.ttft_ms.unwrap_or(prefill_ms),
            time_to_first_release_ms: self.first_release_ms,
            total_ms,
            decode_tokens_per_s: 0.0,
            guard_ms: self.guard_time.as_secs_f64() * 1e3,
        };
        t.decode_tokens_per_s = self.generated as f64 / (t.decode_ms().max(1e-9) / 1e3);
        t
    }

    /// The row's result once it stopped. A row removed while it still decoded (`cancelled`: a
    /// stop sequence matched or the client left) keeps only its released text; tokens it still
    /// held were never judged and are dropped.
    pub fn finish(self, cancelled: bool) -> Result<GenerationResult> {
        let (opts, prefill_ms) = (&self.opts, self.prefill_ms);
        let total_ms = ms(self.start);
        let timings = self.timings(prefill_ms, total_ms);
        let guard_status = self.guard.as_ref().map(Guard::status);
        let steps = self
            .guard
            .as_ref()
            .map(|g| g.steps().to_vec())
            .unwrap_or_default();
        let stop = match (self.stop, cancelled) {
            (Some(s), _) => s,
            (None, true) => StopReason::Cancelled,
            (None, false) => StopReason::MaxNewTokens,
        };
        let paused = stop == StopReason::Paused;
        let withheld = self.stream.withheld_text().unwrap_or("");
        let withheld_chars = withheld.chars().count();
        let withheld_text = (opts.keep_withheld && paused).then(|| withheld.to_string());
        let released = if paused || stop == StopReason::Cancelled {
            self.stream.partial_response().to_string()
        } else {
            self.stream.finish()?
        };
        let refused = paused && opts.on_pause == OnPause::Refuse;
        let pause_token = steps
            .iter()
            .find(|s| s.decision == crate::guard::Decision::Pause)
            .map(|s| s.token_index);
        let max_smoothed_risk = steps.iter().map(|s| s.smoothed).fold(0f32, f32::max);
        Ok(GenerationResult {
            prompt: self.prompt,
            status: status_of(guard_status, refused),
            response: if refused {
                opts.refusal_message.clone()
            } else {
                released.clone()
            },
            partial_response: paused.then_some(released),
            withheld_chars,
            withheld_text,
            pause_token,
            max_smoothed_risk,
            stop_reason: stop,
            tokens_generated: self.generated,
            token_ids: self.history[self.prompt_tokens..].to_vec(),
            prompt_tokens: self.prompt_tokens,
            probe_steps: steps,
            timings,
        })
    }
}
