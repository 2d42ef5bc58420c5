//! Runs a Python baseline script and reads the JSON it prints on its last line.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

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
