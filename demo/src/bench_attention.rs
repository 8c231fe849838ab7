//! `webjit bench attention`: fused prefill attention, or decode against a KV cache.
//!
//! FLOPs count only unmasked work: 4 * head_dim per visible (query, key) pair and head (2 for
//! the QK dot, 2 for the weighted V sum); masked pairs, softmax exps and tiles skipped by the
//! window are not counted. Decode also reports GB/s of K+V bytes read (each visible cache
//! entry once per kv head, at the cache's element size).

use std::time::Duration;

use clap::Args;
use serde_json::json;
use webjit_engine::jit::kernels::attention::AttentionConfig;
use webjit_engine::jit::kernels::attention_decode::DecodeConfig;
use webjit_engine::jit::kernels::kv_dtype::KIVI_G;
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, AttentionOptions, DecodeOptions};
use webjit_engine::{bench, DType, DeviceOptions, Engine, Error, KvCache, KvCacheOptions, Result};

use crate::args::{at_least, min_ms, real};
use crate::bench::upload_random;

#[derive(Args, Debug, Clone)]
pub struct AttentionArgs {
    /// Query length (prefill); ignored with --decode.
    #[arg(long, default_value_t = 4096, value_parser = at_least::<usize>(1))]
    seq: usize,
    #[arg(long, default_value_t = 8, value_parser = at_least::<usize>(1))]
    heads: usize,
    /// KV heads (grouped-query attention); defaults to --heads.
    #[arg(long, value_parser = at_least::<usize>(1))]
    kv_heads: Option<usize>,
    #[arg(long, default_value_t = 128, value_parser = at_least::<usize>(1))]
    dim: usize,
    #[arg(long, default_value_t = 1, value_parser = at_least::<usize>(1))]
    batch: usize,
    /// Sliding window (keys with position > query - window). With --decode: a ring cache of
    /// this capacity.
    #[arg(long, value_parser = at_least::<u32>(1))]
    window: Option<u32>,
    #[arg(long)]
    causal: bool,
    /// Logit soft-capping value (e.g. 50).
    #[arg(long, value_parser = real::<f32>(|c| c > 0.0, "a number > 0"))]
    softcap: Option<f32>,
    /// One query row per head against a KV cache of --cache-len positions.
    #[arg(long)]
    decode: bool,
    #[arg(long, default_value_t = 32768, value_parser = at_least::<usize>(1))]
    cache_len: usize,
    /// KV cache storage for --decode: f32, f16, q8_0, q4_0 or kivi2 (linear caches only: not
    /// with --window) (default: f16 where the device has shader-f16).
    #[arg(long)]
    kv_dtype: Option<String>,
    /// Run one config by key (see --sweep for the keys); default: the heuristic default.
    #[arg(long)]
    config: Option<String>,
    /// Time every config of the space and report the best.
    #[arg(long)]
    sweep: bool,
    /// Also run the FMA probe and report the fraction of it reached.
    #[arg(long)]
    fma: bool,
    #[arg(long, default_value_t = 200, value_parser = min_ms())]
    min_ms: u64,
    /// Compile shaders without wgpu's bounds checks (webjit kernels check their own).
    #[arg(long)]
    unchecked: bool,
    #[arg(long)]
    json: bool,
}

fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Visible (query, key) pairs of one head and batch entry, queries at the end of the keys.
fn visible_pairs(seq_q: u64, seq_kv: u64, causal: bool, window: Option<u32>) -> u64 {
    let q_pos0 = seq_kv.saturating_sub(seq_q);
    let w = window.map(u64::from);
    (0..seq_q)
        .map(|i| {
            let p = i + q_pos0;
            let hi = if causal {
                (p + 1).min(seq_kv)
            } else {
                match w {
                    Some(w) => (p + w).min(seq_kv),
                    None => seq_kv,
                }
            };
            let lo = match w {
                Some(w) => (p + 1).saturating_sub(w),
                None => 0,
            };
            hi.saturating_sub(lo)
        })
        .sum()
}

/// One timed config: (key, seconds) or the error it hit.
type Timed = (String, Result<f64>);

