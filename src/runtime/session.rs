//! ONNX Runtime: finding and loading the shared library (`load-dynamic`), choosing the execution
//! provider (CPU, CUDA, TensorRT) without silent fallbacks, and building sessions.

use crate::error::{Error, Result};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    #[cfg_attr(feature = "cli", value(name = "tensorrt"))]
    #[serde(rename = "tensorrt")]
    TensorRt,
}

/// Whether the graph's outputs stay in device memory where they can (ONNX Runtime IoBinding):
/// the KV cache between decode steps, and hidden states until they are pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum IoBindingMode {
    /// On for CUDA and TensorRT, off for CPU (where host and device memory are the same).
    #[default]
    Auto,
    On,
    Off,
}

impl IoBindingMode {
    /// Resolves `Auto` for the provider that actually runs the graph.
    pub fn enabled_for(self, provider: Device) -> bool {
        match self {
            IoBindingMode::Auto => provider != Device::Cpu,
            IoBindingMode::On => true,
            IoBindingMode::Off => false,
        }
    }
}

/// How to build sessions.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Explicit path of `libonnxruntime.so` (else `ORT_DYLIB_PATH`, else the setup location).
    pub ort_lib: Option<PathBuf>,
    pub device: Device,
    /// Run on CPU when the requested GPU provider cannot load, instead of failing.
    pub allow_cpu_fallback: bool,
    /// Intra-op threads (0 = ONNX Runtime's default: one per physical core).
    pub threads: usize,
    /// GPU ordinal for CUDA/TensorRT.
    pub device_id: i32,
    /// TensorRT engine cache directory (engines are built once per shape profile).
    pub trt_cache: Option<PathBuf>,
    /// Allow TF32 matmuls on CUDA (faster, ~1e-3 relative error in fp32 graphs).
    pub tf32: bool,
    /// Fail session creation if any node would run on CPU while a GPU provider is active.
    pub strict_placement: bool,
    /// Decoding through IoBinding (KV cache stays in device memory).
    pub io_binding: IoBindingMode,
    /// Write ONNX Runtime's profile (per-node provider and time) with this path prefix.
    pub profile: Option<PathBuf>,
    /// TensorRT optimization profiles for the dynamic dimensions (set from the manifest and
    /// [`RuntimeOptions::trt_shape`] when the model loads).
    pub trt_profiles: Option<crate::runtime::trt_profile::TrtProfiles>,
    /// Largest batch TensorRT engines accept: (rows, tokens per row, new plus cached). The
    /// command sets it from its own limits (`--max-batch`, `--max-tokens`, `--batch-size`).
    pub trt_shape: (usize, usize),
    /// Let TensorRT compute in fp16. Always on for fp16 graphs; for fp32 graphs only when asked
    /// (`--trt-fp16`, with a warning), since it changes the hidden states probes were trained on.
    pub trt_fp16: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            ort_lib: None,
            device: Device::Cpu,
            allow_cpu_fallback: false,
            threads: 0,
            device_id: 0,
            trt_cache: None,
            tf32: false,
            strict_placement: false,
            io_binding: IoBindingMode::Auto,
            profile: None,
            trt_profiles: None,
            trt_shape: (64, 2048),
            trt_fp16: false,
        }
    }
}

static ENV: OnceLock<std::result::Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

/// Candidate library paths in priority order, for `device`.
pub fn library_candidates(explicit: Option<&Path>, device: Device) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let kinds: &[&str] = match device {
        Device::Cpu => &["cpu", "gpu"],
        Device::Cuda | Device::TensorRt => &["gpu", "cpu"],
    };
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    let mut out = Vec::new();
    for kind in kinds {
        for r in &roots {
            let p = r.join(".ort").join(kind).join("libonnxruntime.so");
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Loads ONNX Runtime once per process and returns its environment and library path.
pub fn environment(
    opts: &RuntimeOptions,
) -> Result<&'static (PathBuf, ort::environment::Environment)> {
    let r = ENV.get_or_init(|| {
        let candidates = library_candidates(opts.ort_lib.as_deref(), opts.device);
        let explicit = opts.ort_lib.is_some() || std::env::var_os("ORT_DYLIB_PATH").is_some();
        let Some(lib) = candidates.iter().find(|p| p.exists()) else {
            let shown: Vec<String> = candidates
                .iter()
                .take(4)
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!(
                "ONNX Runtime library not found (looked for {}{}). Install it with `just setup` \
                 (CPU) or `just setup-gpu` (CUDA), or pass --ort-lib PATH / set ORT_DYLIB_PATH",
                shown.join(", "),
                if explicit { "" } else { ", ..." }
            ));
        };
        let builder = ort::init_from(lib).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}. Reinstall it with `just setup`",
                lib.display()
            )
        })?;
        let env = builder
            .with_name("open-constitution")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        tracing::debug!(lib = %lib.display(), "ONNX Runtime loaded");
        Ok((lib.clone(), env))
    });
    r.as_ref().map_err(|m| Error::Runtime(m.clone()))
}

