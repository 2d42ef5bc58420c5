//! The hold-back streamer: no generated token's text reaches the sink before a probe step that
//! covers the token has been scored and did not pause.
//!
//! Each pushed token is decoded at once (so UTF-8 split across tokens is reassembled by the
//! decoder) but its text is kept in a queue, one chunk per token, until the engine releases the
//! tokens a probe step judged. A chunk is attributed to the token that completed it, so a
//! character split across a released and a withheld token is never emitted at all.

use super::{Decision, ProbeStep};
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::Write;
use tokenizers::{DecodeStream, Decoder, Model, Normalizer, PostProcessor, PreTokenizer};

/// Incremental detokenizer: turns token ids, one at a time, into text chunks.
pub trait TokenDecoder {
    /// Feeds one id; returns the new text it completes, or `None` while the text so far ends in
    /// an incomplete UTF-8 sequence (the bytes are kept for the next ids).
    fn step(&mut self, id: u32) -> Result<Option<String>>;
}

/// tokenizers' own streaming decoder, `tokenizer.decode_stream(true)` (skip special tokens). Generation
/// uses [`super::IncrementalDecoder`] instead (`DecodeStream` fails on tokens that re-merge earlier
/// text); this impl stays for callers with simple vocabularies and for the tests.
impl<M, N, PT, PP, D> TokenDecoder for DecodeStream<'_, M, N, PT, PP, D>
where
    M: Model,
    N: Normalizer,
    PT: PreTokenizer,
    PP: PostProcessor,
    D: Decoder,
{
    fn step(&mut self, id: u32) -> Result<Option<String>> {
        DecodeStream::step(self, id)
            .map_err(|e| Error::Tokenize(format!("decoding generated token {id}: {e}")))
    }
}

/// Boxed decoders, so the engine can hold one without naming the tokenizer's type parameters.
impl<T: TokenDecoder + ?Sized> TokenDecoder for Box<T> {
    fn step(&mut self, id: u32) -> Result<Option<String>> {
        (**self).step(id)
    }
}

/// Where released text goes: the terminal, a buffer, a test's capture.
pub trait TextSink {
    /// Receives one released chunk (never empty).
    fn emit(&mut self, text: &str) -> Result<()>;
}

/// Any `FnMut(&str)` is a sink, which is what tests use to record what was emitted and when.
impl<F: FnMut(&str)> TextSink for F {
    fn emit(&mut self, text: &str) -> Result<()> {
        self(text);
        Ok(())
    }
}

/// A sink over an [`std::io::Write`], flushed after each chunk so streamed text shows at once.
#[derive(Debug)]
pub struct WriteSink<W: Write>(pub W);

impl<W: Write> TextSink for WriteSink<W> {
    fn emit(&mut self, text: &str) -> Result<()> {
        self.0
            .write_all(text.as_bytes())
            .and_then(|()| self.0.flush())
            .map_err(|e| Error::Generate(format!("writing the response: {e}")))
    }
}

/// Holds generated text back until the probe has judged it; see the module docs.
#[derive(Debug)]
pub struct HeldStream<D, S> {
    decoder: D,
    sink: S,
    /// Text chunk of each held token (empty while it only carried part of a character).
    held: VecDeque<String>,
    /// Tokens pushed so far.
    pushed: usize,
    /// Tokens released so far (always the first `released_tokens` pushed).
    released_tokens: usize,
    /// Everything emitted to the sink, in order.
    released: String,
    /// Set by a pause: the text of the held tokens, dropped (never emitted); the stream is
    /// closed. Kept for the caller's audit record only.
    withheld: Option<String>,
    /// Time spent inside the sink: delivering released text (a server's stop matching and
    /// channel send), which an unguarded stream does too, so the guard's timing leaves it out.
    emit_time: std::time::Duration,
}

impl<D: TokenDecoder, S: TextSink> HeldStream<D, S> {
    /// A stream that decodes with `decoder` and emits released text to `sink`.
    pub fn new(decoder: D, sink: S) -> Self {
        HeldStream {
            decoder,
            sink,
            held: VecDeque::new(),
            pushed: 0,
            released_tokens: 0,
            released: String::new(),
            withheld: None,
            emit_time: std::time::Duration::ZERO,
        }
    }

