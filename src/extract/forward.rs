//! Batched activation extraction: render and tokenize every exchange (rayon), sort by length,
//! run length-grouped batches under a token budget with an empty past, and pool each row's hidden
//! states (last real token, or mean over response tokens) for every requested layer in one pass.
//! Results go to an activation store shard by shard, so an interrupted run resumes.

use crate::data::{prompt_hash, Example};
use crate::error::{Error, Result};
use crate::extract::plan_batches;
use crate::runtime::decoder::{float_view, Decoder, FloatData, Want};
use crate::runtime::inputs::right_padded;
use crate::store::{Pooling, RowMeta, StoreWriter};
use crate::text::model::ModelFiles;
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use std::ops::Range;

/// A tokenized row, ready to batch.
#[derive(Debug, Clone)]
pub struct PreparedRow {
    pub ids: Vec<u32>,
    /// Tokens averaged by `Pooling::Mean` (the response tokens).
    pub response: Range<usize>,
    pub meta: RowMeta,
}

/// Renders and tokenizes exchanges (as the data reader gives them) in parallel; truncates to
/// `max_tokens` (from the left of the prompt). Each becomes its stored [`RowMeta`] here.
pub fn prepare_rows(
    files: &ModelFiles,
    rows: &[Example],
    max_tokens: Option<usize>,
) -> Result<Vec<PreparedRow>> {
    rows.par_iter()
        .map(|r| {
            let rendered = files.format.exchange(&r.prompt, &r.response)?;
            let mut enc = files.encoder.encode(&rendered)?;
            if let Some(max) = max_tokens {
                files
                    .encoder
                    .truncate(&mut enc, max)
                    .map_err(|e| Error::Extract(format!("row `{}`: {e}", r.id)))?;
            }
            if let Some(ctx) = files.manifest.max_position_embeddings {
                if enc.ids.len() > ctx {
                    return Err(Error::Extract(format!(
                        "row `{}` is {} tokens, beyond the model's context of {ctx}: pass \
                         --max-tokens {ctx} or less to truncate it",
                        r.id,
                        enc.ids.len()
                    )));
                }
            }
            let response = enc.response.clone().unwrap_or(0..0);
            if response.is_empty() {
                return Err(Error::Extract(format!(
                    "row `{}`: the response produced no tokens",
                    r.id
                )));
            }
            Ok(PreparedRow {
                meta: RowMeta {
                    id: r.id.clone(),
                    label: r.label,
                    split: r.split,
                    topic: r.topic.clone(),
                    source: r.source.clone(),
                    tokens: enc.ids.len(),
                    prompt_hash: format!("{:016x}", prompt_hash(&r.prompt)),
                    truncated: enc.truncated_tokens > 0,
                },
                ids: enc.ids,
                response,
            })
        })
        .collect()
}

/// Runs one right-padded batch and pools each row: returns one `[rows, hidden]` matrix per
/// layer, in the order of `layers`.
pub fn forward_pooled(
    decoder: &mut Decoder,
    rows: &[&PreparedRow],
    layers: &[usize],
    pooling: Pooling,
    pad_id: u32,
) -> Result<Vec<Array2<f32>>> {
    let seqs: Vec<&[u32]> = rows.iter().map(|r| r.ids.as_slice()).collect();
    let inputs = right_padded(&seqs, pad_id);
    if decoder.uses_io_binding() {
        // Hidden states stay on the device; only the pooled rows come back.
        let (select, scale) = selection(rows, inputs.input_ids.ncols(), pooling);
        return decoder.pooled_on_device(inputs, layers, select, scale);
    }
    let past = decoder.empty_cache(rows.len())?;
    let want = Want {
        logits: false,
        hidden: layers.to_vec(),
        present: false,
    };
    let out = decoder.run(inputs, past, &want)?;
    let hidden = decoder.manifest().hidden_size;
    out.hidden
        .iter()
        .zip(layers)
        .map(|(value, &layer)| {
            let (shape, data) = float_view(value)?;
            if shape.len() != 3 || shape[0] != rows.len() || shape[2] != hidden {
                return Err(Error::Extract(format!(
                    "hidden state {layer} has shape {shape:?}, expected [{}, seq, {hidden}]",
                    rows.len()
                )));
            }
            // Only the pooled positions are read (and widened, for fp16 graphs).
            Ok(match data {
                FloatData::F32(d) => pool(d, shape[1], hidden, rows, pooling),
                FloatData::F16(d) => pool(d, shape[1], hidden, rows, pooling),
            })
        })
        .collect()
}

