//! Command-line front end: argument parsing, logging, dispatch.

mod bench;
mod config_file;
mod demo;
mod flags;
mod loader_args;
mod output;
mod plan;
mod preprocess;
mod schedule_args;
mod states;
mod stream;
#[cfg(feature = "train")]
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Sequence Length Warmup as a streaming data-loader stage.
#[derive(Debug, Parser)]
#[command(name = "seqwarm", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream shards through the warmup stage and report each step (the main job; with no
    /// shards, a built-in demo corpus).
    #[command(after_help = stream::EXAMPLES)]
    Stream(Box<stream::StreamArgs>),
    /// Tokenize text, JSON Lines or Parquet text into Parquet token shards and a manifest.
    #[command(after_help = preprocess::EXAMPLES)]
    Preprocess(preprocess::PreprocessArgs),
    /// Measure the loader against raw arrow-rs decoding (and a Python peer), with peak memory.
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Join the manifests of `preprocess --worker I --workers N` runs.
    MergeManifests(preprocess::MergeArgs),
    /// Combine the states every rank wrote at one step into one that any number of ranks
    /// resumes from (elastic resume).
    #[command(after_help = states::EXAMPLES)]
    MergeStates(states::MergeStatesArgs),
    /// Print a sequence-length schedule as a table of change points and plot it as SVG.
    #[command(after_help = plan::EXAMPLES)]
    Plan(plan::PlanArgs),
    /// Train a GPT from the warmup stream (warm pass, held-out evaluation, checkpoints,
    /// plots). Built with `--features train`.
    #[cfg(feature = "train")]
    #[command(after_help = train::EXAMPLES)]
    Train(Box<train::TrainArgs>),
    /// Train a GPT from the warmup stream: not in this build, which has no `train` feature
    /// (it links libtorch); `cargo run --release --features train -- train --help`.
    #[cfg(not(feature = "train"))]
    #[command(disable_help_flag = true)]
    Train(NotBuilt),
}

/// The arguments of a command this build does not have, whatever they are.
#[cfg(not(feature = "train"))]
#[derive(Debug, clap::Args)]
struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Parses arguments, sets up logging and runs the chosen command.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Stream(args) => runtime().and_then(|rt| rt.block_on(stream::run(&args))),
        Command::Preprocess(args) => preprocess::run(&args),
        Command::MergeManifests(args) => preprocess::merge(&args),
        Command::MergeStates(args) => states::run(&args),
        Command::Bench(args) => bench::run(&args),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(&args),
        #[cfg(not(feature = "train"))]
        Command::Train(_) => Err(anyhow::anyhow!(
            "this seqwarm was built without the `train` feature (training links libtorch): \
             build it with `cargo build --release --features train` (docs/trainer.md says how \
             to point it at PyTorch's libtorch), then run `seqwarm train`"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`seqwarm plan | head`): done, as Unix tools are.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            output::note!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, with the library's defaults added to the help of the flags that set
/// them.
fn command() -> clap::Command {
    let command = Cli::command()
        .mut_subcommand("stream", loader_args::annotate_defaults)
        .mut_subcommand("plan", |c| {
            schedule_args::annotate_defaults(loader_args::annotate_defaults(c))
        })
        .mut_subcommand("preprocess", preprocess::annotate_defaults);
    #[cfg(feature = "train")]
    let command = command.mut_subcommand("train", |c| {
        train::annotate_defaults(loader_args::annotate_defaults(c))
    });
    command
}

/// The runtime that decodes: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
