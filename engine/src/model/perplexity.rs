//! Perplexity of a text, computed the way llama.cpp's `llama-perplexity` computes it so that the
//! figures compare:
//!
//! - the text is tokenized with the model's tokenizer, BOS as the model adds it, control tokens
//!   written in the text not parsed (llama.cpp's `common_tokenize(text, add_special = true)`);
//! - the ids are cut into whole chunks of `n_ctx` (`tokens / n_ctx` of them, or fewer when asked;
//!   the text must have at least `2 n_ctx` tokens); the first id of each chunk is replaced by BOS
//!   when the model adds BOS;
//! - each chunk runs as one prompt from an empty KV cache, and only its second half is scored:
//!   the logits at positions `n_ctx/2 ..= n_ctx-2` predict the tokens `n_ctx/2+1 ..= n_ctx-1`
//!   (`n_ctx - n_ctx/2 - 1` tokens a chunk), so every scored token has at least half a context
//!   before it;
//! - PPL = exp(mean NLL), and its +/- is llama.cpp's:
//!   `ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1))`.
//!
//! The scored rows' logits are never read back whole: at Gemma's 262144-token vocabulary they
//! are 1 MiB a row (256 MiB a chunk at n_ctx 512). They are made on the GPU in slices of rows,
//! softmaxed there, and only each row's probability of its target token is copied out (4 bytes a
//! row); its log is taken in f64 on the host. A probability that underflowed f32 (a target more
//! than ~87 nats below the row's best token) is recomputed from that row's logits, read back.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::jit::kernels::kv_dtype::KvDType;
use crate::model::decoder::Decoder;
use crate::ops;
use crate::tensor::{DType, Tensor};
use crate::tokenizer::text::TextTokenizer;
use crate::tune::Clock;
use crate::Engine;

const OP: &str = "perplexity";

/// The smallest context scored: `n_ctx/2 + 1` predicted tokens need at least 4 positions for
/// one scored token after half a context.
pub const MIN_CTX: usize = 4;

/// Bytes of one slice of logits (and of its softmax): rows are scored this many at a time.
const SLICE_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct PerplexityOptions {
    /// Tokens per chunk (llama.cpp's `--ctx-size`).
    pub n_ctx: usize,
    /// Score at most this many chunks (llama.cpp's `--chunks`); all whole chunks when `None`.
    pub max_chunks: Option<usize>,
    /// Run each chunk's scored half token by token through the decode step, which reads the
    /// KV cache as generation does, instead of as one prompt. Always on for a kivi2 cache,
    /// whose prompts attend their own rows at full precision (as the KIVI paper's prefill
    /// does): scored as one prompt, kivi2 would give exactly the f16 figure.
    pub score_by_decode: bool,
}

/// Where a run stands after one chunk.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkProgress {
    /// 1-based.
    pub chunk: usize,
    pub chunks: usize,
    /// Seconds this chunk took.
    pub seconds: f64,
    /// Perplexity over the chunks so far.
    pub ppl: f64,
    /// Tokens scored so far.
    pub scored: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    pub ppl: f64,
    /// llama.cpp's +/- estimate of `ppl`.
    pub ppl_err: f64,
    /// Mean negative log-likelihood (nats per token).
    pub mean_nll: f64,
    pub n_ctx: usize,
    pub chunks: usize,
    /// Tokens of the whole text (BOS included when the model adds it).
    pub text_tokens: usize,
    /// Tokens scored: `chunks * (n_ctx - n_ctx/2 - 1)`.
    pub scored: usize,
    pub seconds: f64,
    /// Perplexity over the first 1, 2, ... chunks (llama.cpp prints these as `[i]ppl`).
    pub running_ppl: Vec<f64>,
    /// How the scored halves ran: "prompt" (one prefill a chunk, llama.cpp's way) or "decode"
    /// (token by token; see `PerplexityOptions::score_by_decode`).
    pub scoring: &'static str,
}

/// The text as llama.cpp's perplexity tool tokenizes it, and the BOS id that starts each chunk
/// (`None` when the model adds no BOS).
pub fn text_tokens(tok: &TextTokenizer, text: &str) -> Result<(Vec<u32>, Option<u32>)> {
    if text.trim().is_empty() {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: "the text is empty (or only whitespace)".into(),
        });
    }
    let ids = tok.encode_with(text, true, false)?;
    // Without parsing control tokens the text cannot produce BOS itself: a leading BOS was
    // added because the model asks for one.
    let bos = tok.bos().filter(|b| ids.first() == Some(b));
    Ok((ids, bos))
}