/// The token positions a row's pooled vector averages: the last token, the response tokens, or
/// one response token chosen by a hash of the row id (stable across runs and batchings).
pub fn pooled_span(row: &PreparedRow, pooling: Pooling) -> Range<usize> {
    match pooling {
        Pooling::Last => row.ids.len() - 1..row.ids.len(),
        Pooling::Mean => row.response.clone(),
        Pooling::Token => {
            let n = row.response.len().max(1) as u64;
            let t = row.response.start
                + (crate::extract::select::hash64(&[b"oc-token", row.meta.id.as_bytes()]) % n)
                    as usize;
            t..t + 1
        }
    }
}

/// The positions each row pools (`[rows, seq, 1]`) and 1 / their count (`[rows, 1]`), for
/// [`Decoder::pooled_on_device`]; the same positions as [`pool`] reads.
fn selection(rows: &[&PreparedRow], seq: usize, pooling: Pooling) -> (Array3<bool>, Array2<f32>) {
    let mut select = Array3::from_elem((rows.len(), seq, 1), false);
    let mut scale = Array2::zeros((rows.len(), 1));
    for (b, row) in rows.iter().enumerate() {
        let span = pooled_span(row, pooling);
        scale[[b, 0]] = 1.0 / span.len() as f32;
        for t in span {
            select[[b, t, 0]] = true;
        }
    }
    (select, scale)
}

/// A hidden-state element that widens to f32.
trait Widen: Copy {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for half::f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// Pools `[batch, seq, hidden]` values per row.
fn pool<T: Widen>(
    data: &[T],
    seq: usize,
    hidden: usize,
    rows: &[&PreparedRow],
    pooling: Pooling,
) -> Array2<f32> {
    let mut out = Array2::zeros((rows.len(), hidden));
    for (b, row) in rows.iter().enumerate() {
        let at = |t: usize| &data[(b * seq + t) * hidden..(b * seq + t + 1) * hidden];
        let mut dst = out.row_mut(b);
        let span = pooled_span(row, pooling);
        if span.len() == 1 {
            for (d, &v) in dst.iter_mut().zip(at(span.start)) {
                *d = v.widen();
            }
            continue;
        }
        // Accumulate in f64: Gemma's residual stream reaches ~1e5.
        let mut acc = vec![0f64; hidden];
        let n = span.len() as f64;
        for t in span {
            for (a, &v) in acc.iter_mut().zip(at(t)) {
                *a += v.widen() as f64;
            }
        }
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = (a / n) as f32;
        }
    }
    out
}

/// Progress callback: rows done, tokens done.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Extraction settings that shape the batches.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub layers: Vec<usize>,
    pub pooling: Pooling,
    /// Padded tokens per batch (rows x longest row).
    pub batch_tokens: usize,
    pub max_batch: usize,
}

/// Runs the first `n` planned batches and discards their results: one-time device setup (kernel
/// selection, memory-pool growth to the largest batch, which the plan puts first) then stays out
/// of a timed run.
pub fn warm_up(
    decoder: &mut Decoder,
    pad_id: u32,
    rows: &[PreparedRow],
    settings: &BatchSettings,
    n: usize,
) -> Result<()> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    let plan = plan_batches(&lengths, settings.batch_tokens, settings.max_batch);
    for batch in plan.iter().take(n) {
        let todo: Vec<&PreparedRow> = batch.iter().map(|&i| &rows[i]).collect();
        forward_pooled(decoder, &todo, &settings.layers, settings.pooling, pad_id)?;
    }
    Ok(())
}

