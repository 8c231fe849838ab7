//! Decode attention against a `KvCache`: one query row per head, split over the cache length
//! (pass 1 writes per-split softmax partials to scratch) and merged by a second pass.

use webjit_jit::kernels::attention_decode::{
    DecodeConfig, DecodeReduceConfig, DecodeReduceSpec, DecodeSpec,
};
use webjit_jit::KernelSpec;

use super::attention::scale_and_cap;
use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

const OP: &str = "attention_decode";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeOptions {
    /// Attend only the last `window` positions (sliding-window layers).
    pub window: Option<u32>,
    /// Softmax scale; `None` = `1/sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Logit soft-capping `cap * tanh(s / cap)` after scaling.
    pub softcap: Option<f32>,
}

/// q [batch, n_heads, head_dim] f32 (the newest position, already appended to `cache`).
/// Returns [batch, n_heads, head_dim].
pub fn attention_decode(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    opts: &DecodeOptions,
) -> Result<Tensor> {
    attention_decode_with(rec, q, cache, opts, None, None)
}

/// The pass-1 spec of this step (benchmarks and the tuner enumerate its space).
pub fn decode_spec(q: &Tensor, cache: &KvCache, opts: &DecodeOptions) -> Result<DecodeSpec> {
    expect_f32(OP, q)?;
    expect_single(OP, "q", q)?;
    let o = cache.options();
    let s = q.shape();
    if s.len() != 3 || s[0] != o.batch || s[2] != o.head_dim || !s[1].is_multiple_of(o.n_kv_heads) {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "q {s:?} must be [{}, n_heads, {}] with n_heads a multiple of {} kv heads",
                o.batch, o.head_dim, o.n_kv_heads
            ),
        });
    }
    let (_, n) = cache.visible(opts.window)?;
    Ok(DecodeSpec {
        batch: o.batch as u64,
        n_heads: s[1] as u64,
        n_kv_heads: o.n_kv_heads as u64,
        head_dim: o.head_dim as u64,
        kv_dtype: cache.dtype(),
        kv_len: n as u64,
    })
}

pub fn attention_decode_with(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    opts: &DecodeOptions,
    cfg: Option<DecodeConfig>,
    reduce_cfg: Option<DecodeReduceConfig>,
) -> Result<Tensor> {
    decode_spec(q, cache, opts)?; // validate before allocating
    let out = rec.empty(q.shape(), DType::F32)?;
    attention_decode_into(rec, q, cache, opts, &out, cfg, reduce_cfg)?;
    Ok(out)
}

/// `attention_decode_with` writing into an existing output of q's shape.
pub fn attention_decode_into(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    opts: &DecodeOptions,
    out: &Tensor,
    cfg: Option<DecodeConfig>,
    reduce_cfg: Option<DecodeReduceConfig>,
) -> Result<()> {
    let spec = decode_spec(q, cache, opts)?;
    expect_f32(OP, out)?;
    expect_single(OP, "out", out)?;
    if out.shape() != q.shape() {
        return Err(Error::Shape {
            op: OP,
            detail: format!("out {:?} must have q's shape {:?}", out.shape(), q.shape()),
        });
    }
    let (scale, cap) = scale_and_cap(spec.head_dim as usize, opts.scale, opts.softcap)?;
    let (kv_start, _) = cache.visible(opts.window)?;
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    let params = spec.params(&c, cache.options().capacity as u32, kv_start, scale, cap);
    if c.single_pass() {
        return rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole(q),
                Bind::whole(cache.k()),
                Bind::whole(cache.v()),
                Bind::whole(out),
            ],
            spec.dispatch(&c),
        );
    }
    let rows = spec.batch as usize * spec.n_heads as usize * params.n_split as usize;
    let part_ml = rec.empty(&[rows, 2], DType::F32)?;
    let part_acc = rec.empty(&[rows, spec.head_dim as usize], DType::F32)?;
    for t in [&part_ml, &part_acc] {
        expect_single(OP, "scratch", t)?;
    }
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            Bind::whole(q),
            Bind::whole(cache.k()),
            Bind::whole(cache.v()),
            Bind::whole(&part_ml),
            Bind::whole(&part_acc),
        ],
        spec.dispatch(&c),
    )?;
    let rspec = DecodeReduceSpec {
        batch: spec.batch,
        n_heads: spec.n_heads,
        head_dim: spec.head_dim,
    };
    let (rc, rkernel) = engine.kernel_for(&rspec, reduce_cfg)?;
    rec.dispatch(
        &rkernel,
        bytemuck::bytes_of(&params),
        &[
            Bind::whole(&part_ml),
            Bind::whole(&part_acc),
            Bind::whole(out),
        ],
        rspec.dispatch(&rc),
    )
}