/// A session plus the provider that actually runs it.
pub struct LoadedSession {
    pub session: Session,
    pub provider: Device,
    pub library: PathBuf,
    /// The options as resolved: `device` is the provider that runs, fallback and profiling off.
    /// Sessions for graphs built in code ([`session_from_model`]) use them.
    pub resolved: RuntimeOptions,
    /// Whether decoding uses IoBinding (resolved from [`IoBindingMode`] for `provider`).
    pub io_binding: bool,
    /// Whether ONNX Runtime profiling is on (see [`crate::runtime::profile`]).
    pub profiling: bool,
}

/// Where a graph comes from.
pub enum GraphSource<'a> {
    File(&'a Path),
    /// Serialized model bytes (e.g. a pruned graph); `origin` names it in messages.
    Memory {
        bytes: &'a [u8],
        origin: &'a Path,
    },
}

/// Builds a session for `model` with the requested provider.
pub fn load_session(model: &Path, opts: &RuntimeOptions) -> Result<LoadedSession> {
    load_session_from(GraphSource::File(model), opts)
}

/// Builds a session for a graph file or in-memory graph with the requested provider.
pub fn load_session_from(model: GraphSource<'_>, opts: &RuntimeOptions) -> Result<LoadedSession> {
    let (lib, env) = environment(opts)?;
    let (session, provider) = build(model, opts, env, lib).map_err(Error::Runtime)?;
    if provider != opts.device {
        tracing::warn!(
            requested = ?opts.device,
            "running on {provider:?}: the requested provider could not load (--allow-cpu-fallback)"
        );
    } else {
        tracing::info!("execution provider: {provider:?}");
    }
    let io_binding = opts.io_binding.enabled_for(provider);
    tracing::debug!(
        io_binding,
        "decode steps {}",
        if io_binding {
            "keep the KV cache in device memory (IoBinding)"
        } else {
            "move the KV cache as session outputs"
        }
    );
    Ok(LoadedSession {
        session,
        provider,
        library: lib.clone(),
        resolved: RuntimeOptions {
            device: provider,
            device_id: if provider == Device::Cpu {
                0
            } else {
                opts.device_id
            },
            allow_cpu_fallback: false,
            profile: None,
            // The decoder's profiles name the decoder's inputs; other graphs get their own.
            trt_profiles: None,
            ..opts.clone()
        },
        io_binding,
        profiling: opts.profile.is_some(),
    })
}

fn build(
    model: GraphSource<'_>,
    opts: &RuntimeOptions,
    env: &ort::environment::Environment,
    lib: &Path,
) -> std::result::Result<(Session, Device), String> {
    let (mut builder, provider) = configured_builder(opts, env, lib)?;
    let session = match model {
        GraphSource::File(path) => builder
            .commit_from_file(path)
            .map_err(|err| format!("cannot load the graph {}: {err}", path.display()))?,
        GraphSource::Memory { bytes, origin } => {
            builder.commit_from_memory(bytes).map_err(|err| {
                format!(
                    "cannot load the pruned graph of {}: {err}",
                    origin.display()
                )
            })?
        }
    };
    Ok((session, provider))
}

/// Builds a session for a graph made in code (e.g. the device pooling graph) with `opts`, normally a
/// [`LoadedSession::resolved`], so it runs on the same provider as the decoder.
pub fn session_from_model(model: ort::editor::Model, opts: &RuntimeOptions) -> Result<Session> {
    let (lib, env) = environment(opts)?;
    let (builder, _) = configured_builder(opts, env, lib).map_err(Error::Runtime)?;
    model
        .into_session(&builder)
        .map_err(Error::ort("cannot build a session for a generated graph"))
}

