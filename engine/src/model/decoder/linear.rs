//! Weights that own their products, so that the layer code names no kernel: a matrix picks the
//! matvec, the CPU adapters' 8-row matvec slices or the tiled matmul for the rows it is given;
//! q/k/v and the gated FFN pick their fused forms where the plan says so.

use webjit_jit::kernels::qmatvec::{Gate, QMatvecSpec};

use super::matrix::Matrix;
use super::plan::{FfnPlan, ProductPlan, QkvPlan};
use crate::error::{Error, Result};
use crate::model::llm_config::Activation;
use crate::ops;
use crate::qtensor::QTensor;
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

/// A matrix (and its bias, when the model has one) with the products its plan allows.
#[derive(Clone)]
pub struct Linear {
    pub w: Matrix,
    /// [N], added to every row of the product.
    pub bias: Option<Tensor>,
    pub products: ProductPlan,
}

impl Linear {
    pub fn new(w: Matrix, products: ProductPlan) -> Self {
        Self {
            w,
            bias: None,
            products,
        }
    }

    pub fn with_bias(mut self, bias: Option<Tensor>) -> Self {
        self.bias = bias;
        self
    }

    pub fn shape(&self) -> [usize; 2] {
        self.w.shape()
    }

    /// x [T, K] -> [T, N] (plus the bias): matvec kernels for decode-sized T, the matvec over
    /// 8-row slices where the plan says so, the tiled matmul otherwise.
    pub fn forward(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        let y = self.product(rec, x)?;
        match &self.bias {
            Some(b) => ops::add(&y, b).record(rec),
            None => Ok(y),
        }
    }

    fn product(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        let w = match &self.w {
            Matrix::Quantized(w) => w,
            Matrix::Dense(w) => return ops::matmul(x, w, true).record(rec),
        };
        let t = x.shape()[0];
        let out_fits = (t * w.shape()[0] * 4) as u64 <= rec.engine().gpu.max_binding();
        if t <= self.products.matvec_rows {
            ops::qmatvec(x, w).record(rec)
        } else if t <= self.products.slice_rows && !x.is_segmented() && out_fits {
            matvec_in_slices(rec, x, w, self.products.matvec_rows)
        } else {
            ops::qmatmul(x, w).record(rec)
        }
    }
}

/// `y = x W^T` for `x` of more rows than a matvec takes, as matvecs over slices of `rows`
/// rows: each slice is copied out of `x`, multiplied, and its output copied into its rows of
/// `y`. On adapters that run shaders on the CPU, the tiled matmul's workgroup barriers are
/// what they do worst.
fn matvec_in_slices(rec: &mut Recorder, x: &Tensor, w: &QTensor, rows: usize) -> Result<Tensor> {
    let [n, k] = w.shape();
    let t = x.shape()[0];
    let y = rec.empty(&[t, n], DType::F32)?;
    let xb = x.segments()[0].buffer.clone();
    let yb = y.segments()[0].buffer.clone();
    for r0 in (0..t).step_by(rows) {
        let rn = (t - r0).min(rows);
        let xc = rec.empty(&[rn, k], DType::F32)?;
        let (xo, yo) = ((r0 * k * 4) as u64, (r0 * n * 4) as u64);
        rec.copy(&xb, xo, &xc.segments()[0].buffer, 0, (rn * k * 4) as u64);
        let yc = ops::qmatvec(&xc, w).record(rec)?;
        rec.copy(&yc.segments()[0].buffer, 0, &yb, yo, (rn * n * 4) as u64);
    }
    Ok(y)
}

/// The q, k and v projections of an attention layer.
pub struct Qkv {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub plan: QkvPlan,
    /// The biases of the stacked matrices end to end (q, k and, when stacked, v): added to the
    /// stacked row in one pass. `None` when the layer has no biases.
    pub stacked_bias: Option<Tensor>,
}

/// What a decode step's q/k/v projection gives the RoPE kernel.
pub enum QkvOut {
    /// One row [1, q + k (+ v)] from the stacked matvec, and v when it is not in the row.
    Packed(Tensor, Option<Tensor>),
    /// q [T, q_dim], k and v [T, kv_dim].
    Separate(Tensor, Tensor, Tensor),
}

