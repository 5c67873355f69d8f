//! `tickwire`: the service and its command-line tools.
//!
//! `cargo run --release` (no arguments) runs the service (`run`, configured by `config`) on
//! its embedded default: a synthetic feed, strategies, paper execution, alerts, the
//! journal, the QUIC publisher and metrics, with a status line once a second until Ctrl-C
//! or SIGTERM.
//!
//! The tools, one module each: `record` (a feed into a journal), `replay` (a file or
//! journal through the pipeline at a chosen speed, with a latency report, log and plot),
//! `inspect` (what a journal holds), `gen` (synthetic ITCH files and journals),
//! `subscribe` (a QUIC subscriber) and `bench` (the performance suite). Errors go to
//! stderr with their context, and the exit code is non-zero.

use clap::{Parser, Subcommand};

mod bench;
mod config;
mod generate;
mod inspect;
mod pipeline;
mod progress;
mod record;
mod replay;
mod run;
mod subscribe;
mod timestamp;

/// tickwire: a low-latency market-data event engine.
#[derive(Debug, Parser)]
#[command(name = "tickwire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default command): a feed, strategies, paper execution, alerts,
    /// the journal, the QUIC publisher and metrics, from a TOML config or the embedded
    /// default, with a status line every second; Ctrl-C or SIGTERM stops it cleanly.
    Run(run::RunArgs),
    /// Record a feed (a file or a synthetic spec) into a journal directory.
    Record(record::RecordArgs),
    /// Replay a recorded file or a journal through the pipeline (or, with --config, the full
    /// trading pipeline) at a chosen speed; report latency per hop, write a log and a plot.
    Replay(replay::ReplayArgs),
    /// Show what a journal holds: instruments, counts, time range, gaps, segments.
    Inspect(inspect::InspectArgs),
    /// Generate synthetic inputs: an ITCH 5.0 file or a journal.
    Gen(generate::GenArgs),
    /// Run the performance suite against the peers; write results.md, results.json, plots.
    Bench(bench::BenchArgs),
    /// Subscribe to a running service over QUIC: print events, resume after disconnects,
    /// report gaps and latency.
    Subscribe(subscribe::SubscribeArgs),
}

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(run::RunArgs::default())) {
        Command::Run(args) => run::run(&args),
        Command::Record(args) => record::record(&args),
        Command::Replay(args) => replay::replay(&args),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Gen(args) => generate::generate(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Subscribe(args) => subscribe::subscribe(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes on one line each, without a backtrace: this is a user's
            // error report, not a crash.
            // Library errors often repeat their source in their own message; print a cause
            // only when it adds something.
            eprintln!("error: {error}");
            let mut previous = error.to_string();
            for cause in error.chain().skip(1) {
                let text = cause.to_string();
                if !previous.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                previous = text;
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Restores the default SIGPIPE action, which Rust's runtime sets to "ignore": without it,
/// `tickwire inspect dir | head` panics with "failed printing to stdout: Broken pipe"
/// instead of ending quietly like any other command-line tool.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; `signal` with
    // `SIG_DFL` installs no handler of ours, so no Rust code runs in signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
