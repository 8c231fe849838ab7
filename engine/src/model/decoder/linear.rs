//! Weights that own their products, so that the layer code names no kernel: a matrix picks the
//! matvec, the CPU adapters' 8-row matvec slices or the tiled matmul for the rows it is given;
//! q/k/v and the gated FFN pick their fused forms where the plan says so.

use webjit_jit::kernels::qmatvec::Gate;

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

/// A gated feed-forward network: `down(act(h W_gate^T) * (h W_up^T))`.
pub struct GatedFfn {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
    pub plan: FfnPlan,
}

impl GatedFfn {
    /// h [T, d_model] -> [T, d_model]. Where the plan fuses the gate, decode-sized rows take
    /// gate, up and the activation in one matvec.
    pub fn forward(&self, rec: &mut Recorder, h: &Tensor) -> Result<Tensor> {
        let t = h.shape()[0];
        let fused = match (&self.plan, self.gate.w.quantized(), self.up.w.quantized()) {
            (FfnPlan::FusedGate, Some(g), Some(u)) if t <= self.gate.products.matvec_rows => {
                let gate = match self.act {
                    Activation::GeluTanh => Gate::GeluTanh,
                    Activation::Silu => Gate::Silu,
                };
                Some(ops::qmatvec_gated(h, g, u, gate).record(rec)?)
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
