//! One transformer block, read top-down: pre-norm, attention (a decode step's or a prompt's),
//! output projection, residual with the FFN's pre-norm, gated FFN, residual. Each part follows
//! the layer's plan; none names a kernel beyond the op it calls.

use super::linear::{AddNormIn, QkvOut};
use super::matrix::Matrix;
use super::plan::{LayerPlan, QkNormPlan};
use super::weights::Layer;
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::model::llm_config::DecoderConfig;
use crate::ops::{self, AttentionOptions, DecodeOptions, QkNorms};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

/// Where a step's tokens come from.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    Host(&'a [u32]),
    /// One token id in a GPU buffer ([1] u32, e.g. the head of the sampler's result).
    Gpu(&'a Tensor),
}

/// What the blocks of one step share: the tokens' positions and one RoPE (cos, sin) table per
/// frequency base.
pub(crate) struct Step {
    pub positions: Vec<u32>,
    tables: Vec<(f64, Tensor)>,
}

impl Step {
    pub fn new(positions: Vec<u32>) -> Self {
        Self {
            positions,
            tables: Vec::with_capacity(2),
        }
    }

    fn tokens(&self) -> usize {
        self.positions.len()
    }

    /// The table of `plan`'s RoPE base, made on first use in the step: [T, rot / 2, 2]. The
    /// model's frequency factors and scaling (`cfg.rope`) are the same for every layer.
    fn table(
        &mut self,
        rec: &mut Recorder,
        plan: &LayerPlan,
        cfg: &DecoderConfig,
    ) -> Result<&Tensor> {
        let base = plan.rope.base;
        let i = match self.tables.iter().position(|(b, _)| *b == base) {
            Some(i) => i,
            None => {
                let rot = plan.rope.rot_dims.unwrap_or(cfg.head_dim);
                let t = ops::rope_table_with(rec, &self.positions, rot, base, &cfg.rope)?;
                self.tables.push((base, t));
                self.tables.len() - 1
            }
        };
        Ok(&self.tables[i].1)
    }
}

/// A block's input: the hidden state x [T, d_model] and, when the previous block computed it
/// in its last pass, x already normed by this block's `attn_norm`. Or, in a decode step, the
/// previous block's last residual add not made yet (`pending`): the hidden state is
/// `x + [rms_norm(f) * post | f]`, made together with this block's pre-norm inside its q/k/v
/// matvec, or by `settle`.
pub(crate) struct BlockInput {
    x: Tensor,
    normed: Option<Tensor>,
    pending: Option<Pending>,
}

/// The FFN output f and the post-norm it takes before the residual add.
struct Pending {
    f: Tensor,
    post: Option<Tensor>,
}

impl BlockInput {
    pub fn new(x: Tensor) -> Self {
        Self {
            x,
            normed: None,
            pending: None,
        }
    }

    /// The hidden state [T, d_model] (an error where the last add is still pending: only a
    /// block or `settle` makes it).
    pub fn hidden(self) -> Result<Tensor> {
        match self.pending {
            None => Ok(self.x),
            Some(_) => Err(Error::InvalidArgument {
                op: "decoder",
                detail: "the hidden state's last residual add is still pending".into(),
            }),
        }
    }

    /// The add_norm still pending, with `norm` as its pre-norm.
    pub fn pending_add<'a>(&'a self, norm: &'a Tensor, eps: f32) -> Option<AddNormIn<'a>> {
        self.pending.as_ref().map(|p| AddNormIn {
            f: &p.f,
            post: p.post.as_ref(),
            res: &self.x,
            pre: norm,
            eps,
        })
    }

    /// (hidden state, normed by `norm` when known or pending): a pending add made by the
    /// rowwise add_norm with `norm` as its pre-norm.
    pub fn settle(
        self,
        rec: &mut Recorder,
        norm: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if let Some(a) = self.pending_add(norm, eps) {
            let (x, h) = a.record(rec)?;
            return Ok((x, Some(h)));
        }
        Ok((self.x, self.normed))
    }
}

