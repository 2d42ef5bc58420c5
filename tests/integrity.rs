//! Model files are checked against their manifest: a damaged graph is refused naming the file,
//! and a success is remembered beside it so large graphs are not rehashed on every load.

mod common;

use common::*;
use open_constitution::runtime::integrity::cache_path;
use open_constitution::runtime::RuntimeOptions;
use open_constitution::text::model::Model;

fn copy_model(name: &str, to: &std::path::Path) {
    std::fs::create_dir(to).unwrap();
    for f in std::fs::read_dir(model_dir(name)).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Issue 17 item 6: a bit-flipped model.onnx loaded and extracted under the good model's hash.
#[test]
fn a_bit_flipped_graph_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_model("tiny-qwen3", &dir);
    let opts = RuntimeOptions {
        threads: 1,
        ..Default::default()
    };
    let spec = dir.to_str().unwrap();
    Model::load(spec, true, &opts).expect("intact model loads");
    let graph = dir.join("model.onnx");
    assert!(cache_path(&graph).is_file(), "the check is remembered");
    let mut bytes = std::fs::read(&graph).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&graph, &bytes).unwrap();
    for load in [
        Model::load(spec, true, &opts).err(),
        Model::load_for_extraction(spec, true, &opts, "-1").err(),
    ] {
        let err = load.expect("damaged graph refused").to_string();
        assert!(
            err.contains("model.onnx") && err.contains("sha256") && err.contains("manifest.json"),
            "{err}"
        );
    }
}

/// Issue 17 item 6: NaN hidden states (here from weights overwritten with NaN bytes, under a
/// manifest updated to match, as a broken export would be) were stored without complaint.
#[test]
fn extraction_refuses_non_finite_states_naming_the_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_model("tiny-qwen3", &dir);
    let graph = dir.join("model.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let old = open_constitution::fsutil::sha256_bytes(&bytes);
    // The middle of this graph is a weight tensor: 0xFF bytes are NaN floats.
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4096].fill(0xff);
    std::fs::write(&graph, &bytes).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let new = open_constitution::fsutil::sha256_bytes(&bytes);
    std::fs::write(dir.join("manifest.json"), manifest.replace(&old, &new)).unwrap();
    let o = std::process::Command::new(bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-q", "extract", "--threads", "1", "--max-examples", "10"])
        .args(["--data", "data/examples/examples.jsonl", "--model"])
        .arg(&dir)
        .arg("--out")
        .arg(tmp.path().join("s"))
        .output()
        .unwrap();
    let err = fail(o);
    assert!(
        err.contains("row `") && err.contains("is not finite (NaN)"),
        "{err}"
    );
}
