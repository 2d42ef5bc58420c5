//! `prepare-data`: public safety sources into the training schema (see `data::prepare` for the
//! rules), plus the XSTest over-blocking evaluation file and an optional summary.

use anyhow::bail;
use open_constitution::data::adapters::AdapterOptions;
use open_constitution::data::prepare::{
    default_sources, prepare, write_jsonl, write_summary, PrepareOptions, DEFAULT_SEED,
};
use open_constitution::data::{SourceKind, SourceSpec, SplitFractions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The project's own hand-written example set, used when no public source is available.
const EXAMPLE_SET: &str = "data/examples/examples.jsonl";

/// Arguments of `prepare-data`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Source formats (KIND=PATH):
  pku          PKU-SafeRLHF JSONL/.jsonl.gz: prompt, response_0/1, is_response_{0,1}_safe,
               optional response_{0,1}_harm_category and split (two records per row)
  beavertails  BeaverTails JSONL/.jsonl.gz: prompt, response, is_safe, category, optional split;
               or GuardReasoner's JSON list of {instruction, input, output} (detected by shape)
  saferlhf-mini  JailbreakEval Safe-RLHF-mini CSV question,answer,label (1 = unsafe)
  jailjudge    JailbreakEval JAILJUDGE-mini CSV question,answer,label,hazard_cate_llamaguard3,...
               (1 = jailbroken; the hazard category is the topic)
  gptfuzz      GPTFuzz CSV question,Response,label; question_list.csv beside it or
               --gptfuzz-questions
  coconot      CoCoNot preference JSONL (id, category, subcategory, prompt, chosen, rejected):
               rows of \"Requests with safety concerns\"; chosen and rejected are both label 0
  xstest       XSTest v2 completion CSV, a directory of them, or a glob such as
               'raw/xstest/*completions*.csv'; written to --eval-out, never to --out
  jsonl        {\"prompt\",\"response\",\"label\"} JSONL; id/split/topic/source and the other schema
               fields are kept when present
Parquet files are not read; convert one first, e.g.
  python -c \"import pandas as pd; pd.read_parquet('x.parquet').to_json('x.jsonl', orient='records', lines=True)\"

Without --source, the public files under --shared-data are used when present, otherwise the
project's example set (data/examples/examples.jsonl).")]
pub struct Args {
    /// A source as KIND=PATH (repeatable); KIND is pku, beavertails, saferlhf-mini, jailjudge,
    /// gptfuzz, coconot, xstest or jsonl.
    #[arg(long = "source", value_name = "KIND=PATH")]
    pub sources: Vec<SourceSpec>,
    /// Training JSONL to write.
    #[arg(long, value_name = "FILE", default_value = "data/training_data.jsonl")]
    pub out: PathBuf,
    /// XSTest evaluation JSONL to write (default: xstest_eval.jsonl beside --out).
    #[arg(long, value_name = "FILE")]
    pub eval_out: Option<PathBuf>,
    /// Summary JSON to write (counts per source, label, split, topic; hygiene counts).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Train,validation,test fractions for sources without their own split.
    #[arg(long, value_name = "T,V,T", default_value = "0.8,0.1,0.1")]
    pub split: SplitFractions,
    /// Keep at most N records per source kind (label/topic-balanced, seeded sample).
    #[arg(long, value_name = "N")]
    pub cap: Option<usize>,
    /// Per-kind cap as KIND=N (repeatable), overriding --cap.
    #[arg(long = "cap-source", value_name = "KIND=N", value_parser = parse_cap)]
    pub cap_source: Vec<(SourceKind, usize)>,
    /// Seed of the capped sample.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// GPTFuzz question list (index,text) when it is not beside the responses CSV.
    #[arg(long, value_name = "FILE")]
    pub gptfuzz_questions: Option<PathBuf>,
    /// Skip and count invalid rows instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Folder holding the public sources used when no --source is given.
    #[arg(long, value_name = "DIR", default_value = "../shared/data")]
    pub shared_data: PathBuf,
}

fn parse_cap(s: &str) -> Result<(SourceKind, usize), String> {
    let (kind, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected KIND=N, e.g. pku=5000"))?;
    let kind: SourceKind = kind.parse().map_err(|e| format!("{e}"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}`: expected a count"))?;
    Ok((kind, n))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let sources = resolve_sources(&args)?;
    let opts = PrepareOptions {
        sources,
        fractions: args.split,
        cap: args.cap,
        cap_source: args.cap_source.iter().copied().collect::<BTreeMap<_, _>>(),
        seed: args.seed,
        adapter: AdapterOptions {
            skip_invalid: args.skip_invalid,
            gptfuzz_questions: args.gptfuzz_questions.clone(),
        },
    };
    let prepared = prepare(&opts)?;
    if prepared.training.is_empty() {
        bail!("no training records were produced from the given sources");
    }
    let eval_out = args
        .eval_out
        .clone()
        .unwrap_or_else(|| sibling(&args.out, "xstest_eval.jsonl"));
    // Checked before writing anything: a later output must never replace an earlier one.
    let mut outputs = vec![("--out", args.out.as_path())];
    if prepared.summary.eval.is_some() || args.eval_out.is_some() {
        outputs.push(("--eval-out", eval_out.as_path()));
    }
    if let Some(summary) = &args.summary {
        outputs.push(("--summary", summary.as_path()));
    }
    open_constitution::fsutil::check_distinct_outputs(&outputs)?;
    write_jsonl(&args.out, &prepared.training)?;
    let t = &prepared.summary.training;
    tracing::info!(
        path = %args.out.display(),
        records = t.total,
        prompts = t.unique_prompts,
        by_label = ?t.by_label,
        by_split = ?t.by_split,
        duplicates_dropped = t.duplicates_dropped,
        conflicting_pairs = t.conflicting_pairs,
        "wrote training data"
    );
    if let Some(eval) = &prepared.summary.eval {
        let path = &eval_out;
        write_jsonl(path, &prepared.eval)?;
        tracing::info!(path = %path.display(), records = eval.total, by_label = ?eval.by_label, "wrote evaluation data");
    }
    if let Some(path) = &args.summary {
        write_summary(path, &prepared.summary)?;
        tracing::info!(path = %path.display(), "wrote summary");
    }
    Ok(())
}

/// The explicit sources, else the public ones under --shared-data, else the example set.
fn resolve_sources(args: &Args) -> anyhow::Result<Vec<SourceSpec>> {
    if !args.sources.is_empty() {
        return Ok(args.sources.clone());
    }
    let found = default_sources(&args.shared_data);
    if !found.is_empty() {
        let names: Vec<String> = found
            .iter()
            .map(|s| format!("{}={}", s.kind.as_str(), s.path.display()))
            .collect();
        tracing::info!(sources = ?names, "no --source given: using the public sources under {}", args.shared_data.display());
        return Ok(found);
    }
    let examples = PathBuf::from(EXAMPLE_SET);
    if examples.is_file() {
        tracing::info!(
            "no --source given and no public sources under {}: using the project's example set {EXAMPLE_SET}",
            args.shared_data.display()
        );
        return Ok(vec![SourceSpec {
            kind: SourceKind::Jsonl,
            path: examples,
        }]);
    }
    bail!(
        "no --source given, no public sources under {} and no {EXAMPLE_SET} here: \
         run from the project root or pass --source KIND=PATH",
        args.shared_data.display()
    )
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from(name), |d| d.join(name))
}
