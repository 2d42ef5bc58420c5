//! Activation store invariants: atomic shards, resume, refusal of mixed arguments, and combining
//! shard stores (missing, duplicated and foreign shards are refused).

use ndarray::Array2;
use open_constitution::store::set::ActivationSet;
use open_constitution::store::{
    ActivationStore, Pooling, RowMeta, ShardSpec, StoreMeta, StoreWriter, STORE_FORMAT,
    STORE_VERSION,
};
use std::path::Path;

fn meta(shard: Option<ShardSpec>) -> StoreMeta {
    StoreMeta {
        format: STORE_FORMAT.into(),
        version: STORE_VERSION,
        model_hash: "m1".into(),
        manifest_sha256: "x".into(),
        model: "models/tiny".into(),
        num_layers: 4,
        layers: vec![2, 4],
        hidden_size: 3,
        pooling: Pooling::Last,
        dtype: "float32".into(),
        chat_template: true,
        shard,
        rows_per_shard: 2,
        args: serde_json::json!({"data_sha256": "d", "max_tokens": 64}),
        planned_rows: 5,
        complete: false,
        row_count: 0,
        truncated: 0,
        max_states: None,
    }
}

fn row(i: usize) -> RowMeta {
    RowMeta {
        id: format!("r{i}"),
        label: (i % 2) as u8,
        split: Some(open_constitution::data::Split::Train),
        topic: None,
        source: None,
        tokens: 10 + i,
        prompt_hash: format!("p{i}"),
        truncated: false,
        positions: None,
        response_tokens: None,
    }
}

fn layer_block(first: usize, n: usize, layer: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, 3), |(r, c)| ((first + r) * 100 + layer * 10 + c) as f32)
}

/// Writes rows [from, to) in shards of 2.
fn write_rows(w: &mut StoreWriter, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let n = (to - i).min(2);
        let rows: Vec<RowMeta> = (i..i + n).map(row).collect();
        w.write_shard(&rows, &[layer_block(i, n, 2), layer_block(i, n, 4)], &[])
            .unwrap();
        i += n;
    }
}

#[test]
fn write_resume_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let mut w = StoreWriter::create_or_resume(&d, meta(None)).unwrap();
    write_rows(&mut w, 0, 4);
    drop(w); // killed before finishing: two complete shards on disk
    std::fs::write(d.join("shard-00002.rows.jsonl.tmp123"), "partial").unwrap();
    std::fs::write(d.join("shard-00002.rows.jsonl"), "{}").unwrap();
    assert!(
        ActivationStore::open(&d).is_err(),
        "incomplete store refused"
    );

    let mut w = StoreWriter::create_or_resume(&d, meta(None)).unwrap();
    assert_eq!(w.rows_done(), 4, "resumes after the last complete shard");
    assert!(!d.join("shard-00002.rows.jsonl").exists(), "orphan removed");
    write_rows(&mut w, 4, 5);
    let m = w.finish(1).unwrap();
    assert_eq!((m.row_count, m.truncated, m.complete), (5, 1, true));

    let s = ActivationStore::open(&d).unwrap();
    let ids: Vec<&str> = s.rows().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["r0", "r1", "r2", "r3", "r4"],
        "no lost or duplicated rows"
    );
    let m4 = s.layer_matrix(4).unwrap();
    assert_eq!(m4, layer_block(0, 5, 4));
    assert!(s
        .layer_matrix(3)
        .unwrap_err()
        .to_string()
        .contains("[2, 4]"));
    let all_rows = std::fs::read_to_string(d.join("rows.jsonl")).unwrap();
    assert_eq!(all_rows.lines().count(), 5);
}

#[test]
fn different_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    StoreWriter::create_or_resume(d, meta(None)).unwrap();
    let mut other = meta(None);
    other.args = serde_json::json!({"data_sha256": "d", "max_tokens": 128});
    let err = StoreWriter::create_or_resume(d, other)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("max_tokens: 64 (existing) vs 128 (now)"),
        "{err}"
    );
    let mut other = meta(None);
    other.layers = vec![1];
    let err = StoreWriter::create_or_resume(d, other)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layers"), "{err}");
}

fn shard_store(root: &Path, name: &str, spec: ShardSpec, rows: (usize, usize), hash: &str) {
    let mut m = meta(Some(spec));
    m.model_hash = hash.into();
    let mut w = StoreWriter::create_or_resume(&root.join(name), m).unwrap();
    write_rows(&mut w, rows.0, rows.1);
    w.finish(0).unwrap();
}

