//! The decode state of one batch, after onnxruntime-genai's `State`: it owns the KV cache, the
//! attention mask and the position rule, and is the only code that advances them. `prefill`
//! starts a left-padded batch, `step` feeds one token per row and grows cache and mask by one
//! position (the cache moves from outputs to inputs, never copied), `rewind_to` drops the newest
//! positions, `join` lets freshly prefilled rows join a running batch at a step boundary, and
//! `retain_rows` lets rows leave it (continuous batching). Pad id, vocabulary size and
//! whether logits cover only the last position come from the manifest; every output shape is
//! checked against them.

use super::decoder::{f32_view, Decoder, Outputs, Want};
use super::inputs::{decode_step, join_masks, left_padded};
use super::kv_cache::KvCache;
use crate::error::{Error, Result};
use ndarray::{s, Array2};
use std::borrow::Cow;

/// Cache, mask and the manifest facts a batch decodes with.
pub struct DecodeState {
    /// `None` only after a failed step, which leaves the state unusable (the cache was moved
    /// into the run that failed).
    cache: Option<KvCache>,
    /// `[batch, past_len]`: 1 where a cached position is a real token.
    mask: Array2<i64>,
    pad_id: u32,
    vocab: usize,
    last_position_only: bool,
}

/// The logits and hidden states of one prefill or step, as the graph returned them.
pub struct StepOutput {
    outputs: Outputs,
    batch: usize,
    vocab: usize,
    last_position_only: bool,
}

impl StepOutput {
    /// Next-token logits `[batch, vocab]` (the last position of each row).
    pub fn logits(&self) -> Result<Cow<'_, [f32]>> {
        let value = self
            .outputs
            .logits
            .as_ref()
            .ok_or_else(|| Error::Runtime("the decode step returned no logits".into()))?;
        let (shape, data) = f32_view(value)?;
        let seq = match (self.last_position_only, shape.as_slice()) {
            (true, [b, v]) if *b == self.batch && *v == self.vocab => 1,
            (_, [b, s, v]) if *b == self.batch && *v == self.vocab => *s,
            _ => {
                return Err(Error::Runtime(format!(
                    "logits have shape {shape:?}, expected [{b}, {v}] or [{b}, seq, {v}] \
                     (manifest: vocab_size {v}, last_position_only {}); re-export the model",
                    self.last_position_only,
                    b = self.batch,
                    v = self.vocab
                )))
            }
        };
        Ok(last_positions(data, self.batch, seq, self.vocab))
    }

    /// Hidden state `i` of the requested ones at each row's last position, `[batch, hidden]`.
    pub fn hidden(&self, i: usize, hidden_size: usize) -> Result<Cow<'_, [f32]>> {
        let value = self.outputs.hidden.get(i).ok_or_else(|| {
            Error::Runtime(format!("the decode step returned no hidden state #{i}"))
        })?;
        let (shape, data) = f32_view(value)?;
        match shape.as_slice() {
            [b, s, h] if *b == self.batch && *h == hidden_size => {
                Ok(last_positions(data, self.batch, *s, hidden_size))
            }
            _ => Err(Error::Runtime(format!(
                "hidden state #{i} has shape {shape:?}, expected [{}, seq, {hidden_size}]",
                self.batch
            ))),
        }
    }
}