/// The number of chunks a run scores; errors name what is wrong and what is allowed.
/// `model_context` is the model's trained context.
pub fn chunks(n_tokens: usize, opts: &PerplexityOptions, model_context: usize) -> Result<usize> {
    let n_ctx = opts.n_ctx;
    let bad = |detail: String| Error::InvalidArgument { op: OP, detail };
    if n_ctx < MIN_CTX || n_ctx > model_context {
        return Err(bad(format!(
            "--ctx {n_ctx}: expected a context from {MIN_CTX} to the model's context of \
             {model_context} tokens"
        )));
    }
    if n_tokens < 2 * n_ctx {
        return Err(bad(format!(
            "the text has {n_tokens} tokens; a context of {n_ctx} needs at least {} (two \
             chunks), so give a longer text or a --ctx of at most {}",
            2 * n_ctx,
            (n_tokens / 2).max(MIN_CTX)
        )));
    }
    if opts.max_chunks == Some(0) {
        return Err(bad("--chunks 0: expected a whole number >= 1".into()));
    }
    let all = n_tokens / n_ctx;
    Ok(opts.max_chunks.map_or(all, |k| k.min(all)))
}

/// Scores `tokens` (from `text_tokens`) with `dec`, whose KV caches must hold `n_ctx`
/// positions. `progress` is called after each chunk. The decoder's context is cleared.
pub async fn perplexity(
    engine: &Engine,
    dec: &mut Decoder,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &PerplexityOptions,
    clock: Clock<'_>,
    progress: &mut dyn FnMut(&ChunkProgress),
) -> Result<PerplexityReport> {
    let n_ctx = opts.n_ctx;
    let n_chunks = chunks(tokens.len(), opts, dec.cfg.context)?;
    if dec.max_context() < n_ctx {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!(
                "the decoder's KV cache holds {} positions, fewer than --ctx {n_ctx}",
                dec.max_context()
            ),
        });
    }
    let first = n_ctx / 2;
    let by_decode = opts.score_by_decode || dec.kv_dtype() == Some(KvDType::Kivi2);
    let t_start = clock();
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    let mut chunk = Vec::with_capacity(n_ctx);
    for i in 0..n_chunks {
        let t0 = clock();
        chunk.clear();
        chunk.extend_from_slice(&tokens[i * n_ctx..(i + 1) * n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let nlls = if by_decode {
            chunk_nll_decode(engine, dec, &chunk, first).await?
        } else {
            chunk_nll(engine, dec, &chunk, first).await?
        };
        for v in nlls {
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        progress(&ChunkProgress {
            chunk: i + 1,
            chunks: n_chunks,
            seconds: clock() - t0,
            ppl,
            scored: count,
        });
    }
    dec.reset();
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    let ppl_err = match (var > 0.0, count > 1) {
        (true, true) => (var / (count - 1) as f64).sqrt() * ppl,
        _ => 0.0,
    };
    Ok(PerplexityReport {
        ppl,
        ppl_err,
        mean_nll: mean,
        n_ctx,
        chunks: n_chunks,
        text_tokens: tokens.len(),
        scored: count,
        seconds: clock() - t_start,
        running_ppl: running,
        scoring: if by_decode { "decode" } else { "prompt" },
    })
}

/// Native: `perplexity` run to completion on this thread.
#[cfg(not(target_arch = "wasm32"))]
pub fn perplexity_blocking(
    engine: &Engine,
    dec: &mut Decoder,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &PerplexityOptions,
    progress: &mut dyn FnMut(&ChunkProgress),
) -> Result<PerplexityReport> {
    pollster::block_on(perplexity(
        engine,
        dec,
        tokens,
        bos,
        opts,
        &crate::tune::native_clock,
        progress,
    ))
}

/// The negative log-likelihood of `chunk[j + 1]` given `chunk[..=j]`, for `j` in
/// `first..len - 1`: one prompt from an empty cache, the rows' logits in slices.
async fn chunk_nll(
    engine: &Engine,
    dec: &mut Decoder,
    chunk: &[u32],
    first: usize,
) -> Result<Vec<f64>> {
    let vocab = dec.cfg.vocab;
    let n = chunk.len() - 1 - first;
    dec.reset();
    let mut rec = engine.recorder();
    let hidden = dec.forward_hidden(&mut rec, chunk)?;
    let limit = engine.gpu.max_binding().min(SLICE_BYTES);
    let slice = ((limit / (vocab as u64 * 4)) as usize).clamp(1, n);
    // [n] the probability of each scored row's target
    let probs = rec.empty(&[n], DType::F32)?;
    let pb = probs.segments()[0].buffer.clone();
    for r0 in (0..n).step_by(slice) {
        let rn = slice.min(n - r0);
        // [rn, vocab]
        let logits = dec.logits_of_rows(&mut rec, &hidden, first + r0, rn)?;
        let p = ops::softmax(&logits).record(&mut rec)?;
        if p.is_segmented() {
            return Err(Error::Shape {
                op: OP,
                detail: format!("a slice of {rn} rows of logits was split over buffers"),
            });
        }
        let src = p.segments()[0].buffer.clone();
        for r in 0..rn {
            let target = chunk[first + r0 + r + 1] as usize;
            let at = ((r * vocab + target) * 4) as u64;
            rec.copy(&src, at, &pb, ((r0 + r) * 4) as u64, 4);
        }
    }
    let bytes = engine.submit_and_read(rec, &probs).await?;
    let p: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    let mut out = Vec::with_capacity(n);
    for (r, &pr) in p.iter().enumerate() {
        let v = if pr.is_finite() && pr >= f32::MIN_POSITIVE {
            -(pr as f64).ln()
        } else {
            let target = chunk[first + r + 1] as usize;
            row_nll(engine, dec, &hidden, first + r, target).await?
        };
        out.push(v);
    }
    Ok(out)
}

/// As `chunk_nll`, with the scored half run token by token: the first `first + 1` ids as one
/// prompt, then one decode step per scored id (a submit and a 4-byte readback each).
async fn chunk_nll_decode(
    engine: &Engine,
    dec: &mut Decoder,
    chunk: &[u32],
    first: usize,
) -> Result<Vec<f64>> {
    let n = chunk.len() - 1 - first;
    dec.reset();
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        let mut rec = engine.recorder();
        // The hidden state whose next token is chunk[first + j + 1], and its row.
        let (hidden, row) = if j == 0 {
            (dec.forward_hidden(&mut rec, &chunk[..=first])?, first)
        } else {
            let at = first + j;
            (dec.forward_hidden_at(&mut rec, &chunk[at..=at])?, 0)
        };
        let target = chunk[first + j + 1] as usize;
        let logits = dec.logits_of_rows(&mut rec, &hidden, row, 1)?;
        let p = ops::softmax(&logits).record(&mut rec)?;
        let prob = rec.empty(&[1], DType::F32)?;
        rec.copy(
            &p.segments()[0].buffer,
            (target * 4) as u64,
            &prob.segments()[0].buffer,
            0,
            4,
        );
        let bytes = engine.submit_and_read(rec, &prob).await?;
        let pr: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        let v = match pr.first() {
            Some(&pr) if pr.is_finite() && pr >= f32::MIN_POSITIVE => -(pr as f64).ln(),
            _ => row_nll(engine, dec, &hidden, row, target).await?,
        };
        out.push(v);
    }
    Ok(out)
}

/// The NLL of `target` at one row from its logits read back whole, in f64 (for the rare
/// target whose f32 probability underflowed).
async fn row_nll(
    engine: &Engine,
    dec: &Decoder,
    hidden: &Tensor,
    row: usize,
    target: usize,
) -> Result<f64> {
    let mut rec = engine.recorder();
    let logits = dec.logits_of_rows(&mut rec, hidden, row, 1)?;
    let bytes = engine.submit_and_read(rec, &logits).await?;
    let l: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = l.iter().map(|&x| (x as f64 - max).exp()).sum();
    let v = max + sum.ln() - l[target] as f64;
    if !v.is_finite() {
        return Err(Error::BadModel {
            detail: format!("perplexity: the logits at position {row} are not finite"),
        });
    }
    Ok(v)
}
