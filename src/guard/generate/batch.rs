//! The decode loop of one batch of rows: prefill rows and let them join at a step boundary, step
//! every row one token (rows that stopped are fed padding, their outputs ignored), judge each
//! row's newest hidden states with the one probe (and a cascade's second stage), and let rows leave. `generate` runs a fixed
//! batch to the end; `serve` adds and removes rows between steps. Joining and leaving copy the
//! cache once (see [`DecodeState::join`]); a step never does.

use super::row::Row;
use crate::error::{Error, Result};
use crate::guard::Scorers;
use crate::runtime::decoder::Decoder;
use crate::runtime::DecodeState;
use crate::text::model::ModelFiles;

/// Rows decoding together, their decode state and the scorer that judges them.
pub struct Batch<'t, 's> {
    eos: Vec<u32>,
    hidden_size: usize,
    scorers: Option<Scorers<'t>>,
    state: Option<DecodeState>,
    rows: Vec<Row<'t, 's>>,
}

impl<'t, 's> Batch<'t, 's> {
    /// An empty batch for `files`' model; with scorers, every row must carry a guard.
    pub fn new(files: &ModelFiles, scorers: Option<Scorers<'t>>) -> Self {
        Batch {
            eos: files.manifest.special_tokens.eos.clone(),
            hidden_size: files.manifest.hidden_size,
            scorers,
            state: None,
            rows: Vec::new(),
        }
    }

    /// Prefills `rows` together and appends them to the batch (their first tokens are sampled
    /// from the prefill). A no-op for no rows.
    pub fn join(&mut self, decoder: &mut Decoder, mut rows: Vec<Row<'t, 's>>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let seqs: Vec<&[u32]> = rows.iter().map(|r| r.history.as_slice()).collect();
        let (state, out) = DecodeState::prefill(decoder, &seqs, &[])?;
        let logits = out.logits()?;
        let vocab = logits.len() / rows.len();
        for (b, r) in rows.iter_mut().enumerate() {
            r.after_prefill(&logits[b * vocab..(b + 1) * vocab], &self.eos)?;
        }
        drop(logits);
        match &mut self.state {
            Some(running) => running.join(state)?,
            None => self.state = Some(state),
        }
        self.rows.append(&mut rows);
        Ok(())
    }

    /// Whether any row still decodes.
    pub fn decoding(&self) -> bool {
        self.rows.iter().any(Row::has_pending)
    }

    /// The rows, in batch order.
    pub fn rows(&self) -> &[Row<'t, 's>] {
        &self.rows
    }

    /// Feeds every decoding row its pending token, judges it and samples the next one.
    pub fn step(&mut self, decoder: &mut Decoder) -> Result<()> {
        let state = self.state.as_mut().ok_or_else(|| {
            Error::Generate("a decode step on an empty batch: join rows first".into())
        })?;
        let next: Vec<u32> = self
            .rows
            .iter()
            .map(|r| r.pending.unwrap_or(state.pad_id()))
            .collect();
        let probe: Vec<usize> = self.scorers.map(|s| s.layers()).unwrap_or_default();
        let out = state.step(decoder, &next, &probe)?;
        let logits = out.logits()?;
        let vocab = logits.len() / self.rows.len();
        let h = self.hidden_size;
        let hidden = (0..probe.len())
            .map(|i| out.hidden(i, h))
            .collect::<Result<Vec<_>>>()?;
        for (b, r) in self.rows.iter_mut().enumerate() {
            if !r.has_pending() {
                continue;
            }
            let states: Vec<&[f32]> = hidden.iter().map(|x| &x[b * h..(b + 1) * h]).collect();
            let judged = self
                .scorers
                .filter(|_| !states.is_empty())
                .map(|s| (s, &states[..]));
            r.after_step(&logits[b * vocab..(b + 1) * vocab], judged, &self.eos)?;
        }
        Ok(())
    }

    /// Takes rows `leave` (indices into [`Batch::rows`]) out of the batch, in that order; the
    /// others keep decoding. An emptied batch drops its state.
    pub fn remove(&mut self, leave: &[usize]) -> Result<Vec<Row<'t, 's>>> {
        if let Some(&i) = leave.iter().find(|&&i| i >= self.rows.len()) {
            return Err(Error::Generate(format!(
                "cannot remove row {i} of a batch of {}",
                self.rows.len()
            )));
        }
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|i| !leave.contains(i))
            .collect();
        match (keep.is_empty(), &mut self.state) {
            (true, _) => self.state = None,
            (false, Some(state)) => state.retain_rows(&keep)?,
            (false, None) => {}
        }
        let mut slots: Vec<Option<Row<'t, 's>>> = self.rows.drain(..).map(Some).collect();
        let gone = leave.iter().filter_map(|&i| slots[i].take()).collect();
        self.rows = slots.into_iter().flatten().collect();
        Ok(gone)
    }

    /// Every row, ending the batch.
    pub fn into_rows(self) -> Vec<Row<'t, 's>> {
        self.rows
    }
}
