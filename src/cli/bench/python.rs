//! Runs a Python baseline script and reads the JSON it prints on its last line.

use super::Row;
use anyhow::{bail, Context};
use open_constitution::text::model::ModelFiles;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags of the bench subcommands that run Python baselines.
#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Python with torch + transformers (default: the export environment's).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Hugging Face folder of the model (default: the export's source folder).
    #[arg(long)]
    pub hf_dir: Option<PathBuf>,
    /// Only measure ours.
    #[arg(long)]
    pub skip_baseline: bool,
}

impl BaselineArgs {
    /// Runs `script --hf-dir HF --input SPEC extra...` on the model's Hugging Face folder, with
    /// `spec` written to a temporary JSON file, and returns one table row per `(key, method)`
    /// of its result (`items_key` counts the items).
    pub fn run(
        &self,
        files: &ModelFiles,
        script: &str,
        spec: &serde_json::Value,
        extra: &[String],
        rows: &[(&str, &str)],
        items_key: &str,
    ) -> anyhow::Result<Vec<Row>> {
        let input = std::env::temp_dir().join(format!("oc-bench-{}.json", std::process::id()));
        std::fs::write(&input, serde_json::to_vec(spec)?)?;
        let hf = self
            .hf_dir
            .clone()
            .unwrap_or_else(|| hf_dir(&files.dir, &files.manifest.source));
        let mut args = vec![
            "--hf-dir".into(),
            hf.display().to_string(),
            "--input".into(),
            input.display().to_string(),
        ];
        args.extend_from_slice(extra);
        let python = self.python.clone().unwrap_or_else(default_python);
        let res = run_json(&python, script, &args);
        let _ = std::fs::remove_file(&input);
        let res = res?;
        Ok(rows
            .iter()
            .map(|(key, method)| Row::from_baseline(&res, key, items_key, method))
            .collect())
    }
}

/// The Python with torch and transformers (the export environment).
pub fn default_python() -> PathBuf {
    PathBuf::from(".venv/bin/python")
}

/// The Hugging Face folder an export came from (`manifest.source.path`, relative to the model).
pub fn hf_dir(model_dir: &Path, manifest_source: &serde_json::Value) -> PathBuf {
    let rel = manifest_source
        .get("path")
        .and_then(|p| p.as_str())
        .unwrap_or("source");
    model_dir.join(rel)
}

/// Runs `python script args...`, streaming its stderr, and parses its last stdout line as JSON.
pub fn run_json(python: &Path, script: &str, args: &[String]) -> anyhow::Result<serde_json::Value> {
    if !python.exists() {
        bail!(
            "{} not found: the Python baselines need the export environment (`just setup-export`), \
             or pass --skip-baseline",
            python.display()
        );
    }
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {script}", python.display()))?;
    if !out.status.success() {
        bail!("{script} failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{script} printed no JSON result: {stdout}"))
}
