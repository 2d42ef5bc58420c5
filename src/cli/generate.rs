//! `generate`: guarded generation. Text streams to the terminal only after the probe has judged
//! it; `--json` prints the machine-readable result; `--prompts-file` runs many prompts in
//! left-padded batches and writes one JSON result per line.

use super::common::{GuardOverrides, Target};
use anyhow::Context;
use open_constitution::guard::generate::{
    generate_batch, GenerateOptions, GenerationResult, OnPause, Sink,
};
use open_constitution::guard::sampling::SamplingConfig;
use open_constitution::guard::GuardSetup;
use open_constitution::probe::Probe;
use open_constitution::store::Pooling;
use open_constitution::text::model::Model;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default probe directory (made by `just train`).
pub const DEFAULT_PROBE: &str = "runs/probe";

/// Arguments of `generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// The user's prompt (formatted with the model's chat template and its generation prompt).
    #[arg(long, required_unless_present = "prompts_file")]
    pub prompt: Option<String>,
    /// Many prompts: a `.jsonl` file of `{"prompt": ...}` objects, a `.csv` with a `prompt` column
    /// (XSTest's prompt list works as it is), or a text file with one prompt per line; an `id`
    /// field is copied through. Writes one JSON result per line.
    #[arg(long, conflicts_with = "prompt")]
    pub prompts_file: Option<PathBuf>,
    /// Where --prompts-file results go (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Prompts decoded together from --prompts-file (left-padded batch). Larger batches raise
    /// throughput until the CPU/GPU saturates; each row still stops on its own.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Trained probe directory (from `train`); its model hash must match the model's.
    #[arg(long, default_value = DEFAULT_PROBE)]
    pub probe: PathBuf,
    /// Generate without the guard (no probe is loaded).
    #[arg(long)]
    pub no_guard: bool,
    /// Print the result as JSON instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result of --prompt to this file (while streaming text).
    #[arg(long, conflicts_with = "prompts_file")]
    pub save: Option<PathBuf>,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy (default).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens when sampling.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p when sampling.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Penalize tokens already present (1.0 = off; HF semantics).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Sampling seed: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What a pause does: `stop` returns the paused state and the judged partial response;
    /// `refuse` answers with --refusal-message instead.
    #[arg(long, value_enum, default_value_t = OnPause::Stop)]
    pub on_pause: OnPause,
    /// The answer given when --on-pause refuse fires.
    #[arg(long, default_value = "I can't help with that.")]
    pub refusal_message: String,
    #[command(flatten)]
    pub guard: GuardOverrides,
    /// Also put the text a pause withheld into the JSON result (`withheld_text`), for auditing
    /// the guard. It is what the guard judged unsafe: never show it to end users.
    #[arg(long)]
    pub show_withheld: bool,
}

/// Loads the probe and checks it was trained for this model and prompt format.
pub fn load_probe(dir: &Path, model: &Model) -> anyhow::Result<Probe> {
    let probe = Probe::load(dir)?;
    probe.check_model(&model.files.manifest, &model.files.manifest_sha256)?;
    let chat = model.files.format.uses_chat_template();
    anyhow::ensure!(
        probe.config().use_chat_template == chat,
        "probe {} was trained {} the chat template, but this run formats prompts {} it; {}",
        dir.display(),
        if probe.config().use_chat_template {
            "with"
        } else {
            "without"
        },
        if chat { "with" } else { "without" },
        if chat {
            "pass --no-chat-template"
        } else {
            "drop --no-chat-template"
        }
    );
    if !matches!(probe.config().pooling, Pooling::Token | Pooling::Tokens) {
        // Not an error: such probes still rank exchanges, but their thresholds were calibrated
        // on another kind of state than the per-token ones the guard scores.
        tracing::warn!(
            "probe {} was trained on {:?}-pooled states; the guard scores one token at a time. \
             A probe from `extract --pooling token` sees what the guard sees",
            dir.display(),
            probe.config().pooling
        );
    }
    Ok(probe)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut model = a.target.load(
        // Prompts plus new tokens; longer prompts are refused against the context anyway.
        &a.target
            .runtime
            .options_for(a.batch_size, a.max_new_tokens.saturating_add(2048)),
    )?;
    let probe = if a.no_guard {
        None
    } else {
        Some(load_probe(&a.probe, &model)?)
    };
    let second = match &probe {
        Some(p) => p.load_second_stage()?,
        None => None,
    };
    let setup = probe
        .as_ref()
        .map(|p| p.guard_setup(second.as_ref(), a.guard.apply(p.config().guard_config())));
    if let Some(s) = &setup {
        s.config.validate()?;
    }
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
            seed: a.seed,
        },
        on_pause: a.on_pause,
        refusal_message: a.refusal_message.clone(),
        ignore_eos: false,
        keep_withheld: a.show_withheld,
    };
    opts.sampling.validate()?;
    match &a.prompts_file {
        Some(file) => run_file(
            &mut model,
            file,
            a.out.as_deref(),
            a.batch_size,
            setup.as_ref(),
            &opts,
        ),
        None => {
            let prompt = a.prompt.as_deref().unwrap_or_default();
            let r = run_one(&mut model, prompt, a.json, setup.as_ref(), &opts)?;
            if let Some(path) = &a.save {
                let bytes = serde_json::to_vec_pretty(&r)?;
                open_constitution::fsutil::write_bytes_atomic(path, &bytes)?;
            }
            Ok(())
        }
    }
}

