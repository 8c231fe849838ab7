//! `webjit tune`: tunes the standard set of problems (the f32 kernels at Gemma 3 270M's shapes
//! for a 128-token prompt) on this device, prints a table, and saves the records.

use std::time::{Duration, Instant};

use serde_json::json;
use webjit_engine::jit::kernels::elementwise::EwOp;
use webjit_engine::jit::kernels::rope::RopeLayout;
use webjit_engine::jit::kernels::rowwise::RowOp;
use webjit_engine::tune::{FileStore, TuneOptions, TuneReport};
use webjit_engine::{ops, DeviceOptions, Engine, Error, Result};

pub struct TuneArgs {
    pub budget_s: f64,
    pub json: bool,
    pub export: Option<std::path::PathBuf>,
    pub import: Option<std::path::PathBuf>,
    pub no_save: bool,
    /// Tune the kernels of this GGUF decoder at its shapes instead of the standard set
    /// (a `--model` argument: path, short name or http:// URL).
    pub model: Option<String>,
    /// With `model`: the prompt length of the prefill problems.
    pub prompt_tokens: usize,
    /// Shaders without bounds checks (a separate set of records).
    pub unchecked: bool,
    /// No approximate candidates (the int8 matvec).
    pub exact: bool,
    /// With `model`: the KV cache format the model will run with (None: the default).
    pub kv_cache: Option<webjit_engine::kv_cache::KvDType>,
}

