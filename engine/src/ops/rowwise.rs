use webjit_jit::kernels::rowwise::{RowOp, RowwiseConfig, RowwiseSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// RMSNorm over the last dim: `x / sqrt(mean(x^2) + eps) * (w + w_offset)`.
/// Gemma stores `w - 1` and uses `w_offset = 1`.
pub fn rms_norm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    eps: f32,
    w_offset: f32,
) -> Result<Tensor> {
    rowwise_with(rec, RowOp::RmsNorm, x, &[w], eps, w_offset, None)
}

/// `residual + rms_norm(x) * (w + w_offset)` in one pass (a post-norm and its residual add).
pub fn rms_norm_add(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    residual: &Tensor,
    eps: f32,
    w_offset: f32,
) -> Result<Tensor> {
    rowwise_with(
        rec,
        RowOp::RmsNormAdd,
        x,
        &[w, residual],
        eps,
        w_offset,
        None,
    )
}

/// LayerNorm over the last dim: `(x - mean) / sqrt(var + eps) * w + b`.
pub fn layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    rowwise_with(rec, RowOp::LayerNorm, x, &[w, b], eps, 0.0, None)
}

/// Softmax over the last dim, rows of any length.
pub fn softmax(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    rowwise_with(rec, RowOp::Softmax, x, &[], 0.0, 0.0, None)
}

/// Rows scaled to unit L2 norm: `x / max(||x||, eps)` (torch's `F.normalize`, eps 1e-12).
pub fn l2_normalize(rec: &mut Recorder, x: &Tensor, eps: f32) -> Result<Tensor> {
    rowwise_with(rec, RowOp::L2Normalize, x, &[], eps, 0.0, None)
}

/// The residual stream and the next block's normed input in one pass:
/// `out = residual + rms_norm(x) * (w_post + w_offset)` with a post-norm `w_post` (Gemma), or
/// `out = residual + x` without one (llama); then `next = rms_norm(out) * (w_next + w_offset)`.
/// Returns `(out, next)`.
#[allow(clippy::too_many_arguments)]
pub fn add_norm(
    rec: &mut Recorder,
    x: &Tensor,
    w_post: Option<&Tensor>,
    residual: &Tensor,
    w_next: &Tensor,
    eps: f32,
    w_offset: f32,
    cfg: Option<RowwiseConfig>,
) -> Result<(Tensor, Tensor)> {
    let (op, ins) = match w_post {
        Some(w) => (RowOp::RmsNormAddNorm, vec![w, residual, w_next]),
        None => (RowOp::AddNorm, vec![residual, w_next]),
    };
    let (out, next) = rowwise_impl(rec, op, x, &ins, eps, w_offset, cfg)?;
    let next = next.ok_or_else(|| Error::InvalidArgument {
        op: "rowwise",
        detail: format!("{} has a second output", op.name()),
    })?;
    Ok((out, next))
}

/// One-output row ops (the two-output ones go through `add_norm`).
pub fn rowwise_with(
    rec: &mut Recorder,
    op: RowOp,
    x: &Tensor,
    params_in: &[&Tensor],
    eps: f32,
    w_offset: f32,
    cfg: Option<RowwiseConfig>,
) -> Result<Tensor> {
    if op.two_outputs() {
        return Err(Error::InvalidArgument {
            op: "rowwise",
            detail: format!("{} has two outputs: use ops::add_norm", op.name()),
        });
    }
    Ok(rowwise_impl(rec, op, x, params_in, eps, w_offset, cfg)?.0)
}

fn rowwise_impl(
    rec: &mut Recorder,
    op: RowOp,
    x: &Tensor,
    params_in: &[&Tensor],
    eps: f32,
    w_offset: f32,
    cfg: Option<RowwiseConfig>,
) -> Result<(Tensor, Option<Tensor>)> {
    let name = op.name();
    expect_f32(name, x)?;
    let want = op.inputs() as usize - 1;
    if params_in.len() != want {
        return Err(Error::InvalidArgument {
            op: "rowwise",
            detail: format!("{name} takes {want} weight tensors"),
        });
    }
    // The residual input has x's shape and is split like x; the others are [cols] weights.
    let residual_at = match op {
        RowOp::RmsNormAdd | RowOp::RmsNormAddNorm => Some(1),
        RowOp::AddNorm => Some(0),
        _ => None,
    };
    let residual = residual_at.map(|i| params_in[i]);
    if let Some(r) = residual {
        expect_f32(name, r)?;
        if r.shape() != x.shape() || r.segments().len() != x.segments().len() {
            return Err(Error::Shape {
                op: "rowwise",
                detail: format!(
                    "{name} residual {:?} must match x {:?}",
                    r.shape(),
                    x.shape()
                ),
            });
        }
    }
    // The other inputs are [cols] weights (checked without collecting: this runs per step).
    let weights = params_in
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != residual_at)
        .map(|(_, t)| *t);
    for p in weights {
        expect_f32(name, p)?;
        expect_single(name, "weight", p)?;
        if p.numel() != x.row_len() {
            return Err(Error::Shape {
                op: "rowwise",
                detail: format!(
                    "{name} weight {:?} does not match row length {}",
                    p.shape(),
                    x.row_len()
                ),
            });
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::InvalidArgument {
            op: "rowwise",
            detail: format!("eps must be finite and >= 0, got {eps}"),
        });
    }
    let out = rec.empty(x.shape(), DType::F32)?;
    let out2 = if op.two_outputs() {
        Some(rec.empty(x.shape(), DType::F32)?)
    } else {
        None
    };
    let engine = rec.engine();
    for i in 0..x.segments().len() {
        let spec = RowwiseSpec {
            op,
            rows: x.segments()[i].rows as u64,
            cols: x.row_len() as u64,
        };
        let (c, kernel) = engine.kernel_for(&spec, cfg.clone())?;
        let params = spec.params(&c, eps, w_offset);
        // Bindings in the op's input order: x, then each input (the residual by segment).
        let mut binds = vec![Bind::segment(x, i)];
        for (j, p) in params_in.iter().enumerate() {
            binds.push(if Some(j) == residual_at {
                Bind::segment(p, i)
            } else {
                Bind::whole(p)
            });
        }
        binds.push(Bind::segment(&out, i));
        if let Some(o2) = &out2 {
            binds.push(Bind::segment(o2, i));
        }
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch(&c),
        )?;
    }
    Ok((out, out2))
}
