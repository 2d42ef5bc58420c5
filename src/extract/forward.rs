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
                    positions: None,
                    response_tokens: None,
                },
                ids: enc.ids,
                response,
            })
        })
        .collect()
}

/// Runs one right-padded batch and pools each row: returns one `[rows, hidden]` matrix per
/// layer, in the order of `layers` (for `tokens` pooling: the response means; see
/// [`forward_states`] for its states).
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
    let hidden = decoder.manifest().hidden_size;
    // Only the pooled positions are read (and widened, for fp16 graphs).
    forward_hidden(
        decoder,
        inputs,
        rows.len(),
        layers,
        |seq, data| match data {
            FloatData::F32(d) => pool(d, seq, hidden, rows, pooling),
            FloatData::F16(d) => pool(d, seq, hidden, rows, pooling),
        },
    )
}

/// One batch's per-token states and response means per layer (`tokens` pooling).
pub struct TokenStates {
    /// `[states, hidden]` per layer: each row's `positions`, rows in order.
    pub states: Vec<Array2<f32>>,
    /// `[rows, hidden]` per layer: the mean over each row's response tokens.
    pub means: Vec<Array2<f32>>,
}

/// Runs one right-padded batch and keeps, per layer, the states at each row's `positions`
/// (response-token indices, see [`sample_positions`]) and the response means.
pub fn forward_states(
    decoder: &mut Decoder,
    rows: &[&PreparedRow],
    layers: &[usize],
    pad_id: u32,
) -> Result<TokenStates> {
    let seqs: Vec<&[u32]> = rows.iter().map(|r| r.ids.as_slice()).collect();
    let inputs = right_padded(&seqs, pad_id);
    let hidden = decoder.manifest().hidden_size;
    let parts = forward_hidden(
        decoder,
        inputs,
        rows.len(),
        layers,
        |seq, data| match data {
            FloatData::F32(d) => (
                gather(d, seq, hidden, rows),
                pool(d, seq, hidden, rows, Pooling::Mean),
            ),
            FloatData::F16(d) => (
                gather(d, seq, hidden, rows),
                pool(d, seq, hidden, rows, Pooling::Mean),
            ),
        },
    )?;
    let (states, means) = parts.into_iter().unzip();
    Ok(TokenStates { states, means })
}

/// Runs a batch for the hidden states of `layers` on the host and maps each checked
/// `[rows, seq, hidden]` tensor with `f(seq, data)`.
fn forward_hidden<R>(
    decoder: &mut Decoder,
    inputs: crate::runtime::inputs::BatchInputs,
    rows: usize,
    layers: &[usize],
    mut f: impl FnMut(usize, FloatData<'_>) -> R,
) -> Result<Vec<R>> {
    let past = decoder.empty_cache(rows)?;
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
            if shape.len() != 3 || shape[0] != rows || shape[2] != hidden {
                return Err(Error::Extract(format!(
                    "hidden state {layer} has shape {shape:?}, expected [{rows}, seq, {hidden}]"
                )));
            }
            Ok(f(shape[1], data))
        })
        .collect()
}

/// Up to `k` response-token indices out of `n`: all of them when `n <= k`; else the first
/// `k / 2` (the start of a response, where a guard should pause and where the stored steps are
/// exactly the guard's) and `k - k / 2` evenly spaced over the rest, ending at the last token
/// (the whole response is judged there).
pub fn sample_positions(n: usize, k: usize) -> Vec<u32> {
    if n <= k {
        return (0..n as u32).collect();
    }
    let head = k / 2;
    let (rest, m) = (n - head, k - head);
    // The i-th of m equal parts of the rest ends at ceil(i rest / m) - 1; increasing for m < rest.
    (0..head)
        .chain((1..=m).map(|i| head + (i * rest).div_ceil(m) - 1))
        .map(|p| p as u32)
        .collect()
}

/// Sets each row's `positions` (at most `k` states, see [`sample_positions`]) and
/// `response_tokens`, for `tokens` pooling.
pub fn set_positions(rows: &mut [PreparedRow], k: usize) {
    for r in rows {
        r.meta.positions = Some(sample_positions(r.response.len(), k));
        r.meta.response_tokens = Some(r.response.len());
    }
}

/// The states at each row's positions, `[states, hidden]`.
fn gather<T: Widen>(data: &[T], seq: usize, hidden: usize, rows: &[&PreparedRow]) -> Array2<f32> {
    let mut out = Vec::new();
    let mut n = 0;
    for (b, row) in rows.iter().enumerate() {
        for &p in row.meta.positions.as_deref().unwrap_or(&[]) {
            let t = row.response.start + p as usize;
            let at = (b * seq + t) * hidden;
            out.extend(data[at..at + hidden].iter().map(|v| v.widen()));
            n += 1;
        }
    }
    Array2::from_shape_vec((n, hidden), out).expect("n states of hidden values")
}

/// The token positions a row's pooled vector averages: the last token, the response tokens, or
/// one response token chosen by a hash of the row id (stable across runs and batchings).
pub fn pooled_span(row: &PreparedRow, pooling: Pooling) -> Range<usize> {
    match pooling {
        Pooling::Last => row.ids.len() - 1..row.ids.len(),
        Pooling::Mean | Pooling::Tokens => row.response.clone(),
        Pooling::Token => {
            let t = row.response.start + hashed_index(&row.meta.id, row.response.len());
            t..t + 1
        }
    }
}

