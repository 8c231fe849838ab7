//! `webjit bench neighborhood` (alias `na`): fused neighborhood attention on a 1-D, 2-D or 3-D
//! token grid, beside our dense fused attention over the same tokens.
//!
//! FLOPs count 4 * head_dim * kernel volume per query and head (2 for the QK dot, 2 for the
//! weighted V sum), as NATTEN does; causal axes' shorter windows near the start are not
//! discounted. Dense attention counts 4 * head_dim * tokens per query.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use webjit_engine::jit::kernels::neighborhood::NeighborhoodConfig;
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{self, AttentionOptions, NaOptions};
use webjit_engine::{bench, DType, DeviceOptions, Engine, Error, Result};

use crate::args::{at_least, min_ms};
use crate::bench::upload_random;

#[derive(Args, Debug, Clone)]
pub struct NaArgs {
    /// Token grid, outermost axis first: `4096`, `64x64` or `8x32x32` (default 64x64). With
    /// --size, the number of axes instead (`--dims 2 --size 64x64`).
    #[arg(long)]
    dims: Option<String>,
    /// Token grid when --dims gives the number of axes.
    #[arg(long)]
    size: Option<String>,
    /// Kernel size per axis (odd), e.g. `7x7`.
    #[arg(long, default_value = "7x7")]
    kernel: String,
    /// Dilation per axis, e.g. `1x2`; default 1 on every axis.
    #[arg(long)]
    dilation: Option<String>,
    /// Causal flag per axis as 0/1, e.g. `1x0` (video: causal in time only).
    #[arg(long)]
    causal: Option<String>,
    #[arg(long, default_value_t = 4, value_parser = at_least::<usize>(1))]
    heads: usize,
    #[arg(long, default_value_t = 32, value_parser = at_least::<usize>(1))]
    dim: usize,
    #[arg(long, default_value_t = 1, value_parser = at_least::<usize>(1))]
    batch: usize,
    /// Add a relative positional bias [heads, 2k-1 per axis].
    #[arg(long)]
    rpb: bool,
    /// Run one config by key (see --sweep for the keys); default: the heuristic default.
    #[arg(long)]
    config: Option<String>,
    /// Time every config of the space and report the best.
    #[arg(long)]
    sweep: bool,
    /// Skip the dense attention comparison (slow for large grids).
    #[arg(long)]
    no_dense: bool,
    /// Time every config of the dense attention space and compare with its best (default:
    /// dense attention's tuned or default config).
    #[arg(long)]
    dense_sweep: bool,
    #[arg(long, default_value_t = 200, value_parser = min_ms())]
    min_ms: u64,
    /// Compile shaders without wgpu's bounds checks (webjit kernels check their own).
    #[arg(long)]
    unchecked: bool,
    #[arg(long)]
    json: bool,
}

fn parse_axes(what: &str, s: &str) -> Result<Vec<u32>> {
    s.split('x')
        .map(|t| t.trim().parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::InvalidArgument {
            op: "bench",
            detail: format!("--{what} must be numbers joined by 'x' (e.g. 64x64), got {s:?}"),
        })
}

/// The token grid from --dims, or from --size with --dims as its number of axes.
fn grid(a: &NaArgs) -> Result<Vec<u32>> {
    let Some(size) = &a.size else {
        return parse_axes("dims", a.dims.as_deref().unwrap_or("64x64"));
    };
    let g = parse_axes("size", size)?;
    if let Some(d) = &a.dims {
        if d.trim() != g.len().to_string() {
            return Err(Error::InvalidArgument {
                op: "bench",
                detail: format!("--dims {d} does not match --size {size} ({} axes)", g.len()),
            });
        }
    }
    Ok(g)
}

/// Largest NMSE against the default config's output a swept config may show.
const MAX_NMSE: f64 = 1e-9;

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        // NaN compares false: count it as a total mismatch.
        let d = if (g - w).is_finite() {
            g - w
        } else {
            f64::MAX.sqrt()
        };
        num += d * d;
        den += w * w;
    }
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    num / den.max(f64::MIN_POSITIVE)
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

