//! The tuning plan of a GGUF decoder: the kernels it actually runs, at its shapes. The
//! quantized matvec of every distinct weight (format, N, K) for decode, the quantized matmul
//! for a 128-token prefill, decode and prefill attention, and the fused norm and gate ops.
//! Shared by `webjit tune --model` (weights synthesized from the header: timings do not depend
//! on values) and the browser's `tune()` (the loaded model's own weights).

use std::time::Duration;

use webjit_jit::kernels::elementwise::{ElementwiseSpec, EwOp};
use webjit_jit::kernels::qmatvec::Gate;
use webjit_jit::kernels::rowwise::{RowOp, RowwiseSpec};
use webjit_jit::quant::{self, GgmlType};

use crate::error::Result;
use crate::loader::ModelHeader;
use crate::model::decoder::{Decoder, Weight};
use crate::model::llm_config::DecoderConfig;
use crate::ops::{self, AttentionOptions, DecodeOptions};
use crate::tune::{Clock, TuneOptions, TuneReport};
use crate::{Engine, KvCache, KvCacheOptions, QTensor, Tensor};

/// Default prompt length of the prefill problems (records serve prompts of 65..=128 tokens).
pub const DEFAULT_PREFILL: usize = 128;
/// Bytes of weight copies a decode matvec is timed over on GPUs. A decode step reads each
/// weight once, from memory; one small weight timed alone stays in the GPU's L2 (50 MB on an
/// H100) and made uncoalesced configs look fast (tuned decode ran 2.4x slower than untuned).
const COLD_BYTES: u64 = 192 << 20;
/// At most this many copies per problem.
const MAX_COPIES: u64 = 256;
/// KV length of the decode-attention problems.
const CACHE: usize = 512;

/// Seeded values in [-0.5, 0.5) (never zeros, which would hide wrong candidates).
pub fn filled(e: &Engine, shape: &[usize], seed: u32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2654435761).max(1);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect();
    e.upload_f32(shape, &v)
}