/// The index in `0..n` that `token` pooling picks for row `id` (a hash: stable across runs and
/// batchings); also how a `tokens` store's `token` view picks among a row's states.
pub fn hashed_index(id: &str, n: usize) -> usize {
    (crate::extract::select::hash64(&[b"oc-token", id.as_bytes()]) % n.max(1) as u64) as usize
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
    let mut pending = Block::default();
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
        let block = run_block(decoder, &todo, settings, pad_id)?;
        pending.append(block);
        done_tokens += todo.iter().map(|r| r.ids.len()).sum::<usize>();
        while pending.rows.len() >= per_shard {
            pending.flush(writer, per_shard)?;
        }
        progress(writer.rows_done() + pending.rows.len(), done_tokens);
    }
    if !pending.rows.is_empty() {
        let n = pending.rows.len();
        pending.flush(writer, n)?;
    }
    Ok(())
}

/// Extracted rows not yet written: their metadata, per-layer states (one per row, or each
/// row's positions for `tokens` pooling) and per-layer response means (`tokens` only).
#[derive(Default)]
struct Block {
    rows: Vec<RowMeta>,
    states: Vec<Array2<f32>>,
    means: Vec<Array2<f32>>,
}

/// Runs one planned batch and checks its states are finite.
fn run_block(
    decoder: &mut Decoder,
    todo: &[&PreparedRow],
    settings: &BatchSettings,
    pad_id: u32,
) -> Result<Block> {
    let layers = &settings.layers;
    let (states, means) = match settings.pooling {
        Pooling::Tokens => {
            let t = forward_states(decoder, todo, layers, pad_id)?;
            check_finite(&t.means, todo, layers)?;
            (t.states, t.means)
        }
        pooling => (
            forward_pooled(decoder, todo, layers, pooling, pad_id)?,
            Vec::new(),
        ),
    };
    check_finite_states(&states, todo, layers)?;
    Ok(Block {
        rows: todo.iter().map(|r| r.meta.clone()).collect(),
        states,
        means,
    })
}

impl Block {
    fn append(&mut self, other: Block) {
        let cat = |a: &mut Vec<Array2<f32>>, b: Vec<Array2<f32>>| {
            if a.is_empty() {
                *a = b;
                return;
            }
            for (x, y) in a.iter_mut().zip(b) {
                *x = ndarray::concatenate(ndarray::Axis(0), &[x.view(), y.view()])
                    .expect("same hidden size");
            }
        };
        self.rows.extend(other.rows);
        cat(&mut self.states, other.states);
        cat(&mut self.means, other.means);
    }

    /// Writes the first `n` rows as one shard and keeps the rest.
    fn flush(&mut self, writer: &mut StoreWriter, n: usize) -> Result<()> {
        let cut = crate::store::state_count(&self.rows[..n]);
        let split = |ms: &mut Vec<Array2<f32>>, at: usize| -> Vec<Array2<f32>> {
            let head = ms
                .iter()
                .map(|m| m.slice(ndarray::s![..at, ..]).to_owned())
                .collect();
            for m in ms.iter_mut() {
                *m = m.slice(ndarray::s![at.., ..]).to_owned();
            }
            head
        };
        let states = split(&mut self.states, cut);
        let means = split(&mut self.means, n);
        let rows: Vec<RowMeta> = self.rows.drain(..n).collect();
        writer.write_shard(&rows, &states, &means)
    }
}

/// Refuses NaN or infinite pooled states, naming the first row and layer that has one: a damaged
/// graph or an fp16 overflow, which a probe must not be trained on.
pub(crate) fn check_finite(
    pooled: &[Array2<f32>],
    rows: &[&PreparedRow],
    layers: &[usize],
) -> Result<()> {
    check_rows(pooled, rows, layers, |_| 1)
}

/// [`check_finite`] for per-row state blocks (a row's positions in `tokens` pooling).
fn check_finite_states(
    states: &[Array2<f32>],
    rows: &[&PreparedRow],
    layers: &[usize],
) -> Result<()> {
    check_rows(states, rows, layers, |r| r.meta.states())
}

fn check_rows(
    ms: &[Array2<f32>],
    rows: &[&PreparedRow],
    layers: &[usize],
    count: impl Fn(&PreparedRow) -> usize,
) -> Result<()> {
    for (m, layer) in ms.iter().zip(layers) {
        let mut at = 0;
        for row in rows {
            let n = count(row);
            let block = m.slice(ndarray::s![at..at + n, ..]);
            at += n;
            if let Some(v) = block.iter().find(|v| !v.is_finite()) {
                return Err(Error::Extract(format!(
                    "row `{}`: hidden state {layer} is not finite ({v}); the graph is damaged or \
                     overflowed (an fp16 graph?): check the model (re-export it, or use the \
                     float32 export)",
                    row.meta.id
                )));
            }
        }
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
                positions: None,
                response_tokens: None,
            },
        }
    }

    #[test]
    fn positions_are_all_tokens_or_an_even_sample_ending_at_the_last() {
        assert_eq!(sample_positions(3, 8), vec![0, 1, 2]);
        assert_eq!(sample_positions(8, 8), (0..8).collect::<Vec<u32>>());
        assert_eq!(sample_positions(10, 4), vec![0, 1, 5, 9]);
        assert_eq!(sample_positions(10, 1), vec![9]);
        for n in 1..200 {
            for k in 1..20 {
                let p = sample_positions(n, k);
                assert_eq!(p.len(), n.min(k));
                assert_eq!(*p.last().unwrap() as usize, n - 1, "n {n} k {k}");
                assert!(p.windows(2).all(|w| w[0] < w[1]), "n {n} k {k}: {p:?}");
            }
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
