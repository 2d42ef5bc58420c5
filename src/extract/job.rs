//! One extraction run end to end: read and validate the data, sample and shard rows, tokenize,
//! and extract into a resumable activation store, reporting progress to the caller.

use crate::data::{read_examples, Example, ReadOptions, ReadReport};
use crate::error::Result;
use crate::extract::select::{balanced_sample, shard_of, ShardArg};
use crate::extract::{extract_into, prepare_rows, warm_up, BatchSettings, PreparedRow};
use crate::progress::Progress;
use crate::runtime::Device;
use crate::store::{Pooling, ShardSpec, StoreMeta, StoreWriter, STORE_FORMAT, STORE_VERSION};
use crate::text::model::{Model, ModelFiles};
use std::path::PathBuf;
use std::time::Instant;

/// What to extract and how.
#[derive(Debug, Clone)]
pub struct ExtractJob {
    pub data: PathBuf,
    pub out: PathBuf,
    /// `all`, `-4`, `-2,-4,-8`.
    pub layers: String,
    pub pooling: Pooling,
    pub batch_tokens: usize,
    pub max_batch: usize,
    pub max_examples: Option<usize>,
    pub seed: u64,
    pub max_tokens: Option<usize>,
    pub skip_invalid: bool,
    pub shard: Option<ShardArg>,
    pub rows_per_shard: usize,
    /// Log a progress line (rows/s, tok/s, ETA) every 30 s: for runs without a terminal.
    pub progress: bool,
    /// Untimed batches run before the timed extraction (see [`warm_up`]).
    pub warmup_batches: usize,
    /// `tokens` pooling: the most response-token states stored per exchange.
    pub max_states: usize,
}

impl ExtractJob {
    /// Every hidden state the graph exposes.
    pub const DEFAULT_LAYERS: &'static str = "all";
    /// Rows per batch at most (the token budget usually binds first).
    pub const DEFAULT_MAX_BATCH: usize = 64;
    /// Tokens per exchange; longer ones keep their end (the response).
    pub const DEFAULT_MAX_TOKENS: usize = 1024;
    /// Rows per store shard: the unit of resume.
    pub const DEFAULT_ROWS_PER_SHARD: usize = 512;
    /// States per exchange of `tokens` pooling: every token of responses up to 32 tokens; of
    /// longer ones the first 16 and an even sample of the rest (32 x 4 layers x 640 x 4 bytes = 328 KB per exchange on
    /// Gemma 3 270M).
    pub const DEFAULT_MAX_STATES: usize = 32;

    /// A job over `data` into `out` with the defaults of `extract`'s flags, for `device`
    /// (its batch token budget); set other fields with struct update syntax.
    pub fn new(data: impl Into<PathBuf>, out: impl Into<PathBuf>, device: Device) -> Self {
        ExtractJob {
            data: data.into(),
            out: out.into(),
            layers: Self::DEFAULT_LAYERS.into(),
            pooling: Pooling::Last,
            batch_tokens: default_batch_tokens(device),
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_examples: None,
            seed: 0,
            max_tokens: Some(Self::DEFAULT_MAX_TOKENS),
            skip_invalid: false,
            shard: None,
            rows_per_shard: Self::DEFAULT_ROWS_PER_SHARD,
            progress: false,
            warmup_batches: 0,
            max_states: Self::DEFAULT_MAX_STATES,
        }
    }
}

