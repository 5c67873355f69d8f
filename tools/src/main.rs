//! `tickwire`: the service and its command-line tools.
//!
//! `cargo run --release` (no arguments) runs the service on its embedded default: a
//! synthetic feed through the market-data ring to handlers on pinned threads, printing
//! throughput and per-hop latency once a second until Ctrl-C.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod run;

/// tickwire: a low-latency market-data event engine.
#[derive(Debug, Parser)]
#[command(name = "tickwire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine: a feed through the market-data ring to handlers on pinned threads,
    /// with live throughput and latency figures. The default command.
    Run(run::RunArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(run::RunArgs::default())) {
        Command::Run(args) => run::run(&args),
    }
}
