//! Flags shared by several subcommands: which model, which prompt format, which runtime.

use open_constitution::guard::GuardConfig;
use open_constitution::runtime::decoder::Decoder;
use open_constitution::runtime::profile::Placement;
use open_constitution::runtime::{Device, IoBindingMode, RuntimeOptions};
use open_constitution::text::Model;
use std::path::PathBuf;

/// Default model folder: the instruction-tuned SmolLM2-135M (made by `just smollm2`), the model
/// `just demo` extracts, trains and guards.
pub const DEFAULT_MODEL: &str = "models/smollm2-135m-instruct";

/// The model and how prompts are formatted.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Exported model folder (from `just export`), or a hub id whose exported folder is in the
    /// local Hugging Face cache (nothing is downloaded).
    #[arg(long, default_value = DEFAULT_MODEL, env = "OC_MODEL")]
    pub model: String,
    /// Format exchanges as `User:\n{prompt}\n\nAssistant:\n{response}` instead of the model's
    /// chat template. Probes must be used with the format they were trained on.
    #[arg(long)]
    pub no_chat_template: bool,
}

/// Overrides of a probe's guard settings, shared by `generate` and `eval --stream` so that any
/// guard that can be deployed can also be measured.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GuardOverrides {
    /// Override the probe's flag threshold (smoothed risk in [0, 1]): lower flags more streams.
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// Override the probe's pause threshold (smoothed risk in [0, 1], >= --threshold): lower
    /// pauses more streams, safe ones included.
    #[arg(long, allow_negative_numbers = true)]
    pub pause_threshold: Option<f32>,
    /// Override how often to probe (every N generated tokens; 1 = every token). Larger N costs
    /// less and releases text in larger chunks, but judges later.
    #[arg(long)]
    pub probe_every_n_tokens: Option<usize>,
    /// Override the moving-average window (probe steps) used to smooth the risk: wider is
    /// calmer but slower to react.
    #[arg(long)]
    pub smoothing_window: Option<usize>,
    /// Smooth with an exponential moving average of this weight in (0, 1] instead of the
    /// moving average: higher reacts faster.
    #[arg(long, conflicts_with = "smoothing_window")]
    pub ema_alpha: Option<f32>,
}

impl GuardOverrides {
    /// The probe's guard `base` with these overrides applied (validated by the guard itself).
    pub fn apply(&self, base: GuardConfig) -> GuardConfig {
        GuardConfig {
            threshold: self.threshold.unwrap_or(base.threshold),
            pause_threshold: self.pause_threshold.unwrap_or(base.pause_threshold),
            probe_every_n_tokens: self
                .probe_every_n_tokens
                .unwrap_or(base.probe_every_n_tokens),
            smoothing: match (self.ema_alpha, self.smoothing_window) {
                // An override keeps the probe's space (risks or logits, as it was trained).
                (Some(alpha), _) => base.smoothing.with_ema(alpha),
                (None, Some(window)) => base.smoothing.with_window(window),
                (None, None) => base.smoothing,
            },
        }
    }

    /// Whether any override is given.
    pub fn any(&self) -> bool {
        self.threshold.is_some()
            || self.pause_threshold.is_some()
            || self.probe_every_n_tokens.is_some()
            || self.smoothing_window.is_some()
            || self.ema_alpha.is_some()
    }
}

/// The model, its prompt format and where it runs: what every command that loads a model takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl Target {
    /// Loads the model for decoding with `opts` (from [`RuntimeArgs::options`] or `options_for`).
    pub fn load(&self, opts: &RuntimeOptions) -> anyhow::Result<Model> {
        Ok(Model::load(
            &self.model.model,
            !self.model.no_chat_template,
            opts,
        )?)
    }

    /// Loads the model with its graph pruned to the hidden states `layers`.
    pub fn load_for_extraction(
        &self,
        opts: &RuntimeOptions,
        layers: &str,
    ) -> anyhow::Result<Model> {
        let chat = !self.model.no_chat_template;
        Ok(Model::load_for_extraction(
            &self.model.model,
            chat,
            opts,
            layers,
        )?)
    }
}

