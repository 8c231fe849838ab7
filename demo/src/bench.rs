use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use webjit_engine::jit::kernels::matmul::MatmulConfig;
use webjit_engine::jit::KernelSpec;
use webjit_engine::{bench, ops, DeviceOptions, Engine, Error, Result};

use crate::args::{at_least, min_ms, whole};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Sentence embeddings per second with a BERT model directory (all-MiniLM-L6-v2).
    Embed {
        /// A model directory: a path, a short name (minilm-l6) or an http:// URL.
        #[arg(long)]
        model: String,
        /// Sentences per forward pass (1..=65536; each is a copy of a test sentence).
        #[arg(long, default_value_t = 1, value_parser = whole::<usize>(1, 1 << 16, ""))]
        batch: usize,
        /// Random weights of the model's shapes (the directory needs only config.json and
        /// tokenizer.json).
        #[arg(long)]
        synthetic: bool,
        #[arg(long, default_value_t = 2000, value_parser = min_ms())]
        min_ms: u64,
        /// Also time each kernel of one forward pass (timestamp queries; one pass per
        /// dispatch), summed by kernel
        #[arg(long)]
        profile: bool,
        #[arg(long)]
        json: bool,
    },
    /// f32 tiled matmul C[M,N] = A[M,K] x B[K,N] (or B^T with --trans-b).
    Matmul {
        #[arg(long, default_value_t = 1024, value_parser = at_least::<usize>(1))]
        m: usize,
        #[arg(long, default_value_t = 1024, value_parser = at_least::<usize>(1))]
        n: usize,
        #[arg(long, default_value_t = 1024, value_parser = at_least::<usize>(1))]
        k: usize,
        /// B is stored [N, K] (the usual weight layout).
        #[arg(long)]
        trans_b: bool,
        /// Run one config by key (see --sweep for the keys); default: the heuristic default.
        #[arg(long)]
        config: Option<String>,
        /// Time every config of the space and report the best, plus the FMA probe.
        #[arg(long)]
        sweep: bool,
        /// Shortest measured batch, in milliseconds.
        #[arg(long, default_value_t = 200, value_parser = min_ms())]
        min_ms: u64,
        /// Compile shaders without wgpu's bounds checks (webjit kernels check their own).
        #[arg(long)]
        unchecked: bool,
        #[arg(long)]
        json: bool,
    },
    /// Fused attention: prefill (--seq) or decode against a KV cache (--decode --cache-len).
    Attention(crate::bench_attention::AttentionArgs),
    /// Prefill and decode tokens/s of a GGUF decoder (real file or --synthetic-from HEADER).
    Model(crate::bench_model::ModelArgs),
    /// Fused neighborhood attention on a 1/2/3-D token grid, beside dense attention.
    #[command(alias = "na")]
    Neighborhood(crate::bench_neighborhood::NaArgs),
    /// Block-sparse attention (MoBA / VMoBA) against dense attention at the same shape.
    #[command(alias = "sparse")]
    BlockSparse(crate::bench_block_sparse::BlockSparseArgs),
    /// Quantized Y[M,N] = X[M,K] W[N,K]^T with GGUF weights (synthetic): m <= 8 runs the decode
    /// qmatvec, larger m the prefill qmatmul.
    Qmatmul {
        /// GGUF format: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k .. q6_k, iq4_nl,
        /// iq4_xs, tq1_0, tq2_0, mxfp4, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m.
        #[arg(long, default_value = "q4_k")]
        format: String,
        #[arg(long, default_value_t = 1, value_parser = at_least::<usize>(1))]
        m: usize,
        #[arg(long, default_value_t = 4096, value_parser = at_least::<usize>(1))]
        n: usize,
        #[arg(long, default_value_t = 4096, value_parser = at_least::<usize>(1))]
        k: usize,
        #[arg(long)]
        config: Option<String>,
        /// Time every config and report the best plus the streaming-read bandwidth.
        #[arg(long)]
        sweep: bool,
        /// The int8 dot-product path of the matvec (m <= 8; q4_0, q5_0, q8_0, q4_k, q6_k,
        /// iq4_nl, iq4_xs, tq1_0, tq2_0, mxfp4, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m):
        /// each config is timed twice, on activations quantized once beforehand and with the
        /// quantization pass in every run (`+quantize`).
        #[arg(long)]
        int8: bool,
        /// Cycle through copies of the weight totalling at least this many MiB, so it is read
        /// from memory rather than the GPU's cache (0: one weight, cache-resident if it fits).
        #[arg(long, default_value_t = 0, value_parser = whole::<u64>(0, 1 << 20, ""))]
        cold_mib: u64,
        #[arg(long, default_value_t = 200, value_parser = min_ms())]
        min_ms: u64,
        #[arg(long)]
        unchecked: bool,
        #[arg(long)]
        json: bool,
    },
    /// Streaming-read bandwidth of the device (the yardstick of qmatvec).
    Read {
        #[arg(long, default_value_t = 256, value_parser = whole::<u64>(1, 1 << 20, ""))]
        mib: u64,
        #[arg(long, default_value_t = 200, value_parser = min_ms())]
        min_ms: u64,
        #[arg(long)]
        unchecked: bool,
        #[arg(long)]
        json: bool,
    },
    /// The f32 FMA rate of the device, from the probe kernel.
    Fma {
        #[arg(long, default_value_t = 200, value_parser = min_ms())]
        min_ms: u64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Matmul {
            m,
            n,
            k,
            trans_b,
            config,
            sweep,
            min_ms,
            unchecked,
            json,
        } => matmul(
            m,
            n,
            k,
            trans_b,
            config,
            sweep,
            Duration::from_millis(min_ms),
            unchecked,
            json,
        ),
        BenchCommand::Attention(args) => crate::bench_attention::run(args),
        BenchCommand::Model(args) => crate::bench_model::run(args),
        BenchCommand::Neighborhood(args) => crate::bench_neighborhood::run(args),
        BenchCommand::BlockSparse(args) => crate::bench_block_sparse::run(args),
        BenchCommand::Qmatmul {
            format,
            m,
            n,
            k,
            config,
            sweep,
            int8,
            cold_mib,
            min_ms,
            unchecked,
            json,
        } => crate::bench_quant::qmatmul(
            &format,
            m,
            n,
            k,
            config,
            sweep,
            int8,
            cold_mib,
            Duration::from_millis(min_ms),
            unchecked,
            json,
        ),
        BenchCommand::Read {
            mib,
            min_ms,
            unchecked,
            json,
        } => crate::bench_quant::read(mib, Duration::from_millis(min_ms), unchecked, json),
        BenchCommand::Embed {
            model,
            batch,
            synthetic,
            min_ms,
            profile,
            json,
        } => crate::embed::bench(&model, batch, synthetic, min_ms, profile, json),
        BenchCommand::Fma { min_ms, json } => {
            let engine = Engine::new_blocking(DeviceOptions::default())?;
            let g = bench::fma_gflops(&engine, Duration::from_millis(min_ms))?;
            if json {
                println!(
                    "{}",
                    crate::run_info::stamped(
                        json!({"bench": "fma", "device": engine.profile().name, "fma_gflops": g}),
                        Some(&engine)
                    )
                );
            } else {
                println!("{}: f32 FMA probe {:.1} GFLOP/s", engine.profile().name, g);
            }
            Ok(())
        }
    }
}