impl Qkv {
    /// h [T, d_model] through the three projections: stacked (one dispatch, read packed) for
    /// a decode step where the plan stacks them, separate otherwise.
    pub fn forward(&self, rec: &mut Recorder, h: &Tensor) -> Result<QkvOut> {
        let decode = h.shape()[0] == 1;
        match self.plan {
            QkvPlan::Stacked { with_v } if decode => {
                let (Some(q), Some(k)) = (self.q.w.quantized(), self.k.w.quantized()) else {
                    return Err(plan_mismatch("q/k"));
                };
                let row = match (with_v, self.v.w.quantized()) {
                    (true, Some(v)) => ops::qmatvec_stacked(h, &[q, k, v]).record(rec)?,
                    (true, None) => return Err(plan_mismatch("v")),
                    (false, _) => ops::qmatvec_stacked(h, &[q, k]).record(rec)?,
                };
                let row = match &self.stacked_bias {
                    Some(b) => ops::add(&row, b).record(rec)?,
                    None => row,
                };
                let v = match with_v {
                    true => None,
                    false => Some(self.v.forward(rec, h)?),
                };
                Ok(QkvOut::Packed(row, v))
            }
            _ => Ok(QkvOut::Separate(
                self.q.forward(rec, h)?,
                self.k.forward(rec, h)?,
                self.v.forward(rec, h)?,
            )),
        }
    }
}

/// The add_norm before a product, as `ops::add_norm(f, post, res, pre, eps, 0.0)` computes it:
/// the residual stream `res + [rms_norm(f) * post | f]` and its pre-norm by `pre`.
#[derive(Clone, Copy)]
pub struct AddNormIn<'a> {
    pub f: &'a Tensor,
    pub post: Option<&'a Tensor>,
    pub res: &'a Tensor,
    pub pre: &'a Tensor,
    pub eps: f32,
}

impl<'a> AddNormIn<'a> {
    /// The two outputs by the rowwise kernel: (residual stream, normed).
    pub fn record(&self, rec: &mut Recorder) -> Result<(Tensor, Tensor)> {
        ops::add_norm(self.f, self.post, self.res, self.pre, self.eps, 0.0).record(rec)
    }