/// Extracts `rows` (already prepared, in any order) into `writer`, resuming after the rows it
/// already holds. Rows are processed in the deterministic length-sorted plan order.
pub fn extract_into(
    decoder: &mut Decoder,
    pad_id: u32,
    rows: &[PreparedRow],
    settings: &BatchSettings,
    writer: &mut StoreWriter,
    progress: Progress<'_>,
) -> Result<()> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
    let plan = plan_batches(&lengths, settings.batch_tokens, settings.max_batch);
    let order: Vec<usize> = plan.iter().flatten().copied().collect();
    let skip = writer.rows_done();
    let per_shard = writer.meta().rows_per_shard.max(1);
    let mut done_tokens = order[..skip.min(order.len())]
        .iter()
        .map(|&i| lengths[i])
        .sum::<usize>();
    progress(skip, done_tokens);
    let mut pending_rows: Vec<RowMeta> = Vec::new();
    let mut pending: Vec<Vec<Array2<f32>>> = Vec::new();
    let mut seen = 0;
    for batch in &plan {
        let todo: Vec<&PreparedRow> = batch
            .iter()
            .enumerate()
            .filter(|(k, _)| seen + k >= skip)
            .map(|(_, &i)| &rows[i])
            .collect();
        seen += batch.len();
        if todo.is_empty() {
            continue;
        }
        let pooled = forward_pooled(decoder, &todo, &settings.layers, settings.pooling, pad_id)?;
        check_finite(&pooled, &todo, &settings.layers)?;
        pending_rows.extend(todo.iter().map(|r| r.meta.clone()));
        pending.push(pooled);
        done_tokens += todo.iter().map(|r| r.ids.len()).sum::<usize>();
        while pending_rows.len() >= per_shard {
            flush(
                writer,
                &mut pending_rows,
                &mut pending,
                per_shard,
                settings.layers.len(),
            )?;
        }
        progress(writer.rows_done() + pending_rows.len(), done_tokens);
    }
    if !pending_rows.is_empty() {
        let n = pending_rows.len();
        flush(
            writer,
            &mut pending_rows,
            &mut pending,
            n,
            settings.layers.len(),
        )?;
    }
    Ok(())
}

/// Refuses NaN or infinite pooled states, naming the first row and layer that has one: a damaged
/// graph or an fp16 overflow, which a probe must not be trained on.
pub(crate) fn check_finite(
    pooled: &[Array2<f32>],
    rows: &[&PreparedRow],
    layers: &[usize],
) -> Result<()> {
    for (m, layer) in pooled.iter().zip(layers) {
        for (b, row) in m.rows().into_iter().enumerate() {
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                return Err(Error::Extract(format!(
                    "row `{}`: hidden state {layer} is not finite ({v}); the graph is damaged or \
                     overflowed (an fp16 graph?): check the model (re-export it, or use the \
                     float32 export)",
                    rows[b].meta.id
                )));
            }
        }
    }
    Ok(())
}

/// Writes the first `n` pending rows as one shard.
fn flush(
    writer: &mut StoreWriter,
    rows: &mut Vec<RowMeta>,
    blocks: &mut Vec<Vec<Array2<f32>>>,
    n: usize,
    n_layers: usize,
) -> Result<()> {
    let all: Vec<Array2<f32>> = (0..n_layers)
        .map(|l| {
            let views: Vec<_> = blocks.iter().map(|b| b[l].view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views).expect("same hidden size")
        })
        .collect();
    let head: Vec<Array2<f32>> = all
        .iter()
        .map(|m| m.slice(ndarray::s![..n, ..]).to_owned())
        .collect();
    let tail: Vec<Array2<f32>> = all
        .iter()
        .map(|m| m.slice(ndarray::s![n.., ..]).to_owned())
        .collect();
    let shard_rows: Vec<RowMeta> = rows.drain(..n).collect();
    writer.write_shard(&shard_rows, &head)?;
    blocks.clear();
    if !rows.is_empty() {
        blocks.push(tail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> PreparedRow {
        PreparedRow {
            ids: vec![1, 2],
            response: 1..2,
            meta: RowMeta {
                id: id.into(),
                label: 0,
                split: None,
                topic: None,
                source: None,
                tokens: 2,
                prompt_hash: String::new(),
                truncated: false,
            },
        }
    }

    /// Issue 17 item 6: NaN states from a damaged graph were stored and trained on.
    #[test]
    fn non_finite_states_are_refused_naming_the_row() {
        let (a, b) = (row("a"), row("b"));
        let mut m = Array2::<f32>::zeros((2, 3));
        check_finite(&[m.clone()], &[&a, &b], &[5]).unwrap();
        m[[1, 2]] = f32::NAN;
        let err = check_finite(&[Array2::zeros((2, 3)), m], &[&a, &b], &[3, 5])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row `b`: hidden state 5 is not finite (NaN)"),
            "{err}"
        );
    }
}
