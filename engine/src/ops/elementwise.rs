//! Elementwise ops: `ops::add(x, y)`, `ops::gelu_tanh_mul(g, u)`, ... (one kernel family,
//! `EwOp` picks the operation).

use webjit_jit::kernels::elementwise::{ElementwiseConfig, ElementwiseSpec, EwOp};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

const OP: &str = "elementwise";

/// `op` over x (any shape, may be split over several buffers) and, for binary ops, y: with as
/// many elements as x, or repeating over it (e.g. a bias row). Returns x's shape.
pub fn elementwise<'a>(
    op: EwOp,
    x: &'a Tensor,
    y: Option<&'a Tensor>,
    scale: f32,
) -> Call<'a, Elementwise<'a>> {
    Call::new(Elementwise { op, x, y, scale })
}

/// `x + y`, where `y` has as many elements as `x` or repeats over it (e.g. a bias row).
pub fn add<'a>(x: &'a Tensor, y: &'a Tensor) -> Call<'a, Elementwise<'a>> {
    elementwise(EwOp::Add, x, Some(y), 0.0)
}
/// `x * y`, with `y` repeating as in `add`.
pub fn mul<'a>(x: &'a Tensor, y: &'a Tensor) -> Call<'a, Elementwise<'a>> {
    elementwise(EwOp::Mul, x, Some(y), 0.0)
}
/// `x * s`.
pub fn scale(x: &Tensor, s: f32) -> Call<'_, Elementwise<'_>> {
    elementwise(EwOp::Scale, x, None, s)
}
pub fn gelu_tanh(x: &Tensor) -> Call<'_, Elementwise<'_>> {
    elementwise(EwOp::GeluTanh, x, None, 0.0)
}
pub fn gelu_erf(x: &Tensor) -> Call<'_, Elementwise<'_>> {
    elementwise(EwOp::GeluErf, x, None, 0.0)
}
pub fn silu(x: &Tensor) -> Call<'_, Elementwise<'_>> {
    elementwise(EwOp::Silu, x, None, 0.0)
}
/// `cap * tanh(x / cap)` (logit soft-capping); `cap` > 0.
pub fn softcap(x: &Tensor, cap: f32) -> Call<'_, Elementwise<'_>> {
    elementwise(EwOp::Softcap, x, None, cap)
}
/// `gelu_tanh(g) * u` (GeGLU) in one pass.
pub fn gelu_tanh_mul<'a>(g: &'a Tensor, u: &'a Tensor) -> Call<'a, Elementwise<'a>> {
    elementwise(EwOp::GeluTanhMul, g, Some(u), 0.0)
}
/// `silu(g) * u` (SwiGLU) in one pass.
pub fn silu_mul<'a>(g: &'a Tensor, u: &'a Tensor) -> Call<'a, Elementwise<'a>> {
    elementwise(EwOp::SiluMul, g, Some(u), 0.0)
}

pub struct Elementwise<'a> {
    op: EwOp,
    x: &'a Tensor,
    y: Option<&'a Tensor>,
    scale: f32,
}

impl Elementwise<'_> {
    fn seg_elems(t: &Tensor, i: usize) -> u64 {
        (t.segments()[i].rows * t.row_len()) as u64
    }

    fn check(&self) -> Result<()> {
        let (op, x) = (self.op, self.x);
        expect_f32(OP, x)?;
        if op == EwOp::Softcap && !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("softcap must be finite and > 0, got {}", self.scale),
            });
        }
        match (op.is_binary(), self.y) {
            (true, None) => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    detail: format!("{} needs two operands", op.name()),
                })
            }
            (false, Some(_)) => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    detail: format!("{} takes one operand", op.name()),
                })
            }
            _ => {}
        }
        if let Some(y) = self.y {
            expect_f32(OP, y)?;
            if y.numel() != x.numel() {
                expect_single(OP, "second operand", y)?;
                let ok = y.numel() > 0
                    && (0..x.segments().len())
                        .all(|i| Self::seg_elems(x, i) % y.numel() as u64 == 0);
                if !ok {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!("{:?} cannot repeat over {:?}", y.shape(), x.shape()),
                    });
                }
            } else if y.segments().len() != x.segments().len() {
                return Err(Error::Shape {
                    op: OP,
                    detail: "operands are split differently".into(),
                });
            }
        }
        Ok(())
    }

    /// The problem of x's segment `i`.
    fn spec_of(&self, i: usize) -> ElementwiseSpec {
        let len = Self::seg_elems(self.x, i);
        let b_len = match self.y {
            Some(y) if y.numel() == self.x.numel() => len,
            Some(y) => y.numel() as u64,
            None => 1,
        };
        ElementwiseSpec {
            op: self.op,
            len,
            b_len,
        }
    }
}

impl OpSpec for Elementwise<'_> {
    type Spec = ElementwiseSpec;
    /// The problem of the first (largest) segment.
    fn spec(&self) -> Result<ElementwiseSpec> {
        self.check()?;
        Ok(self.spec_of(0))
    }
}

impl Op for Elementwise<'_> {
    type Config = ElementwiseConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<ElementwiseConfig>,
    ) -> Result<Tensor> {
        self.check()?;
        let x = self.x;
        let out = output(rec, OP, out, x.shape())?;
        if out.segments().len() != x.segments().len() {
            return Err(Error::Shape {
                op: OP,
                detail: "the output is split differently from x".into(),
            });
        }
        for i in 0..x.segments().len() {
            let spec = self.spec_of(i);
            let (c, kernel) = rec.kernel(&spec, config.clone(), || {
                let (op, x, y, s) = (self.op, x.clone(), self.y.cloned(), self.scale);
                ReplayFactory::ready(move |rec, c: &ElementwiseConfig| {
                    elementwise(op, &x, y.as_ref(), s)
                        .config(c.clone())
                        .record(rec)
                })
            })?;
            let params = spec.params(&c, self.scale);
            let xb = Bind::segment("x", x, i);
            let ob = Bind::segment("out", &out, i);
            match self.y {
                Some(y) => {
                    let yi = if y.numel() == x.numel() { i } else { 0 };
                    let yb = Bind::segment("y", y, yi);
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
}
