//! `webjit tune --model PATH`: tunes the kernels a GGUF decoder actually runs, at its shapes:
//! the quantized matvec of every distinct weight (format, N, K) for decode, the quantized
//! matmul for a 128-token prefill, decode and prefill attention, and the fused norm and gate
//! ops. Only the header is read; weights are synthesized (timings do not depend on values).

use std::time::{Duration, Instant};

use webjit_engine::jit::kernels::elementwise::EwOp;
use webjit_engine::jit::kernels::rowwise::{RowOp, RowwiseSpec};
use webjit_engine::jit::quant::{self, GgmlType};
use webjit_engine::loader::{FileSource, ModelHeader};
use webjit_engine::model::llm_config::DecoderConfig;
use webjit_engine::ops::{self, AttentionOptions, DecodeOptions};
use webjit_engine::tune::{TuneOptions, TuneReport};
use webjit_engine::{Engine, KvCache, KvCacheOptions, Result};

use crate::tune::filled;

/// Prompt length of the prefill problems.
const PREFILL: usize = 128;
/// KV length of the decode-attention problems.
const CACHE: usize = 512;

/// Reads a GGUF file's header only (the file may be just the header).
pub fn read_header(path: &std::path::Path) -> Result<ModelHeader> {
    Ok(webjit_engine::loader::read_header(&mut FileSource::open(
        path,
    )?)?)
}

/// The distinct quantized matrices of the model: (format, [N, K]).
fn matrices(h: &ModelHeader) -> Vec<(GgmlType, [usize; 2])> {
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

pub fn run(e: &Engine, path: &std::path::Path, budget_s: f64) -> Result<Vec<TuneReport>> {
    let h = read_header(path)?;
    let cfg = DecoderConfig::from_header(&h)?;
    let mats = matrices(&h);
    // 2 products per matrix (1 for the output projection), 2 attention problems, 2 fused ops.
    let problems = (2 * mats.len() + 3) as f64;
    let opts = TuneOptions {
        budget: Duration::from_secs_f64((budget_s / problems).max(0.05)),
        min_batch: Duration::from_millis(if format!("{:?}", e.gpu.info.device_type) == "Cpu" {
            20
        } else {
            5
        }),
        max_nmse: 1e-8,
    };
    let t0 = Instant::now();
    let mut reports = Vec::new();
    for (i, &(fmt, [n, k])) in mats.iter().enumerate() {
        let blocks = n * k / fmt.block_elems();
        let raw = quant::synth_blocks(fmt, blocks, i as u64 + 1);
        let w = e.upload_quantized(fmt, [n, k], &raw)?;
        let x1 = filled(e, &[1, k], 11)?;
        let spec = ops::qmatvec_spec(&x1, &w)?;
        reports.push(e.tune(&spec, &opts, |rec, c| {
            ops::qmatvec_with(rec, &x1, &w, Some(c.clone()))
        })?);
        if n == cfg.vocab {
            // The (tied) output projection only ever sees the last position: no prefill problem.
            continue;
        }
        let xp = filled(e, &[PREFILL, k], 12)?;
        let spec = ops::qmatmul_spec(&xp, &w)?;
        reports.push(e.tune(&spec, &opts, |rec, c| {
            ops::qmatmul_with(rec, &xp, &w, Some(c.clone()))
        })?);
    }
    let (heads, kvh, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
    // Prefill attention at the local layers' window (the most common layer kind).
    let q = filled(e, &[1, PREFILL, heads, hd], 13)?;
    let k = filled(e, &[1, PREFILL, kvh, hd], 14)?;
    let v = filled(e, &[1, PREFILL, kvh, hd], 15)?;
    let aopts = AttentionOptions {
        causal: true,
        window: cfg.window,
        scale: Some(cfg.attn_scale),
        ..Default::default()
    };
    let spec = ops::attention_spec(&q, &k, &v)?;
    reports.push(e.tune(&spec, &opts, |rec, c| {
        ops::attention_with(rec, &q, &k, &v, &aopts, Some(c.clone()))
    })?);
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
    reports.push(e.tune(&spec, &opts, |rec, c| {
        ops::attention_decode_with(rec, &q1, &cache, &dopts, Some(c.clone()), None)
    })?);
    // The fused decode-step ops.
    let d = cfg.d_model;
    let (x, r, w) = (
        filled(e, &[1, d], 19)?,
        filled(e, &[1, d], 20)?,
        filled(e, &[d], 21)?,
    );
    let spec = RowwiseSpec {
        op: RowOp::RmsNormAdd,
        rows: 1,
        cols: d as u64,
    };
    reports.push(e.tune(&spec, &opts, |rec, c| {
        ops::rowwise_with(
            rec,
            RowOp::RmsNormAdd,
            &x,
            &[&w, &r],
            cfg.eps,
            0.0,
            Some(c.clone()),
        )
    })?);
    let (g, u) = (filled(e, &[1, cfg.ffn], 22)?, filled(e, &[1, cfg.ffn], 23)?);
    let op = EwOp::GeluTanhMul;
    let spec = webjit_engine::jit::kernels::elementwise::ElementwiseSpec {
        op,
        len: cfg.ffn as u64,
        b_len: cfg.ffn as u64,
    };
    reports.push(e.tune(&spec, &opts, |rec, c| {
        ops::elementwise_with(rec, op, &g, Some(&u), 1.0, Some(c.clone()))
    })?);
    eprintln!(
        "tuned {} problems of {} in {:.1} s",
        reports.len(),
        path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(reports)
}