/// Padded tokens per batch by device: on CPU 1024 (measured 1.17x faster than 4096 on
/// Gemma 3 270M: smaller batches waste less on padding and stay in cache); GPUs want large
/// batches to fill the device.
pub fn default_batch_tokens(device: Device) -> usize {
    match device {
        Device::Cpu => 1024,
        _ => 16384,
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct ExtractSummary {
    pub meta: StoreMeta,
    pub read: ReadReport,
    /// Rows found already extracted (a resumed run).
    pub resumed_rows: usize,
    /// Rows and tokens extracted by this run.
    pub rows: usize,
    pub tokens: usize,
    /// Extraction wall time, tokenization excluded.
    pub seconds: f64,
    /// Rendering and tokenizing the rows.
    pub tokenize_seconds: f64,
}

/// The job's rows: read and validated, sampled (`max_examples`) and filtered to its shard.
pub fn select_rows(job: &ExtractJob) -> Result<(Vec<Example>, ReadReport)> {
    check_data_path(&job.data)?;
    let opts = ReadOptions {
        skip_invalid: job.skip_invalid,
    };
    let (examples, read) = read_examples(&job.data, &opts)?;
    if examples.is_empty() {
        return Err(crate::Error::Argument(format!(
            "data file {} has no examples{}: nothing to extract (make it with `just \
             prepare-data`)",
            job.data.display(),
            if read.skipped > 0 {
                " (every line was invalid and skipped)"
            } else {
                ""
            }
        )));
    }
    let ids: Vec<&str> = examples.iter().map(|e| e.id.as_str()).collect();
    let labels: Vec<u8> = examples.iter().map(|e| e.label).collect();
    let chosen = match job.max_examples {
        Some(n) => balanced_sample(&ids, &labels, n, job.seed),
        None => (0..examples.len()).collect(),
    };
    let rows = chosen
        .into_iter()
        .map(|i| &examples[i])
        .filter(|e| {
            job.shard
                .is_none_or(|s| shard_of(&e.id, s.count) == s.index)
        })
        .cloned()
        .collect();
    Ok((rows, read))
}

/// A data path must be a file: a folder or a missing path each get their own message.
fn check_data_path(data: &std::path::Path) -> Result<()> {
    let problem = if data.is_dir() {
        "is a directory, not a data file"
    } else if !data.exists() {
        "not found"
    } else {
        return Ok(());
    };
    Err(crate::Error::Argument(format!(
        "data file {} {problem}: make it with `just prepare-data` (or pass --data FILE)",
        data.display()
    )))
}

/// Refuses a `--max-tokens` beyond the model's context: rows that long could not run (the
/// same bound `generate` applies to its prompts).
pub fn check_max_tokens(max_tokens: Option<usize>, context: Option<usize>) -> Result<()> {
    match (max_tokens, context) {
        (Some(max), Some(ctx)) if max > ctx => Err(crate::Error::Argument(format!(
            "--max-tokens {max} exceeds the model's context of {ctx} tokens: pass --max-tokens \
             {ctx} or less"
        ))),
        _ => Ok(()),
    }
}

/// The store metadata of `job` on `model`: every argument that shapes the content is recorded,
/// so a rerun resumes only into a store made the same way.
pub fn store_meta(
    files: &ModelFiles,
    job: &ExtractJob,
    layers: &[usize],
    rows: usize,
) -> Result<StoreMeta> {
    let manifest = &files.manifest;
    Ok(StoreMeta {
        format: STORE_FORMAT.into(),
        version: STORE_VERSION,
        model_hash: manifest.model_hash.clone(),
        manifest_sha256: files.manifest_sha256.clone(),
        model: files.id.clone(),
        num_layers: manifest.num_layers,
        layers: layers.to_vec(),
        hidden_size: manifest.hidden_size,
        pooling: job.pooling,
        dtype: "float32".into(),
        chat_template: files.format.uses_chat_template(),
        shard: job.shard.map(|s| ShardSpec {
            index: s.index,
            count: s.count,
        }),
        rows_per_shard: job.rows_per_shard,
        args: serde_json::json!({
            "data_sha256": crate::fsutil::sha256_file(&job.data)?,
            "max_examples": job.max_examples,
            "seed": job.seed,
            "max_tokens": job.max_tokens,
            "batch_tokens": job.batch_tokens,
            "max_batch": job.max_batch,
            "skip_invalid": job.skip_invalid,
        }),
        planned_rows: rows,
        complete: false,
        row_count: 0,
        truncated: 0,
        max_states: (job.pooling == Pooling::Tokens).then_some(job.max_states),
    })
}

/// Reads the data, selects rows, and extracts them into `job.out` (resuming if possible).
/// `progress` gets the rows done (of [`ExtractSummary::rows`] + resumed ones) as they are stored.
pub fn run_extract(
    model: &mut Model,
    job: &ExtractJob,
    progress: &dyn Progress,
) -> Result<ExtractSummary> {
    let layers = model.files.manifest.parse_layers(&job.layers)?;
    check_max_tokens(job.max_tokens, model.files.manifest.max_position_embeddings)?;
    let (rows, read) = select_rows(job)?;
    let meta = store_meta(&model.files, job, &layers, rows.len())?;
    let mut writer = StoreWriter::create_or_resume(&job.out, meta)?;
    let resumed_rows = writer.rows_done();
    let tokenize = Instant::now();
    let mut prepared = prepare_rows(&model.files, &rows, job.max_tokens)?;
    if job.pooling == Pooling::Tokens {
        if job.max_states == 0 {
            return Err(crate::Error::Argument(
                "--max-states must be >= 1 (states stored per exchange)".into(),
            ));
        }
        crate::extract::forward::set_positions(&mut prepared, job.max_states);
    }
    let tokenize_seconds = tokenize.elapsed().as_secs_f64();
    let truncated = prepared.iter().filter(|r| r.meta.truncated).count();
    let settings = BatchSettings {
        layers,
        pooling: job.pooling,
        batch_tokens: job.batch_tokens,
        max_batch: job.max_batch,
    };
    let pad = model.files.pad_id();
    if job.warmup_batches > 0 {
        warm_up(
            &mut model.decoder,
            pad,
            &prepared,
            &settings,
            job.warmup_batches,
        )?;
    }
    let mut progress = Tracker::new(&prepared, resumed_rows, job.progress, progress);
    extract_into(
        &mut model.decoder,
        pad,
        &prepared,
        &settings,
        &mut writer,
        &mut |rows, tokens| progress.update(rows, tokens),
    )?;
    let (start, last) = (progress.start, progress.last);
    let meta = writer.finish(truncated)?;
    Ok(ExtractSummary {
        meta,
        read,
        resumed_rows,
        rows: last.0.saturating_sub(resumed_rows),
        tokens: last.1,
        seconds: start.elapsed().as_secs_f64(),
        tokenize_seconds,
    })
}

/// Extraction progress: rows and tokens go to the caller's [`Progress`] (a bar in the binary);
/// with `log`, an INFO line every 30 s too, so a run without a terminal (a log file, a cluster
/// job) is never silent.
struct Tracker<'p> {
    sink: &'p dyn Progress,
    log_every: Option<std::time::Duration>,
    total: usize,
    total_tokens: usize,
    /// Rows a previous run had already stored.
    resumed: usize,
    start: Instant,
    last_log: Instant,
    first_tokens: Option<usize>,
    /// Rows done (including resumed ones) and tokens run in this process.
    last: (usize, usize),
}

impl<'p> Tracker<'p> {
    fn new(rows: &[PreparedRow], resumed: usize, log: bool, sink: &'p dyn Progress) -> Self {
        let now = Instant::now();
        sink.start(rows.len() as u64);
        Tracker {
            sink,
            log_every: log.then(|| std::time::Duration::from_secs(30)),
            total: rows.len(),
            total_tokens: rows.iter().map(|r| r.ids.len()).sum(),
            resumed,
            start: now,
            last_log: now,
            first_tokens: None,
            last: (0, 0),
        }
    }

    fn update(&mut self, rows: usize, tokens: usize) {
        let base = *self.first_tokens.get_or_insert(tokens);
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let tok_s = (tokens - base) as f64 / secs;
        self.sink.set_position(rows as u64);
        self.sink.message(&format!("{tok_s:.0} tok/s"));
        self.last = (rows, tokens - base);
        let Some(every) = self.log_every else { return };
        if self.last_log.elapsed() >= every || rows == self.total {
            self.last_log = Instant::now();
            let rows_s = rows.saturating_sub(self.resumed) as f64 / secs;
            // Batches run longest first, so the ETA goes by tokens, not rows.
            let eta = self.total_tokens.saturating_sub(tokens) as f64 / tok_s.max(1e-9);
            tracing::info!(
                "extracted {rows}/{} rows: {rows_s:.2} rows/s, {tok_s:.0} tok/s, eta {eta:.0} s",
                self.total
            );
        }
    }
}
