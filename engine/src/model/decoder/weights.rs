//! A decoder's weights by GGUF name (llama.cpp's conventions: `blk.{i}.attn_q.weight`, ...),
//! taken out of what the loader uploaded, shapes checked, and assembled into layers with
//! their plan.

use std::collections::HashMap;

use super::linear::{GatedFfn, Linear, Qkv};
use super::matrix::Matrix;
use super::plan::{LayerPlan, LayerShape, ProductPlan};
use crate::error::{Error, Result};
use crate::loader::{GpuSink, LoadedTensor};
use crate::model::llm_config::DecoderConfig;
use crate::qtensor::QTensor;
use crate::tensor::{DType, Tensor};

/// One transformer block's weights and plan.
pub(crate) struct Layer {
    /// [d_model] each.
    pub attn_norm: Tensor,
    pub qkv: Qkv,
    /// [d_model, n_heads * head_dim]
    pub wo: Linear,
    /// [head_dim] per-head norms of q and k.
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub post_attn_norm: Option<Tensor>,
    pub ffn_norm: Tensor,
    pub ffn: GatedFfn,
    pub post_ffn_norm: Option<Tensor>,
    pub plan: LayerPlan,
}

impl Layer {
    /// Every matrix of the layer.
    pub fn matrices(&self) -> [&Linear; 7] {
        let (q, f) = (&self.qkv, &self.ffn);
        [&q.q, &q.k, &q.v, &self.wo, &f.gate, &f.up, &f.down]
    }
}

/// Takes named tensors out of what the loader uploaded, checking shapes.
pub(crate) struct Weights {
    pub(crate) f: HashMap<String, LoadedTensor>,
    pub(crate) q: HashMap<String, QTensor>,
}

impl Weights {
    pub(crate) fn from_sink(sink: GpuSink) -> Self {
        Self {
            f: sink.tensors,
            q: sink.qtensors,
        }
    }

    /// Takes layer `i`'s tensors and decides its plan.
    pub(crate) fn layer(
        &mut self,
        cfg: &DecoderConfig,
        i: usize,
        products: ProductPlan,
    ) -> Result<Layer> {
        let (d, hd) = (cfg.d_model, cfg.head_dim);
        let (qd, kvd) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let q = self.matrix(&n("attn_q"), [qd, d])?;
        let k = self.matrix(&n("attn_k"), [kvd, d])?;
        let v = self.matrix(&n("attn_v"), [kvd, d])?;
        let gate = self.matrix(&n("ffn_gate"), [cfg.ffn, d])?;
        let up = self.matrix(&n("ffn_up"), [cfg.ffn, d])?;
        let q_norm = self.opt_vector(&n("attn_q_norm"), hd)?;
        let k_norm = self.opt_vector(&n("attn_k_norm"), hd)?;
        let plan = LayerPlan::decide(
            cfg,
            i,
            &LayerShape {
                q: &q,
                k: &k,
                v: &v,
                gate: &gate,
                up: &up,
                q_norm: q_norm.is_some(),
                k_norm: k_norm.is_some(),
            },
        );
        let lin = |m: Matrix| Linear::new(m, products);
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"), d)?,
            qkv: Qkv {
                q: lin(q),
                k: lin(k),
                v: lin(v),
                plan: plan.qkv,
            },
            wo: lin(self.matrix(&n("attn_output"), [d, qd])?),
            q_norm,
            k_norm,
            post_attn_norm: self.opt_vector(&n("post_attention_norm"), d)?,
            ffn_norm: self.vector(&n("ffn_norm"), d)?,
            ffn: GatedFfn {
                gate: lin(gate),
                up: lin(up),
                down: lin(self.matrix(&n("ffn_down"), [d, cfg.ffn])?),
                act: cfg.activation,
                plan: plan.ffn,
            },
            post_ffn_norm: self.opt_vector(&n("post_ffw_norm"), d)?,
            plan,
        })
    }

    /// A handle to a matrix that stays in the maps (the embedding, used before assembly).
    pub(crate) fn matrix_ref(&self, name: &str) -> Option<Matrix> {
        match (self.q.get(name), self.f.get(name)) {
            (Some(q), _) => Some(Matrix::Quantized(q.clone())),
            (None, Some(t)) => Some(Matrix::Dense(t.tensor.clone())),
            (None, None) => None,
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.q.contains_key(name) || self.f.contains_key(name)
    }

    pub(crate) fn matrix(&mut self, name: &str, shape: [usize; 2]) -> Result<Matrix> {
        let w = if let Some(q) = self.q.remove(name) {
            Matrix::Quantized(q)
        } else if let Some(t) = self.f.remove(name) {
            if t.tensor.dtype() != DType::F32 || t.tensor.shape().len() != 2 {
                return Err(bad(format!(
                    "tensor `{name}` ({} {:?}) is not a matrix this engine reads",
                    t.source.name(),
                    t.tensor.shape()
                )));
            }
            Matrix::Dense(t.tensor)
        } else {
            return Err(bad(format!("missing tensor `{name}`")));
        };
        if w.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` is {:?}, expected {shape:?}",
                w.shape()
            )));
        }
        Ok(w)
    }

    pub(crate) fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        self.opt_vector(name, len)?
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))
    }

    fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>> {
        let Some(t) = self.f.remove(name) else {
            return Ok(None);
        };
        if t.tensor.dtype() != DType::F32 || t.tensor.shape() != [len] {
            return Err(bad(format!(
                "tensor `{name}` is {} {:?}, expected f32 [{len}]",
                t.source.name(),
                t.tensor.shape()
            )));
        }
        Ok(Some(t.tensor))
    }
}

pub(crate) fn bad(detail: String) -> Error {
    Error::BadModel { detail }
}