#[test]
fn shard_sets_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = |i| ShardSpec { index: i, count: 2 };
    shard_store(root, "b", s(1), (3, 5), "m1");
    shard_store(root, "a", s(0), (0, 3), "m1");
    let set = ActivationSet::open(&[root.to_path_buf()]).unwrap();
    assert_eq!(set.rows().len(), 5);
    assert_eq!(set.layer_matrix(2).unwrap(), layer_block(0, 5, 2));

    // missing shard
    let err = ActivationSet::open(&[root.join("a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("shard 1/2 is missing"), "{err}");
    // duplicated shard
    shard_store(root, "c", s(1), (10, 11), "m1");
    let err = ActivationSet::open(&[root.join("a"), root.join("b"), root.join("c")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("shard 1/2 is given more than once"), "{err}");
    // another model
    shard_store(root, "d", s(1), (3, 5), "m2");
    let err = ActivationSet::open(&[root.join("a"), root.join("d")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("model_hash"), "{err}");
    // overlapping rows
    let err = ActivationSet::open(&[root.join("a"), root.join("a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than once"), "{err}");
}

#[test]
fn an_empty_store_list_is_an_error_not_a_panic() {
    let Err(e) = ActivationSet::open(&[]) else {
        panic!("no stores must be an error");
    };
    let e = e.to_string();
    assert!(e.contains("--activations"), "{e}");
}

/// A store of rows [0, n) in shards of 2, left unfinished (as a killed run leaves it).
fn interrupted_store(d: &Path, n: usize) {
    let mut w = StoreWriter::create_or_resume(d, meta(None)).unwrap();
    write_rows(&mut w, 0, n);
}

/// Issue 17 item 1: the scan removed every name containing `.tmp` or starting `shard-NNNNN`.
#[test]
fn resume_removes_only_files_the_store_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    interrupted_store(&d, 4);
    let theirs = [
        "page.tmpl",
        "my.tmp.bak",
        "shard-00007-notes.txt",
        "shard-12345.csv",
    ];
    for f in theirs {
        std::fs::write(d.join(f), "user data").unwrap();
    }
    let ours = ["shard-00002.rows.jsonl", "shard-00002.safetensors.tmp77.3"];
    for f in ours {
        std::fs::write(d.join(f), "leftover").unwrap();
    }
    let w = StoreWriter::create_or_resume(&d, meta(None)).unwrap();
    assert_eq!(w.rows_done(), 4);
    for f in theirs {
        assert!(d.join(f).exists(), "{f} must survive");
    }
    for f in ours {
        assert!(!d.join(f).exists(), "{f} is a leftover of the store");
    }
}

/// Issue 17 item 1: `extract --out` / `merge --out` into a folder of other files wrote into it.
#[test]
fn a_non_empty_folder_without_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("docs");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("page.tmpl"), "keep me").unwrap();
    let err = StoreWriter::create_or_resume(&d, meta(None))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&d.display().to_string()) && err.contains("not empty"),
        "{err}"
    );
    assert!(err.contains("page.tmpl") && err.contains("--out"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written into it");

    // merge goes through the same writer
    let src = dir.path().join("src");
    let mut w = StoreWriter::create_or_resume(&src, meta(None)).unwrap();
    write_rows(&mut w, 0, 5);
    w.finish(0).unwrap();
    let set = ActivationSet::open(&[src]).unwrap();
    let err = set.merge_into(&d, 2).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("page.tmpl")).unwrap(),
        "keep me"
    );
}

/// Issue 17 item 7: two writers on one store both ran.
#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let first = StoreWriter::create_or_resume(&d, meta(None)).unwrap();
    let err = StoreWriter::create_or_resume(&d, meta(None))
        .err()
        .expect("second writer refused")
        .to_string();
    let pid = std::process::id().to_string();
    assert!(
        err.contains(&format!("process {pid}")) && err.contains("being written"),
        "{err}"
    );
    drop(first);
    StoreWriter::create_or_resume(&d, meta(None)).expect("free again once the first is done");
}

