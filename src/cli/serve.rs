//! `serve`: the OpenAI-compatible guarded server (see `open_constitution::serve`). Loads the model
//! and the probe as `generate` does, applies the operator's guard overrides, and prints the bound
//! address on stdout (`listening on http://ADDR`) once it accepts connections.

use super::common::{GuardOverrides, Target};
use super::generate::{load_probe, DEFAULT_PROBE};
use open_constitution::serve::{serve, Limits, ServeConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Trained probe directory (from `train`); it guards every response.
    #[arg(long, default_value = DEFAULT_PROBE)]
    pub probe: PathBuf,
    /// Address to listen on (0.0.0.0 in a container).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the bound address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most requests decoding together (continuous batching: requests join and leave the
    /// running batch between steps).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Most requests waiting for a batch slot; beyond it requests get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// API key clients must send as `Authorization: Bearer KEY` (default: no key).
    #[arg(long, env = "OC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model name clients use in `model` (default: the model folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Largest `max_tokens` a request may ask for (also the default when it asks none).
    #[arg(long, default_value_t = 512)]
    pub max_tokens_cap: usize,
    /// Largest request body in bytes (413 beyond it).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds a request may take from arrival to its last token (504, or an error event).
    #[arg(long, default_value_t = 300.0)]
    pub request_timeout: f64,
    /// Seconds in-flight responses get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Lowest threshold a request's `guard` object may set (requests may only make the guard
    /// stricter than the operator's, down to this).
    #[arg(long, default_value_t = 0.0)]
    pub min_guard_threshold: f32,
    #[command(flatten)]
    pub guard: GuardOverrides,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        s.is_finite() && s > 0.0,
        "--{flag} must be a positive number of seconds, got {s}"
    );
    Ok(Duration::from_secs_f64(s))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.max_batch >= 1, "--max-batch must be >= 1");
    anyhow::ensure!(a.max_queue >= 1, "--max-queue must be >= 1");
    anyhow::ensure!(a.max_tokens_cap >= 1, "--max-tokens-cap must be >= 1");
    let limits = Limits {
        max_tokens: a.max_tokens_cap,
        max_body_bytes: a.max_body_bytes,
        max_queue: a.max_queue,
        request_timeout: seconds("request-timeout", a.request_timeout)?,
        min_guard_threshold: a.min_guard_threshold,
    };
    let drain_timeout = seconds("drain-timeout", a.drain_timeout)?;
    let model = a.target.load(
        &a.target
            .runtime
            .options_for(a.max_batch, a.max_tokens_cap.saturating_add(2048)),
    )?;
    let probe = load_probe(&a.probe, &model)?;
    let guard = a.guard.apply(probe.config().guard_config());
    guard.validate()?;
    let model_name = a.served_model_name.clone().unwrap_or_else(|| {
        model
            .files
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.files.id.clone())
    });
    let cfg = ServeConfig {
        host: a.host,
        port: a.port,
        model_name,
        max_batch: a.max_batch,
        api_key: a.api_key.filter(|k| !k.is_empty()),
        guard,
        limits,
        drain_timeout,
    };
    serve(model, probe, cfg, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}").and_then(|()| out.flush());
        tracing::info!("serving on http://{addr}");
    })?;
    Ok(())
}
