//! `bench extract`: our batched extraction vs (a) the seed's loop and (b) batched transformers,
//! on the same sampled exchanges and the same token ids.

use super::python::BaselineArgs;
use super::{print_table, Row};
use crate::cli::common::{ModelArgs, RuntimeArgs};
use open_constitution::extract::{extract_into, prepare_rows, BatchSettings};
use open_constitution::extract::{select_rows, store_meta, ExtractJob};
use open_constitution::store::{Pooling, StoreWriter};
use open_constitution::text::model::Model;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `bench extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Labelled JSONL to sample exchanges from.
    #[arg(long, default_value = "data/training_data.jsonl")]
    pub data: PathBuf,
    /// Exchanges our extraction runs on (label-balanced, seeded sample).
    #[arg(long, default_value_t = 256)]
    pub n: usize,
    /// Exchanges the Python baselines run on (every k-th of the same sample; they are slow).
    #[arg(long, default_value_t = 64)]
    pub baseline_n: usize,
    /// Hidden states to extract (as `extract --layers`).
    #[arg(long, default_value = "-4", allow_hyphen_values = true)]
    pub layers: String,
    /// Padded tokens per batch, for ours and baseline (b) (default by device, as `extract`).
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Truncation, as `extract --max-tokens`.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub baseline: BaselineArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut model = Model::load_for_extraction(
        &a.model.model,
        !a.model.no_chat_template,
        &a.runtime.options(),
        &a.layers,
    )?;
    let batch_tokens = a.runtime.batch_tokens(a.batch_tokens);
    let dir = std::env::temp_dir().join(format!("oc-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let job = ExtractJob {
        data: a.data.clone(),
        out: dir.clone(),
        layers: a.layers.clone(),
        pooling: Pooling::Last,
        batch_tokens,
        max_batch: 64,
        max_examples: Some(a.n),
        seed: 0,
        max_tokens: Some(a.max_tokens),
        skip_invalid: false,
        shard: None,
        rows_per_shard: 512,
        progress: false,
        warmup_batches: 0,
    };
    let layers = model.files.manifest.parse_layers(&job.layers)?;
    let (rows, _) = select_rows(&job)?;
    let t = Instant::now();
    let prepared = prepare_rows(&model.files, &rows, job.max_tokens)?;
    let tokenize_s = t.elapsed().as_secs_f64();
    let tokens: usize = prepared.iter().map(|r| r.ids.len()).sum();
    let meta = store_meta(&model.files, &job, &layers, rows.len())?;
    let mut writer = StoreWriter::create_or_resume(&dir, meta)?;
    let settings = BatchSettings {
        layers: layers.clone(),
        pooling: job.pooling,
        batch_tokens,
        max_batch: job.max_batch,
    };
    let pad = model.files.pad_id();
    let t = Instant::now();
    extract_into(
        &mut model.decoder,
        pad,
        &prepared,
        &settings,
        &mut writer,
        &mut |_, _| {},
    )?;
    writer.finish(0)?;
    let ours_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "tokenization of {} exchanges: {tokenize_s:.2} s (not in the timings below)",
        prepared.len()
    );
    let mut table = vec![Row {
        method: "ours (ONNX Runtime, batched)".into(),
        items: prepared.len(),
        tokens,
        seconds: ours_s,
    }];
    if !a.baseline.skip_baseline {
        let n = a.baseline_n.min(prepared.len());
        // Every k-th row, so the baselines see the same length mix as ours.
        let step = (prepared.len() / n.max(1)).max(1);
        let ids: Vec<&Vec<u32>> = prepared
            .iter()
            .step_by(step)
            .take(n)
            .map(|r| &r.ids)
            .collect();
        table.extend(a.baseline.run(
            &model.files,
            "benches/extract_baseline.py",
            &serde_json::json!({"ids": ids, "layers": layers}),
            &["--batch-tokens".into(), batch_tokens.to_string()],
            &[
                ("a", "(a) seed: one example per forward"),
                ("b", "(b) transformers batched"),
            ],
            "examples",
        )?);
    }
    let base: Vec<(&str, usize)> = if table.len() == 3 {
        vec![("(a)", 1), ("(b)", 2)]
    } else {
        vec![]
    };
    print_table("examples", &table, &base);
    Ok(())
}