/// Uploads `data(n)` as an f32 tensor of `shape` (`n` elements) once the engine has accepted
/// the shape: one that overflows or exceeds the memory budget (`--m 100000000 --k 100000`) is
/// refused with a typed error before its data is made on the host, where it would abort.
pub fn upload_random(
    e: &Engine,
    shape: &[usize],
    data: impl FnOnce(usize) -> Vec<f32>,
) -> Result<webjit_engine::Tensor> {
    let n = e.empty(shape, webjit_engine::DType::F32)?.numel();
    e.upload_f32(shape, &data(n))
}

fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    // Values in [-1, 1): speed does not depend on them, but zeros could take fast paths.
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

#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    trans_b: bool,
    config: Option<String>,
    sweep: bool,
    min_batch: Duration,
    unchecked: bool,
    as_json: bool,
) -> Result<()> {
    let engine = Engine::new_blocking(DeviceOptions {
        unchecked_shaders: unchecked,
        ..Default::default()
    })?;
    let a = upload_random(&engine, &[m, k], |n| pseudo_random(n, 1))?;
    let b_shape = if trans_b { [n, k] } else { [k, n] };
    let b = upload_random(&engine, &b_shape, |n| pseudo_random(n, 2))?;
    let spec = ops::matmul(&a, &b, trans_b).spec()?;
    let shape = vec![spec.m as usize, spec.n as usize];
    let out = engine.empty(&shape, webjit_engine::DType::F32)?;
    let profile = engine.profile().clone();
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let time = |cfg: &MatmulConfig| -> Result<f64> {
        let t = bench::time_op(&engine, min_batch, |rec| {
            ops::matmul(&a, &b, trans_b)
                .out(&out)
                .config(cfg.clone())
                .record(rec)
                .map(|_| ())
        })?;
        Ok(t.as_secs_f64())
    };
    let configs: Vec<MatmulConfig> = if sweep {
        spec.space(&profile)
    } else if let Some(key) = &config {
        vec![spec.config_by_key(&profile, key)?]
    } else {
        vec![engine.choose(&spec, None)]
    };
    let tuned = config.is_none() && !sweep && engine.tuned_config(&spec).is_some();
    if tuned && !as_json {
        println!("using the tuned config for this device (from `webjit tune`)");
    }
    if configs.is_empty() {
        return Err(Error::InvalidArgument {
            op: "bench",
            detail: "no legal config for this problem".into(),
        });
    }
    let mut results = Vec::new();
    for cfg in &configs {
        let key = spec.key(cfg);
        match time(cfg) {
            Ok(t) => {
                let gflops = flops / t / 1e9;
                if !as_json {
                    println!("{key:<48} {:>9.3} ms {:>9.1} GFLOP/s", t * 1e3, gflops);
                }
                results.push(json!({"config": key, "time_ms": t * 1e3, "gflops": gflops}));
            }
            Err(e) if sweep => {
                if !as_json {
                    println!("{key:<48} failed: {e}");
                }
                results.push(json!({"config": key, "error": e.to_string()}));
            }
            Err(e) => return Err(e),
        }
    }
    let best = results
        .iter()
        .filter(|r| r.get("gflops").is_some())
        .max_by(|x, y| {
            x["gflops"]
                .as_f64()
                .partial_cmp(&y["gflops"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
        .ok_or_else(|| Error::InvalidArgument {
            op: "bench",
            detail: "every config failed".into(),
        })?;
    let fma = if sweep {
        Some(bench::fma_gflops(&engine, min_batch)?)
    } else {
        None
    };
    let report = json!({
        "bench": "matmul",
        "device": profile.name,
        "backend": profile.backend,
        "m": m, "n": n, "k": k, "trans_b": trans_b,
        "unchecked_shaders": unchecked,
        "tuned": tuned,
        "config": best["config"],
        "time_ms": best["time_ms"],
        "gflops": best["gflops"],
        "fma_gflops": fma,
        "fraction_of_fma": fma.map(|f| best["gflops"].as_f64().unwrap_or(0.0) / f),
        "configs_timed": results.len(),
        "results": if sweep { json!(results) } else { json!(null) },
    });
    if as_json {
        println!("{}", crate::run_info::stamped(report, Some(&engine)));
    } else {
        println!(
            "best: {} {:.1} GFLOP/s",
            best["config"].as_str().unwrap_or("?"),
            best["gflops"].as_f64().unwrap_or(0.0)
        );
        if let Some(f) = fma {
            println!(
                "fma probe: {f:.1} GFLOP/s -> matmul reaches {:.1}% of it",
                100.0 * best["gflops"].as_f64().unwrap_or(0.0) / f
            );
        }
    }
    Ok(())
}
