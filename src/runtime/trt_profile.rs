//! TensorRT optimization profiles for the graph's dynamic dimensions (batch, new tokens, cached
//! tokens), from the manifest: TensorRT builds one engine per profile and rejects shapes outside
//! it, so the range must cover prefill, decode and extraction batches.

use crate::runtime::manifest::Manifest;

/// `trt_profile_{min,opt,max}_shapes` values: `name:d0xd1x...` entries joined by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrtProfiles {
    pub min: String,
    pub opt: String,
    pub max: String,
}

/// One shape point: batch `b`, new tokens `s`, cached tokens `p`.
fn shapes(m: &Manifest, b: usize, s: usize, p: usize) -> String {
    let mut out = vec![
        format!("{}:{b}x{s}", m.inputs.input_ids),
        format!("{}:{b}x{}", m.inputs.attention_mask, p + s),
        format!("{}:{b}x{s}", m.inputs.position_ids),
    ];
    for kv in &m.kv_cache {
        for name in [&kv.past_key, &kv.past_value] {
            out.push(format!("{name}:{b}x{}x{p}x{}", kv.num_heads, kv.head_dim));
        }
    }
    out.join(",")
}

/// Profiles from one token and an empty cache up to `max_batch` rows of `max_tokens` in total
/// (new plus cached, capped by the model's context), optimized for batch-1 decoding with
/// `opt_past` cached tokens.
pub fn profiles(m: &Manifest, max_batch: usize, max_tokens: usize, opt_past: usize) -> TrtProfiles {
    let total = m
        .max_position_embeddings
        .map_or(max_tokens, |c| c.min(max_tokens));
    TrtProfiles {
        min: shapes(m, 1, 1, 0),
        opt: shapes(m, 1, 1, opt_past.min(total - 1)),
        max: shapes(m, max_batch, total, total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_input_with_its_heads_and_head_dim() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-gemma4");
        let (m, _) = Manifest::load(&dir).unwrap();
        let p = profiles(&m, 8, 1024, 256);
        assert!(p
            .min
            .starts_with("input_ids:1x1,attention_mask:1x1,position_ids:1x1,"));
        // tiny-gemma4: entry 2 is the full-attention layer (2 KV heads of 32).
        assert!(
            p.min.contains("past_key_values.2.key:1x2x0x32"),
            "{}",
            p.min
        );
        assert!(
            p.opt.contains("past_key_values.0.value:1x1x256x16"),
            "{}",
            p.opt
        );
        assert!(p.max.contains("attention_mask:8x2048"), "{}", p.max);
        assert_eq!(p.max.matches(',').count(), 2 + 2 * m.kv_cache.len());
    }
}
