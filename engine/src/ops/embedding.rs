use webjit_jit::kernels::embedding::{
    EmbeddingConfig, EmbeddingSpec, QEmbeddingConfig, QEmbeddingSpec,
};
use webjit_jit::KernelSpec;

use super::expect_f32;
use crate::error::{Error, Result};
use crate::qtensor::QTensor;
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
    check_ids("embedding", ids, vocab)?;
    let engine = rec.engine();
    let out = rec.empty(&[ids.len(), dim], DType::F32)?;
    if ids.is_empty() {
        return Ok(out);
    }
    super::expect_single("embedding", "output", &out)?;
    let ids_t = rec.upload_u32(&[ids.len()], ids)?;
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

/// Rows `ids` ([n] u32 on the GPU, e.g. the sampler's last token) of a quantized `table`
/// ([vocab, dim], dequantized on the fly), times `scale`, into `out` [n, dim] f32. Ids must be
/// below the vocabulary size (check host-side ids with `check_ids`); an out-of-range id leaves
/// its output row unwritten.
pub fn qembedding_into(
    rec: &mut Recorder,
    table: &QTensor,
    ids: &Tensor,
    scale: f32,
    out: &Tensor,
    cfg: Option<QEmbeddingConfig>,
) -> Result<()> {
    const OP: &str = "qembedding";
    let [_, dim] = table.shape();
    let n = ids.numel();
    if ids.dtype() != DType::U32 {
        return Err(Error::DType {
            op: OP,
            expected: "u32",
            got: ids.dtype().name(),
        });
    }
    if out.shape() != [n, dim] || out.dtype() != DType::F32 {
        return Err(Error::Shape {
            op: OP,
            detail: format!("output must be f32 [{n}, {dim}], got {:?}", out.shape()),
        });
    }
    super::expect_single(OP, "ids", ids)?;
    super::expect_single(OP, "output", out)?;
    if n == 0 {
        return Ok(());
    }
    let spec = QEmbeddingSpec {
        format: table.format(),
        n: n as u64,
        dim: dim as u64,
    };
    let engine = rec.engine();
    let c = engine.choose(&spec, cfg);
    let kernel = engine.pipelines.get(&engine.gpu, &spec, &c)?;
    for (i, seg) in table.segments().iter().enumerate() {
        let params = spec.params(seg.row_start as u32, seg.rows as u32, scale);
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &[
                Bind::whole(ids),
                Bind {
                    buffer: &seg.buffer,
                    size: table.segment_bytes(i),
                },
                Bind::whole(out),
            ],
            spec.dispatch(&c),
        )?;
    }
    Ok(())
}

/// Host-side ids must index a vocabulary of `vocab` rows.
pub fn check_ids(op: &'static str, ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(bad) => Err(Error::InvalidArgument {
            op,
            detail: format!("token id {bad} is outside the vocabulary of {vocab}"),
        }),
        None => Ok(()),
    }
}
