//! Tokenization of rendered prompts that user text cannot subvert: a control-token string such as
//! `<end_of_turn>` typed inside a message is encoded as plain text, never as the control token.
//! When no message contains one, the ids equal Hugging Face's for the same text.

use crate::error::{Error, Result};
use crate::text::prompt::Rendered;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use tokenizers::Tokenizer;

/// Token ids with their byte spans in the text.
type IdsAndOffsets = (Vec<u32>, Vec<(usize, usize)>);

/// Token ids of a rendered prompt and where its messages' tokens are.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Token ranges of `Rendered::content`, same order.
    pub content: Vec<Range<usize>>,
    /// Token range of the response, if the rendering has one.
    pub response: Option<Range<usize>>,
    /// Token range of the prompt (user message), if any.
    pub prompt: Option<Range<usize>>,
    /// A message contained control-token text that was encoded as plain text.
    pub neutralized_control_tokens: bool,
    /// Tokens removed by truncation.
    pub truncated_tokens: usize,
}

/// Two views of one tokenizer: the normal one, and one that never matches special tokens.
pub struct TextEncoder {
    normal: Tokenizer,
    literal: Tokenizer,
    special_ids: HashSet<u32>,
}

impl TextEncoder {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let normal = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenize(format!("cannot load {}: {e}", path.display())))?;
        Ok(Self::new(normal))
    }

    pub fn new(normal: Tokenizer) -> Self {
        let mut literal = normal.clone();
        literal.set_encode_special_tokens(true);
        let special_ids = normal
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        Self {
            normal,
            literal,
            special_ids,
        }
    }

    /// Also treats as control tokens the *non-special* added tokens a chat template writes
    /// itself (their text occurs in `template`, e.g. Qwen3's `<think>`/`</think>`), so text
    /// inside a message cannot forge them either. Whitespace-only added tokens (Gemma's newline
    /// runs) stay ordinary text. Returns how many tokens were added to the protected set.
    pub fn protect_template_tokens(&mut self, template: &str) -> Result<usize> {
        let extra: Vec<(u32, tokenizers::AddedToken)> = self
            .normal
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| {
                !t.special && !t.content.trim().is_empty() && template.contains(&t.content)
            })
            .collect();
        // Marked special in the literal view only, whose `encode_special_tokens` skips them.
        let as_special: Vec<tokenizers::AddedToken> = extra
            .iter()
            .map(|(_, t)| tokenizers::AddedToken {
                special: true,
                ..t.clone()
            })
            .collect();
        self.literal
            .add_special_tokens(as_special)
            .map_err(|e| Error::Tokenize(format!("protecting the template's tokens: {e}")))?;
        self.special_ids.extend(extra.iter().map(|(id, _)| *id));
        Ok(extra.len())
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.normal
    }

    /// Encodes a rendering; see the module doc for the guarantee.
    pub fn encode(&self, r: &Rendered) -> Result<Encoded> {
        let enc = self
            .normal
            .encode(r.text.as_str(), r.add_special_tokens)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        let inside_content = |span: &(usize, usize)| {
            r.content
                .iter()
                .chain(&r.repeats)
                .any(|c| span.0 >= c.start && span.0 < c.end && span.1 > span.0)
        };
        let forged = enc
            .get_ids()
            .iter()
            .zip(enc.get_offsets())
            .any(|(id, span)| self.special_ids.contains(id) && inside_content(span));
        let (ids, offsets) = if forged {
            self.encode_neutralized(r, enc.get_ids(), enc.get_offsets(), inside_content)?
        } else {
            (enc.get_ids().to_vec(), enc.get_offsets().to_vec())
        };
        let content: Vec<Range<usize>> =
            r.content.iter().map(|c| token_range(&offsets, c)).collect();
        Ok(Encoded {
            ids,
            response: r.response.map(|i| content[i].clone()),
            prompt: r.prompt.map(|i| content[i].clone()),
            content,
            neutralized_control_tokens: forged,
            truncated_tokens: 0,
        })
    }

    /// Keeps only the special tokens the template wrote; encodes the text between them with
    /// special-token matching off.
    fn encode_neutralized(
        &self,
        r: &Rendered,
        ids: &[u32],
        offsets: &[(usize, usize)],
        inside_content: impl Fn(&(usize, usize)) -> bool,
    ) -> Result<IdsAndOffsets> {
        let mut out_ids = Vec::with_capacity(ids.len());
        let mut out_offsets = Vec::with_capacity(ids.len());
        // Tokens the post-processor adds (e.g. <bos>) carry an empty span at 0.
        let mut pos = 0;
        let flush = |from: usize, to: usize, ids: &mut Vec<u32>, offs: &mut Vec<(usize, usize)>| {
            if from >= to {
                return Ok(());
            }
            let e = self
                .literal
                .encode(&r.text[from..to], false)
                .map_err(|e| Error::Tokenize(e.to_string()))?;
            ids.extend_from_slice(e.get_ids());
            offs.extend(e.get_offsets().iter().map(|(a, b)| (a + from, b + from)));
            Ok::<(), Error>(())
        };
        for (id, span) in ids.iter().zip(offsets) {
            let trusted_special = self.special_ids.contains(id) && !inside_content(span);
            if !trusted_special {
                continue;
            }
            if span.1 == span.0 {
                // Added by the post-processor, not present in the text.
                out_ids.push(*id);
                out_offsets.push(*span);
                continue;
            }
            flush(pos, span.0, &mut out_ids, &mut out_offsets)?;
            out_ids.push(*id);
            out_offsets.push(*span);
            pos = span.1;
        }
        flush(pos, r.text.len(), &mut out_ids, &mut out_offsets)?;
        Ok((out_ids, out_offsets))
    }

    /// Truncates to `max_tokens` by removing tokens from the left of the prompt text (then of
    /// the response), never the template's own tokens, so the response end is kept.
    pub fn truncate(&self, enc: &mut Encoded, max_tokens: usize) -> Result<()> {
        let excess = enc.ids.len().saturating_sub(max_tokens);
        if excess == 0 {
            return Ok(());
        }
        let mut removable: Vec<usize> = Vec::new();
        for range in [enc.prompt.clone(), enc.response.clone()]
            .into_iter()
            .flatten()
        {
            removable.extend(range);
        }
        if removable.len() < excess {
            return Err(Error::Tokenize(format!(
                "cannot fit the exchange into --max-tokens {max_tokens}: the template alone \
                 needs {} tokens",
                enc.ids.len() - removable.len()
            )));
        }
        let drop: HashSet<usize> = removable.into_iter().take(excess).collect();
        let remap = |r: &Range<usize>| {
            let before = |i: usize| (0..i).filter(|j| drop.contains(j)).count();
            r.start - before(r.start)..r.end - before(r.end)
        };
        enc.content = enc.content.iter().map(remap).collect();
        enc.prompt = enc.prompt.as_ref().map(remap);
        enc.response = enc.response.as_ref().map(remap);
        enc.ids = enc
            .ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, &id)| id)
            .collect();
        enc.truncated_tokens = excess;
        Ok(())
    }
}

/// Tokens whose span starts inside the byte range `c` (an empty range maps to an empty range
/// at the first token after it).
fn token_range(offsets: &[(usize, usize)], c: &Range<usize>) -> Range<usize> {
    let real = |o: &(usize, usize)| o.1 > o.0;
    let start = offsets
        .iter()
        .position(|o| real(o) && o.0 >= c.start)
        .unwrap_or(offsets.len());
    let end = offsets
        .iter()
        .rposition(|o| real(o) && o.0 < c.end && o.0 >= c.start)
        .map_or(start, |i| i + 1);
    start..end.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ranges_follow_offsets() {
        let offs = [(0, 0), (0, 3), (3, 5), (5, 9), (9, 10)];
        assert_eq!(token_range(&offs, &(3..9)), 2..4);
        assert_eq!(
            token_range(&offs, &(4..9)),
            3..4,
            "a token straddling the start is excluded"
        );
        assert_eq!(token_range(&offs, &(10..10)), 5..5);
    }
}
