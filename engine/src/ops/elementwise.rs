use webjit_jit::kernels::elementwise::{ElementwiseConfig, ElementwiseSpec, EwOp};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// `x + y`, where `y` has as many elements as `x` or repeats over it (e.g. a bias row).
pub fn add(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::Add, x, Some(y), 0.0, None)
}
/// `x * y`, with `y` repeating as in `add`.
pub fn mul(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::Mul, x, Some(y), 0.0, None)
}
pub fn scale(rec: &mut Recorder, x: &Tensor, s: f32) -> Result<Tensor> {
    elementwise_with(rec, EwOp::Scale, x, None, s, None)
}
pub fn gelu_tanh(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::GeluTanh, x, None, 0.0, None)
}
pub fn gelu_erf(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::GeluErf, x, None, 0.0, None)
}
pub fn silu(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::Silu, x, None, 0.0, None)
}
/// `gelu_tanh(g) * u` (GeGLU) in one pass.
pub fn gelu_tanh_mul(rec: &mut Recorder, g: &Tensor, u: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::GeluTanhMul, g, Some(u), 0.0, None)
}
/// `silu(g) * u` (SwiGLU) in one pass.
pub fn silu_mul(rec: &mut Recorder, g: &Tensor, u: &Tensor) -> Result<Tensor> {
    elementwise_with(rec, EwOp::SiluMul, g, Some(u), 0.0, None)
}

/// Any elementwise op with an explicit config (or the default when `cfg` is `None`).
pub fn elementwise_with(
    rec: &mut Recorder,
    op: EwOp,
    x: &Tensor,
    y: Option<&Tensor>,
    scale: f32,
    cfg: Option<ElementwiseConfig>,
) -> Result<Tensor> {
    let name = "elementwise";
    expect_f32(name, x)?;
    let out = rec.empty(x.shape(), DType::F32)?;
    let seg_elems = |t: &Tensor, i: usize| (t.segments()[i].rows * t.row_len()) as u64;
    match (op.is_binary(), y) {
        (true, None) => {
            return Err(Error::InvalidArgument {
                op: name,
                detail: format!("{} needs two operands", op.name()),
            })
        }
        (false, Some(_)) => {
            return Err(Error::InvalidArgument {
                op: name,
                detail: format!("{} takes one operand", op.name()),
            })
        }
        _ => {}
    }
    if let Some(y) = y {
        expect_f32(name, y)?;
        let same = y.numel() == x.numel();
        if !same {
            expect_single(name, "second operand", y)?;
            let ok = y.numel() > 0
                && (0..x.segments().len()).all(|i| seg_elems(x, i) % y.numel() as u64 == 0);
            if !ok {
                return Err(Error::Shape {
                    op: name,
                    detail: format!("{:?} cannot repeat over {:?}", y.shape(), x.shape()),
                });
            }
        } else if y.segments().len() != x.segments().len() {
            return Err(Error::Shape {
                op: name,
                detail: "operands are split differently".into(),
            });
        }
    }
    let engine = rec.engine();
    for i in 0..x.segments().len() {
        let len = seg_elems(x, i);
        let b_len = match y {
            Some(y) if y.numel() == x.numel() => len,
            Some(y) => y.numel() as u64,
            None => 1,
        };
        let spec = ElementwiseSpec { op, len, b_len };
        let c = engine.choose(&spec, cfg.clone());
        let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
        let params = spec.params(&c, scale);
        let xb = Bind::segment(x, i);
        let ob = Bind::segment(&out, i);
        match y {
            Some(y) => {
                let yi = if y.numel() == x.numel() { i } else { 0 };
                let yb = Bind::segment(y, yi);
                rec.dispatch(
                    &kernel,
                    bytemuck::bytes_of(&params),
                    &[xb, yb, ob],
                    spec.dispatch(&c),
                )?;
            }
            None => rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &[xb, ob],
                spec.dispatch(&c),
            )?,
        }
    }
    Ok(out)
}
