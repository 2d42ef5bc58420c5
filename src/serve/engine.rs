//! The decode loop: one thread owns the decoder and runs one [`Batch`] continuously. Between
//! steps it admits queued requests (prefilled together, then joined to the running batch) up to
//! `--max-batch` rows, and lets rows leave that finished, matched a stop sequence, or whose
//! client went away (its event receiver was dropped). Each row's released text goes to its
//! request's event channel through a [`StopMatcher`]; the row's end sends one [`Event::Done`].

use super::metrics::Metrics;
use super::moderation::ScoreJob;
use super::stop::StopMatcher;
use crate::extract::{forward_pooled, PreparedRow};
use crate::guard::generate::{Batch, GenerateOptions, GenerationResult, Row, Sink, StopReason};
use crate::guard::{GuardConfig, GuardSetup, Scorers};
use crate::runtime::decoder::Decoder;
use crate::text::model::ModelFiles;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the queue carries: a chat completion, or exchanges to score (`/v1/moderations`).
pub enum Work {
    Chat(Job),
    Score(ScoreJob),
}

/// One chat completion waiting for (or in) the batch.
pub struct Job {
    pub ids: Vec<u32>,
    pub opts: GenerateOptions,
    pub guard: GuardConfig,
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<Event>,
    pub submitted: Instant,
}

/// What a request hears from the decode loop.
#[derive(Debug)]
pub enum Event {
    /// Released text (judged by the guard, cut at a stop sequence).
    Text(String),
    Done(Finished),
    /// Decoding failed; the message says where.
    Failed(String),
}

/// How a response ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub guard: GuardReport,
}

/// The guard's account of one response (the `guard` object of every response).
#[derive(Debug, Clone, Serialize)]
pub struct GuardReport {
    pub status: crate::guard::generate::Status,
    pub max_smoothed_risk: f32,
    /// 0-based generated token at which the guard paused.
    pub pause_token: Option<usize>,
    pub probe_steps: usize,
    pub threshold: f32,
    pub pause_threshold: f32,
    /// A cascade's second-stage threshold: at the pause threshold the response pauses only
    /// where the whole-exchange probe's score of the response so far reaches it (else flagged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade_threshold: Option<f32>,
    pub probe_every_n_tokens: usize,
}

/// A row's request side: where its events go and what its sink has seen.
struct Slot {
    events: mpsc::UnboundedSender<Event>,
    matcher: Rc<RefCell<StopMatcher>>,
    guard: GuardConfig,
}

/// What the loop needs besides the queue.
pub struct Engine<'a> {
    pub decoder: Decoder,
    pub files: &'a ModelFiles,
    /// The probe and a cascade's second stage.
    pub scorers: Scorers<'a>,
    pub max_batch: usize,
    pub metrics: Arc<Metrics>,
}

