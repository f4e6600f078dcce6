//! `seqwarm merge-states`: the states every rank wrote at one step, combined into one that any
//! number of ranks resumes from (`--state-in`): elastic resume (`docs/loader.md`).

use std::path::PathBuf;

use crate::loader::LoaderState;
use anyhow::Context;
use clap::Args;

use super::output::note;

pub const EXAMPLES: &str = "\
Examples:
  # 8 ranks wrote state-0.json .. state-7.json at the same step; continue on 4 ranks:
  seqwarm merge-states state-*.json -o merged.json
  seqwarm stream s3://bucket/shards/ --rank 1 --world-size 4 --state-in merged.json";

/// Arguments of `seqwarm merge-states`.
#[derive(Debug, Args)]
pub struct MergeStatesArgs {
    /// The state of every rank (`--state-out` files), in any order.
    #[arg(required = true)]
    pub states: Vec<PathBuf>,
    /// The merged state.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: &MergeStatesArgs) -> anyhow::Result<()> {
    let states = args
        .states
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read state {}", path.display()))?;
            LoaderState::from_json(&text)
                .with_context(|| format!("invalid state file {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = LoaderState::merge(&states).context("cannot merge the states")?;
    crate::format::atomic::write_atomic(&args.output, merged.to_json()?.as_bytes())
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    note!(
        "merged the states of {} ranks at step {} (epoch {}) -> {}; resume it with --state-in \
         on any number of ranks",
        states.len(),
        merged.step(),
        merged.epoch(),
        args.output.display()
    );
    Ok(())
}