/// A session builder with threads, profiling and the execution provider set up.
fn configured_builder(
    opts: &RuntimeOptions,
    env: &ort::environment::Environment,
    lib: &Path,
) -> std::result::Result<(SessionBuilder, Device), String> {
    let e = |err: ort::Error<SessionBuilder>| err.to_string();
    let mut builder = Session::builder(env)
        .map_err(|x| x.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(e)?
        // A memory pattern is traced per set of input shapes and only pays off when shapes repeat;
        // every decode step (and most extraction batches) has shapes of its own.
        .with_memory_pattern(false)
        .map_err(e)?;
    if opts.threads > 0 {
        builder = builder.with_intra_threads(opts.threads).map_err(e)?;
    }
    if let Some(prefix) = &opts.profile {
        // ONNX Runtime opens the file now and silently writes nothing if its folder is missing.
        if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {} for --profile: {err}", dir.display()))?;
        }
        builder = builder.with_profiling(prefix).map_err(e)?;
    }
    let mut provider = Device::Cpu;
    if opts.device != Device::Cpu {
        match register_gpu(&mut builder, opts, lib) {
            Ok(()) => provider = opts.device,
            Err(msg) if opts.allow_cpu_fallback => {
                tracing::warn!("{msg}; falling back to CPU as --allow-cpu-fallback asks");
            }
            Err(msg) => return Err(format!("{msg} (pass --allow-cpu-fallback to run on CPU)")),
        }
        if provider != Device::Cpu && opts.strict_placement {
            builder = builder.with_disable_cpu_fallback().map_err(e)?;
        }
    }
    Ok((builder, provider))
}

/// Registers CUDA or TensorRT, with an error that names the missing library.
fn register_gpu(
    builder: &mut SessionBuilder,
    opts: &RuntimeOptions,
    lib: &Path,
) -> std::result::Result<(), String> {
    use ort::ep::{self, ExecutionProvider};
    let cuda = ep::CUDA::default()
        .with_device_id(opts.device_id)
        .with_tf32(opts.tf32);
    if !ep::CUDA::is_available().unwrap_or(false) {
        return Err(format!(
            "the ONNX Runtime library {} has no CUDA provider (it is the CPU build): install the \
             GPU build with `just setup-gpu` (needs CUDA 13: libcublasLt.so.13, libcudart.so.13, \
             cuDNN 9{})",
            lib.display(),
            if opts.device == Device::TensorRt {
                "; TensorRT also needs libnvinfer.so.10 and libnvonnxparser.so.10"
            } else {
                ""
            }
        ));
    }
    if opts.device == Device::TensorRt {
        let cache = opts
            .trt_cache
            .clone()
            .unwrap_or_else(|| PathBuf::from(".trt-cache"));
        let trt = ep::TensorRT::default()
            .with_device_id(opts.device_id)
            .with_fp16(opts.trt_fp16)
            .with_engine_cache(true)
            .with_engine_cache_path(cache.display())
            .with_timing_cache(true)
            .with_timing_cache_path(cache.display());
        let trt = match &opts.trt_profiles {
            Some(p) => trt
                .with_profile_min_shapes(&p.min)
                .with_profile_opt_shapes(&p.opt)
                .with_profile_max_shapes(&p.max),
            None => trt,
        };
        trt.register(builder).map_err(|err| {
            format!(
                "the TensorRT provider could not load: {err}. TensorRT needs libnvinfer.so.10 and \
                 libnvonnxparser.so.10 (TensorRT 10 for CUDA 13) on LD_LIBRARY_PATH"
            )
        })?;
    }
    cuda.register(builder).map_err(|err| {
        format!(
            "the CUDA provider could not load: {err}. It needs CUDA 13 (libcublasLt.so.13, \
             libcublas.so.13, libcudart.so.13, libcurand.so.10, libcufft.so.12), cuDNN 9 and the \
             NVIDIA driver (libcuda.so.1) on LD_LIBRARY_PATH"
        )
    })
}