/// One block over `input`, appending its K and V to `cache`. With `next_norm` (the next
/// block's `attn_norm`, or the output norm), the block's last pass also norms its output for
/// the next one, saving that block a dispatch.
pub(crate) fn block(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    l: &Layer,
    cache: &mut KvCache,
    input: BlockInput,
    next_norm: Option<&Tensor>,
    step: &mut Step,
) -> Result<BlockInput> {
    // The q/k/v projections of the pre-normed input, with the previous block's pending
    // residual add and this pre-norm folded into them where they can take it.
    let folded = match input.pending_add(&l.attn_norm, cfg.eps) {
        Some(a) => l.qkv.forward_after(rec, &a)?,
        None => None,
    };
    let (x, qkv) = match folded {
        Some(xq) => xq,
        None => {
            let (x, normed) = input.settle(rec, &l.attn_norm, cfg.eps)?;
            let h = match normed {
                Some(h) => h,
                None => ops::rms_norm(&x, &l.attn_norm, cfg.eps, 0.0).record(rec)?,
            };
            let qkv = l.qkv.forward(rec, &h)?;
            (x, qkv)
        }
    };
    let attn = if step.tokens() == 1 {
        attention_decode(rec, cfg, l, cache, qkv, step)?
    } else {
        attention_prompt(rec, cfg, l, cache, qkv, step)?
    };
    let o = l.wo.forward(rec, &attn)?;
    // The attention residual and the FFN's pre-norm in one pass (or inside the FFN's matvec).
    let a = AddNormIn {
        f: &o,
        post: l.post_attn_norm.as_ref(),
        res: &x,
        pre: &l.ffn_norm,
        eps: cfg.eps,
    };
    let (x, f) = l.ffn.forward_after(rec, &a)?;
    if next_norm.is_some() && step.tokens() == 1 {
        // A decode step: the next block (or the head) makes the residual add.
        return Ok(BlockInput {
            x,
            normed: None,
            pending: Some(Pending {
                f,
                post: l.post_ffn_norm.clone(),
            }),
        });
    }
    residual(rec, cfg, x, &f, l.post_ffn_norm.as_ref(), next_norm)
}

/// A decode step's attention: q/k norms, RoPE and the KV append in one dispatch (reading q, k
/// and v from the stacked projection's row where the plan stacks them), then split-K
/// attention over the cache. Returns [1, n_heads * head_dim].
fn attention_decode(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    l: &Layer,
    cache: &mut KvCache,
    qkv: QkvOut,
    step: &mut Step,
) -> Result<Tensor> {
    let (plan, hd) = (&l.plan, cfg.head_dim);
    let table = step.table(rec, plan, cfg)?;
    let norms = match (plan.qk_norm, &l.q_norm, &l.k_norm) {
        (QkNormPlan::Both, Some(q), Some(k)) => Some(QkNorms {
            q,
            k,
            eps: cfg.eps,
            w_offset: 0.0,
        }),
        _ => None,
    };
    let q = match qkv {
        QkvOut::Packed(row, v) => ops::qk_rope_append_packed(
            &row,
            v.as_ref(),
            cfg.n_heads,
            norms,
            table,
            &plan.rope,
            cache,
        )
        .record(rec)?,
        QkvOut::Separate(q, k, v) => {
            let (q, k) = match norms {
                Some(_) => (q, k),
                // One norm without the other: applied on its own, the RoPE without norms.
                None => (
                    head_norm(rec, q, l.q_norm.as_ref(), [1, cfg.n_heads, hd], cfg.eps)?,
                    head_norm(rec, k, l.k_norm.as_ref(), [1, cfg.n_kv_heads, hd], cfg.eps)?,
                ),
            };
            let q = reshaped(&q, &[1, cfg.n_heads, hd])?;
            let k = reshaped(&k, &[1, cfg.n_kv_heads, hd])?;
            let v = reshaped(&v, &[1, cfg.n_kv_heads, hd])?;
            ops::qk_rope_append(&q, &k, &v, norms, table, &plan.rope, cache).record(rec)?
        }
    };
    let opts = DecodeOptions {
        window: plan.window,
        scale: Some(cfg.attn_scale),
        softcap: cfg.attn_softcap,
    };
    let q = reshaped(&q, &[1, cfg.n_heads, hd])?;
    let attn = ops::attention_decode(&q, cache, &opts).record(rec)?;
    reshaped(&attn, &[1, cfg.n_heads * hd])
}

