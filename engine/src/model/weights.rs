//! A safetensors encoder's weights as the streaming loader left them on the GPU: taken by
//! name (with the exporter's prefix, if any), shapes checked, and stacked by GPU copies where
//! the model wants one tensor for several of the file's.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::loader::{GpuSink, LoadedTensor, ModelHeader};
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};
use crate::Engine;

pub(crate) struct StreamedWeights {
    tensors: HashMap<String, LoadedTensor>,
    /// The dtype of each tensor the loader streamed past (its dtype is not one the engine
    /// reads), to name it when the model needs it.
    skipped: HashMap<String, &'static str>,
    /// Prefix some exporters put before every name (e.g. `bert.`).
    prefix: String,
}

impl StreamedWeights {
    /// What `sink` uploaded from the file `header` describes; `probe` (a tensor every such
    /// model has) picks the prefix.
    pub fn new(sink: GpuSink, header: &ModelHeader, probe: &str) -> Result<Self> {
        let skipped = header
            .tensors
            .iter()
            .filter(|t| t.skipped)
            .map(|t| (t.name.clone(), t.dtype.name()))
            .collect();
        let tensors = sink.tensors;
        let prefix = ["", "bert.", "model."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}{probe}")))
            .ok_or_else(|| Error::BadModel {
                detail: format!(
                    "no f32, f16 or bf16 tensor named `{probe}` (with or without a `bert.` or \
                     `model.` prefix)"
                ),
            })?
            .to_string();
        Ok(Self {
            tensors,
            skipped,
            prefix,
        })
    }

    /// Takes tensor `name`, which must have exactly `shape` (f32 on the GPU: the sink widened
    /// f16 and bf16).
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let Some(t) = self.tensors.remove(&full) else {
            return Err(Error::BadModel {
                detail: match self.skipped.get(&full) {
                    Some(dtype) => {
                        format!("tensor `{full}` has dtype {dtype} (f32, f16 and bf16 are read)")
                    }
                    None => format!("missing tensor `{full}`"),
                },
            });
        };
        if t.tensor.dtype() != DType::F32 || t.tensor.shape() != shape {
            return Err(Error::BadModel {
                detail: format!(
                    "tensor `{full}` is {} {:?}, expected {shape:?}",
                    t.source.name(),
                    t.tensor.shape()
                ),
            });
        }
        Ok(t.tensor)
    }

    /// Takes the tensors `names`, each of exactly `shape`, stacked along their first axis
    /// into one new tensor (GPU copies; the parts are freed).
    pub fn take_stacked(
        &mut self,
        engine: &Engine,
        names: &[String],
        shape: &[usize],
    ) -> Result<Tensor> {
        let parts: Vec<Tensor> = names
            .iter()
            .map(|n| self.take(n, shape))
            .collect::<Result<_>>()?;
        let mut stacked = shape.to_vec();
        if let Some(first) = stacked.first_mut() {
            *first *= names.len();
        }
        let out = engine.empty(&stacked, DType::F32)?;
        let mut rec = engine.recorder();
        let mut at = 0u64;
        for p in &parts {
            copy_into(&mut rec, p, &out, at);
            at += p.bytes();
        }
        rec.submit()?;
        Ok(out)
    }
}

/// Records copies of all of `src` into `dst` from byte `at` of `dst`'s row-major layout. Both
/// may be split over several buffers (segments of whole rows).
fn copy_into(rec: &mut Recorder, src: &Tensor, dst: &Tensor, at: u64) {
    let src_row = (src.row_len() * src.dtype().size()) as u64;
    let dst_row = (dst.row_len() * dst.dtype().size()) as u64;
    for s in src.segments() {
        // This source segment's bytes, as a range of `dst`'s layout.
        let lo = at + s.row_start as u64 * src_row;
        let hi = lo + s.rows as u64 * src_row;
        for d in dst.segments() {
            let d_lo = d.row_start as u64 * dst_row;
            let d_hi = d_lo + d.rows as u64 * dst_row;
            let (a, b) = (lo.max(d_lo), hi.min(d_hi));
            if a < b {
                rec.copy(&s.buffer, a - lo, &d.buffer, a - d_lo, b - a);
            }
        }
    }
}
