//! Weight lookup over a parsed safetensors file: names, shapes and dtypes checked, f16/bf16
//! widened to f32 on upload.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::Engine;

pub(crate) struct SafeWeights<'a> {
    st: SafeTensors<'a>,
    /// Prefix some exporters put before every name (e.g. `bert.`).
    prefix: String,
}

impl<'a> SafeWeights<'a> {
    pub fn parse(bytes: &'a [u8], probe: &str) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::BadModel {
            detail: format!("safetensors: {e}"),
        })?;
        let prefix = ["", "bert.", "model."]
            .into_iter()
            .find(|p| st.tensor(&format!("{p}{probe}")).is_ok())
            .ok_or_else(|| Error::BadModel {
                detail: format!("no tensor named `{probe}` (with or without a `bert.` prefix)"),
            })?
            .to_string();
        Ok(Self { st, prefix })
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>> {
        self.st
            .tensor(&format!("{}{name}", self.prefix))
            .map_err(|_| Error::BadModel {
                detail: format!("missing tensor `{}{name}`", self.prefix),
            })
    }

    /// Uploads tensor `name`, which must have exactly `shape`.
    pub fn upload(&self, engine: &Engine, name: &str, shape: &[usize]) -> Result<Tensor> {
        engine.upload_f32(shape, &self.read(name, shape)?)
    }

    /// Uploads the tensors `names`, each of exactly `shape`, stacked along their first axis.
    pub fn upload_stacked(
        &self,
        engine: &Engine,
        names: &[String],
        shape: &[usize],
    ) -> Result<Tensor> {
        let mut vals = Vec::new();
        for n in names {
            vals.extend(self.read(n, shape)?);
        }
        let mut stacked = shape.to_vec();
        stacked[0] *= names.len();
        engine.upload_f32(&stacked, &vals)
    }

    /// The values of tensor `name` as f32; it must have exactly `shape`.
    pub fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let v = self.view(name)?;
        if v.shape() != shape {
            return Err(Error::BadModel {
                detail: format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    v.shape()
                ),
            });
        }
        let data = v.data();
        let vals: Vec<f32> = match v.dtype() {
            Dtype::F32 => bytemuck::pod_collect_to_vec(data),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::BadModel {
                    detail: format!(
                        "tensor `{name}` has unsupported dtype {other:?} (f32, f16, bf16 only)"
                    ),
                })
            }
        };
        Ok(vals)
    }
}
