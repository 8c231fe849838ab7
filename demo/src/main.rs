//! `webjit`: the native command-line tool.

mod args;
mod bench;
mod bench_attention;
mod bench_block_sparse;
mod bench_model;
mod bench_neighborhood;
mod bench_quant;
mod embed;
mod generate;
mod http;
mod http_source;
mod info;
mod load;
mod model_ref;
mod perplexity;
mod progress;
mod run_info;
mod serve;
mod serve_path;
mod tune;
mod tune_model;

use args::{at_least, real};
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
    /// Tune this device: time every legal config of each kernel problem in the standard set
    /// (Gemma 3 270M's f32 kernel shapes), keep the fastest correct one, save the records.
    Tune {
        /// Total time budget in seconds (split over the problems).
        #[arg(long, default_value_t = 30.0,
              value_parser = real::<f64>(|s| s > 0.0 && s <= 1e6, "seconds > 0 and <= 1000000"))]
        budget_s: f64,
        #[arg(long)]
        json: bool,
        /// Also write the records to this file (to ship pre-tuned profiles).
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// Import records from this file before tuning.
        #[arg(long)]
        import: Option<std::path::PathBuf>,
        /// Do not save records to the user cache.
        #[arg(long)]
        no_save: bool,
        /// Tune the kernels this GGUF decoder runs, at its shapes (only the header is read):
        /// a path, a short name of a fetched model (gemma3-270m, tiny-llama) or an http:// URL.
        #[arg(long)]
        model: Option<String>,
        /// With --model: the prompt length the prefill kernels are tuned for (records apply to
        /// prompts of the same power-of-two bucket, e.g. 65..=128).
        #[arg(long, default_value_t = 128, value_parser = args::token_count())]
        prompt_tokens: usize,
        /// Tune shaders compiled without bounds checks (for `bench ... --unchecked`; records
        /// made this way serve only unchecked runs).
        #[arg(long)]
        unchecked: bool,
        /// Also try the int8 matvec path (8-bit activations, `dot4I8Packed`): often much
        /// faster, but results differ slightly from untuned runs (NMSE ~1e-5 per matvec; on
        /// Gemma 3 270M greedy text can diverge after a few tokens). Without it, only configs
        /// that compute what the defaults compute may win.
        #[arg(long)]
        int8: bool,
        /// With --model: tune the decode attention of this KV cache format (see `generate
        /// --kv-cache`), as the model will run with it.
        #[command(flatten)]
        kv: args::KvCacheArgs,
    },
    /// Sentence embeddings with a BERT model directory (config.json, model.safetensors,
    /// tokenizer.json). Reads one text per line from stdin when no TEXT is given.
    Embed {
        /// A path, a short name of a fetched model (minilm-l6) or an http:// URL of the
        /// directory.
        #[arg(long)]
        model: String,
        /// Sentences per forward pass (>= 1).
        #[arg(long, default_value_t = 32, value_parser = at_least::<usize>(1))]
        batch: usize,
        /// Print one JSON object with `token_ids` and `embeddings`.
        #[arg(long)]
        json: bool,
        text: Vec<String>,
    },
    /// Benchmark a kernel.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Generate text with a GGUF decoder (Gemma 3, llama).
    Generate(generate::GenerateArgs),
    /// Interactive chat with a GGUF chat model; replies stream as they are generated.
    Chat(generate::ChatArgs),
    /// Perplexity of a GGUF decoder over a text file, computed as llama.cpp's
    /// llama-perplexity does (chunks of --ctx tokens, the second half of each scored).
    Perplexity(perplexity::PerplexityArgs),
    /// Stream a GGUF or safetensors file through the chunk-fed loader (and onto the GPU).
    Load(load::LoadArgs),
    /// Serve the browser demo (demo/web at /), the wasm package (web/pkg at /pkg/) and the
    /// model cache (at /models/) over HTTP/1.1 with Range support and COOP/COEP headers.
    Serve(serve::ServeArgs),
}

/// Rust ignores SIGPIPE, so `webjit ... | head` would panic in `println!` once the reader
/// has gone. A command-line tool should end quietly instead, as other Unix tools do. Not for
/// `serve`: a client leaving mid-file must cost that connection only, not the server.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = args::wants_json(&argv);
    let cli: Cli = args::parse(argv, json);
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Info { json } => info::run(json),
        Command::Bench { what } => bench::run(what),
        Command::Embed {
            model,
            batch,
            json,
            text,
        } => embed::run(&model, text, batch, json),
        Command::Tune {
            budget_s,
            json,
            export,
            import,
            no_save,
            model,
            prompt_tokens,
            unchecked,
            int8,
            kv,
        } => tune::run(tune::TuneArgs {
            kv_cache: kv.kv_cache,
            exact: !int8,
            budget_s,
            json,
            export,
            import,
            no_save,
            model,
            prompt_tokens,
            unchecked,
        }),
        Command::Load(args) => load::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => generate::chat(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Serve(args) => serve::run(args),
    };
    if let Err(e) = result {
        args::fail(&e, json);
    }
}