pub fn run(a: NaArgs) -> Result<()> {
    let engine = Engine::new_blocking(DeviceOptions {
        unchecked_shaders: a.unchecked,
        ..Default::default()
    })?;
    let e = &engine;
    let dims = grid(&a)?;
    let kernel = parse_axes("kernel", &a.kernel)?;
    let dilation = match &a.dilation {
        Some(s) => parse_axes("dilation", s)?,
        None => Vec::new(),
    };
    let causal = match &a.causal {
        Some(s) => parse_axes("causal", s)?.iter().map(|&c| c != 0).collect(),
        None => Vec::new(),
    };
    let tokens = dims
        .iter()
        .try_fold(1usize, |t, &x| t.checked_mul(x as usize))
        .ok_or_else(|| Error::InvalidArgument {
            op: "bench",
            detail: format!("the token grid {dims:?} has more tokens than fit in memory"),
        })?;
    let mut shape = vec![a.batch, a.heads];
    shape.extend(dims.iter().map(|&x| x as usize));
    shape.push(a.dim);
    let q = upload_random(e, &shape, |n| pseudo_random(n, 1))?;
    let k = upload_random(e, &shape, |n| pseudo_random(n, 2))?;
    let v = upload_random(e, &shape, |n| pseudo_random(n, 3))?;
    let out = e.empty(&shape, DType::F32)?;
    let rpb = if a.rpb {
        let mut rs = vec![a.heads];
        // A kernel size of 0 is refused by the op below; here it must not underflow.
        rs.extend(kernel.iter().map(|&k| (2 * k as usize).saturating_sub(1)));
        Some(upload_random(e, &rs, |n| pseudo_random(n, 4))?)
    } else {
        None
    };
    let opts = NaOptions {
        kernel: kernel.clone(),
        dilation,
        causal,
        rpb,
        scale: None,
    };
    let spec = ops::neighborhood_attention(&q, &k, &v, &opts).spec()?;
    let configs: Vec<NeighborhoodConfig> = if a.sweep {
        spec.space(e.profile())
    } else if let Some(key) = &a.config {
        vec![spec.config_by_key(e.profile(), key)?]
    } else {
        vec![e.choose(&spec, None)]
    };
    let min = Duration::from_millis(a.min_ms);
    let volume = spec.window_volume() as f64;
    let flops = 4.0 * a.dim as f64 * volume * (tokens * a.heads * a.batch) as f64;
    let mut rows = Vec::new();
    let mut best: Option<(String, f64)> = None;
    // A sweep also checks every config's output against the default config's: kernels are
    // tested on lavapipe, and this catches a config that is wrong only on this device.
    let output = |cfg: &NeighborhoodConfig| -> Result<Vec<f32>> {
        let mut rec = e.recorder();
        ops::neighborhood_attention(&q, &k, &v, &opts)
            .out(&out)
            .config(cfg.clone())
            .record(&mut rec)?;
        rec.submit()?;
        e.read_f32(&out)
    };
    let reference = if a.sweep {
        Some(output(&spec.default_config(e.profile()))?)
    } else {
        None
    };
    for cfg in configs {
        let key = spec.key(&cfg);
        if let Some(want) = &reference {
            let err = output(&cfg).map(|got| nmse(&got, want));
            let bad = match err {
                Ok(x) if x <= MAX_NMSE => None,
                Ok(x) => Some(format!(
                    "output differs from the default config's: NMSE {x:e}"
                )),
                Err(err) => Some(err.to_string()),
            };
            if let Some(why) = bad {
                if !a.json {
                    println!("{key:<44} rejected: {why}");
                }
                rows.push(json!({"config": key, "error": why}));
                continue;
            }
        }
        let t = bench::time_op(e, min, |rec| {
            ops::neighborhood_attention(&q, &k, &v, &opts)
                .out(&out)
                .config(cfg.clone())
                .record(rec)
                .map(|_| ())
        })
        .map(|t| t.as_secs_f64());
        match t {
            Ok(t) => {
                if !a.json {
                    println!(
                        "{key:<44} {:>9.3} ms {:>9.1} GFLOP/s",
                        t * 1e3,
                        flops / t / 1e9
                    );
                }
                rows.push(json!({"config": key, "time_ms": t * 1e3, "gflops": flops / t / 1e9}));
                if best.as_ref().is_none_or(|(_, bt)| t < *bt) {
                    best = Some((key, t));
                }
            }
            Err(err) if a.sweep => {
                if !a.json {
                    println!("{key:<44} failed: {err}");
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
    // Our dense fused attention over the same tokens, flattened to one sequence.
    let dense = if a.no_dense {
        None
    } else {
        let s = [a.batch, tokens, a.heads, a.dim];
        let dq = upload_random(e, &s, |n| pseudo_random(n, 5))?;
        let dk = upload_random(e, &s, |n| pseudo_random(n, 6))?;
        let dv = upload_random(e, &s, |n| pseudo_random(n, 7))?;
        let dout = e.empty(&s, DType::F32)?;
        let dopts = AttentionOptions::default();
        let dspec = ops::attention(&dq, &dk, &dv, &Default::default()).spec()?;
        let dconfigs = if a.dense_sweep {
            dspec.space(e.profile())
        } else {
            vec![e.choose(&dspec, None)]
        };
        let mut best_dense: Option<(String, f64)> = None;
        for cfg in dconfigs {
            let key = dspec.key(&cfg);
            let td = bench::time_op(e, min, |rec| {
                ops::attention(&dq, &dk, &dv, &dopts)
                    .out(&dout)
                    .config(cfg.clone())
                    .record(rec)
                    .map(|_| ())
            });
            // A dense config that fails on this device simply loses.
            if let Ok(td) = td.map(|t| t.as_secs_f64()) {
                if best_dense.as_ref().is_none_or(|(_, bt)| td < *bt) {
                    best_dense = Some((key, td));
                }
            }
        }
        let (dkey, td) = best_dense.ok_or_else(|| Error::InvalidArgument {
            op: "bench",
            detail: "every dense attention config failed".into(),
        })?;
        Some((dkey, td))
    };
    let dense_key = dense.as_ref().map(|(k, _)| k.clone());
    let dense = dense.map(|(_, td)| td);
    let gflops = flops / t / 1e9;
    let dense_flops = 4.0 * a.dim as f64 * tokens as f64 * (tokens * a.heads * a.batch) as f64;
    let flop_ratio = tokens as f64 / volume;
    // NATTEN's measure: the share of the theoretical speedup (the FLOP ratio) realized, i.e.
    // (t_dense / t_na) / (tokens / volume) = NA's FLOP rate over dense's FLOP rate.
    let realized = dense.map(|td| td / t / flop_ratio);
    // The lenient reading: share of the time the FLOP saving could save that was saved.
    let time_saving = dense.map(|td| (1.0 - t / td) / (1.0 - volume / tokens as f64));
    let counting = "FLOPs = 4 * head_dim * kernel volume per query and head (dense: 4 * head_dim \
                    * tokens per query)";
    let report = json!({
        "bench": "neighborhood",
        "device": e.profile().name,
        "backend": e.profile().backend,
        "dims": dims, "kernel": kernel, "dilation": opts.dilation, "causal": opts.causal,
        "batch": a.batch, "heads": a.heads, "dim": a.dim, "rpb": a.rpb,
        "unchecked_shaders": a.unchecked,
        "config": key,
        "time_ms": t * 1e3,
        "gflops": gflops,
        "flop_counting": counting,
        "dense_config": dense_key,
        "dense_time_ms": dense.map(|td| td * 1e3),
        "dense_gflops": dense.map(|td| dense_flops / td / 1e9),
        "speedup_vs_dense": dense.map(|td| td / t),
        "flop_ratio": flop_ratio,
        "speedup_fraction_of_flop_ratio": realized,
        "time_saving_fraction": time_saving,
        "results": if a.sweep { json!(rows) } else { json!(null) },
    });
    if a.json {
        println!("{}", crate::run_info::stamped(report, Some(&engine)));
    } else {
        println!(
            "neighborhood {dims:?}: best {key}: {:.3} ms, {gflops:.1} GFLOP/s",
            t * 1e3
        );
        println!("({counting})");
        if let (Some(td), Some(r), Some(ts)) = (dense, realized, time_saving) {
            println!(
                "dense attention on {tokens} tokens: {:.3} ms, {:.1} GFLOP/s -> {:.2}x faster \
                 for {flop_ratio:.1}x fewer FLOPs: {:.1}% of the FLOP ratio realized as speedup \
                 ({:.1}% of the possible time saving)",
                td * 1e3,
                dense_flops / td / 1e9,
                td / t,
                100.0 * r,
                100.0 * ts
            );
        }
    }
    Ok(())
}
