//! Sharded extraction as on a cluster: N shards run as parallel local processes, then combined,
//! give exactly the rows of an unsharded run with equal activations; a killed shard resumes;
//! missing, duplicated and foreign shards are refused by `merge`.

mod common;

use common::*;
use open_constitution::store::set::ActivationSet;
use open_constitution::store::ActivationStore;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-q")
        .args(args);
    c
}

fn extract(model: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = cmd(&[
        "extract",
        "--threads",
        "1",
        "--model",
        model,
        "--data",
        "data/examples/examples.jsonl",
        "--layers",
        "-1,-2",
        "--rows-per-shard",
        "8",
        "--max-batch",
        "4",
    ]);
    c.arg("--out").arg(out).args(extra);
    c
}

#[test]
fn shards_combine_to_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir("tiny-gemma4");
    let model = model.to_str().unwrap();
    let whole = tmp.path().join("whole");
    ok(extract(model, &whole, &[]).output().unwrap());

    let shards = tmp.path().join("shards");
    let mut children: Vec<_> = (0..2)
        .map(|k| {
            extract(
                model,
                &shards.join(format!("shard-{k}")),
                &["--shard", &format!("{k}/2")],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    // Kill shard 1 once it has written a store shard, then rerun it: nothing may be lost.
    let first = shards.join("shard-1/shard-00000.safetensors");
    let start = Instant::now();
    while !first.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    children[1].kill().unwrap();
    for c in &mut children {
        c.wait().unwrap();
    }
    ok(extract(model, &shards.join("shard-1"), &["--shard", "1/2"])
        .output()
        .unwrap());

    let whole = ActivationStore::open(&whole).unwrap();
    let set = ActivationSet::open(std::slice::from_ref(&shards)).unwrap();
    assert_eq!(set.rows().len(), whole.rows().len(), "row counts");
    let index: HashMap<&str, usize> = whole
        .rows()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    for layer in whole.meta().layers.clone() {
        let (a, b) = (
            whole.layer_matrix(layer).unwrap(),
            set.layer_matrix(layer).unwrap(),
        );
        let mut worst = 0f32;
        for (k, r) in set.rows().iter().enumerate() {
            let i = index[r.id.as_str()];
            worst = worst.max(max_scaled_diff(
                b.row(k).as_slice().unwrap(),
                a.row(i).as_slice().unwrap(),
            ));
        }
        eprintln!("layer {layer}: max scaled diff sharded vs unsharded {worst:.2e}");
        assert!(worst < 1e-4, "layer {layer}: {worst}");
    }

    // merge writes one store with the same rows; a missing shard is refused.
    let merged = tmp.path().join("merged");
    let out = ok(cmd(&[
        "merge",
        "--out",
        merged.to_str().unwrap(),
        "--activations",
        shards.to_str().unwrap(),
    ])
    .output()
    .unwrap());
    assert!(out.contains("300 rows"), "{out}");
    assert_eq!(ActivationStore::open(&merged).unwrap().rows().len(), 300);
    let o = cmd(&[
        "merge",
        "--out",
        tmp.path().join("m2").to_str().unwrap(),
        "--activations",
        shards.join("shard-0").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("shard 1/2 is missing") && err.contains("extract --shard 1/2"),
        "{err}"
    );
}