/// Seeded values in [-0.5, 0.5) (never zeros, which would hide wrong candidates).
fn filled(e: &Engine, shape: &[usize], seed: u32) -> Result<webjit_engine::Tensor> {
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

pub fn run(args: TuneArgs) -> Result<()> {
    if let (Some(kv), None) = (args.kv_cache, &args.model) {
        return Err(Error::InvalidArgument {
            op: "tune",
            detail: format!(
                "--kv-cache {} needs --model: the standard set has no decode attention to tune \
                 for it",
                kv.name()
            ),
        });
    }
    // Only the header is read: for a URL, its header bytes are fetched into a temporary file.
    let header = match &args.model {
        Some(m) => Some(crate::model_ref::resolve(m, "tune")?.header_file("tune")?),
        None => None,
    };
    let e = Engine::new_blocking(DeviceOptions {
        unchecked_shaders: args.unchecked,
        ..DeviceOptions::default()
    })?;
    if let Some(path) = &args.import {
        let n = e.load_tuning(&FileStore { path: path.clone() })?;
        eprintln!("imported {n} records from {}", path.display());
    }
    let t0 = Instant::now();
    let reports = match &header {
        Some(h) => {
            let opts = crate::tune_model::ModelTune {
                budget_s: args.budget_s,
                prompt_tokens: args.prompt_tokens,
                exact: args.exact,
                kv_cache: args.kv_cache,
            };
            crate::tune_model::run(&e, h.path(), &opts)?
        }
        None => standard_set(&e, args.budget_s)?,
    };
    let total_s = t0.elapsed().as_secs_f64();
    let geomean = webjit_engine::tune::geomean_speedup(&reports);
    if !args.no_save {
        if let Some(path) = FileStore::default_path() {
            e.save_tuning(&FileStore { path: path.clone() })?;
            if !args.json {
                println!("saved records to {}", path.display());
            }
        }
    }
    if let Some(path) = &args.export {
        e.save_tuning(&FileStore { path: path.clone() })?;
    }
    if args.json {
        println!(
            "{}",
            crate::run_info::stamped(
                json!({
                    "device": e.profile().name,
                    "fingerprint": e.profile().fingerprint(),
                    "budget_s": args.budget_s,
                    "total_s": total_s,
                    "geomean_speedup": geomean,
                    "kernels": reports,
                }),
                Some(&e)
            )
        );
    } else {
        println!(
            "{:<36} {:<44} {:<44} {:>10} {:>10} {:>7} {:>5} {:>8}",
            "problem", "default", "winner", "default", "tuned", "speedup", "tried", "spent"
        );
        for r in &reports {
            println!(
                "{:<36} {:<44} {:<44} {:>8.1}us {:>8.1}us {:>6.2}x {:>5} {:>6.0}ms",
                r.tune_key,
                r.default_key,
                r.winner_key,
                r.default_us,
                r.tuned_us,
                r.speedup,
                r.tried,
                r.spent_ms
            );
        }
        println!(
            "geometric-mean speedup {geomean:.2}x over {} kernels in {total_s:.1} s on {}",
            reports.len(),
            e.profile().name
        );
    }
    Ok(())
}

/// The standard set: the f32 kernels at Gemma 3 270M's shapes for a 128-token prompt.
fn standard_set(e: &Engine, budget_s: f64) -> Result<Vec<TuneReport>> {
    let (tokens, d, heads, head_dim, ffn) = (128usize, 640usize, 4usize, 256usize, 2048usize);
    let problems = 12.0;
    let opts = TuneOptions {
        budget: Duration::from_secs_f64((budget_s / problems).max(0.05)),
        // Software adapters time noisily at short batches.
        min_batch: Duration::from_millis(if format!("{:?}", e.gpu.info.device_type) == "Cpu" {
            20
        } else {
            5
        }),
        max_nmse: 1e-8,
        exact: true,
    };
    let mut reports = crate::progress::Tally::new(problems as u64, "tuning");
    let x = filled(e, &[tokens, d], 1)?;
    let h = filled(e, &[tokens, ffn], 2)?;
    let hd = filled(e, &[tokens, heads * head_dim], 3)?;
    // Weights in the [out, in] layout (B transposed), as models store them.
    for (n, k, src) in [
        (heads * head_dim, d, &x),
        (head_dim, d, &x),
        (d, heads * head_dim, &hd),
        (ffn, d, &x),
        (d, ffn, &h),
    ] {
        let w = filled(e, &[n, k], 4)?;
        let spec = ops::matmul(src, &w, true).spec()?;
        reports.push(e.tune(&spec, &opts, |rec, c| {
            ops::matmul(src, &w, true).config(c.clone()).record(rec)
        })?);
    }
    let wd = filled(e, &[d], 5)?;
    let wh = filled(e, &[head_dim], 6)?;
    let qk = hd
        .reshape(&[tokens * heads, head_dim])
        .ok_or_else(|| Error::Shape {
            op: "tune",
            detail: "reshape".into(),
        })?;
    for (src, w) in [(&x, &wd), (&qk, &wh)] {
        let spec = webjit_engine::jit::kernels::rowwise::RowwiseSpec {
            op: RowOp::RmsNorm,
            rows: src.rows() as u64,
            cols: src.row_len() as u64,
        };
        reports.push(e.tune(&spec, &opts, |rec, c| {
            ops::rowwise(RowOp::RmsNorm, src, &[w], 1e-6, 1.0)
                .config(c.clone())
                .record(rec)
        })?);
    }
    for (op, y) in [
        (EwOp::GeluTanh, None),
        (EwOp::Mul, Some(&h)),
        (EwOp::Add, None),
    ] {
        let (src, y) = if op == EwOp::Add {
            (&x, Some(&x))
        } else {
            (&h, y)
        };
        let spec = webjit_engine::jit::kernels::elementwise::ElementwiseSpec {
            op,
            len: src.numel() as u64,
            b_len: y.map(|t| t.numel() as u64).unwrap_or(1),
        };
        reports.push(e.tune(&spec, &opts, |rec, c| {
            ops::elementwise(op, src, y, 1.0)
                .config(c.clone())
                .record(rec)
        })?);
    }
    let positions: Vec<u32> = (0..tokens as u32).collect();
    let q3 = hd
        .reshape(&[tokens, heads, head_dim])
        .ok_or_else(|| Error::Shape {
            op: "tune",
            detail: "reshape".into(),
        })?;
    let ropt = ops::RopeOptions {
        layout: RopeLayout::Neox,
        base: 10_000.0,
        rot_dims: None,
    };
    let rspec = webjit_engine::jit::kernels::rope::RopeSpec {
        layout: RopeLayout::Neox,
        tokens: tokens as u64,
        heads: heads as u64,
        head_dim: head_dim as u64,
        rot: head_dim as u64,
    };
    reports.push(e.tune(&rspec, &opts, |rec, c| {
        ops::rope(&q3, &positions, &ropt)
            .config(c.clone())
            .record(rec)
    })?);
    let table = filled(e, &[4096, d], 7)?;
    let ids: Vec<u32> = (0..tokens as u32).map(|i| (i * 31) % 4096).collect();
    let espec = webjit_engine::jit::kernels::embedding::EmbeddingSpec {
        n: tokens as u64,
        dim: d as u64,
        add_rows: 0,
    };
    reports.push(e.tune(&espec, &opts, |rec, c| {
        ops::embedding(&table, &ids, 25.3)
            .config(c.clone())
            .record(rec)
    })?);

    Ok(reports.finish())
}