/// A prompt's attention (the first tokens of a context): q/k norms and RoPE as row ops, K and
/// V appended to the cache, fused causal attention over the prompt itself.
/// Returns [T, n_heads * head_dim].
fn attention_prompt(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    l: &Layer,
    cache: &mut KvCache,
    qkv: QkvOut,
    step: &mut Step,
) -> Result<Tensor> {
    let (plan, hd, t) = (&l.plan, cfg.head_dim, step.tokens());
    let (q, k, v) = match qkv {
        QkvOut::Separate(q, k, v) => (q, k, v),
        QkvOut::Packed(..) => {
            return Err(Error::InvalidArgument {
                op: "decoder",
                detail: "a prompt's q/k/v came packed".into(),
            })
        }
    };
    let q = head_norm(rec, q, l.q_norm.as_ref(), [t, cfg.n_heads, hd], cfg.eps)?;
    let k = head_norm(rec, k, l.k_norm.as_ref(), [t, cfg.n_kv_heads, hd], cfg.eps)?;
    let table = step.table(rec, plan, cfg)?;
    let q = ops::rope_with_table(&q, table, &plan.rope).record(rec)?;
    let k = ops::rope_with_table(&k, table, &plan.rope).record(rec)?;
    // A q8_0 / q4_0 cache stores its keys rotated: the queries meet them rotated alike.
    let (q, k) = match cache.key_rotation() {
        Some(n) => (
            ops::hadamard(&q, n).record(rec)?,
            ops::hadamard(&k, n).record(rec)?,
        ),
        None => (q, k),
    };
    let k4 = reshaped(&k, &[1, t, cfg.n_kv_heads, hd])?;
    let v4 = reshaped(&v, &[1, t, cfg.n_kv_heads, hd])?;
    ops::kv_append(cache, &k4, &v4).record(rec)?;
    let q4 = reshaped(&q, &[1, t, cfg.n_heads, hd])?;
    let opts = AttentionOptions {
        causal: true,
        window: plan.window,
        scale: Some(cfg.attn_scale),
        softcap: cfg.attn_softcap,
        ..Default::default()
    };
    let attn = ops::attention(&q4, &k4, &v4, &opts).record(rec)?;
    reshaped(&attn, &[t, cfg.n_heads * hd])
}

/// The FFN's residual: `x + post_norm(f)`, and with `next_norm` the next pre-norm of it in
/// the same pass.
fn residual(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    x: Tensor,
    f: &Tensor,
    post_norm: Option<&Tensor>,
    next_norm: Option<&Tensor>,
) -> Result<BlockInput> {
    let eps = cfg.eps;
    Ok(match (next_norm, post_norm) {
        (Some(w), _) => {
            let (x, h) = ops::add_norm(f, post_norm, &x, w, eps, 0.0).record(rec)?;
            BlockInput {
                x,
                normed: Some(h),
                pending: None,
            }
        }
        (None, Some(w)) => BlockInput::new(ops::rms_norm_add(f, w, &x, eps, 0.0).record(rec)?),
        (None, None) => BlockInput::new(ops::add(&x, f).record(rec)?),
    })
}

/// Token embeddings of the step's `t` tokens, scaled: [t, d_model].
pub(crate) fn embed(
    rec: &mut Recorder,
    cfg: &DecoderConfig,
    table: &Matrix,
    input: Input<'_>,
    t: usize,
) -> Result<Tensor> {
    let scale = cfg.embed_scale;
    match (table, input) {
        (Matrix::Quantized(table), Input::Host(tokens)) => {
            let ids = rec.upload_u32(&[t], tokens)?;
            ops::qembedding(table, &ids, scale).record(rec)
        }
        (Matrix::Quantized(table), Input::Gpu(id)) => ops::qembedding(table, id, scale).record(rec),
        (Matrix::Dense(table), Input::Host(tokens)) => {
            ops::embedding(table, tokens, scale).record(rec)
        }
        (Matrix::Dense(table), Input::Gpu(id)) => {
            ops::embedding_gpu_ids(table, id, scale).record(rec)
        }
    }
}

/// The last of x's rows [T, d] as [1, d] (the only position whose logits are wanted).
pub(crate) fn last_row(rec: &mut Recorder, x: Tensor) -> Result<Tensor> {
    let &[t, d] = x.shape() else {
        return Err(Error::Shape {
            op: "decoder",
            detail: format!("hidden state {:?} is not [T, d]", x.shape()),
        });
    };
    if t == 1 {
        return Ok(x);
    }
    let row = rec.empty(&[1, d], DType::F32)?;
    let bytes = (d * 4) as u64;
    rec.copy(
        &x.segments()[0].buffer,
        bytes * (t as u64 - 1),
        &row.segments()[0].buffer,
        0,
        bytes,
    );
    Ok(row)
}

/// Per-head RMSNorm of q or k ([T, heads * hd] -> [T, heads, hd]).
fn head_norm(
    rec: &mut Recorder,
    x: Tensor,
    w: Option<&Tensor>,
    shape: [usize; 3],
    eps: f32,
) -> Result<Tensor> {
    match w {
        Some(w) => {
            let flat = reshaped(&x, &[shape[0] * shape[1], shape[2]])?;
            let y = ops::rms_norm(&flat, w, eps, 0.0).record(rec)?;
            reshaped(&y, &shape)
        }
        None => reshaped(&x, &shape),
    }
}

pub(crate) fn reshaped(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    t.reshape(shape).ok_or_else(|| Error::Shape {
        op: "reshape",
        detail: format!("{:?} cannot be viewed as {shape:?}", t.shape()),
    })
}