    /// The matvec's `NormIn` writing the residual stream to `res_out`.
    pub fn norm_in(&self, res_out: &'a Tensor, write_res: bool) -> ops::NormIn<'a> {
        ops::NormIn {
            res: self.res,
            w_post: self.post,
            w_pre: self.pre,
            eps: self.eps,
            res_out,
            write_res,
        }
    }

    /// One decode row whose matvec (`spec`) can take the fold on this device.
    fn foldable(&self, rec: &Recorder, plan: &ProductPlan, spec: Result<QMatvecSpec>) -> bool {
        plan.norm_prologue
            && self.f.shape().first() == Some(&1)
            && self.f.shape().len() == 2
            && !self.f.is_segmented()
            && spec.is_ok_and(|s| s.prologue_fits(rec.engine().profile()))
    }
}

impl Qkv {
    /// A decode step's stacked q/k/v matvec (and v's own where it is not stacked) with the
    /// add_norm `a` folded in: (the residual stream, the projections). `None` where the plan
    /// or the device cannot fold it; nothing is recorded then.
    pub fn forward_after(
        &self,
        rec: &mut Recorder,
        a: &AddNormIn,
    ) -> Result<Option<(Tensor, QkvOut)>> {
        let QkvPlan::Stacked { with_v } = self.plan else {
            return Ok(None);
        };
        if !self.q.products.norm_prologue {
            return Ok(None);
        }
        let (Some(q), Some(k)) = (self.q.w.quantized(), self.k.w.quantized()) else {
            return Ok(None);
        };
        let parts: Vec<&QTensor> = match (with_v, self.v.w.quantized()) {
            (true, Some(v)) => vec![q, k, v],
            (true, None) => return Ok(None),
            (false, _) => vec![q, k],
        };
        // v's own matvec, when not stacked: quantized, no slices, and foldable too.
        let v_alone = match (with_v, self.v.w.quantized()) {
            (true, _) => None,
            (false, Some(v)) => Some(v),
            (false, None) => return Ok(None),
        };
        let res = rec.empty(&[1, a.res.shape().iter().product()], DType::F32)?;
        let stacked = || ops::qmatvec_stacked(a.f, &parts).norm_prologue(a.norm_in(&res, true));
        let v_call = |v| ops::qmatvec(a.f, v).norm_prologue(a.norm_in(&res, false));
        if !a.foldable(rec, &self.q.products, stacked().spec())
            || v_alone.is_some_and(|v| !a.foldable(rec, &self.v.products, v_call(v).spec()))
        {
            return Ok(None);
        }
        let row = stacked().record(rec)?;
        let row = match &self.stacked_bias {
            Some(b) => ops::add(&row, b).record(rec)?,
            None => row,
        };
        let v = match v_alone {
            Some(v) => {
                let y = v_call(v).record(rec)?;
                Some(match &self.v.bias {
                    Some(b) => ops::add(&y, b).record(rec)?,
                    None => y,
                })
            }
            None => None,
        };
        Ok(Some((res, QkvOut::Packed(row, v))))
    }
}

/// A gated feed-forward network: `down(act(h W_gate^T) * (h W_up^T))`.
pub struct GatedFfn {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
    pub plan: FfnPlan,
}

impl GatedFfn {
    /// The FFN of the add_norm `a`'s normed output: (the residual stream, the FFN's output).
    /// A decode step folds the add_norm into the gated matvec where the plan and device allow.
    pub fn forward_after(&self, rec: &mut Recorder, a: &AddNormIn) -> Result<(Tensor, Tensor)> {
        if let (true, FfnPlan::FusedGate, Some(g), Some(u)) = (
            self.gate.products.norm_prologue,
            &self.plan,
            self.gate.w.quantized(),
            self.up.w.quantized(),
        ) {
            let gate = self.gate_kind();
            let [_, k] = g.shape();
            let res = rec.empty(&[1, k], DType::F32)?;
            let call = || ops::qmatvec_gated(a.f, g, u, gate).norm_prologue(a.norm_in(&res, true));
            if a.foldable(rec, &self.gate.products, call().spec()) {
                let f = call().record(rec)?;
                return Ok((res, self.down.forward(rec, &f)?));
            }
        }
        let (x, h) = a.record(rec)?;
        Ok((x, self.forward(rec, &h)?))
    }

    fn gate_kind(&self) -> Gate {
        match self.act {
            Activation::GeluTanh => Gate::GeluTanh,
            Activation::Silu => Gate::Silu,
        }
    }

    /// h [T, d_model] -> [T, d_model]. Where the plan fuses the gate, decode-sized rows take
    /// gate, up and the activation in one matvec.
    pub fn forward(&self, rec: &mut Recorder, h: &Tensor) -> Result<Tensor> {
        let t = h.shape()[0];
        let fused = match (&self.plan, self.gate.w.quantized(), self.up.w.quantized()) {
            (FfnPlan::FusedGate, Some(g), Some(u)) if t <= self.gate.products.matvec_rows => {
                Some(ops::qmatvec_gated(h, g, u, self.gate_kind()).record(rec)?)
            }
            _ => None,
        };
        let f = match fused {
            Some(f) => f,
            None => {
                let g = self.gate.forward(rec, h)?;
                let u = self.up.forward(rec, h)?;
                match self.act {
                    Activation::GeluTanh => ops::gelu_tanh_mul(&g, &u).record(rec)?,
                    Activation::Silu => ops::silu_mul(&g, &u).record(rec)?,
                }
            }
        };
        self.down.forward(rec, &f)
    }
}

fn plan_mismatch(what: &str) -> Error {
    Error::InvalidArgument {
        op: "decoder",
        detail: format!("the layer plan stacks {what} but its weights are not quantized"),
    }
}
