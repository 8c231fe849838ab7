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

pub fn rowwise_with(
    rec: &mut Recorder,
    op: RowOp,
    x: &Tensor,
    params_in: &[&Tensor],
    eps: f32,
    w_offset: f32,
    cfg: Option<RowwiseConfig>,
) -> Result<Tensor> {
    let name = op.name();
    expect_f32(name, x)?;
    let want = match op {
        RowOp::RmsNorm => 1,
        RowOp::LayerNorm | RowOp::RmsNormAdd => 2,
        RowOp::Softmax | RowOp::L2Normalize => 0,
    };
    if params_in.len() != want {
        return Err(Error::InvalidArgument {
            op: "rowwise",
            detail: format!("{name} takes {want} weight tensors"),
        });
    }
    // RmsNormAdd's second input is the residual: x's shape, split like x.
    let residual = (op == RowOp::RmsNormAdd).then(|| params_in[1]);
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
    let weights = if residual.is_some() {
        &params_in[..1]
    } else {
        params_in
    };
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
    let engine = rec.engine();
    for i in 0..x.segments().len() {
        let spec = RowwiseSpec {
            op,
            rows: x.segments()[i].rows as u64,
            cols: x.row_len() as u64,
        };
        let c = engine.choose(&spec, cfg.clone());
        let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
        let params = spec.params(&c, eps, w_offset);
        let mut binds = vec![Bind::segment(x, i)];
        binds.extend(weights.iter().map(|p| Bind::whole(p)));
        if let Some(r) = residual {
            binds.push(Bind::segment(r, i));
        }
        binds.push(Bind::segment(&out, i));
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch(&c),
        )?;
    }
    Ok(out)
}
