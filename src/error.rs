//! The library's one error type: each variant names the phase that failed, and every message says
//! what was wrong, where (file, line, field, tensor) and, where there is one, the fix.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the library, one variant per phase.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file (JSONL/CSV) has an invalid record.
    #[error("{}:{line}: field `{field}`: {message}", file.display())]
    Data {
        file: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    /// Preparing data sources (adapters, splits, hygiene) failed.
    #[error("prepare-data: {0}")]
    Prepare(String),
    /// The model folder or its manifest is missing, malformed or disagrees with the graph.
    #[error("model: {0}")]
    Model(String),
    /// ONNX Runtime could not be loaded, a provider failed, or a run failed.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// An ONNX Runtime call failed: what was being done, with ONNX Runtime's own error as the
    /// cause (the binary prints it as `caused by:`).
    #[error("onnx runtime: {context}")]
    Ort {
        context: String,
        #[source]
        source: ort::Error,
    },
    /// A JSON file does not parse; serde's error (line, column, what) is the cause.
    #[error("{}: not valid JSON for {what}", path.display())]
    Json {
        path: PathBuf,
        /// What the file should hold, e.g. "activation store metadata".
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file does not parse; the safetensors error is the cause.
    #[error("{}: {context}", path.display())]
    Safetensors {
        path: PathBuf,
        context: String,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// The chat template could not be loaded or raised while rendering.
    #[error("chat template: {0}")]
    Template(String),
    /// Tokenization failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// Activation extraction failed.
    #[error("extract: {0}")]
    Extract(String),
    /// The activation store is missing, malformed, or belongs to another run.
    #[error("activation store: {0}")]
    Store(String),
    /// Probe training, calibration, evaluation or loading failed.
    #[error("probe: {0}")]
    Probe(String),
    /// Guarded generation failed.
    #[error("generate: {0}")]
    Generate(String),
    /// The server could not start or stopped on an error (bind, runtime, decode loop).
    #[error("serve: {0}")]
    Serve(String),
    /// A command-line value is invalid (layers spec, shard spec, ...).
    #[error("invalid argument: {0}")]
    Argument(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Maps an ONNX Runtime error into [`Error::Ort`] with what was being done.
    pub fn ort(context: impl Into<String>) -> impl FnOnce(ort::Error) -> Error {
        let context = context.into();
        move |source| Error::Ort { context, source }
    }

    /// Maps a JSON error of `path` (holding `what`) into [`Error::Json`].
    pub fn json(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
    ) -> impl FnOnce(serde_json::Error) -> Error {
        let (path, what) = (path.into(), what.into());
        move |source| Error::Json { path, what, source }
    }

    /// A data error at `file:line` for `field`.
    pub fn data(
        file: impl Into<PathBuf>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Data {
            file: file.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Extension to attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    /// Maps an I/O error into [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
