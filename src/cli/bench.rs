//! `bench`: throughput against Python baselines measured in the same run (not a test: numbers
//! vary by machine). `bench extract` compares batched extraction with the seed's one-example
//! loop and a careful batched transformers script; `bench generate` compares unguarded and
//! guarded decoding with the seed's no-cache loop; `bench serve` compares the server under
//! concurrent clients with sequential `generate`.

mod decode;
mod extract;
mod generate;
mod python;
mod serve;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Batched extraction vs the seed's loop and batched transformers.
    Extract(extract::Args),
    /// Unguarded vs guarded decoding vs the seed's no-cache loop.
    Generate(generate::Args),
    /// Batch-1 decoding speed on any exported model, unguarded and guarded by a random probe
    /// (no trained probe needed; used by the GPU benchmark).
    Decode(decode::Args),
    /// The guarded server under 1, 4 and 16 concurrent streaming clients vs sequential guarded
    /// `generate` of the same prompts (aggregate tokens/s, TTFT and inter-token latency).
    Serve(serve::Args),
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.what {
        What::Extract(a) => extract::run(a),
        What::Generate(a) => generate::run(a),
        What::Decode(a) => decode::run(a),
        What::Serve(a) => serve::run(a),
    }
}

/// One row of a results table.
pub struct Row {
    pub method: String,
    pub items: usize,
    pub tokens: usize,
    pub seconds: f64,
}

impl Row {
    /// One baseline's row from the JSON a Python baseline printed: `res[key]` holds
    /// `{items_key, "tokens", "seconds"}`.
    pub fn from_baseline(res: &serde_json::Value, key: &str, items_key: &str, method: &str) -> Row {
        let r = &res[key];
        Row {
            method: method.into(),
            items: r[items_key].as_u64().unwrap_or(0) as usize,
            tokens: r["tokens"].as_u64().unwrap_or(0) as usize,
            seconds: r["seconds"].as_f64().unwrap_or(f64::NAN),
        }
    }
}

/// Prints rows with per-second rates and the ratio of each to `base` (by items/s).
pub fn print_table(unit: &str, rows: &[Row], base: &[(&str, usize)]) {
    println!(
        "| method | {unit} | tokens | seconds | {unit}/s | tokens/s |{}",
        base.iter()
            .map(|(n, _)| format!(" x vs {n} |"))
            .collect::<String>()
    );
    println!("|---|---|---|---|---|---|{}", "---|".repeat(base.len()));
    for r in rows {
        let rate = r.items as f64 / r.seconds.max(1e-9);
        let ratios: String = base
            .iter()
            .map(|(_, i)| {
                let b = &rows[*i];
                format!(" {:.2} |", rate / (b.items as f64 / b.seconds.max(1e-9)))
            })
            .collect();
        println!(
            "| {} | {} | {} | {:.2} | {:.3} | {:.1} |{ratios}",
            r.method,
            r.items,
            r.tokens,
            r.seconds,
            rate,
            r.tokens as f64 / r.seconds.max(1e-9)
        );
    }
}
