//! A decoder's weights by GGUF name (llama.cpp's conventions: `blk.{i}.attn_q.weight`, ...),
//! taken out of what the loader uploaded, shapes checked, and assembled into layers with
//! their plan.

use std::collections::HashMap;

use super::linear::{GatedFfn, Linear, Qkv};
use super::matrix::Matrix;
use super::plan::{LayerPlan, LayerShape, ProductPlan, QkvPlan};
use crate::error::{Error, Result};
use crate::loader::{GpuSink, LoadedTensor};
use crate::model::llm_config::DecoderConfig;
use crate::qtensor::QTensor;
use crate::tensor::{DType, Tensor};
use crate::Engine;

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

    /// Takes layer `i`'s tensors and decides its plan. Fused weights (Phi-3's `attn_qkv` and
    /// `ffn_up` holding gate and up) are cut into the separate matrices first.
    pub(crate) fn layer(
        &mut self,
        engine: &Engine,
        cfg: &DecoderConfig,
        i: usize,
        products: ProductPlan,
    ) -> Result<Layer> {
        let (d, hd) = (cfg.d_model, cfg.head_dim);
        let (qd, kvd) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let b = |s: &str| format!("blk.{i}.{s}.bias");
        let (q, k, v) = if self.contains(&n("attn_qkv")) {
            let qkv = self.matrix(&n("attn_qkv"), [qd + 2 * kvd, d])?;
            let mut parts = qkv.split_rows(engine, &[qd, kvd, kvd])?.into_iter();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(q), Some(k), Some(v)) => (q, k, v),
                _ => return Err(bad(format!("`{}` did not split in three", n("attn_qkv")))),
            }
        } else {
            (
                self.matrix(&n("attn_q"), [qd, d])?,
                self.matrix(&n("attn_k"), [kvd, d])?,
                self.matrix(&n("attn_v"), [kvd, d])?,
            )
        };
        let (gate, up) = if self.contains(&n("ffn_gate")) {
            (
                self.matrix(&n("ffn_gate"), [cfg.ffn, d])?,
                self.matrix(&n("ffn_up"), [cfg.ffn, d])?,
            )
        } else {
            // Gate rows first, then up (llama.cpp's fused SwiGLU takes the halves this way).
            let fused = self.matrix(&n("ffn_up"), [2 * cfg.ffn, d])?;
            let mut parts = fused.split_rows(engine, &[cfg.ffn, cfg.ffn])?.into_iter();
            match (parts.next(), parts.next()) {
                (Some(g), Some(u)) => (g, u),
                _ => return Err(bad(format!("`{}` did not split in two", n("ffn_up")))),
            }
        };
        let (bq, bk, bv) = if self.contains(&b("attn_qkv")) {
            let fused = self.vector(&b("attn_qkv"), qd + 2 * kvd)?;
            let mut parts = split_vector(engine, &fused, &[qd, kvd, kvd])?.into_iter();
            (parts.next(), parts.next(), parts.next())
        } else {
            (
                self.opt_vector(&b("attn_q"), qd)?,
                self.opt_vector(&b("attn_k"), kvd)?,
                self.opt_vector(&b("attn_v"), kvd)?,
            )
        };
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
                biases: [bq.is_some(), bk.is_some(), bv.is_some()],
            },
        );
        let stacked_bias = match plan.qkv {
            QkvPlan::Stacked { with_v } if bq.is_some() => {
                let mut parts = vec![bq.as_ref(), bk.as_ref()];
                if with_v {
                    parts.push(bv.as_ref());
                }
                Some(concat_vectors(
                    engine,
                    &parts.into_iter().flatten().collect::<Vec<_>>(),
                )?)
            }
            _ => None,
        };
        let lin = |m: Matrix| Linear::new(m, products);
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"), d)?,
            qkv: Qkv {
                q: lin(q).with_bias(bq),
                k: lin(k).with_bias(bk),
                v: lin(v).with_bias(bv),
                plan: plan.qkv,
                stacked_bias,
            },
            wo: lin(self.matrix(&n("attn_output"), [d, qd])?)
                .with_bias(self.opt_vector(&b("attn_output"), d)?),
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

    pub(crate) fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>> {
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

/// `v` cut into consecutive pieces of `lens` elements (GPU copies).
fn split_vector(engine: &Engine, v: &Tensor, lens: &[usize]) -> Result<Vec<Tensor>> {
    let mut rec = engine.recorder();
    let mut out = Vec::with_capacity(lens.len());
    let mut off = 0u64;
    for &len in lens {
        let part = engine.empty(&[len], DType::F32)?;
        let bytes = (len * 4) as u64;
        rec.copy(
            &v.segments()[0].buffer,
            off,
            &part.segments()[0].buffer,
            0,
            bytes,
        );
        off += bytes;
        out.push(part);
    }
    rec.submit()?;
    Ok(out)
}

/// The vectors end to end in one (GPU copies).
fn concat_vectors(engine: &Engine, parts: &[&Tensor]) -> Result<Tensor> {
    let total: usize = parts.iter().map(|t| t.numel()).sum();
    let out = engine.empty(&[total], DType::F32)?;
    let mut rec = engine.recorder();
    let mut off = 0u64;
    for t in parts {
        let bytes = (t.numel() * 4) as u64;
        rec.copy(
            &t.segments()[0].buffer,
            0,
            &out.segments()[0].buffer,
            off,
            bytes,
        );
        off += bytes;
    }
    rec.submit()?;
    Ok(out)
}

pub(crate) fn bad(detail: String) -> Error {
    Error::BadModel { detail }
}
