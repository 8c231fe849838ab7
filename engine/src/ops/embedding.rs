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
    gather_host_ids(rec, table, ids, scale, cfg, None)
}

/// `embedding` plus, on output row `i`, row `i % period` of `add` ([rows >= period, dim]),
/// in the same dispatch: a BERT-style encoder's word and position embeddings for a batch of
/// sequences padded to `period` tokens (with the position table as `add`).
pub fn embedding_add(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &[u32],
    scale: f32,
    add: &Tensor,
    period: usize,
) -> Result<Tensor> {
    embedding_add_with(rec, table, ids, scale, add, period, None)
}

/// `embedding_add` with an explicit config (tests and the tuner).
pub fn embedding_add_with(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &[u32],
    scale: f32,
    add: &Tensor,
    period: usize,
    cfg: Option<EmbeddingConfig>,
) -> Result<Tensor> {
    gather_host_ids(rec, table, ids, scale, cfg, Some((add, period)))
}

/// `embedding_with` / `embedding_add_with`: host-side ids checked against the vocabulary, and
/// a dispatch only for the table segments some id falls into.
fn gather_host_ids(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &[u32],
    scale: f32,
    cfg: Option<EmbeddingConfig>,
    add: Option<(&Tensor, usize)>,
) -> Result<Tensor> {
    const OP: &str = "embedding";
    expect_f32(OP, table)?;
    let &[vocab, dim] = table.shape() else {
        return Err(Error::Shape {
            op: OP,
            detail: format!("table must be [vocab, dim], got {:?}", table.shape()),
        });
    };
    if let Some((t, period)) = add {
        expect_f32(OP, t)?;
        super::expect_single(OP, "added table", t)?;
        match t.shape() {
            &[rows, d] if d == dim && period >= 1 && period <= rows => {}
            s => {
                return Err(Error::Shape {
                    op: OP,
                    detail: format!(
                        "the added table must be [at least {period} (and 1) rows, {dim}], got {s:?}"
                    ),
                })
            }
        }
    }
    check_ids(OP, ids, vocab)?;
    let out = rec.empty(&[ids.len(), dim], DType::F32)?;
    if ids.is_empty() {
        return Ok(out);
    }
    let ids_t = rec.upload_u32(&[ids.len()], ids)?;
    let used = |lo: usize, rows: usize| {
        ids.iter()
            .any(|&id| id as usize >= lo && (id as usize) < lo + rows)
    };
    embedding_dispatch(rec, table, &ids_t, scale, &out, cfg, &used, add)?;
    Ok(out)
}

/// `embedding` with the ids already on the GPU ([n] u32, e.g. the sampler's last token):
/// every table segment is dispatched (each skips the ids outside it). Ids must be below the
/// vocabulary size; an out-of-range id leaves its output row unwritten.
pub fn embedding_gpu_ids(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &Tensor,
    scale: f32,
    cfg: Option<EmbeddingConfig>,
) -> Result<Tensor> {
    expect_f32("embedding", table)?;
    let &[_, dim] = table.shape() else {
        return Err(Error::Shape {
            op: "embedding",
            detail: format!("table must be [vocab, dim], got {:?}", table.shape()),
        });
    };
    if ids.dtype() != DType::U32 || ids.shape().len() != 1 {
        return Err(Error::Shape {
            op: "embedding",
            detail: format!("ids must be u32 [n], got {:?}", ids.shape()),
        });
    }
    super::expect_single("embedding", "ids", ids)?;
    let out = rec.empty(&[ids.numel(), dim], DType::F32)?;
    if ids.numel() > 0 {
        embedding_dispatch(rec, table, ids, scale, &out, cfg, &|_, _| true, None)?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn embedding_dispatch(
    rec: &mut Recorder,
    table: &Tensor,
    ids: &Tensor,
    scale: f32,
    out: &Tensor,
    cfg: Option<EmbeddingConfig>,
    used: &dyn Fn(usize, usize) -> bool,
    add: Option<(&Tensor, usize)>,
) -> Result<()> {
    super::expect_single("embedding", "output", out)?;
    let spec = EmbeddingSpec {
        n: ids.numel() as u64,
        dim: table.row_len() as u64,
        add_rows: add.map_or(0, |(_, p)| p as u64),
    };
    let engine = rec.engine();
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
    for (i, seg) in table.segments().iter().enumerate() {
        if !used(seg.row_start, seg.rows) {
            continue;
        }
        let params = spec.params(&c, seg.row_start as u32, seg.rows as u32, scale);
        let mut binds = vec![Bind::whole(ids), Bind::segment(table, i), Bind::whole(out)];
        if let Some((t, _)) = add {
            binds.push(Bind::whole(t));
        }
        rec.dispatch(
            &kernel,
            bytemuck::bytes_of(&params),
            &binds,
            spec.dispatch(&c),
        )?;
    }
    Ok(())
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
    let (c, kernel) = engine.kernel_for(&spec, cfg)?;
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
