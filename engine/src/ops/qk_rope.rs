//! The fused q/k preparation of a decode step: per-head RMSNorm (optional), RoPE, and the KV
//! cache append, in one dispatch (`webjit_jit::kernels::qk_rope`).

use webjit_jit::kernels::qk_rope::{QkRopeConfig, QkRopeSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, Call, Op, OpSpec, RopeOptions};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvDType};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};
use webjit_jit::kernels::kv_dtype::KIVI_G;

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
/// `ops::rope_table`, [T, rot / 2, 2]): records q normed and rotated [T, n_heads, hd], and
/// appends k (normed and rotated) and v to `cache` (batch 1, T <= its capacity). The same
/// results as `rms_norm` per head, `rope_with_table` and `kv_append`, in one dispatch.
pub fn qk_rope_append<'a>(
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    norms: Option<QkNorms<'a>>,
    table: &'a Tensor,
    opts: &'a RopeOptions,
    cache: &'a mut KvCache,
) -> Call<'a, QkRope<'a>> {
    Call::new(QkRope {
        src: Src::Separate { q, k, v },
        norms,
        table,
        opts,
        cache,
    })
}

/// `qk_rope_append` for one token whose q, k (and v) come packed in one row, as the stacked
/// projection writes them: `qkv` [1, n_heads * hd + n_kv * hd (+ n_kv * hd)], with v read from
/// `v` [1, n_kv * hd] when it is not in the row.
pub fn qk_rope_append_packed<'a>(
    qkv: &'a Tensor,
    v: Option<&'a Tensor>,
    n_heads: usize,
    norms: Option<QkNorms<'a>>,
    table: &'a Tensor,
    opts: &'a RopeOptions,
    cache: &'a mut KvCache,
) -> Call<'a, QkRope<'a>> {
    Call::new(QkRope {
        src: Src::Packed { qkv, v, n_heads },
        norms,
        table,
        opts,
        cache,
    })
}

/// q, k and v as (tensor, element offset), the token count and the q heads.
type Sources<'a> = ([(&'a Tensor, usize); 3], usize, usize);

/// Where q, k and v come from.
#[derive(Clone, Copy)]
enum Src<'a> {
    Separate {
        q: &'a Tensor,
        k: &'a Tensor,
        v: &'a Tensor,
    },
    Packed {
        qkv: &'a Tensor,
        v: Option<&'a Tensor>,
        n_heads: usize,
    },
}

pub struct QkRope<'a> {
    src: Src<'a>,
    norms: Option<QkNorms<'a>>,
    table: &'a Tensor,
    opts: &'a RopeOptions,
    cache: &'a mut KvCache,
}

impl<'a> QkRope<'a> {
    /// Sources as (tensor, element offset) of q, k and v, the token count and the q heads.
    fn sources(&self) -> Result<Sources<'a>> {
        let co = self.cache.options();
        match self.src {
            Src::Separate { q, k, v } => {
                let &[tokens, n_heads, hd] = q.shape() else {
                    return Err(shape(format!(
                        "q must be [tokens, heads, head_dim], got {:?}",
                        q.shape()
                    )));
                };
                let kv = [tokens, co.n_kv_heads, co.head_dim];
                if k.shape() != kv || v.shape() != kv || hd != co.head_dim {
                    return Err(shape(format!(
                        "k {:?} and v {:?} must be {kv:?} and q's head dim {hd} the cache's {}",
                        k.shape(),
                        v.shape(),
                        co.head_dim
                    )));
                }
                Ok(([(q, 0), (k, 0), (v, 0)], tokens, n_heads))
            }
            Src::Packed { qkv, v, n_heads } => {
                let (hd, kvw) = (co.head_dim, co.n_kv_heads * co.head_dim);
                let qw = n_heads * hd;
                let want = qw + kvw + if v.is_some() { 0 } else { kvw };
                if qkv.shape() != [1, want] || v.is_some_and(|v| v.numel() != kvw) {
                    return Err(shape(format!(
                        "packed row {:?} must be [1, {want}] ({n_heads} q heads, {} kv heads of \
                         {hd}) and a separate v {kvw} elements",
                        qkv.shape(),
                        co.n_kv_heads
                    )));
                }
                let src = match v {
                    Some(v) => [(qkv, 0), (qkv, qw), (v, 0)],
                    None => [(qkv, 0), (qkv, qw), (qkv, qw + kvw)],
                };
                Ok((src, 1, n_heads))
            }
        }
    }

    fn spec_of(&self, tokens: usize, n_heads: usize) -> QkRopeSpec {
        let co = self.cache.options();
        let hd = co.head_dim;
        QkRopeSpec {
            layout: self.opts.layout,
            tokens: tokens as u64,
            n_heads: n_heads as u64,
            n_kv_heads: co.n_kv_heads as u64,
            head_dim: hd as u64,
            rot: self.opts.rot_dims.unwrap_or(hd) as u64,
            norm: self.norms.is_some(),
            kv_dtype: self.cache.dtype(),
            hadamard: self.cache.key_rotation().unwrap_or(0) as u64,
        }
    }

    /// A replay: the same step over a view of the cache at this step's position.
    fn replay(&self) -> ReplayFactory<'static, QkRopeConfig> {
        let owned = match self.src {
            Src::Separate { q, k, v } => (q.clone(), Some(k.clone()), Some(v.clone()), 0),
            Src::Packed { qkv, v, n_heads } => (qkv.clone(), None, v.cloned(), n_heads),
        };
        let norms = self
            .norms
            .map(|n| (n.q.clone(), n.k.clone(), n.eps, n.w_offset));
        let (table, opts, view) = (self.table.clone(), self.opts.clone(), self.cache.view());
        ReplayFactory::ready(move |rec, c: &QkRopeConfig| {
            let mut cache = view.view();
            let norms = norms.as_ref().map(|(q, k, eps, w_offset)| QkNorms {
                q,
                k,
                eps: *eps,
                w_offset: *w_offset,
            });
            let call = match &owned {
                (q, Some(k), Some(v), _) => {
                    qk_rope_append(q, k, v, norms, &table, &opts, &mut cache)
                }
                (qkv, _, v, n_heads) => qk_rope_append_packed(
                    qkv,
                    v.as_ref(),
                    *n_heads,
                    norms,
                    &table,
                    &opts,
                    &mut cache,
                ),
            };
            call.config(c.clone()).record(rec)
        })
    }
}

