//! What `stream` does the same for every plan over raw token files (`--mode decompose`,
//! `--mode chunk`): the table or JSON Lines per batch, state files every N steps and at the
//! end, and the summary.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::stream::{Emit, StreamArgs};

/// One batch as `stream` reports it.
pub struct Reported {
    /// The step since the start of training.
    pub step: u64,
    /// The tokens of the batch.
    pub tokens: u64,
    /// The table's columns after the step: epoch, length, shape, and what the plan adds.
    pub columns: String,
    /// The JSON Lines object.
    pub json: serde_json::Value,
}

/// Refuses a config file, a run without files, and every loader and schedule flag outside
/// `loader_flags` and `schedule_flags` (named as their config keys, `batch_tokens`): a plan
/// over raw token files takes only those, and a flag it would ignore is an error, not a silent
/// no-op.
pub fn refuse_other_flags(
    args: &StreamArgs,
    mode: &str,
    loader_flags: &[&str],
    schedule_flags: &[&str],
    why: &str,
) -> anyhow::Result<()> {
    let source = &args.source;
    if source.config.is_some() {
        anyhow::bail!("--mode {mode} takes its settings from flags only, not --config");
    }
    if source.shards.is_empty() {
        anyhow::bail!("--mode {mode} reads raw token files: give their files or directories");
    }
    let mut given: Vec<String> = super::flags::given(&source.loader)
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key != "mode" && !loader_flags.contains(&key.as_str()))
        .collect();
    given.extend(
        super::flags::given(&source.schedule)
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| !schedule_flags.contains(&key.as_str())),
    );
    if !source.loader.sources.is_empty() {
        given.push("source".into());
    }
    if source.schedule.schedule_config.is_some() {
        given.push("schedule_config".into());
    }
    if let Some(key) = given.first() {
        anyhow::bail!(
            "--{} does not apply to --mode {mode}: {why}",
            key.replace('_', "-")
        );
    }
    Ok(())
}

/// Reads a state file written by `--state-out`.
pub fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read state {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid state file {}", path.display()))
}

fn write_state(path: &Path, state: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    crate::format::atomic::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Where the header and table go: stdout, or stderr when stdout carries JSON Lines.
pub fn info_sink(args: &StreamArgs) -> Box<dyn Write> {
    match args.emit {
        Emit::Table => Box::new(std::io::stdout().lock()),
        Emit::Jsonl => Box::new(std::io::stderr()),
    }
}

/// Streams batches (after the header was written to `info`): `--max-steps`, `--emit`,
/// `--print-every`, `--state-out` every `--state-every` steps and at the end, the summary.
pub fn stream_batches<L, S: Serialize>(
    args: &StreamArgs,
    info: &mut dyn Write,
    started: Instant,
    loader: &mut L,
    column_names: &str,
    next: impl Fn(&mut L) -> Option<anyhow::Result<Reported>>,
    state: impl Fn(&L) -> S,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(info, "{:>8}  {column_names}", "step")?;
    let max_steps = args.source.loader.max_steps.unwrap_or(u64::MAX);
    let mut emitted = 0u64;
    let mut tokens = 0u64;
    while emitted < max_steps {
        let Some(batch) = next(loader) else { break };
        let batch = batch?;
        emitted += 1;
        tokens += batch.tokens;
        if args.emit == Emit::Jsonl {
            serde_json::to_writer(&mut out, &batch.json)?;
            out.write_all(b"\n")?;
        }
        if emitted == 1 || batch.step % args.print_every.max(1) == 0 {
            writeln!(info, "{:>8}  {}  {tokens:>12}", batch.step, batch.columns)?;
        }
        if let Some(path) = &args.state_out
            && (batch.step + 1) % args.state_every.max(1) == 0
        {
            write_state(path, &state(loader))?;
        }
    }
    if let Some(path) = &args.state_out {
        write_state(path, &state(loader))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    writeln!(
        info,
        "summary: {emitted} batches, {tokens} tokens in {elapsed:.2} s ({:.1} M tokens/s)",
        tokens as f64 / elapsed.max(1e-9) / 1e6
    )?;
    out.flush()?;
    Ok(())
}