impl<'a> Engine<'a> {
    /// Runs until the queue closes (every sender dropped: shutdown) and the batch is empty.
    pub fn run(mut self, queue: &mut mpsc::Receiver<Work>) {
        let mut batch = Batch::new(self.files, Some(self.scorers));
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            let mut jobs = Vec::new();
            if slots.is_empty() {
                self.metrics.batch_size.set(0);
                match queue.blocking_recv() {
                    Some(w) => self.take(w, &mut jobs),
                    None => return,
                }
            }
            while slots.len() + jobs.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(w) => self.take(w, &mut jobs),
                    Err(_) => break,
                }
            }
            self.admit(&mut batch, &mut slots, jobs);
            if batch.decoding() {
                let t = std::time::Instant::now();
                let stepped = batch.step(&mut self.decoder);
                self.metrics
                    .decode_seconds
                    .inc_by(t.elapsed().as_secs_f64());
                if let Err(e) = stepped {
                    fail_all(&mut slots, &format!("decode step failed: {e}"));
                    batch = Batch::new(self.files, Some(self.scorers));
                    continue;
                }
            }
            self.leave(&mut batch, &mut slots);
            self.metrics.batch_size.set(slots.len() as i64);
        }
    }

    /// Queues a chat job for admission; scores a moderation job at once (one forward pass).
    fn take(&mut self, work: Work, jobs: &mut Vec<Job>) {
        match work {
            Work::Chat(j) => jobs.push(j),
            Work::Score(s) => {
                let risks = self.score(&s.rows, s.pooling).map_err(|e| e.to_string());
                let _ = s.reply.send(risks);
            }
        }
    }

    fn score(
        &mut self,
        rows: &[PreparedRow],
        pooling: crate::store::Pooling,
    ) -> crate::Result<Vec<f32>> {
        let rows: Vec<&PreparedRow> = rows.iter().collect();
        let pad = self.files.manifest.pad_id();
        let scorer = self.scorers.scorer;
        let layers = scorer.layers();
        let pooled = forward_pooled(&mut self.decoder, &rows, &layers, pooling, pad)?;
        Ok((0..rows.len())
            .map(|i| {
                let states: Vec<Vec<f32>> = pooled.iter().map(|m| m.row(i).to_vec()).collect();
                let refs: Vec<&[f32]> = states.iter().map(|s| &s[..]).collect();
                scorer.score_states(&refs)
            })
            .collect())
    }

    /// Prefills the jobs whose clients still wait and joins them to the batch.
    fn admit(&mut self, batch: &mut Batch<'a, 'static>, slots: &mut Vec<Slot>, jobs: Vec<Job>) {
        let (mut rows, mut new) = (Vec::new(), Vec::new());
        for job in jobs.into_iter().filter(|j| !j.events.is_closed()) {
            let matcher = Rc::new(RefCell::new(StopMatcher::new(job.stop.clone())));
            let sink = self.sink(&job, matcher.clone());
            let setup = GuardSetup {
                scorer: self.scorers.scorer,
                config: job.guard,
                second: self.scorers.second,
            };
            match Row::from_ids(
                self.files,
                "",
                job.ids,
                &job.opts,
                Some(&setup),
                sink,
                job.submitted,
            ) {
                Ok(row) => {
                    rows.push(row);
                    new.push(Slot {
                        events: job.events,
                        matcher,
                        guard: job.guard,
                    });
                }
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e.to_string()));
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        match batch.join(&mut self.decoder, rows) {
            Ok(()) => slots.append(&mut new),
            Err(e) => {
                // The running rows' cache went into the failed join too: end everyone.
                slots.append(&mut new);
                fail_all(slots, &format!("prefill failed: {e}"));
                *batch = Batch::new(self.files, Some(self.scorers));
            }
        }
    }

    /// The sink of one row: released text through the stop matcher to the request.
    fn sink(&self, job: &Job, matcher: Rc<RefCell<StopMatcher>>) -> Sink<'static> {
        let (events, metrics, submitted) =
            (job.events.clone(), self.metrics.clone(), job.submitted);
        let mut last: Option<Instant> = None;
        Box::new(move |text: &str| {
            let out = matcher.borrow_mut().push(text);
            if out.is_empty() {
                return;
            }
            let now = Instant::now();
            match last {
                None => metrics
                    .ttft
                    .observe(now.duration_since(submitted).as_secs_f64()),
                Some(t) => metrics.itl.observe(now.duration_since(t).as_secs_f64()),
            }
            last = Some(now);
            let _ = events.send(Event::Text(out));
        })
    }

    /// Removes rows that stopped, matched a stop sequence or lost their client, and answers them.
    fn leave(&self, batch: &mut Batch<'a, 'static>, slots: &mut Vec<Slot>) {
        let gone: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                let s = &slots[i];
                !batch.rows()[i].has_pending()
                    || s.matcher.borrow().stopped()
                    || s.events.is_closed()
            })
            .collect();
        if gone.is_empty() {
            return;
        }
        let rows = match batch.remove(&gone) {
            Ok(rows) => rows,
            Err(e) => {
                fail_all(slots, &format!("removing finished rows failed: {e}"));
                *batch = Batch::new(self.files, Some(self.scorers));
                return;
            }
        };
        let (left, kept): (Vec<_>, Vec<_>) = std::mem::take(slots)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| gone.contains(i));
        *slots = kept.into_iter().map(|(_, s)| s).collect();
        let left = left.into_iter().map(|(_, s)| s);
        for (row, slot) in rows.into_iter().zip(left) {
            let cancelled = row.has_pending();
            match row.finish(cancelled) {
                Ok(r) => self.answer(&slot, r),
                Err(e) => {
                    let _ = slot.events.send(Event::Failed(e.to_string()));
                }
            }
        }
    }

    fn answer(&self, slot: &Slot, r: GenerationResult) {
        let mut matcher = slot.matcher.borrow_mut();
        let finish_reason = match r.stop_reason {
            StopReason::Paused => "content_filter",
            _ if matcher.stopped() => "stop",
            StopReason::Eos | StopReason::Cancelled => "stop",
            StopReason::MaxNewTokens => "length",
        };
        let tail = matcher.flush();
        if !tail.is_empty() {
            let _ = slot.events.send(Event::Text(tail));
        }
        let report = GuardReport {
            status: r.status,
            max_smoothed_risk: r.max_smoothed_risk,
            pause_token: r.pause_token,
            probe_steps: r.probe_steps.len(),
            threshold: slot.guard.threshold,
            pause_threshold: slot.guard.pause_threshold,
            cascade_threshold: self.scorers.second.as_ref().map(|s| s.threshold),
            probe_every_n_tokens: slot.guard.probe_every_n_tokens,
        };
        let gone = slot.events.is_closed();
        self.metrics
            .finished(&r, if gone { "cancelled" } else { finish_reason });
        let _ = slot.events.send(Event::Done(Finished {
            finish_reason,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.tokens_generated,
            guard: report,
        }));
    }
}

/// Ends every row with `message` (a failed step leaves the batch's cache unusable; the caller
/// starts a new batch).
fn fail_all(slots: &mut Vec<Slot>, message: &str) {
    tracing::error!("{message}; failing {} requests", slots.len());
    for s in slots.drain(..) {
        let _ = s.events.send(Event::Failed(message.to_string()));
    }
}
