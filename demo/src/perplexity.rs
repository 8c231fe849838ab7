//! `webjit perplexity`: a GGUF decoder's perplexity over a text file, computed as llama.cpp's
//! `llama-perplexity` does (chunks of `--ctx` tokens, BOS first, the second half of each chunk
//! scored), so the figures compare. The method is in `webjit_engine::model::perplexity`.

use std::path::{Path, PathBuf};

use serde_json::json;
use webjit_engine::model::llm_config::DecoderConfig;
use webjit_engine::model::perplexity::{
    chunks, perplexity_blocking, text_tokens, ChunkProgress, PerplexityOptions, MIN_CTX,
};
use webjit_engine::tokenizer::text::TextTokenizer;
use webjit_engine::{Error, Result};

use crate::args::{at_least, kv_cache_summary, KvCacheArgs};
use crate::model_ref::resolve;

const OP: &str = "perplexity";

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// A GGUF decoder: a path, a short name of a fetched model (gemma3-270m, tiny-llama) or an
    /// http:// URL.
    #[arg(long)]
    pub model: String,
    /// A UTF-8 text file to score, e.g. the corpus `make models` caches at
    /// ~/.cache/webjit/corpus/sotu-2014-2016.txt. It needs at least 2 x --ctx tokens.
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Tokens per chunk (llama.cpp's --ctx-size): 4 to the model's context. The second half
    /// of each chunk is scored.
    #[arg(long, default_value_t = 512, value_parser = at_least::<usize>(MIN_CTX as u64))]
    pub ctx: usize,
    /// Score only the first K chunks (default: every whole chunk of the text).
    #[arg(long, value_name = "K", value_parser = at_least::<usize>(1))]
    pub chunks: Option<usize>,
    #[command(flatten)]
    pub kv: KvCacheArgs,
    /// Score each chunk's second half token by token through the decode step (the KV cache read
    /// as generation reads it) instead of as one prompt. Always on with --kv-cache kivi2, whose
    /// prompts attend at full precision.
    #[arg(long)]
    pub score_by_decode: bool,
    /// Print one JSON object: ppl, ppl_err, mean_nll, n_ctx, chunks, text_tokens, scored,
    /// seconds, running_ppl (after each chunk), kv_cache, scoring (prompt or decode), model,
    /// text.
    #[arg(long)]
    pub json: bool,
}

/// The text file as UTF-8; errors name the flag, the path and what is wrong.
fn read_text(path: &Path) -> Result<String> {
    let bad = |why: String| Error::InvalidArgument {
        op: OP,
        detail: format!("--text {}: {why}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    // Everything that can be refused is checked from the header and the text before the
    // weights load.
    let model = resolve(&args.model, OP)?;
    let text = read_text(&args.text)?;
    let header = webjit_engine::loader::read_header(model.open()?.as_mut())?;
    let tok = TextTokenizer::from_gguf(&header.metadata)?;
    let context = DecoderConfig::from_header(&header)?.context;
    let (tokens, bos) = text_tokens(&tok, &text).map_err(|e| match e {
        Error::InvalidArgument { detail, .. } => Error::InvalidArgument {
            op: OP,
            detail: format!("--text {}: {detail}", args.text.display()),
        },
        e => e,
    })?;
    let opts = PerplexityOptions {
        n_ctx: args.ctx,
        max_chunks: args.chunks,
        score_by_decode: args.score_by_decode,
    };
    let n_chunks = chunks(tokens.len(), &opts, context)?;
    let per_chunk = args.ctx - args.ctx / 2 - 1;
    eprintln!(
        "perplexity: {} tokens; {n_chunks} chunks of {} ({per_chunk} tokens scored in each)",
        tokens.len(),
        args.ctx
    );
    let mut m = crate::generate::load_kv(&model, args.ctx, &args.kv)?;
    let kv = kv_cache_summary(&m.session.decoder);
    eprintln!("perplexity: {kv}");
    let mut progress = |p: &ChunkProgress| {
        let eta = p.seconds * (p.chunks - p.chunk) as f64;
        eprintln!(
            "perplexity: [{}/{}] {:.2} s, ppl so far {:.4} over {} tokens (about {:.0} s left)",
            p.chunk, p.chunks, p.seconds, p.ppl, p.scored, eta
        );
    };
    let r = perplexity_blocking(
        &m.engine,
        &mut m.session.decoder,
        &tokens,
        bos,
        &opts,
        &mut progress,
    )?;
    if args.json {
        println!(
            "{}",
            json!({
                "model": model.to_string(),
                "text": args.text.display().to_string(),
                "ppl": r.ppl,
                "ppl_err": r.ppl_err,
                "mean_nll": r.mean_nll,
                "n_ctx": r.n_ctx,
                "chunks": r.chunks,
                "text_tokens": r.text_tokens,
                "scored": r.scored,
                "seconds": r.seconds,
                "running_ppl": r.running_ppl,
                "scoring": r.scoring,
                "kv_cache": m.session.decoder.kv_dtype().map(|t| t.name()),
            })
        );
    } else {
        println!(
            "PPL = {:.4} +/- {:.5} ({} chunks of {} tokens, {} tokens scored as {}, {kv}, {:.1} s)",
            r.ppl, r.ppl_err, r.chunks, r.n_ctx, r.scored, r.scoring, r.seconds
        );
    }
    Ok(())
}