    /// Adds a generated token: decoded now, emitted only when released. An error after a pause.
    pub fn push(&mut self, id: u32) -> Result<()> {
        self.ensure_open("push a token")?;
        let chunk = self.decoder.step(id)?.unwrap_or_default();
        self.held.push_back(chunk);
        self.pushed += 1;
        Ok(())
    }

    /// Emits the text of the first `through` pushed tokens that is not out yet (a probe step
    /// judges tokens `..=token_index`, so pass `token_index + 1`), and returns that text. Tokens
    /// pushed after `through` stay held. Errors after a pause and when `through` exceeds the
    /// tokens pushed; a `through` already released is a no-op.
    pub fn release(&mut self, through: usize) -> Result<&str> {
        self.ensure_open("release text")?;
        if through > self.pushed {
            return Err(Error::Generate(format!(
                "cannot release through token {through}: only {} tokens were generated",
                self.pushed
            )));
        }
        let start = self.released.len();
        while self.released_tokens < through {
            let chunk = self
                .held
                .pop_front()
                .expect("held covers pushed - released");
            self.released.push_str(&chunk);
            self.released_tokens += 1;
        }
        if self.released.len() > start {
            let t = std::time::Instant::now();
            let emitted = self.sink.emit(&self.released[start..]);
            self.emit_time += t.elapsed();
            emitted?;
        }
        Ok(&self.released[start..])
    }

    /// Pause: drops every held token without emitting it and closes the stream. Returns the
    /// number of tokens dropped.
    pub fn withhold(&mut self) -> usize {
        let dropped = self.held.len();
        self.withheld = Some(self.held.drain(..).collect());
        dropped
    }

    /// Acts on a probe step: releases the tokens it judged unless it paused, in which case the
    /// held tokens are withheld. Returns the text released (empty on a pause).
    pub fn apply(&mut self, step: &ProbeStep) -> Result<&str> {
        if step.decision == Decision::Pause {
            self.withhold();
            return Ok("");
        }
        self.release(step.token_index + 1)
    }

    /// Ends the stream and returns the released response. Errors if tokens are still held
    /// without a pause: they were never judged, so the engine skipped the final probe. Bytes of
    /// a character the generation never completed are not part of the response.
    pub fn finish(self) -> Result<String> {
        if self.withheld.is_none() && !self.held.is_empty() {
            return Err(Error::Generate(format!(
                "{} generated tokens were never judged by the probe: probe the last token \
                 (Guard::needs_final_probe) and release before finishing",
                self.held.len()
            )));
        }
        Ok(self.released)
    }

    /// The text released so far: the whole response if generation completed, the partial
    /// response (everything before the paused window) if it paused.
    pub fn partial_response(&self) -> &str {
        &self.released
    }

    /// Tokens pushed and not yet released (zero after a pause).
    pub fn held_tokens(&self) -> usize {
        self.held.len()
    }

    /// Tokens released so far.
    pub fn released_tokens(&self) -> usize {
        self.released_tokens
    }

    /// Tokens pushed so far.
    pub fn pushed_tokens(&self) -> usize {
        self.pushed
    }

    /// Whether a pause withheld the held tokens and closed the stream.
    pub fn is_withheld(&self) -> bool {
        self.withheld.is_some()
    }

    /// The text a pause withheld (generated, judged unsafe, never emitted).
    pub fn withheld_text(&self) -> Option<&str> {
        self.withheld.as_deref()
    }

    /// Time spent inside the sink so far (see the field).
    pub fn emit_time(&self) -> std::time::Duration {
        self.emit_time
    }

    /// The sink, e.g. to inspect a buffer it writes to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn ensure_open(&self, what: &str) -> Result<()> {
        if self.withheld.is_some() {
            return Err(Error::Generate(format!(
                "cannot {what}: generation was paused and the stream is closed"
            )));
        }
        Ok(())
    }
}
