use webjit_jit::kernels::embedding::{EmbeddingConfig, EmbeddingSpec};
use webjit_jit::KernelSpec;

use super::expect_f32;
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder};
use crate::tensor::{DType, Tensor};

/// Rows `ids` of `table` ([vocab, dim], may be split over several buffers), times `scale`.
/// Returns [ids.len(), dim]. Ids are checked against the vocabulary here.
pub fn embedding(rec: &mut Recorder, table: &Tensor, ids: &[u32], scale: f32) -> Result<Tensor> {
    embedding_with(rec, table, ids, scale, None)
}

pub fn embedding_with(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &[u32],
    scale: f32,
    cfg: Option<EmbeddingConfig>,
) -> Result<Tensor> {
    expect_f32("embedding", table)?;
    let &[vocab, dim] = table.shape() else {
        return Err(Error::Shape {
            op: "embedding",
            detail: format!("table must be [vocab, dim], got {:?}", table.shape()),
        });
    };
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::InvalidArgument {
            op: "embedding",
            detail: format!("token id {bad} is outside the vocabulary of {vocab}"),
        });
    }
    let engine = rec.engine();
    let out = engine.empty(&[ids.len(), dim], DType::F32)?;
    if ids.is_empty() {
        return Ok(out);
    }
    super::expect_single("embedding", "output", &out)?;
    let ids_t = engine.upload_u32(&[ids.len()], ids)?;
    let spec = EmbeddingSpec {
        n: ids.len() as u64,
        dim: dim as u64,
    };
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    for (i, seg) in table.segments().iter().enumerate() {
        // Skip segments no id falls into: one dispatch per segment actually used.
        let lo = seg.row_start as u32;
        let hi = (seg.row_start + seg.rows) as u32;
        if !ids.iter().any(|&id| id >= lo && id < hi) {
            continue;
        }
        let params = spec.params(&c, lo, seg.rows as u32, scale);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole(&ids_t),
                Bind::segment(table, i),
                Bind::whole(&out),
            ],
            spec.dispatch(&c),
        )?;
    }
    Ok(out)
}
