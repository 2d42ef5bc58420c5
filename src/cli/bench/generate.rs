//! `bench generate`: unguarded vs guarded decoding vs the seed's no-cache loop.

/// Arguments of `bench generate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_a: Args) -> anyhow::Result<()> {
    anyhow::bail!("bench generate needs the probe module")
}
