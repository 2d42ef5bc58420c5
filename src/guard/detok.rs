//! Incremental detokenization that never fails on odd token sequences. tokenizers' own
//! `DecodeStream` errors ("Invalid prefix encountered") when a new token changes how earlier
//! bytes decode, which byte-fallback vocabularies do; here the text of a sliding window of ids is
//! re-decoded and only the new, complete part is emitted (the approach of transformers'
//! `TextStreamer`), holding back an incomplete UTF-8 sequence (shown as U+FFFD) until it completes.

use super::stream::TokenDecoder;
use crate::error::{Error, Result};
use tokenizers::Tokenizer;

/// Streams the text of generated ids, one id at a time.
pub struct IncrementalDecoder<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    /// Start of the window whose text was already emitted up to `read`.
    prefix: usize,
    read: usize,
}

impl<'t> IncrementalDecoder<'t> {
    /// Skips special tokens, as a response shown to a user should.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenize(format!("decoding generated tokens: {e}")))
    }
}

impl TokenDecoder for IncrementalDecoder<'_> {
    fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self.decode(&self.ids[self.prefix..self.read])?;
        let after = self.decode(&self.ids[self.prefix..])?;
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        // Normally `after` extends `before`; if a token rewrote earlier text, emit only what
        // follows the common prefix (text already shown cannot be taken back).
        let common = before
            .char_indices()
            .zip(after.chars())
            .find(|((_, a), b)| a != b)
            .map_or(before.len(), |((i, _), _)| i);
        let chunk = after[common..].to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(chunk))
    }
}