fn run_one(
    model: &mut Model,
    prompt: &str,
    json: bool,
    setup: Option<&GuardSetup<'_>>,
    opts: &GenerateOptions,
) -> anyhow::Result<GenerationResult> {
    let sink: Sink<'_> = if json {
        Box::new(|_: &str| {})
    } else {
        Box::new(|t: &str| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(t.as_bytes()).and_then(|()| out.flush());
        })
    };
    let r = generate_batch(model, &[prompt.to_string()], setup, opts, vec![sink])?.remove(0);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(r);
    }
    if r.status == open_constitution::guard::generate::Status::Refused {
        println!("\n{}", r.response);
    }
    println!();
    eprintln!("{}", status_line(&r));
    Ok(r)
}

/// One human-readable line about a result (stderr, after the text).
fn status_line(r: &GenerationResult) -> String {
    let max = r
        .probe_steps
        .iter()
        .map(|s| s.smoothed)
        .fold(0f32, f32::max);
    format!(
        "[{:?} | {} tokens, stop: {:?} | max smoothed risk {:.3} over {} probe steps | first token {:.0} ms, {:.1} tokens/s]",
        r.status,
        r.tokens_generated,
        r.stop_reason,
        max,
        r.probe_steps.len(),
        r.timings.time_to_first_token_ms,
        r.timings.decode_tokens_per_s
    )
}

/// Generates for every prompt of `file`, one JSON result per line to `out` (or stdout). `out`
/// is written to a temp file and renamed into place at the end, so a failure on any prompt
/// leaves an existing `out` as it was.
fn run_file(
    model: &mut Model,
    file: &Path,
    out: Option<&Path>,
    batch: usize,
    setup: Option<&GuardSetup<'_>>,
    opts: &GenerateOptions,
) -> anyhow::Result<()> {
    let prompts = open_constitution::data::read_prompts(file)?;
    let Some(out) = out else {
        return write_results(
            model,
            &prompts,
            batch,
            setup,
            opts,
            &mut std::io::stdout().lock(),
        );
    };
    let tmp = open_constitution::fsutil::temp_path(out);
    let result = (|| {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        write_results(model, &prompts, batch, setup, opts, &mut w)?;
        w.flush()?;
        std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_results(
    model: &mut Model,
    prompts: &[open_constitution::data::PromptLine],
    batch: usize,
    setup: Option<&GuardSetup<'_>>,
    opts: &GenerateOptions,
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    for chunk in prompts.chunks(batch.max(1)) {
        let texts: Vec<String> = chunk.iter().map(|p| p.prompt.clone()).collect();
        let sinks: Vec<Sink<'_>> = texts
            .iter()
            .map(|_| Box::new(|_: &str| {}) as Sink<'_>)
            .collect();
        for (p, r) in chunk
            .iter()
            .zip(generate_batch(model, &texts, setup, opts, sinks)?)
        {
            let mut v = serde_json::to_value(&r)?;
            if let Some(id) = p.fields.get("id") {
                v["id"] = id.clone();
            }
            writeln!(w, "{}", serde_json::to_string(&v)?)?;
            eprintln!("{}", status_line(&r));
        }
        w.flush()?;
    }
    Ok(())
}