impl OpSpec for QkRope<'_> {
    type Spec = QkRopeSpec;
    fn spec(&self) -> Result<QkRopeSpec> {
        let (_, tokens, n_heads) = self.sources()?;
        Ok(self.spec_of(tokens, n_heads))
    }
}

impl Op for QkRope<'_> {
    type Config = QkRopeConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<QkRopeConfig>,
    ) -> Result<Tensor> {
        no_out(OP, out)?;
        let (src, tokens, n_heads) = self.sources()?;
        let end = self.cache.append_end(tokens)?;
        let kivi = self.cache.dtype() == KvDType::Kivi2;
        if kivi && tokens as u64 > KIVI_G {
            // Its residual window holds two groups: more rows at once would overwrite rows of
            // a group before the flush reads them.
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "a kivi2 cache takes at most {KIVI_G} positions per step, got {tokens}"
                ),
            });
        }
        let out = qk_rope_impl(rec, &self, src, tokens, n_heads, cfg)?;
        if kivi {
            // Every row is in the residual window now (the flush binds `out` as unused rows).
            let pos = self.cache.len();
            super::kv_append::kivi_flush(rec, self.cache, pos, tokens, (&out, &out, end))?;
        }
        self.cache.set_len(end);
        Ok(out)
    }
}

/// Sources are (tensor, element offset) of q, k and v.
fn qk_rope_impl(
    rec: &mut Recorder,
    op: &QkRope<'_>,
    src: [(&Tensor, usize); 3],
    tokens: usize,
    n_heads: usize,
    cfg: Option<QkRopeConfig>,
) -> Result<Tensor> {
    let (norms, table, opts) = (op.norms, op.table, op.opts);
    let cache = &*op.cache;
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
    let spec = op.spec_of(tokens, n_heads);
    let (c, kernel) = rec.kernel(&spec, cfg, || op.replay())?;
    let out = rec.empty(&[tokens, n_heads, hd], DType::F32)?;
    if tokens == 0 {
        return Ok(out);
    }
    let (eps, off) = norms.map(|n| (n.eps, n.w_offset)).unwrap_or((0.0, 0.0));
    let mut params = spec.params(co.capacity as u32, cache.len() as u32, eps, off);
    params.q_off = src[0].1 as u32;
    params.k_off = src[1].1 as u32;
    params.v_off = src[2].1 as u32;
    let mut binds: Vec<Bind> = ["q", "k", "v"]
        .into_iter()
        .zip(src)
        .map(|(n, (t, _))| Bind::whole(n, t))
        .collect();
    binds.push(Bind::whole("cs", table));
    if let Some(n) = &norms {
        binds.push(Bind::whole("qn", n.q));
        binds.push(Bind::whole("kn", n.k));
    }
    binds.push(Bind::whole("q_out", &out));
    binds.push(Bind::whole("kc", cache.k()));
    binds.push(Bind::whole("vc", cache.v()));
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &binds,
        spec.dispatch(&c),
    )?;
    Ok(out)
}

fn shape(detail: String) -> Error {
    Error::Shape { op: OP, detail }
}
