//! `webjit`: the native command-line tool.

mod bench;
mod bench_quant;
mod info;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "webjit",
    version,
    about = "webjit: JIT-compiled, per-device-tuned WGSL inference (native CLI)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter, backend, features, limits and profile fingerprint.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark a kernel.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => info::run(json),
        Command::Bench { what } => bench::run(what),
    };
    if let Err(e) = result {
        eprintln!("error [{}]: {e}", e.code());
        std::process::exit(1);
    }
}
