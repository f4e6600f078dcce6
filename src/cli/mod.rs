//! The `seqwarm` command line as a function: argument parsing, logging, dispatch. The
//! `seqwarm` binary and the Python package's console script both call [`run`].

mod bench;
mod chunk;
mod config_file;
mod decompose;
mod demo;
mod flags;
mod loader_args;
mod output;
mod plan;
mod plan_decompose;
mod preprocess;
mod raw_stream;
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

/// Runs the command line `args` (the program's name first, as in [`std::env::args_os`]):
/// parses them, sets up logging and runs the chosen command. Returns the exit status: 0 on
/// success (and for `--help`), 1 when the command failed (the error is on stderr), 2 for
/// arguments it cannot parse.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // What clap's `exit` does, without ending the process under a caller (Python).
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
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
        Ok(()) => 0,
        // The reader of our output went away (`seqwarm plan | head`): done, as Unix tools are.
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            output::note!("error: {e:#}");
            1
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
    // `try_init`: a second run in one process (the Python console script called twice) keeps
    // the first run's logging instead of panicking.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
