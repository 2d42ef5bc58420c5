//! Subcommand definitions and dispatch; each subcommand lives in its own file.

mod bench;
mod common;
mod eval;
mod eval_stream;
mod eval_tokens;
mod extract;
mod generate;
mod merge;
mod prepare;
mod progress;
mod render;
mod serve;
mod sweep;
mod train;
mod train_stream;

use clap::{Parser, Subcommand};

/// Activation probes that guard open-weight LLMs: extract hidden states from an exported decoder
/// graph, train a linear probe on them, and guard generation with it.
#[derive(Debug, Parser)]
#[command(name = "open-constitution", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info from every module, -vv debug, -vvv trace). Default: warnings and
    /// this tool's progress messages.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert public safety datasets into the training JSONL schema.
    PrepareData(prepare::Args),
    /// Show exactly what the model sees: formatted text and token ids.
    Render(render::Args),
    /// Extract hidden-state activations of labelled exchanges into an activation store.
    Extract(extract::Args),
    /// Train a linear probe on one stored layer: regularization chosen on validation,
    /// thresholds calibrated for target false-positive rates, metrics on test.
    Train(train::Args),
    /// Train one probe per stored layer and compare them (table, sweep.json, sweep.svg).
    Sweep(sweep::Args),
    /// Score stored activations with a trained probe: metrics, over-blocking, ROC/PR curves.
    Eval(eval::Args),
    /// Generate with the probe guarding every step: text is shown only after it is judged.
    Generate(generate::Args),
    /// Serve an OpenAI-compatible HTTP API whose every response the probe guards (continuous
    /// batching; streaming; /metrics).
    Serve(serve::Args),
    /// Merge activation stores (e.g. the shards of `extract --shard K/N`) into one.
    Merge(merge::Args),
    /// Measure throughput against Python baselines run in the same process tree.
    Bench(bench::Args),
}

/// Runs one subcommand.
pub fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Extract(a) => extract::run(a, quiet),
        Command::Merge(a) => merge::run(a),
        Command::Bench(a) => bench::run(a),
        Command::PrepareData(a) => prepare::run(a),
        Command::Render(a) => render::run(a),
        Command::Train(a) => train::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Eval(a) => eval::run(a, quiet),
        Command::Generate(a) => generate::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// Sets up `tracing` output on stderr; `RUST_LOG` overrides the flags.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,open_constitution=info",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
