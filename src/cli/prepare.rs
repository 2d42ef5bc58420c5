//! `prepare-data`: public safety sources into the training schema.

/// Arguments of `prepare-data`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("prepare-data is not implemented yet")
}
