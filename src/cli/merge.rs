//! `merge`: several activation stores (e.g. the shards of `extract --shard K/N`) into one.

use open_constitution::store::set::ActivationSet;
use std::path::PathBuf;

/// Arguments of `merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stores to merge, or directories holding them (all N shards of a sharded run must be
    /// present, each once; model, layers, pooling and chat-template setting must agree).
    #[arg(long, num_args = 1.., required = true)]
    pub activations: Vec<PathBuf>,
    /// The new store's directory (must not hold a store yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per shard file of the merged store.
    #[arg(long, default_value_t = 512)]
    pub rows_per_shard: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let set = ActivationSet::open(&a.activations)?;
    let meta = set.merge_into(&a.out, a.rows_per_shard)?;
    println!(
        "merged {} stores into {}: {} rows, layers {:?}",
        set.stores().len(),
        a.out.display(),
        meta.row_count,
        meta.layers
    );
    Ok(())
}