/// Where and how the graph runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Execution provider. `cuda`/`tensorrt` need the GPU build of ONNX Runtime (`just
    /// setup-gpu`); a provider that cannot load is an error unless --allow-cpu-fallback.
    #[arg(long, value_enum, default_value_t = Device::Cpu, env = "OC_DEVICE")]
    pub device: Device,
    /// Run on CPU when the requested GPU provider cannot load (logged), instead of failing.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// Path of libonnxruntime.so. Default: $ORT_DYLIB_PATH, else .ort/{cpu,gpu}/ as installed by
    /// `just setup` / `just setup-gpu`.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads for ONNX Runtime (0 = one per physical core). Fewer threads leave cores
    /// for tokenization and other processes.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// GPU ordinal for cuda/tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// TensorRT engine cache directory: engines are built once per model and shape profile
    /// (minutes) and reused from here.
    #[arg(long, default_value = ".trt-cache")]
    pub trt_cache: PathBuf,
    /// Allow TF32 matmuls on CUDA: faster, but fp32 results differ ~1e-3 relative.
    #[arg(long)]
    pub tf32: bool,
    /// Let TensorRT compute an fp32 graph in fp16: faster, but hidden states differ ~1e-3
    /// relative from the fp32 ones probes were trained on (fp16 graphs always use fp16).
    #[arg(long)]
    pub trt_fp16: bool,
    /// Fail if any graph node would run on CPU while a GPU provider is active (proves placement).
    /// ONNX Runtime deliberately keeps some shape computations on the CPU, so a graph may need
    /// this off; --profile shows which nodes those are.
    #[arg(long)]
    pub strict_placement: bool,
    /// Use ONNX Runtime IoBinding: decoding keeps the KV cache in device memory between steps
    /// (only logits and the probe layer's hidden state come back to the host), and extraction
    /// pools hidden states on the device (only the pooled rows come back). `auto`: on for
    /// cuda/tensorrt, off for cpu, where both ways give the same results.
    #[arg(long, value_enum, default_value_t = IoBindingMode::Auto, env = "OC_IO_BINDING")]
    pub io_binding: IoBindingMode,
    /// Profile ONNX Runtime: write its trace (every node run, with its provider and time) to
    /// PREFIX_<date>.json and print the node placement per provider at the end. Costs a little
    /// time per node; use for checking where nodes run, not for timing.
    #[arg(long, value_name = "PREFIX")]
    pub profile: Option<PathBuf>,
}

impl RuntimeArgs {
    /// Padded tokens per extraction batch when `--batch-tokens` is not given: small batches
    /// stay in CPU caches (Gemma 3 270M on 2 cores: 512-1024 tokens ran 1.17x faster than
    /// 4096), while a GPU needs large batches to fill its cores.
    pub fn batch_tokens(&self, flag: Option<usize>) -> usize {
        flag.unwrap_or(open_constitution::extract::default_batch_tokens(
            self.device,
        ))
    }

    pub fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            ort_lib: self.ort_lib.clone(),
            device: self.device,
            allow_cpu_fallback: self.allow_cpu_fallback,
            threads: self.threads,
            device_id: self.device_id,
            trt_cache: Some(self.trt_cache.clone()),
            tf32: self.tf32,
            strict_placement: self.strict_placement,
            io_binding: self.io_binding,
            profile: self.profile.clone(),
            trt_profiles: None,
            trt_shape: RuntimeOptions::default().trt_shape,
            trt_fp16: self.trt_fp16,
        }
    }

    /// [`RuntimeArgs::options`] for a command whose batches hold at most `rows` rows of
    /// `tokens` tokens (new plus cached): TensorRT's engines are built for exactly that range.
    pub fn options_for(&self, rows: usize, tokens: usize) -> RuntimeOptions {
        RuntimeOptions {
            trt_shape: (rows, tokens),
            ..self.options()
        }
    }
}

/// With --profile: ends profiling and prints the node placement per provider on stderr.
pub fn report_placement(decoder: &mut Decoder) -> anyhow::Result<()> {
    if let Some(file) = decoder.end_profiling()? {
        let placement = Placement::from_file(&file)?;
        eprintln!(
            "node placement ({}, profile {}):\n{}",
            format!("{:?}", decoder.provider()).to_lowercase(),
            file.display(),
            placement.report()
        );
    }
    Ok(())
}
