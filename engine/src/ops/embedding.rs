//! Embedding gathers: rows of a table by token id, from host ids (`ops::embedding`, plus a
//! second table's rows with `ops::embedding_add`), from ids on the GPU
//! (`ops::embedding_gpu_ids`), or from a quantized table (`ops::qembedding`).

use webjit_jit::kernels::embedding::{
    EmbeddingConfig, EmbeddingSpec, QEmbeddingConfig, QEmbeddingSpec,
};
use webjit_jit::KernelSpec;

use super::{expect_f32, expect_single, output, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::qtensor::QTensor;
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};

const OP: &str = "embedding";

/// Rows `ids` of `table` ([vocab, dim], may be split over several buffers), times `scale`.
/// Records [ids.len(), dim]. Ids are checked against the vocabulary.
pub fn embedding<'a>(table: &'a Tensor, ids: &'a [u32], scale: f32) -> Call<'a, Embedding<'a>> {
    Call::new(Embedding {
        table,
        ids: Ids::Host(ids),
        scale,
        add: None,
    })
}

/// `embedding` plus, on output row `i`, row `i % period` of `add` ([rows >= period, dim]),
/// in the same dispatch: a BERT-style encoder's word and position embeddings for a batch of
/// sequences padded to `period` tokens (with the position table as `add`).
pub fn embedding_add<'a>(
    table: &'a Tensor,
    ids: &'a [u32],
    scale: f32,
    add: &'a Tensor,
    period: usize,
) -> Call<'a, Embedding<'a>> {
    Call::new(Embedding {
        table,
        ids: Ids::Host(ids),
        scale,
        add: Some((add, period)),
    })
}

/// `embedding` with the ids already on the GPU ([n] u32, e.g. the sampler's last token):
/// every table segment is dispatched (each skips the ids outside it). Ids must be below the
/// vocabulary size; an out-of-range id leaves its output row unwritten.
pub fn embedding_gpu_ids<'a>(
    table: &'a Tensor,
    ids: &'a Tensor,
    scale: f32,
) -> Call<'a, Embedding<'a>> {
    Call::new(Embedding {
        table,
        ids: Ids::Gpu(ids),
        scale,
        add: None,
    })
}

/// Rows `ids` ([n] u32 on the GPU) of a quantized `table` ([vocab, dim], dequantized on the
/// fly), times `scale`: records [n, dim] f32. Ids must be below the vocabulary size (check
/// host-side ids with `check_ids`); an out-of-range id leaves its output row unwritten.
pub fn qembedding<'a>(table: &'a QTensor, ids: &'a Tensor, scale: f32) -> Call<'a, QEmbedding<'a>> {
    Call::new(QEmbedding { table, ids, scale })
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

#[derive(Clone, Copy)]
enum Ids<'a> {
    Host(&'a [u32]),
    Gpu(&'a Tensor),
}

pub struct Embedding<'a> {
    table: &'a Tensor,
    ids: Ids<'a>,
    scale: f32,
    add: Option<(&'a Tensor, usize)>,
}

impl Embedding<'_> {
    /// Checks the operands; returns (n ids, dim).
    fn check(&self) -> Result<(usize, usize)> {
        let table = self.table;
        expect_f32(OP, table)?;
        let &[vocab, dim] = table.shape() else {
            return Err(Error::Shape {
                op: OP,
                detail: format!("table must be [vocab, dim], got {:?}", table.shape()),
            });
        };
        if let Some((t, period)) = self.add {
            expect_f32(OP, t)?;
            expect_single(OP, "added table", t)?;
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
        let n = match self.ids {
            Ids::Host(ids) => {
                check_ids(OP, ids, vocab)?;
                ids.len()
            }
            Ids::Gpu(ids) => {
                if ids.dtype() != DType::U32 || ids.shape().len() != 1 {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!("ids must be u32 [n], got {:?}", ids.shape()),
                    });
                }
                expect_single(OP, "ids", ids)?;
                ids.numel()
            }
        };
        Ok((n, dim))
    }

    fn spec_of(&self, n: usize) -> EmbeddingSpec {
        EmbeddingSpec {
            n: n as u64,
            dim: self.table.row_len() as u64,
            add_rows: self.add.map_or(0, |(_, p)| p as u64),
        }
    }

    fn replay(&self, ids_t: &Tensor) -> ReplayFactory<'static, EmbeddingConfig> {
        let (table, ids, scale) = (self.table.clone(), ids_t.clone(), self.scale);
        let add = self.add.map(|(t, p)| (t.clone(), p));
        ReplayFactory::ready(move |rec, c: &EmbeddingConfig| {
            let op = Embedding {
                table: &table,
                ids: Ids::Gpu(&ids),
                scale,
                add: add.as_ref().map(|(t, p)| (t, *p)),
            };
            Call::new(op).config(c.clone()).record(rec)
        })
    }
}

