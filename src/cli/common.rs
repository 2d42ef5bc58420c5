//! Flags shared by several subcommands: which model, which prompt format, which runtime.

use open_constitution::runtime::{Device, RuntimeOptions};
use std::path::PathBuf;

/// Default model folder (made by `just gemma3-270m`).
pub const DEFAULT_MODEL: &str = "models/gemma-3-270m";

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
    /// Fail if any graph node would run on CPU while a GPU provider is active (proves placement).
    #[arg(long)]
    pub strict_placement: bool,
}

impl RuntimeArgs {
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
        }
    }
}
