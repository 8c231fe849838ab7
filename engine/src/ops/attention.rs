//! Fused prefill attention: `ops::attention(q, k, v, &AttentionOptions)`.

use webjit_jit::kernels::attention::{AttentionConfig, AttentionSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "attention";

/// What to attend to and how to scale. `Default` is bidirectional, no window, scale
/// `1/sqrt(head_dim)`, no soft-capping, no padding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttentionOptions {
    /// Query at position P sees keys at positions <= P.
    pub causal: bool,
    /// Sliding window: the query at P sees keys with `P - j < window` (and `j - P < window`
    /// when not causal). Only KV tiles inside the window are visited.
    pub window: Option<u32>,
    /// Softmax scale; `None` = `1/sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Logit soft-capping `cap * tanh(s / cap)` after scaling (Gemma 2).
    pub softcap: Option<f32>,
    /// Valid keys per batch entry (right padding of batched encoders); `None` = all `seq_kv`.
    pub kv_lens: Option<Vec<u32>>,
    /// Absolute position of query row 0; `None` = `seq_kv - seq_q` (the queries are the last
    /// `seq_q` positions, as in prefill after a cached prefix).
    pub q_pos0: Option<u32>,
}

/// Fused attention. Shapes: q [batch, seq_q, n_heads, d]; k, v [batch, seq_kv, n_kv_heads, d]
/// (f32). n_heads must be a multiple of n_kv_heads (grouped-query attention). Records
/// [batch, seq_q, n_heads, d].
pub fn attention<'a>(
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a AttentionOptions,
) -> Call<'a, Attention<'a>> {
    Call::new(Attention { q, k, v, opts })
}

pub struct Attention<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a AttentionOptions,
}

impl OpSpec for Attention<'_> {
    type Spec = AttentionSpec;
    fn spec(&self) -> Result<AttentionSpec> {
        attention_spec(self.q, self.k, self.v)
    }
}

/// The problem these operands pose, checked.
fn attention_spec(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<AttentionSpec> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_f32(OP, t)?;
        expect_single(OP, name, t)?;
        if t.shape().len() != 4 {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "{name} must be [batch, seq, heads, head_dim], got {:?}",
                    t.shape()
                ),
            });
        }
    }
    if k.shape() != v.shape() {
        return Err(Error::Shape {
            op: OP,
            detail: format!("k {:?} and v {:?} differ", k.shape(), v.shape()),
        });
    }
    let (qs, ks) = (q.shape(), k.shape());
    if qs[0] != ks[0] || qs[3] != ks[3] {
        return Err(Error::Shape {
            op: OP,
            detail: format!("q {qs:?} and k {ks:?} differ in batch or head_dim"),
        });
    }
    if ks[2] == 0 || !qs[2].is_multiple_of(ks[2]) {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "{} query heads are not a multiple of {} kv heads",
                qs[2], ks[2]
            ),
        });
    }
    Ok(AttentionSpec {
        batch: qs[0] as u64,
        seq_q: qs[1] as u64,
        seq_kv: ks[1] as u64,
        n_heads: qs[2] as u64,
        n_kv_heads: ks[2] as u64,
        head_dim: qs[3] as u64,
    })
}

/// Validated scalar options shared by prefill and decode: (scale, softcap).
pub(crate) fn scale_and_cap(
    head_dim: usize,
    scale: Option<f32>,
    softcap: Option<f32>,
) -> Result<(f32, f32)> {
    let scale = scale.unwrap_or(1.0 / (head_dim.max(1) as f32).sqrt());
    if !scale.is_finite() {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!("scale must be finite, got {scale}"),
        });
    }
    let cap = softcap.unwrap_or(0.0);
    if !(cap.is_finite() && cap >= 0.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!("softcap must be finite and >= 0, got {cap}"),
        });
    }
    Ok((scale, cap))
}

impl Op for Attention<'_> {
    type Config = AttentionConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<AttentionConfig>,
    ) -> Result<Tensor> {
        let (q, k, v, opts) = (self.q, self.k, self.v, self.opts);
        let spec = attention_spec(q, k, v)?;
        let out = output(rec, OP, out, q.shape())?;
        expect_single(OP, "out", &out)?;
        let (scale, cap) = scale_and_cap(spec.head_dim as usize, opts.scale, opts.softcap)?;
        let window = match opts.window {
            Some(0) => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    detail: "window must be >= 1 (use None for no window)".into(),
                })
            }
            Some(w) => w,
            None => 0,
        };
        let batch = spec.batch as usize;
        let lens: Vec<u32> = match &opts.kv_lens {
            Some(l) => {
                if l.len() != batch {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!("kv_lens has {} entries for batch {batch}", l.len()),
                    });
                }
                if let Some(bad) = l.iter().find(|&&x| x as u64 > spec.seq_kv) {
                    return Err(Error::InvalidArgument {
                        op: OP,
                        detail: format!("kv length {bad} exceeds seq_kv {}", spec.seq_kv),
                    });
                }
                l.clone()
            }
            None => vec![spec.seq_kv as u32; batch.max(1)],
        };
        let q_pos0 = match opts.q_pos0 {
            Some(p) => p,
            None => spec.seq_kv.saturating_sub(spec.seq_q) as u32,
        };
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let (q, k, v, opts) = (q.clone(), k.clone(), v.clone(), opts.clone());
            ReplayFactory::ready(move |rec, c: &AttentionConfig| {
                attention(&q, &k, &v, &opts).config(c.clone()).record(rec)
            })
        })?;
        let lens_t = rec.upload_u32(&[lens.len()], &lens)?;
        let params = spec.params(&c, q_pos0, opts.causal, window, scale, cap);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole("q", q),
                Bind::whole("k", k),
                Bind::whole("v", v),
                Bind::whole("kv_lens", &lens_t),
                Bind::whole("out", &out),
            ],
            spec.dispatch(&c),
        )?;
        Ok(out)
    }
}
