//! Device selection through the binary, one process per case (ONNX Runtime loads once per
//! process): `--device cuda` with the CPU build names the GPU build and `just setup-gpu`; the GPU
//! build on a machine without CUDA names `libcublasLt.so.13`; `--device tensorrt` names
//! `libnvinfer`; `--allow-cpu-fallback` runs on CPU with the results of a CPU run and says so;
//! `--profile` prints the node placement; `--io-binding on` (the GPU default, pooling on the
//! device) extracts the store of `--io-binding off`. Cases that need the GPU build skip (with
//! the reason printed) when `scripts/setup-ort.sh gpu` has not installed it.

mod common;

use common::*;
use open_constitution::store::ActivationStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATA: &str = "data/examples/examples.jsonl";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The installed ONNX Runtime build of `kind` (`cpu` or `gpu`), if any.
fn library(kind: &str) -> Option<PathBuf> {
    let p = root().join(".ort").join(kind).join("libonnxruntime.so");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED part: {} is absent (install it with scripts/setup-ort.sh {kind})",
            p.display()
        );
        None
    }
}

fn extract(lib: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(root())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("OC_DEVICE")
        .args([
            "extract",
            "--threads",
            "1",
            "--max-examples",
            "8",
            "--layers",
            "-1,2",
        ])
        .args([
            "--model",
            model_dir("tiny-gemma3").to_str().unwrap(),
            "--data",
            DATA,
        ])
        .arg("--out")
        .arg(out)
        .arg("--ort-lib")
        .arg(lib)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr_of_failure(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected a handled failure; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cuda_with_the_cpu_build_names_the_gpu_build_and_setup_gpu() {
    let Some(cpu) = library("cpu") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr_of_failure(&extract(&cpu, &tmp.path().join("s"), &["--device", "cuda"]));
    assert!(
        err.contains("CPU build") && err.contains("just setup-gpu"),
        "{err}"
    );
    assert!(
        err.contains("--allow-cpu-fallback"),
        "names the way out: {err}"
    );
    assert!(
        !tmp.path().join("s").join("meta.json").exists(),
        "nothing was extracted"
    );
}

#[test]
fn cuda_with_the_gpu_build_without_cuda_names_libcublaslt() {
    let Some(gpu) = library("gpu") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let o = extract(&gpu, &tmp.path().join("s"), &["--device", "cuda"]);
    if o.status.success() {
        eprintln!("SKIPPED: this machine has CUDA; the GPU build ran on it");
        assert!(String::from_utf8_lossy(&o.stdout).contains("provider Cuda"));
        return;
    }
    let err = stderr_of_failure(&o);
    assert!(
        err.contains("CUDA provider could not load") && err.contains("libcublasLt.so.13"),
        "{err}"
    );
}

#[test]
fn tensorrt_names_libnvinfer_with_either_build() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["cpu", "gpu"] {
        let Some(lib) = library(kind) else { continue };
        let o = extract(&lib, &tmp.path().join(kind), &["--device", "tensorrt"]);
        let err = stderr_of_failure(&o);
        assert!(err.contains("libnvinfer"), "{kind} build: {err}");
    }
}

#[test]
fn allow_cpu_fallback_runs_on_cpu_with_cpu_results_and_says_so() {
    let Some(cpu) = library("cpu") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let plain = extract(&cpu, &tmp.path().join("plain"), &[]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let reference = ActivationStore::open(&tmp.path().join("plain")).unwrap();
    for (kind, lib) in [("cpu", Some(cpu.clone())), ("gpu", library("gpu"))] {
        let Some(lib) = lib else { continue };
        let out = tmp.path().join(format!("fallback-{kind}"));
        let o = extract(&lib, &out, &["--device", "cuda", "--allow-cpu-fallback"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "{kind} build: {stderr}");
        assert!(stdout.contains("provider Cpu"), "{kind} build: {stdout}");
        assert!(
            stderr.contains("falling back to CPU"),
            "{kind} build logs the fallback: {stderr}"
        );
        let store = ActivationStore::open(&out).unwrap();
        for layer in reference.meta().layers.clone() {
            let (a, b) = (
                store.layer_matrix(layer).unwrap(),
                reference.layer_matrix(layer).unwrap(),
            );
            let d = max_scaled_diff(a.as_slice().unwrap(), b.as_slice().unwrap());
            assert!(
                d < 1e-5,
                "{kind} build, layer {layer}: fallback differs from CPU by {d}"
            );
        }
    }
}

#[test]
fn profile_prints_the_node_placement() {
    let Some(cpu) = library("cpu") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("profile").join("run");
    let o = extract(
        &cpu,
        &tmp.path().join("s"),
        &["--profile", prefix.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("node placement (cpu"), "{stderr}");
    assert!(
        stderr.contains("CPUExecutionProvider:") && stderr.contains("nodes"),
        "{stderr}"
    );
    let files: Vec<_> = std::fs::read_dir(prefix.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "one profile file");
}

#[test]
fn io_binding_on_extracts_what_io_binding_off_extracts() {
    let Some(cpu) = library("cpu") else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (mode, pooling) in [
        ("on", "last"),
        ("off", "last"),
        ("on", "mean"),
        ("off", "mean"),
    ] {
        let out = tmp.path().join(format!("{mode}-{pooling}"));
        let o = extract(&cpu, &out, &["--io-binding", mode, "--pooling", pooling]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for pooling in ["last", "mean"] {
        let on = ActivationStore::open(&tmp.path().join(format!("on-{pooling}"))).unwrap();
        let off = ActivationStore::open(&tmp.path().join(format!("off-{pooling}"))).unwrap();
        for layer in off.meta().layers.clone() {
            let (a, b) = (
                on.layer_matrix(layer).unwrap(),
                off.layer_matrix(layer).unwrap(),
            );
            let d = max_scaled_diff(a.as_slice().unwrap(), b.as_slice().unwrap());
            assert!(
                d < 1e-6,
                "{pooling} layer {layer}: pooled on the device differs by {d}"
            );
        }
    }
}
