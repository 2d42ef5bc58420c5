//! `bench extract`: our batched extraction vs (a) the seed's loop and (b) batched transformers,
//! on the same sampled exchanges and the same token ids.

use super::python::BaselineArgs;
use super::{print_table, Row};
use crate::cli::common::Target;
use open_constitution::extract::{prepare_rows, run_extract, select_rows, ExtractJob};
use std::path::PathBuf;

/// Arguments of `bench extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
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
    let mut model = a
        .target
        .load_for_extraction(&a.target.runtime.options(), &a.layers)?;
    let batch_tokens = a.target.runtime.batch_tokens(a.batch_tokens);
    let dir = std::env::temp_dir().join(format!("oc-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let job = ExtractJob {
        layers: a.layers.clone(),
        batch_tokens,
        max_examples: Some(a.n),
        max_tokens: Some(a.max_tokens),
        ..ExtractJob::new(a.data.clone(), dir.clone(), a.target.runtime.device)
    };
    let layers = model.files.manifest.parse_layers(&job.layers)?;
    let summary = run_extract(&mut model, &job, &open_constitution::progress::Silent);
    let _ = std::fs::remove_dir_all(&dir);
    let summary = summary?;
    eprintln!(
        "tokenization of {} exchanges: {:.2} s (not in the timings below)",
        summary.rows, summary.tokenize_seconds
    );
    // The same rows and token ids, for the baselines (tokenizing again is cheap).
    let (rows, _) = select_rows(&job)?;
    let prepared = prepare_rows(&model.files, &rows, job.max_tokens)?;
    let tokens: usize = prepared.iter().map(|r| r.ids.len()).sum();
    let ours_s = summary.seconds;
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