impl OpSpec for Embedding<'_> {
    type Spec = EmbeddingSpec;
    fn spec(&self) -> Result<EmbeddingSpec> {
        let (n, _) = self.check()?;
        Ok(self.spec_of(n))
    }
}

impl Op for Embedding<'_> {
    type Config = EmbeddingConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<EmbeddingConfig>,
    ) -> Result<Tensor> {
        let (n, dim) = self.check()?;
        let out = output(rec, OP, out, &[n, dim])?;
        expect_single(OP, "output", &out)?;
        if n == 0 {
            return Ok(out);
        }
        let ids_t = match self.ids {
            Ids::Host(ids) => rec.upload_u32(&[n], ids)?,
            Ids::Gpu(t) => t.clone(),
        };
        let spec = self.spec_of(n);
        let (c, kernel) = rec.kernel(&spec, cfg, || self.replay(&ids_t))?;
        for (i, seg) in self.table.segments().iter().enumerate() {
            // Host ids: only the table segments some id falls into.
            let (lo, rows) = (seg.row_start, seg.rows);
            if let Ids::Host(ids) = self.ids {
                if !ids
                    .iter()
                    .any(|&id| id as usize >= lo && (id as usize) < lo + rows)
                {
                    continue;
                }
            }
            let params = spec.params(&c, lo as u32, rows as u32, self.scale);
            let mut binds = vec![
                Bind::whole("ids", &ids_t),
                Bind::segment("table", self.table, i),
                Bind::whole("out", &out),
            ];
            if let Some((t, _)) = self.add {
                binds.push(Bind::whole("add", t));
            }
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &binds,
                spec.dispatch(&c),
            )?;
        }
        Ok(out)
    }
}

pub struct QEmbedding<'a> {
    table: &'a QTensor,
    ids: &'a Tensor,
    scale: f32,
}

impl OpSpec for QEmbedding<'_> {
    type Spec = QEmbeddingSpec;
    fn spec(&self) -> Result<QEmbeddingSpec> {
        let [_, dim] = self.table.shape();
        if self.ids.dtype() != DType::U32 {
            return Err(Error::DType {
                op: "qembedding",
                expected: "u32",
                got: self.ids.dtype().name(),
            });
        }
        expect_single("qembedding", "ids", self.ids)?;
        Ok(QEmbeddingSpec {
            format: self.table.format(),
            n: self.ids.numel() as u64,
            dim: dim as u64,
        })
    }
}

impl Op for QEmbedding<'_> {
    type Config = QEmbeddingConfig;
    type Output = Tensor;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfg: Option<QEmbeddingConfig>,
    ) -> Result<Tensor> {
        const OP: &str = "qembedding";
        let spec = self.spec()?;
        let (n, dim) = (spec.n as usize, spec.dim as usize);
        let out = output(rec, OP, out, &[n, dim])?;
        expect_single(OP, "output", &out)?;
        if n == 0 {
            return Ok(out);
        }
        let (table, ids, scale) = (self.table, self.ids, self.scale);
        let (c, kernel) = rec.kernel(&spec, cfg, || {
            let (table, ids) = (table.clone(), ids.clone());
            ReplayFactory::ready(move |rec, c: &QEmbeddingConfig| {
                qembedding(&table, &ids, scale)
                    .config(c.clone())
                    .record(rec)
            })
        })?;
        for (i, seg) in table.segments().iter().enumerate() {
            let params = spec.params(seg.row_start as u32, seg.rows as u32, scale);
            rec.dispatch(
                &kernel,
                bytemuck::bytes_of(&params),
                &[
                    Bind::whole("ids", ids),
                    Bind::weight("w", table, i),
                    Bind::whole("out", &out),
                ],
                spec.dispatch(&c),
            )?;
        }
        Ok(out)
    }
}