/// Issue 17 item 5: a rows file missing a line resumed as complete (a duplicate and a lost
/// row); a truncated tensors file was accepted until `train`.
#[test]
fn resume_verifies_committed_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    interrupted_store(&d, 4);
    let rows = d.join("shard-00000.rows.jsonl");
    let text = std::fs::read_to_string(&rows).unwrap();
    std::fs::write(&rows, text.lines().next().unwrap().to_string() + "\n").unwrap();
    let err = StoreWriter::create_or_resume(&d, meta(None))
        .err()
        .expect("missing line detected")
        .to_string();
    assert!(
        err.contains("shard-00000") && err.contains("damaged") && err.contains("delete"),
        "{err}"
    );
    std::fs::write(&rows, &text).unwrap();
    StoreWriter::create_or_resume(&d, meta(None)).expect("restored shard accepted");

    let tensors = d.join("shard-00001.safetensors");
    let bytes = std::fs::read(&tensors).unwrap();
    std::fs::write(&tensors, &bytes[..bytes.len() - 5]).unwrap();
    let err = StoreWriter::create_or_resume(&d, meta(None))
        .err()
        .expect("truncated tensors detected")
        .to_string();
    assert!(
        err.contains("shard-00001.safetensors") && err.contains("damaged"),
        "{err}"
    );

    // same length, one value changed: only the recorded checksum sees it
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    std::fs::write(&tensors, &flipped).unwrap();
    let err = StoreWriter::create_or_resume(&d, meta(None))
        .err()
        .expect("changed tensor data detected")
        .to_string();
    assert!(
        err.contains("shard-00001") && err.contains("changed"),
        "{err}"
    );
}

/// Issue 13: a `tokens` store holds a ragged `[states, hidden]` tensor per layer (each row's
/// positions) and a `[rows, hidden]` response mean; both read back in row order, a resume
/// verifies them, and merging shards keeps every row's states with it.
#[test]
fn tokens_stores_keep_each_rows_states_and_mean() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = meta(None);
    m.pooling = Pooling::Tokens;
    m.max_states = Some(3);
    let counts = [3usize, 1, 2, 3, 2];
    let tokens_row = |i: usize| RowMeta {
        positions: Some((0..counts[i] as u32).collect()),
        response_tokens: Some(counts[i] + 4),
        ..row(i)
    };
    let states_of = |rows: &[usize], layer: usize| {
        let n: usize = rows.iter().map(|&i| counts[i]).sum();
        let first: usize = counts[..rows[0]].iter().sum();
        layer_block(first, n, layer)
    };
    let write = |d: &Path, m: StoreMeta, from: usize, to: usize| {
        let mut w = StoreWriter::create_or_resume(d, m).unwrap();
        let mut i = from;
        while i < to {
            let idx: Vec<usize> = (i..(i + 2).min(to)).collect();
            let rows: Vec<RowMeta> = idx.iter().map(|&k| tokens_row(k)).collect();
            let states = [states_of(&idx, 2), states_of(&idx, 4)];
            let means = [layer_block(i, idx.len(), 7), layer_block(i, idx.len(), 8)];
            // A shard whose states do not match its rows' positions is refused.
            assert!(w.write_shard(&rows, &[states[0].clone()], &means).is_err());
            w.write_shard(&rows, &states, &means).unwrap();
            i += idx.len();
        }
        w
    };
    let d = dir.path().join("tokens");
    drop(write(&d, m.clone(), 0, 4));
    let w = write(&d, m.clone(), 4, 5);
    assert_eq!(
        w.rows_done(),
        5,
        "resumed after verifying the ragged shards"
    );
    w.finish(0).unwrap();
    let s = ActivationStore::open(&d).unwrap();
    let all: Vec<usize> = (0..5).collect();
    assert_eq!(s.layer_matrix(4).unwrap(), states_of(&all, 4));
    assert_eq!(s.mean_matrix(2).unwrap().nrows(), 5);
    assert_eq!(s.mean_matrix(2).unwrap(), {
        let parts: Vec<Array2<f32>> = [0, 2, 4]
            .iter()
            .map(|&i| layer_block(i, if i == 4 { 1 } else { 2 }, 7))
            .collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(ndarray::Axis(0), &views).unwrap()
    });
    let merged = dir.path().join("merged");
    let set = ActivationSet::open(std::slice::from_ref(&d)).unwrap();
    set.merge_into(&merged, 3).unwrap();
    let back = ActivationStore::open(&merged).unwrap();
    assert_eq!(back.layer_matrix(2).unwrap(), s.layer_matrix(2).unwrap());
    assert_eq!(back.mean_matrix(4).unwrap(), s.mean_matrix(4).unwrap());
    assert_eq!(back.rows(), s.rows());
    assert!(back.meta().per_token());
}
