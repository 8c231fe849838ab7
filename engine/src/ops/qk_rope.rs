//! The fused q/k preparation of a decode step: per-head RMSNorm (optional), RoPE, and the KV
//! cache append, in one dispatch (`webjit_jit::kernels::qk_rope`).

use webjit_jit::kernels::qk_rope::{QkRopeConfig, QkRopeSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, RopeOptions};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

const OP: &str = "qk_rope";

/// Per-head RMSNorm weights of q and k ([head_dim] each) with their epsilon and weight offset.
#[derive(Clone, Copy)]
pub struct QkNorms<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub eps: f32,
    pub w_offset: f32,
}

/// q [T, n_heads, hd], k and v [T, n_kv_heads, hd] f32 at the positions of `table` (from
/// `rope_table_tensor`, [T, rot / 2, 2]): returns q normed and rotated, and appends k (normed
/// and rotated) and v to `cache` (batch 1, T <= its capacity). The same results as
/// `rms_norm` per head, `rope_with_table` and `KvCache::append`, in one dispatch.
pub fn qk_rope_append(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    norms: Option<QkNorms<'_>>,
    table: &Tensor,
    opts: &RopeOptions,
    cache: &mut KvCache,
    cfg: Option<QkRopeConfig>,
) -> Result<Tensor> {
    let &[tokens, n_heads, hd] = q.shape() else {
        return Err(shape(format!(
            "q must be [tokens, heads, head_dim], got {:?}",
            q.shape()
        )));
    };
    let co = cache.options();
    let kv = [tokens, co.n_kv_heads, co.head_dim];
    if k.shape() != kv || v.shape() != kv || hd != co.head_dim {
        return Err(shape(format!(
            "k {:?} and v {:?} must be {kv:?} and q's head dim {hd} the cache's {}",
            k.shape(),
            v.shape(),
            co.head_dim
        )));
    }
    let src = [(q, 0), (k, 0), (v, 0)];
    qk_rope_impl(rec, src, tokens, n_heads, norms, table, opts, cache, cfg)
}

/// `qk_rope_append` for one token whose q, k (and v) come packed in one row, as the stacked
/// projection writes them: `qkv` [1, n_heads * hd + n_kv * hd (+ n_kv * hd)], with v read from
/// `v` [1, n_kv * hd] when it is not in the row.
#[allow(clippy::too_many_arguments)]
pub fn qk_rope_append_packed(
    rec: &mut Recorder,
    qkv: &Tensor,
    v: Option<&Tensor>,
    n_heads: usize,
    norms: Option<QkNorms<'_>>,
    table: &Tensor,
    opts: &RopeOptions,
    cache: &mut KvCache,
    cfg: Option<QkRopeConfig>,
) -> Result<Tensor> {
    let co = cache.options();
    let (hd, kvw) = (co.head_dim, co.n_kv_heads * co.head_dim);
    let qw = n_heads * hd;
    let want = qw + kvw + if v.is_some() { 0 } else { kvw };
    if qkv.shape() != [1, want] || v.is_some_and(|v| v.numel() != kvw) {
        return Err(shape(format!(
            "packed row {:?} must be [1, {want}] ({n_heads} q heads, {} kv heads of {hd}) and \
             a separate v {kvw} elements",
            qkv.shape(),
            co.n_kv_heads
        )));
    }
    let src = match v {
        Some(v) => [(qkv, 0), (qkv, qw), (v, 0)],
        None => [(qkv, 0), (qkv, qw), (qkv, qw + kvw)],
    };
    qk_rope_impl(rec, src, 1, n_heads, norms, table, opts, cache, cfg)
}

/// Sources are (tensor, element offset) of q, k and v.
#[allow(clippy::too_many_arguments)]
fn qk_rope_impl(
    rec: &mut Recorder,
    src: [(&Tensor, usize); 3],
    tokens: usize,
    n_heads: usize,
    norms: Option<QkNorms<'_>>,
    table: &Tensor,
    opts: &RopeOptions,
    cache: &mut KvCache,
    cfg: Option<QkRopeConfig>,
) -> Result<Tensor> {
    for (name, (t, _)) in ["q", "k", "v"].into_iter().zip(src) {
        expect_f32(OP, t)?;
        expect_single(OP, name, t)?;
    }
    expect_f32(OP, table)?;
    expect_single(OP, "table", table)?;
    let co = cache.options().clone();
    let hd = co.head_dim;
    if co.batch != 1 || tokens > co.capacity {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!(
                "needs a batch-1 cache and at most its {} slots of new positions (batch {}, {tokens} new)",
                co.capacity, co.batch
            ),
        });
    }
    let rot = opts.rot_dims.unwrap_or(hd);
    if table.shape() != [tokens, rot / 2, 2] {
        return Err(shape(format!(
            "table {:?} is not [{tokens}, {}, 2] (one position per token)",
            table.shape(),
            rot / 2
        )));
    }
    if let Some(n) = &norms {
        for (name, w) in [("q norm", n.q), ("k norm", n.k)] {
            expect_f32(OP, w)?;
            if w.numel() != hd {
                return Err(shape(format!(
                    "{name} {:?} must have {hd} elements",
                    w.shape()
                )));
            }
        }
        if !(n.eps.is_finite() && n.eps >= 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("eps must be finite and >= 0, got {}", n.eps),
            });
        }
    }
    let spec = QkRopeSpec {
        layout: opts.layout,
        tokens: tokens as u64,
        n_heads: n_heads as u64,
        n_kv_heads: co.n_kv_heads as u64,
        head_dim: hd as u64,
        rot: rot as u64,
        norm: norms.is_some(),
        kv_dtype: cache.dtype(),
    };
    let end = cache.append_end(tokens)?;
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    let out = rec.empty(&[tokens, n_heads, hd], DType::F32)?;
    if tokens == 0 {
        return Ok(out);
    }
    let (eps, off) = norms.map(|n| (n.eps, n.w_offset)).unwrap_or((0.0, 0.0));
    let mut params = spec.params(co.capacity as u32, cache.len() as u32, eps, off);
    params.q_off = src[0].1 as u32;
    params.k_off = src[1].1 as u32;
    params.v_off = src[2].1 as u32;
    let mut binds: Vec<Bind> = src.iter().map(|(t, _)| Bind::whole(t)).collect();
    binds.push(Bind::whole(table));
    if let Some(n) = &norms {
        binds.push(Bind::whole(n.q));
        binds.push(Bind::whole(n.k));
    }
    binds.push(Bind::whole(&out));
    binds.push(Bind::whole(cache.k()));
    binds.push(Bind::whole(cache.v()));
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &binds,
        spec.dispatch(&c),
    )?;
    cache.set_len(end);
    Ok(out)
}

fn shape(detail: String) -> Error {
    Error::Shape { op: OP, detail }
}
