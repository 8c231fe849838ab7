//! Row ops over the last dim: `ops::rms_norm`, `ops::layer_norm`, `ops::softmax`, ... and the
//! two-output `ops::add_norm` (one kernel family, `RowOp` picks the operation).

use webjit_jit::kernels::rowwise::{RowOp, RowwiseConfig, RowwiseSpec};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, no_out, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};

const OP: &str = "rowwise";

/// RMSNorm over the last dim of x [.., cols]: `x / sqrt(mean(x^2) + eps) * (w + w_offset)`,
/// w [cols]. Gemma stores `w - 1` and uses `w_offset = 1`.
pub fn rms_norm<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    eps: f32,
    w_offset: f32,
) -> Call<'a, Rowwise<'a>> {
    rowwise(RowOp::RmsNorm, x, &[w], eps, w_offset)
}

/// `residual + rms_norm(x) * (w + w_offset)` in one pass (a post-norm and its residual add);
/// residual has x's shape.
pub fn rms_norm_add<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    residual: &'a Tensor,
    eps: f32,
    w_offset: f32,
) -> Call<'a, Rowwise<'a>> {
    rowwise(RowOp::RmsNormAdd, x, &[w, residual], eps, w_offset)
}

/// LayerNorm over the last dim: `(x - mean) / sqrt(var + eps) * w + b`, w and b [cols].
pub fn layer_norm<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    b: &'a Tensor,
    eps: f32,
) -> Call<'a, Rowwise<'a>> {
    rowwise(RowOp::LayerNorm, x, &[w, b], eps, 0.0)
}

/// Softmax over the last dim, rows of any length.
pub fn softmax(x: &Tensor) -> Call<'_, Rowwise<'_>> {
    rowwise(RowOp::Softmax, x, &[], 0.0, 0.0)
}

/// Rows scaled to unit L2 norm: `x / max(||x||, eps)` (torch's `F.normalize`, eps 1e-12).
pub fn l2_normalize(x: &Tensor, eps: f32) -> Call<'_, Rowwise<'_>> {
    rowwise(RowOp::L2Normalize, x, &[], eps, 0.0)
}

/// Any one-output row op over x [.., cols] (may be split over several buffers) with its
/// inputs in the op's order (`RowOp::inputs`): [cols] weights, or a residual shaped like x.
/// Returns x's shape.
pub fn rowwise<'a>(
    op: RowOp,
    x: &'a Tensor,
    inputs: &[&'a Tensor],
    eps: f32,
    w_offset: f32,
) -> Call<'a, Rowwise<'a>> {
    let mut ins = [None; 3];
    for (slot, t) in ins.iter_mut().zip(inputs) {
        *slot = Some(*t);
    }
    Call::new(Rowwise {
        op,
        x,
        ins,
        n_ins: inputs.len(),
        eps,
        w_offset,
    })
}

/// The residual stream and the next block's normed input in one pass:
/// `out = residual + rms_norm(x) * (w_post + w_offset)` with a post-norm `w_post` (Gemma), or
/// `out = residual + x` without one (llama); then `next = rms_norm(out) * (w_next + w_offset)`.
/// x, residual [.., cols]; weights [cols]. Records `(out, next)`.
pub fn add_norm<'a>(
    x: &'a Tensor,
    w_post: Option<&'a Tensor>,
    residual: &'a Tensor,
    w_next: &'a Tensor,
    eps: f32,
    w_offset: f32,
) -> Call<'a, AddNorm<'a>> {
    let row = match w_post {
        Some(w) => rowwise(
            RowOp::RmsNormAddNorm,
            x,
            &[w, residual, w_next],
            eps,
            w_offset,
        ),
        None => rowwise(RowOp::AddNorm, x, &[residual, w_next], eps, w_offset),
    };
    Call::new(AddNorm(row.op))
}

#[derive(Clone, Copy)]
pub struct Rowwise<'a> {
    op: RowOp,
    x: &'a Tensor,
    ins: [Option<&'a Tensor>; 3],
    n_ins: usize,
    eps: f32,
    w_offset: f32,
}

/// `add_norm`'s op: a two-output row op.
pub struct AddNorm<'a>(Rowwise<'a>);

impl<'a> Rowwise<'a> {
    fn inputs(&self) -> impl Iterator<Item = &'a Tensor> + '_ {
        self.ins.iter().take(self.n_ins).flatten().copied()
    }

    /// Which input is the residual (shaped and split like x); the others are [cols] weights.
    fn residual_at(&self) -> Option<usize> {
        match self.op {
            RowOp::RmsNormAdd | RowOp::RmsNormAddNorm => Some(1),
            RowOp::AddNorm => Some(0),
            _ => None,
        }
    }

