//! Writes a synthetic activation store (two Gaussian blobs, 32 dimensions by default, the signal
//! growing with the layer) for trying `train`, `sweep` and `eval` without a model:
//! `cargo run --example synth_store -- DIR [ROWS] [SEED] [SEPARATION] [HIDDEN]` (separation of the blob
//! means in the last layer in feature standard deviations, default 6: nearly separable).

#[path = "../tests/probe_common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: synth_store DIR [ROWS] [SEED] [SEPARATION] [HIDDEN]");
        std::process::exit(2);
    };
    let rows = args
        .get(1)
        .map_or(4000, |r| r.parse().expect("ROWS is a number"));
    let seed = args
        .get(2)
        .map_or(1, |s| s.parse().expect("SEED is a number"));
    let separation = args
        .get(3)
        .map_or(6.0, |s| s.parse().expect("SEPARATION is a number"));
    let hidden = args
        .get(4)
        .map_or(common::HIDDEN, |s| s.parse().expect("HIDDEN is a number"));
    let synth = common::Synth {
        hidden,
        rows,
        seed,
        separation,
        layers: vec![1, 2, 3, 4],
        ..common::Synth::default()
    };
    common::write_store(std::path::Path::new(dir), &synth);
    println!("wrote {rows} rows (layers 1-4, signal growing to layer 4) to {dir}");
}
