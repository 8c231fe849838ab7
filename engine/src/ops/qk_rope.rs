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
    for (name, t) in [("q", q), ("k", k), ("v", v), ("table", table)] {
        expect_f32(OP, t)?;
        expect_single(OP, name, t)?;
    }
    let &[tokens, n_heads, hd] = q.shape() else {
        return Err(shape(format!(
            "q must be [tokens, heads, head_dim], got {:?}",
            q.shape()
        )));
    };
    let co = cache.options().clone();
    let kv = [tokens, co.n_kv_heads, co.head_dim];
    if k.shape() != kv || v.shape() != kv || hd != co.head_dim {
        return Err(shape(format!(
            "k {:?} and v {:?} must be {kv:?} and q's head dim {hd} the cache's {}",
            k.shape(),
            v.shape(),
            co.head_dim
        )));
    }
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
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    let out = rec.empty(q.shape(), DType::F32)?;
    if tokens == 0 {
        return Ok(out);
    }
    let (eps, off) = norms.map(|n| (n.eps, n.w_offset)).unwrap_or((0.0, 0.0));
    let params = spec.params(co.capacity as u32, cache.len() as u32, eps, off);
    let mut binds = vec![
        Bind::whole(q),
        Bind::whole(k),
        Bind::whole(v),
        Bind::whole(table),
    ];
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