    fn check(&self) -> Result<()> {
        let (op, x) = (self.op, self.x);
        let name = op.name();
        expect_f32(name, x)?;
        let want = op.inputs() as usize - 1;
        if self.n_ins != want || self.inputs().count() != want {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("{name} takes {want} weight tensors"),
            });
        }
        let residual_at = self.residual_at();
        for (i, p) in self.inputs().enumerate() {
            expect_f32(name, p)?;
            if Some(i) == residual_at {
                if p.shape() != x.shape() || p.segments().len() != x.segments().len() {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!(
                            "{name} residual {:?} must match x {:?}",
                            p.shape(),
                            x.shape()
                        ),
                    });
                }
                continue;
            }
            expect_single(name, "weight", p)?;
            if p.numel() != x.row_len() {
                return Err(Error::Shape {
                    op: OP,
                    detail: format!(
                        "{name} weight {:?} does not match row length {}",
                        p.shape(),
                        x.row_len()
                    ),
                });
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("eps must be finite and >= 0, got {}", self.eps),
            });
        }
        Ok(())
    }

    fn spec_of(&self, i: usize) -> RowwiseSpec {
        RowwiseSpec {
            op: self.op,
            rows: self.x.segments()[i].rows as u64,
            cols: self.x.row_len() as u64,
        }
    }

    /// Records the op into `out` (and `out2` for the two-output ops).
    fn encode(
        &self,
        rec: &mut Recorder<'_>,
        out: &Tensor,
        out2: Option<&Tensor>,
        config: Option<RowwiseConfig>,
    ) -> Result<()> {
        let x = self.x;
        let residual_at = self.residual_at();
        for i in 0..x.segments().len() {
            let spec = self.spec_of(i);
            let (c, kernel) = rec.kernel(&spec, config.clone(), || self.replay())?;
            let params = spec.params(&c, self.eps, self.w_offset);
            // The kernel's bindings are x, the op's inputs in order, then the outputs.
            let names: &[&'static str] = match self.op {
                RowOp::RmsNormAdd => &["w", "res"],
                RowOp::RmsNormAddNorm => &["w", "res", "w2"],
                RowOp::AddNorm => &["res", "w2"],
                _ => &["w", "b"],
            };
            let mut binds = [None; 6];
            binds[0] = Some(Bind::segment("x", x, i));
            for (j, p) in self.inputs().enumerate() {
                binds[1 + j] = Some(if Some(j) == residual_at {
                    Bind::segment(names[j], p, i)
                } else {
                    Bind::whole(names[j], p)
                });
            }
            binds[1 + self.n_ins] = Some(Bind::segment("out", out, i));
            if let Some(o2) = out2 {
                binds[2 + self.n_ins] = Some(Bind::segment("out2", o2, i));
            }
            let n = 2 + self.n_ins + out2.is_some() as usize;
            let binds: Vec<Bind> = binds[..n].iter().flatten().copied().collect();
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &binds,
                spec.dispatch(&c),
            )?;
        }
        Ok(())
    }

    fn replay(&self) -> ReplayFactory<'static, RowwiseConfig> {
        let (op, eps, off) = (self.op, self.eps, self.w_offset);
        let x = self.x.clone();
        let ins: Vec<Tensor> = self.inputs().cloned().collect();
        ReplayFactory::ready(move |rec, c: &RowwiseConfig| {
            let refs: Vec<&Tensor> = ins.iter().collect();
            let call = rowwise(op, &x, &refs, eps, off).config(c.clone());
            if op.two_outputs() {
                Ok(Call::new(AddNorm(call.op)).config(c.clone()).record(rec)?.1)
            } else {
                call.record(rec)
            }
        })
    }
}

impl OpSpec for Rowwise<'_> {
    type Spec = RowwiseSpec;
    /// The problem of x's first (largest) segment.
    fn spec(&self) -> Result<RowwiseSpec> {
        self.check()?;
        Ok(self.spec_of(0))
    }
}

impl Op for Rowwise<'_> {
    type Config = RowwiseConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<RowwiseConfig>,
    ) -> Result<Tensor> {
        if self.op.two_outputs() {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("{} has two outputs: use ops::add_norm", self.op.name()),
            });
        }
        self.check()?;
        let out = output(rec, OP, out, self.x.shape())?;
        if out.segments().len() != self.x.segments().len() {
            return Err(Error::Shape {
                op: OP,
                detail: "the output is split differently from x".into(),
            });
        }
        self.encode(rec, &out, None, config)?;
        Ok(out)
    }
}

impl OpSpec for AddNorm<'_> {
    type Spec = RowwiseSpec;
    fn spec(&self) -> Result<RowwiseSpec> {
        self.0.spec()
    }
}

impl Op for AddNorm<'_> {
    type Config = RowwiseConfig;
    type Output = (Tensor, Tensor);
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        config: Option<RowwiseConfig>,
    ) -> Result<(Tensor, Tensor)> {
        no_out("add_norm", out)?;
        let r = self.0;
        r.check()?;
        let out = rec.empty(r.x.shape(), DType::F32)?;
        let next = rec.empty(r.x.shape(), DType::F32)?;
        r.encode(rec, &out, Some(&next), config)?;
        Ok((out, next))
    }
}