/// The distinct quantized matrices a header declares: (format, [N, K]).
pub fn header_matrices(h: &ModelHeader) -> Vec<(GgmlType, [usize; 2])> {
    let mut out: Vec<(GgmlType, [usize; 2])> = Vec::new();
    for t in &h.tensors {
        let (Some(fmt), [n, k]) = (GgmlType::from_name(t.dtype.name()), t.shape.as_slice()) else {
            continue;
        };
        if matches!(fmt, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            continue;
        }
        let m = (fmt, [*n as usize, *k as usize]);
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Synthesized weights with the header's formats and shapes.
pub fn synth_matrices(e: &Engine, h: &ModelHeader) -> Result<Vec<QTensor>> {
    header_matrices(h)
        .iter()
        .enumerate()
        .map(|(i, &(fmt, [n, k]))| {
            let raw = quant::synth_blocks(fmt, n * k / fmt.block_elems(), i as u64 + 1);
            e.upload_quantized(fmt, [n, k], &raw)
        })
        .collect()
}

/// One loaded weight per distinct (format, shape) of the decoder.
pub fn decoder_matrices(dec: &Decoder) -> Vec<QTensor> {
    let mut out: Vec<QTensor> = Vec::new();
    for w in dec.weights() {
        if let Weight::Q(q) = w {
            if !out
                .iter()
                .any(|o| o.format() == q.format() && o.shape() == q.shape())
            {
                out.push(q.clone());
            }
        }
    }
    out
}

/// How many problems `tune_decoder` runs for these matrices.
pub fn problem_count(cfg: &DecoderConfig, mats: &[QTensor]) -> usize {
    mats.iter()
        .map(|m| if m.shape()[0] == cfg.vocab { 1 } else { 2 })
        .sum::<usize>()
        + 4
}

/// Tunes every problem of the plan within about `budget_s` seconds in all, reporting each
/// result to `on_report` as it lands (progress for long runs).
pub async fn tune_decoder(
    e: &Engine,
    cfg: &DecoderConfig,
    mats: &[QTensor],
    budget_s: f64,
    prefill: usize,
    exact: bool,
    clock: Clock<'_>,
    on_report: &mut dyn FnMut(&TuneReport, usize),
) -> Result<Vec<TuneReport>> {
    // Above 8 rows the quantized products use the tiled matmul, which these problems tune.
    if !(9..=8192).contains(&prefill) {
        return Err(crate::Error::InvalidArgument {
            op: "tune",
            detail: format!("prompt tokens {prefill} must be within 9..=8192"),
        });
    }
    // No longer than the model's context (a prompt cannot be).
    let prefill = prefill.min(cfg.context.max(9));
    let total = problem_count(cfg, mats);
    let software =
        format!("{:?}", e.gpu.info.device_type) == "Cpu" || e.profile().backend.contains("webgpu");
    // A problem stops starting candidates at its deadline, but the one under way finishes
    // (up to ~1 s for the output projection on an H100, whose whole runs took 30.6-31.1 s
    // for a 30 s budget), and setup (synthesized weights, copies) comes on top: aim at 90%
    // of the budget so the run ends within it (at 95%, one H100 run took 30.25 s).
    let deadline = clock() + 0.90 * budget_s;
    // Budget shares follow the bytes each problem reads (a decode step is bound by weight
    // reads): the vocabulary-sized output projection, the slowest op of a step, gets the most.
    // The other problems count as one mid-sized matrix each. A problem that finishes early
    // leaves its unused share to those after it.
    let mid = mats.iter().map(|m| m.gguf_bytes()).min().unwrap_or(1) as f64;
    let mut weights: Vec<f64> = Vec::new();
    for m in mats {
        weights.push(m.gguf_bytes() as f64);
        if m.shape()[0] != cfg.vocab {
            weights.push(m.gguf_bytes() as f64);
        }
    }
    weights.extend([mid; 4]);
    // No problem gets more than 40% of the whole budget: by bytes alone the output projection
    // would take ~90%, and when its candidates used it all (the int8 ones added 17), the
    // other problems were timed in 50 ms each and their noisy winners made tuned decode
    // slower than untuned on an H100 (940 vs 950 tok/s, `benchmarks/h100/i8/`).
    let cap = 0.4 * budget_s;
    let opts = |i: usize| TuneOptions {
        budget: Duration::from_secs_f64(
            ((deadline - clock()) * weights[i.min(weights.len() - 1)]
                / weights[i.min(weights.len() - 1)..]
                    .iter()
                    .sum::<f64>()
                    .max(1.0))
            .min(cap)
            .max(0.05),
        ),
        // Software adapters and browsers (whose readback alone takes milliseconds) need
        // longer batches for stable timings.
        min_batch: Duration::from_millis(if software { 20 } else { 5 }),
        max_nmse: 1e-8,
        exact,
    };
    let mut reports = Vec::new();
    let mut done = |r: TuneReport, reports: &mut Vec<TuneReport>| {
        on_report(&r, total);
        reports.push(r);
    };
    for w in mats {
        let [n, k] = w.shape();
        let x1 = filled(e, &[1, k], 11)?;
        let mut spec = ops::qmatvec_spec(&x1, w)?;
        // An FFN gate/up shape runs as the gated matvec at decode (gate and up share their
        // format in the models at hand); the same weight stands in for both.
        let gate = ([n, k] == [cfg.ffn, cfg.d_model]).then_some(match cfg.arch {
            crate::model::llm_config::Arch::Llama => Gate::Silu,
            _ => Gate::GeluTanh,
        });
        spec.gate = gate;
        // Copies (GPUs only: software adapters have no such cache and a tight budget), read in
        // turn so each run finds its weights cold, as in a decode step.
        let mut copies = vec![w.clone()];
        if !software {
            let want = (COLD_BYTES / w.gguf_bytes().max(1)).clamp(1, MAX_COPIES) as usize;
            while copies.len() < want.max(if gate.is_some() { 2 } else { 1 }) {
                copies.push(e.copy_quantized(w)?);
            }
        }
        let mut turn = 0usize;
        let r = e
            .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
                let n = copies.len();
                let (a, b) = (&copies[turn % n], &copies[(turn + 1) % n]);
                turn += 1;
                match gate {
                    Some(g) => ops::qmatvec_gated(rec, &x1, a, b, g, Some(c.clone())),
                    None => ops::qmatvec_with(rec, &x1, a, Some(c.clone())),
                }
            })
            .await?;
        drop(copies);
        done(r, &mut reports);
        if n == cfg.vocab {
            // The (tied) output projection only ever sees the last position: no prefill problem.
            continue;
        }
        let xp = filled(e, &[prefill, k], 12)?;
        let spec = ops::qmatmul_spec(&xp, w)?;
        let r = e
            .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
                ops::qmatmul_with(rec, &xp, w, Some(c.clone()))
            })
            .await?;
        done(r, &mut reports);
    }
    let (heads, kvh, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
    // Prefill attention at the local layers' window (the most common layer kind).
    let q = filled(e, &[1, prefill, heads, hd], 13)?;
    let k = filled(e, &[1, prefill, kvh, hd], 14)?;
    let v = filled(e, &[1, prefill, kvh, hd], 15)?;
    let aopts = AttentionOptions {
        causal: true,
        window: cfg.window,
        scale: Some(cfg.attn_scale),
        ..Default::default()
    };
    let spec = ops::attention_spec(&q, &k, &v)?;
    let r = e
        .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
            ops::attention_with(rec, &q, &k, &v, &aopts, Some(c.clone()))
        })
        .await?;
    done(r, &mut reports);
    // Decode attention against a filled cache.
    let mut cache = KvCache::new(
        e,
        KvCacheOptions {
            batch: 1,
            n_kv_heads: kvh,
            head_dim: hd,
            capacity: CACHE,
            ring: false,
            dtype: None,
        },
    )?;
    let kc = filled(e, &[1, CACHE, kvh, hd], 16)?;
    let vc = filled(e, &[1, CACHE, kvh, hd], 17)?;
    let mut rec = e.recorder();
    cache.append(&mut rec, &kc, &vc)?;
    rec.submit()?;
    let q1 = filled(e, &[1, heads, hd], 18)?;
    let dopts = DecodeOptions {
        window: None,
        scale: Some(cfg.attn_scale),
        softcap: None,
    };
    let spec = ops::decode_spec(&q1, &cache, &dopts)?;
    let r = e
        .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
            ops::attention_decode_with(rec, &q1, &cache, &dopts, Some(c.clone()), None)
        })
        .await?;
    done(r, &mut reports);
    // The fused decode-step ops.
    let d = cfg.d_model;
    let (x, res, w) = (
        filled(e, &[1, d], 19)?,
        filled(e, &[1, d], 20)?,
        filled(e, &[d], 21)?,
    );
    // The residual add with the next pre-norm (Gemma: after its post-norm).
    let post = !matches!(cfg.arch, crate::model::llm_config::Arch::Llama);
    let spec = RowwiseSpec {
        op: if post {
            RowOp::RmsNormAddNorm
        } else {
            RowOp::AddNorm
        },
        rows: 1,
        cols: d as u64,
    };
    let r = e
        .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
            let w_post = post.then_some(&w);
            ops::add_norm(rec, &x, w_post, &res, &w, cfg.eps, 0.0, Some(c.clone())).map(|o| o.1)
        })
        .await?;
    done(r, &mut reports);
    let (g, u) = (filled(e, &[1, cfg.ffn], 22)?, filled(e, &[1, cfg.ffn], 23)?);
    let op = match cfg.arch {
        crate::model::llm_config::Arch::Llama => EwOp::SiluMul,
        _ => EwOp::GeluTanhMul,
    };
    let spec = ElementwiseSpec {
        op,
        len: cfg.ffn as u64,
        b_len: cfg.ffn as u64,
    };
    let r = e
        .tune_async(&spec, &opts(reports.len()), clock, |rec, c| {
            ops::elementwise_with(rec, op, &g, Some(&u), 1.0, Some(c.clone()))
        })
        .await?;
    done(r, &mut reports);
    Ok(reports)
}