pub fn run(a: AttentionArgs) -> Result<()> {
    let engine = Engine::new_blocking(DeviceOptions {
        unchecked_shaders: a.unchecked,
        ..Default::default()
    })?;
    let kv_heads = a.kv_heads.unwrap_or(a.heads);
    let min_batch = Duration::from_millis(a.min_ms);
    let (results, flops, bytes, what) = if a.decode {
        decode(&engine, &a, kv_heads, min_batch)?
    } else {
        prefill(&engine, &a, kv_heads, min_batch)?
    };
    report(
        &engine, &a, kv_heads, results, flops, bytes, what, min_batch,
    )
}

type Measured = (Vec<Timed>, f64, Option<f64>, String);

fn prefill(e: &Engine, a: &AttentionArgs, kv_heads: usize, min: Duration) -> Result<Measured> {
    let (b, s, d) = (a.batch, a.seq, a.dim);
    let q = upload_random(e, &[b, s, a.heads, d], |n| pseudo_random(n, 1))?;
    let k = upload_random(e, &[b, s, kv_heads, d], |n| pseudo_random(n, 2))?;
    let v = upload_random(e, &[b, s, kv_heads, d], |n| pseudo_random(n, 3))?;
    let out = e.empty(&[b, s, a.heads, d], DType::F32)?;
    let spec = ops::attention(&q, &k, &v, &Default::default()).spec()?;
    let opts = AttentionOptions {
        causal: a.causal,
        window: a.window,
        softcap: a.softcap,
        ..Default::default()
    };
    let configs: Vec<AttentionConfig> = if a.sweep {
        spec.space(e.profile())
    } else if let Some(key) = &a.config {
        vec![spec.config_by_key(e.profile(), key)?]
    } else {
        vec![spec.default_config(e.profile())]
    };
    let mut results = Vec::new();
    for cfg in configs {
        let t = bench::time_op(e, min, |rec| {
            ops::attention(&q, &k, &v, &opts)
                .out(&out)
                .config(cfg.clone())
                .record(rec)
                .map(|_| ())
        })
        .map(|t| t.as_secs_f64());
        results.push((spec.key(&cfg), t));
    }
    let pairs = visible_pairs(s as u64, s as u64, a.causal, a.window) as f64;
    let flops = 4.0 * d as f64 * pairs * (b * a.heads) as f64;
    Ok((results, flops, None, "prefill".into()))
}

fn decode(e: &Engine, a: &AttentionArgs, kv_heads: usize, min: Duration) -> Result<Measured> {
    let (b, d, len) = (a.batch, a.dim, a.cache_len);
    let dtype = a
        .kv_dtype
        .as_deref()
        .map(webjit_engine::kv_cache::parse_kv_cache)
        .transpose()?;
    let ring = a.window.is_some();
    let capacity = a.window.map(|w| w as usize).unwrap_or(len).max(1);
    let mut cache = KvCache::new(
        e,
        KvCacheOptions {
            batch: b,
            n_kv_heads: kv_heads,
            head_dim: d,
            capacity,
            ring,
            dtype,
        },
    )?;
    // Fill in chunks so no upload is larger than 4096 positions.
    let mut seed = 10;
    while cache.len() < len {
        let n = (len - cache.len()).min(4096);
        let shape = [b, n, kv_heads, d];
        let k = upload_random(e, &shape, |n| pseudo_random(n, seed))?;
        let v = upload_random(e, &shape, |n| pseudo_random(n, seed + 1))?;
        seed += 2;
        let mut rec = e.recorder();
        webjit_engine::ops::kv_append(&mut cache, &k, &v).record(&mut rec)?;
        rec.submit()?;
        e.gpu.wait_idle()?;
    }
    let q = upload_random(e, &[b, a.heads, d], |n| pseudo_random(n, 7))?;
    let out = e.empty(&[b, a.heads, d], DType::F32)?;
    let opts = DecodeOptions {
        window: a.window,
        softcap: a.softcap,
        ..Default::default()
    };
    let spec = ops::attention_decode(&q, &cache, &opts).spec()?;
    let configs: Vec<DecodeConfig> = if a.sweep {
        spec.space(e.profile())
    } else if let Some(key) = &a.config {
        vec![spec.config_by_key(e.profile(), key)?]
    } else {
        vec![spec.default_config(e.profile())]
    };
    let mut results = Vec::new();
    for cfg in configs {
        let t = bench::time_op(e, min, |rec| {
            ops::attention_decode(&q, &cache, &opts)
                .out(&out)
                .config(cfg.clone())
                .record(rec)
                .map(|_| ())
        })
        .map(|t| t.as_secs_f64());
        results.push((spec.key(&cfg), t));
    }
    let visible = spec.kv_len as f64;
    let flops = 4.0 * d as f64 * visible * (b * a.heads) as f64;
    // Bytes of the K and V rows read (quantized rows include their scales; kivi2: 2-bit
    // codes and per-group halves of the complete groups, f16 rows of the rest).
    let heads = (b * kv_heads) as f64;
    let bytes = if cache.dtype() == webjit_engine::kv_cache::KvDType::Kivi2 {
        let full = (spec.kv_len / KIVI_G * KIVI_G) as f64;
        let (d, vrow) = (d as f64, 4 * cache.dtype().row_words(d as u64));
        let k = d / 4.0 + 4.0 * d / KIVI_G as f64;
        heads * (full * (k + vrow as f64) + (visible - full) * 4.0 * d)
    } else {
        2.0 * visible * heads * (4 * cache.dtype().row_words(d as u64)) as f64
    };
    let what = format!("decode ({} cache)", cache.dtype().name());
    Ok((results, flops, Some(bytes), what))
}