/// Row-major `[batch, seq, width]` data cut to the last position of each row.
fn last_positions(data: Cow<'_, [f32]>, batch: usize, seq: usize, width: usize) -> Cow<'_, [f32]> {
    if seq == 1 {
        return data;
    }
    let mut out = Vec::with_capacity(batch * width);
    for b in 0..batch {
        let at = (b * seq + seq - 1) * width;
        out.extend_from_slice(&data[at..at + width]);
    }
    Cow::Owned(out)
}

impl DecodeState {
    /// Prefills `seqs` (left-padded, so every row's last token is in the last column) from an
    /// empty cache; `hidden` lists the absolute hidden-state indices wanted from this call.
    pub fn prefill(
        decoder: &mut Decoder,
        seqs: &[&[u32]],
        hidden: &[usize],
    ) -> Result<(Self, StepOutput)> {
        if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            return Err(Error::Runtime(
                "prefill needs at least one row and a token in every row".into(),
            ));
        }
        let m = decoder.manifest();
        let (pad_id, vocab, last_position_only) =
            (m.pad_id(), m.vocab_size, m.logits.last_position_only);
        let inputs = left_padded(seqs, pad_id);
        let mask = inputs.attention_mask.clone();
        let empty = decoder.empty_cache(seqs.len())?;
        let mut out = decoder.run_step(inputs, empty, &want(hidden))?;
        let cache = take_cache(&mut out, seqs.len(), mask.ncols())?;
        let state = Self {
            cache: Some(cache),
            mask,
            pad_id,
            vocab,
            last_position_only,
        };
        let out = state.output(out);
        Ok((state, out))
    }

    /// Feeds `tokens[b]` to row `b` and advances cache, mask and positions by one.
    pub fn step(
        &mut self,
        decoder: &mut Decoder,
        tokens: &[u32],
        hidden: &[usize],
    ) -> Result<StepOutput> {
        if tokens.len() != self.batch() {
            return Err(Error::Runtime(format!(
                "a decode step got {} tokens for a batch of {}",
                tokens.len(),
                self.batch()
            )));
        }
        let cache = self.cache.take().ok_or_else(lost)?;
        let inputs = decode_step(tokens, &self.mask);
        let mask = inputs.attention_mask.clone();
        let mut out = decoder.run_step(inputs, cache, &want(hidden))?;
        self.cache = Some(take_cache(&mut out, tokens.len(), mask.ncols())?);
        self.mask = mask;
        Ok(self.output(out))
    }

    /// Forgets every cached position from `len` on (the batch continues as if they had never
    /// been fed).
    pub fn rewind_to(&mut self, len: usize) -> Result<()> {
        if len > self.past_len() {
            return Err(Error::Runtime(format!(
                "cannot rewind to {len} positions: only {} are cached",
                self.past_len()
            )));
        }
        let rows: Vec<usize> = (0..self.batch()).collect();
        self.cache
            .as_mut()
            .ok_or_else(lost)?
            .select(&rows, 0..len)?;
        self.mask = self.mask.slice(s![.., ..len]).to_owned();
        Ok(())
    }

    /// Keeps only rows `keep` (in that order), e.g. when requests finish or are cancelled;
    /// leading positions that are padding in every kept row are dropped too.
    pub fn retain_rows(&mut self, keep: &[usize]) -> Result<()> {
        if keep.is_empty() {
            return Err(Error::Runtime(
                "a decode batch needs at least one row".into(),
            ));
        }
        let mut seen = vec![false; self.batch()];
        for &r in keep {
            match seen.get_mut(r) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(Error::Runtime(format!(
                        "cannot keep row {r} of a batch of {} (each row once)",
                        self.batch()
                    )))
                }
            }
        }
        let past = self.past_len();
        let mask = self.mask.select(ndarray::Axis(0), keep);
        let first = (0..past)
            .find(|&c| mask.column(c).iter().any(|&m| m != 0))
            .unwrap_or(past);
        let mut cache = self.cache.take().ok_or_else(lost)?;
        cache.select(keep, first..past)?;
        self.cache = Some(cache);
        self.mask = mask.slice(s![.., first..]).to_owned();
        Ok(())
    }

    /// Appends the rows of `other` (a batch prefilled on the same decoder) after this batch's
    /// rows: the shorter of the two is left-padded to the other's past length, masked, so every
    /// row's positions and attention stay what they were. A host round trip of both caches (as
    /// `retain_rows`): it runs when requests join, never per step.
    pub fn join(&mut self, mut other: DecodeState) -> Result<()> {
        if (other.pad_id, other.vocab) != (self.pad_id, self.vocab) {
            return Err(Error::Runtime(
                "cannot join decode states of different models".into(),
            ));
        }
        let theirs = other.cache.take().ok_or_else(lost)?;
        let mut ours = self.cache.take().ok_or_else(lost)?;
        ours.join(theirs)?;
        self.cache = Some(ours);
        self.mask = join_masks(&self.mask, &other.mask);
        Ok(())
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.mask.nrows()
    }

    /// Cached positions (padding included).
    pub fn past_len(&self) -> usize {
        self.mask.ncols()
    }

    /// `[batch, past_len]`: which cached positions are real tokens.
    pub fn mask(&self) -> &Array2<i64> {
        &self.mask
    }

    /// The id a finished row is fed while others go on (its outputs are ignored).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The cache, for inspection (shapes, where it lives).
    pub fn cache(&self) -> Result<&KvCache> {
        self.cache.as_ref().ok_or_else(lost)
    }

    fn output(&self, outputs: Outputs) -> StepOutput {
        StepOutput {
            outputs,
            batch: self.batch(),
            vocab: self.vocab,
            last_position_only: self.last_position_only,
        }
    }
}

fn want(hidden: &[usize]) -> Want {
    Want {
        logits: true,
        hidden: hidden.to_vec(),
        present: true,
    }
}

/// The `present.*` outputs as the next cache, checked against the batch and mask.
fn take_cache(out: &mut Outputs, batch: usize, len: usize) -> Result<KvCache> {
    let cache = out
        .present
        .take()
        .ok_or_else(|| Error::Runtime("the decode step returned no KV cache".into()))?;
    if cache.entries() > 0 && (cache.batch() != batch || cache.past_len() != len) {
        return Err(Error::Runtime(format!(
            "the graph returned a KV cache of {} rows x {} positions, expected {batch} x {len}",
            cache.batch(),
            cache.past_len()
        )));
    }
    Ok(cache)
}

fn lost() -> Error {
    Error::Runtime("the decode state lost its KV cache in a failed step; start a new batch".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_positions_cut_rows_to_their_last_column() {
        // batch 2, seq 3, width 2
        let data: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let cut = last_positions(Cow::Borrowed(&data), 2, 3, 2);
        assert_eq!(&*cut, &[4.0, 5.0, 10.0, 11.0]);
        let one = last_positions(Cow::Borrowed(&data[..4]), 2, 1, 2);
        assert!(
            matches!(one, Cow::Borrowed(_)),
            "a single position is not copied"
        );
    }
}
