//! `webjit bench block-sparse`: MoBA / VMoBA block-sparse attention against our dense fused
//! attention at the same shape.
//!
//! FLOPs count only attended work: 4 * head_dim per visible (query, key) pair and head, where
//! visible means the query's row selected the key's block (and key <= query if causal), read
//! back from the selection the op returns. Gating (block means, gates, selection) is timed as
//! part of the op but not counted as FLOPs. "Realized saving" is
//! (1 - t_sparse / t_dense) / (1 - flops_sparse / flops_dense).

use std::time::Duration;

use clap::Args;
use serde_json::json;
use webjit_engine::jit::kernels::block_sparse::{BlockLayout, BsAttnConfig, BsAttnSpec};
use webjit_engine::jit::KernelSpec;
use webjit_engine::ops::{
    self, AttentionOptions, BlockSelect, Granularity, Partition, SparseBuffers, SparseConfigs,
    SparseOptions,
};
use webjit_engine::{bench, DeviceOptions, Engine, Error, Result};

use crate::args::{at_least, min_ms, real};
use crate::bench::upload_random;

#[derive(Args, Debug, Clone)]
pub struct BlockSparseArgs {
    /// Tokens (T * H * W with --grid).
    #[arg(long, default_value_t = 4096, value_parser = at_least::<usize>(1))]
    seq: usize,
    #[arg(long, default_value_t = 8, value_parser = at_least::<usize>(1))]
    heads: usize,
    /// KV heads (grouped-query attention); defaults to --heads.
    #[arg(long, value_parser = at_least::<usize>(1))]
    kv_heads: Option<usize>,
    #[arg(long, default_value_t = 64, value_parser = at_least::<usize>(1))]
    dim: usize,
    #[arg(long, default_value_t = 1, value_parser = at_least::<usize>(1))]
    batch: usize,
    /// Block size in tokens (1-D), or the box as TxHxW with --grid.
    #[arg(long, default_value = "64")]
    block: String,
    /// Token grid TxHxW (VMoBA 2-D / 3-D partitions); default: a 1-D sequence.
    #[arg(long)]
    grid: Option<String>,
    #[arg(long, default_value_t = 4, value_parser = at_least::<u32>(1))]
    top_k: u32,
    /// Threshold selection instead of top-k.
    #[arg(long, value_parser = real::<f32>(|_| true, "a finite number"))]
    threshold: Option<f32>,
    #[arg(long)]
    causal: bool,
    /// One selection per query block (gated by its mean query) instead of per query.
    #[arg(long)]
    query_block: bool,
    /// Global selection over all (query block, key block) pairs of a head (implies
    /// --query-block).
    #[arg(long)]
    global: bool,
    /// Per-query selection through the query-major kernel over each query tile's union of
    /// blocks, instead of the key-block-major gather + merge.
    #[arg(long)]
    union: bool,
    /// Attention kernel config by key (see --sweep); default: the heuristic default.
    #[arg(long)]
    config: Option<String>,
    /// Time every config of the attention kernel's space.
    #[arg(long)]
    sweep: bool,
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

fn dims(what: &str, s: &str) -> Result<Vec<u32>> {
    s.split('x')
        .map(|x| x.trim().parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::InvalidArgument {
            op: "bench",
            detail: format!("--{what} must be numbers separated by x, got {s}"),
        })
}

fn options(a: &BlockSparseArgs) -> Result<SparseOptions> {
    let block = dims("block", &a.block)?;
    let (partition, block) = match (a.grid.as_deref(), block.as_slice()) {
        (None, &[b]) => (Partition::D1, [1, 1, b]),
        (Some(g), bl) => {
            let g = dims("grid", g)?;
            match (g.as_slice(), bl) {
                (&[h, w], &[bh, bw]) => (Partition::D2 { h, w }, [1, bh, bw]),
                (&[t, h, w], &[bt, bh, bw]) => (Partition::D3 { t, h, w }, [bt, bh, bw]),
                _ => {
                    return Err(Error::InvalidArgument {
                        op: "bench",
                        detail: "--grid HxW or TxHxW needs --block with as many extents".into(),
                    })
                }
            }
        }
        _ => {
            return Err(Error::InvalidArgument {
                op: "bench",
                detail: "--block must be one number without --grid".into(),
            })
        }
    };
    Ok(SparseOptions {
        block,
        select: match a.threshold {
            Some(t) => BlockSelect::Threshold(t),
            None => BlockSelect::TopK(a.top_k),
        },
        partition,
        causal: a.causal,
        global: a.global,
        granularity: if a.query_block || a.global {
            Granularity::QueryBlock
        } else {
            Granularity::Query
        },
        scale: None,
        return_selection: true,
    })
}

/// Visible (query, key) pairs over all batch entries and heads, from the selection lists.
fn attended_pairs(e: &Engine, l: &BlockLayout, bufs: &SparseBuffers, causal: bool) -> Result<f64> {
    let Some(sel) = &bufs.selection else {
        return Ok(0.0);
    };
    let lists = sel.read(e)?;
    let seq = l.seq as usize;
    let nb = l.n_blocks() as usize;
    let [_, gh, gw] = l.grid.map(|x| x as usize);
    let [bt, bh, bw] = l.block.map(|x| x as usize);
    let [_, nh, nw] = l.blocks_per_axis().map(|x| x as usize);
    let block_of = |t: usize| {
        let (ti, hi, wi) = (t / (gh * gw), (t / gw) % gh, t % gw);
        ((ti / bt) * nh + hi / bh) * nw + wi / bw
    };
    let mut tokens: Vec<Vec<usize>> = vec![Vec::new(); nb];
    for t in 0..seq {
        tokens[block_of(t)].push(t);
    }
    let [rb, rh, rows] = sel.dims;
    let mut pairs = 0u64;
    for bhi in 0..rb * rh {
        for i in 0..seq {
            let row = if sel.per_query { i } else { block_of(i) };
            for &kb in &lists[bhi * rows + row] {
                let toks = &tokens[kb as usize];
                pairs += if causal {
                    toks.partition_point(|&j| j <= i) as u64
                } else {
                    toks.len() as u64
                };
            }
        }
    }
    // Shared (static) masks count once for every batch entry and head.
    let reps = (l.batch * l.n_heads) as usize / (rb * rh);
    Ok(pairs as f64 * reps as f64)
}

pub fn run(a: BlockSparseArgs) -> Result<()> {
    let e = Engine::new_blocking(DeviceOptions {
        unchecked_shaders: a.unchecked,
        ..Default::default()
    })?;
    let min = Duration::from_millis(a.min_ms);
    let kvh = a.kv_heads.unwrap_or(a.heads);
    let (b, s, d) = (a.batch, a.seq, a.dim);
    let q = upload_random(&e, &[b, s, a.heads, d], |n| pseudo_random(n, 1))?;
    let k = upload_random(&e, &[b, s, kvh, d], |n| pseudo_random(n, 2))?;
    let v = upload_random(&e, &[b, s, kvh, d], |n| pseudo_random(n, 3))?;
    let opts = options(&a)?;
    let l = ops::block_sparse_attention(&q, &k, &v, &opts).spec()?;
    let bufs = SparseBuffers::new(&e, &l, &opts, a.union)?;
    let gather = bufs.gathers();
    let spec = BsAttnSpec {
        layout: l.clone(),
        gather,
    };
    let configs: Vec<BsAttnConfig> = if a.sweep {
        spec.space(e.profile())
    } else if let Some(key) = &a.config {
        vec![spec.config_by_key(e.profile(), key)?]
    } else {
        vec![spec.default_config(e.profile())]
    };
    let mut rows = Vec::new();
    let mut best: Option<(String, f64)> = None;
    for cfg in configs {
        let cfgs = SparseConfigs {
            attend: (!gather).then(|| cfg.clone()),
            gather: gather.then(|| cfg.clone()),
            union_per_query: a.union,
            ..Default::default()
        };
        let t = bench::time_op(&e, min, |rec| {
            ops::block_sparse_attention(&q, &k, &v, &opts)
                .buffers(&bufs)
                .config(cfgs.clone())
                .record(rec)
                .map(|_| ())
        });
        let key = spec.key(&cfg);
        match t {
            Ok(t) => {
                let t = t.as_secs_f64();
                rows.push(json!({"config": key, "time_ms": t * 1e3}));
                if !a.json {
                    println!("{key:<52} {:>9.3} ms", t * 1e3);
                }
                if best.as_ref().is_none_or(|(_, bt)| t < *bt) {
                    best = Some((key, t));
                }
            }
            Err(err) if a.sweep => rows.push(json!({"config": key, "error": err.to_string()})),
            Err(err) => return Err(err),
        }
    }
    let (key, t) = best.ok_or_else(|| Error::InvalidArgument {
        op: "bench",
        detail: "every config failed".into(),
    })?;
    // Gating alone (block means, gates, selection) with the winning attention config's
    // defaults for the other kernels: the rest of the time is attention (and merge).
    let t_select = if bufs.selection.is_some() && !matches!(opts.select, BlockSelect::Mask(_)) {
        let cfgs = SparseConfigs {
            union_per_query: a.union,
            ..Default::default()
        };
        Some(
            bench::time_op(&e, min, |rec| {
                ops::block_sparse_attention(&q, &k, &v, &opts)
                    .buffers(&bufs)
                    .select_only()
                    .config(cfgs.clone())
                    .record(rec)
                    .map(|_| ())
            })?
            .as_secs_f64(),
        )
    } else {
        None
    };
    // Run once more so the selection read below is the op's own.
    let mut rec = e.recorder();
    ops::block_sparse_attention(&q, &k, &v, &opts)
        .buffers(&bufs)
        .config(
            SparseConfigs {
                union_per_query: a.union,
                ..Default::default()
            }
            .clone(),
        )
        .record(&mut rec)
        .map(|_| ())?;
    rec.submit()?;
    let pairs = attended_pairs(&e, &l, &bufs, a.causal)?;
    let flops = 4.0 * d as f64 * pairs;

    // Dense fused attention on the same tokens.
    let out = e.empty(&[b, s, a.heads, d], webjit_engine::DType::F32)?;
    let dense_opts = AttentionOptions {
        causal: a.causal,
        ..Default::default()
    };
    let t_dense = bench::time_op(&e, min, |rec| {
        ops::attention(&q, &k, &v, &dense_opts)
            .out(&out)
            .record(rec)
            .map(|_| ())
    })?
    .as_secs_f64();
    let dense_pairs = if a.causal {
        (s * (s + 1) / 2) as f64
    } else {
        (s * s) as f64
    } * (b * a.heads) as f64;
    let dense_flops = 4.0 * d as f64 * dense_pairs;
    let flop_saving = 1.0 - flops / dense_flops;
    let time_saving = 1.0 - t / t_dense;
    let realized = if flop_saving > 0.0 {
        Some(time_saving / flop_saving)
    } else {
        None
    };
    let counting = "FLOPs = 4 * head_dim * attended (query, key) pairs * heads * batch; gating \
                    timed but not counted";
    let report = json!({
        "bench": "block_sparse",
        "device": e.profile().name,
        "backend": e.profile().backend,
        "batch": b, "seq": s, "heads": a.heads, "kv_heads": kvh, "dim": d,
        "block": opts.block, "partition": format!("{:?}", opts.partition),
        "select": format!("{:?}", opts.select), "granularity": format!("{:?}", opts.granularity),
        "global": a.global, "causal": a.causal, "unchecked_shaders": a.unchecked,
        "n_blocks": l.n_blocks(),
        "path": if gather { "gather+merge" } else { "attend" },
        "config": key,
        "time_ms": t * 1e3,
        "select_time_ms": t_select.map(|x| x * 1e3),
        "gflops": flops / t / 1e9,
        "attended_fraction": flops / dense_flops,
        "dense_time_ms": t_dense * 1e3,
        "dense_gflops": dense_flops / t_dense / 1e9,
        "speedup_vs_dense": t_dense / t,
        "flop_saving": flop_saving,
        "time_saving": time_saving,
        "realized_saving": realized,
        "flop_counting": counting,
        "results": if a.sweep { json!(rows) } else { json!(null) },
    });
    if a.json {
        println!("{}", crate::run_info::stamped(report, Some(&e)));
    } else {
        println!(
            "block-sparse ({} blocks, {:?}): best {key}: {:.3} ms, {:.1} GFLOP/s attended \
             ({:.1}% of dense pairs)",
            l.n_blocks(),
            opts.select,
            t * 1e3,
            flops / t / 1e9,
            100.0 * flops / dense_flops
        );
        println!(
            "dense attention: {:.3} ms, {:.1} GFLOP/s -> speedup {:.2}x, realized {:.0}% of the \
             FLOP saving",
            t_dense * 1e3,
            dense_flops / t_dense / 1e9,
            t_dense / t,
            100.0 * realized.unwrap_or(0.0)
        );
        if let Some(ts) = t_select {
            println!("of which gating + selection: {:.3} ms", ts * 1e3);
        }
        println!("({counting})");
    }
    Ok(())
}