#[allow(clippy::too_many_arguments)]
fn report(
    e: &Engine,
    a: &AttentionArgs,
    kv_heads: usize,
    results: Vec<Timed>,
    flops: f64,
    bytes: Option<f64>,
    what: String,
    min: Duration,
) -> Result<()> {
    let mut rows = Vec::new();
    let mut best: Option<(String, f64)> = None;
    for (key, t) in results {
        match t {
            Ok(t) => {
                let gflops = flops / t / 1e9;
                let gbs = bytes.map(|b| b / t / 1e9);
                if !a.json {
                    let bw = gbs
                        .map(|g| format!(" {g:>9.1} GB/s K+V"))
                        .unwrap_or_default();
                    println!("{key:<52} {:>9.3} ms {gflops:>9.1} GFLOP/s{bw}", t * 1e3);
                }
                rows.push(
                    json!({"config": key, "time_ms": t * 1e3, "gflops": gflops, "kv_gbs": gbs}),
                );
                if best.as_ref().is_none_or(|(_, bt)| t < *bt) {
                    best = Some((key, t));
                }
            }
            Err(err) if a.sweep => {
                if !a.json {
                    println!("{key:<52} failed: {err}");
                }
                rows.push(json!({"config": key, "error": err.to_string()}));
            }
            Err(err) => return Err(err),
        }
    }
    let (key, t) = best.ok_or_else(|| Error::InvalidArgument {
        op: "bench",
        detail: "every config failed".into(),
    })?;
    let gflops = flops / t / 1e9;
    let fma = if a.fma {
        Some(bench::fma_gflops(e, min)?)
    } else {
        None
    };
    let counting = "FLOPs = 4 * head_dim * visible (query, key) pairs * heads * batch; masked \
                    pairs not counted";
    let report = json!({
        "bench": "attention",
        "mode": what,
        "device": e.profile().name,
        "backend": e.profile().backend,
        "batch": a.batch, "seq": a.seq, "heads": a.heads, "kv_heads": kv_heads, "dim": a.dim,
        "causal": a.causal, "window": a.window, "softcap": a.softcap,
        "decode": a.decode, "cache_len": if a.decode { Some(a.cache_len) } else { None },
        "unchecked_shaders": a.unchecked,
        "config": key,
        "time_ms": t * 1e3,
        "gflops": gflops,
        "flop_counting": counting,
        "kv_bytes": bytes,
        "kv_gbs": bytes.map(|b| b / t / 1e9),
        "fma_gflops": fma,
        "fraction_of_fma": fma.map(|f| gflops / f),
        "results": if a.sweep { json!(rows) } else { json!(null) },
    });
    if a.json {
        println!("{}", crate::run_info::stamped(report, Some(e)));
    } else {
        println!("{what}: best {key}: {:.3} ms, {gflops:.1} GFLOP/s", t * 1e3);
        println!("({counting})");
        if let Some(b) = bytes {
            println!("K+V read: {:.1} MB -> {:.1} GB/s", b / 1e6, b / t / 1e9);
        }
        if let Some(f) = fma {
            println!(
                "fma probe: {f:.1} GFLOP/s -> attention reaches {:.1}% of it",
                100.0 * gflops / f
            );
        }
    }
    Ok(())
}
