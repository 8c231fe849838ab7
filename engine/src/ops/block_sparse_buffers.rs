//! The buffers of block-sparse attention: what one call writes (output, intermediates, the
//! selection), allocated once for repeated calls of the same shapes and options, and the
//! selected blocks as the host reads them.

use webjit_jit::kernels::block_sparse::BlockLayout;

use super::block_sparse_opts::{pack, static_mask, BlockSelect, Granularity, SparseOptions, OP};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use crate::Engine;

/// The blocks each selection row attends to.
#[derive(Clone, Debug)]
pub struct SelectedBlocks {
    /// Rows are query tokens (else query blocks).
    pub per_query: bool,
    /// [batch, heads, rows] of the lists; static masks are shared: [1, 1, rows].
    pub dims: [usize; 3],
    pub n_blocks: usize,
    /// [batch, heads, rows] u32: number of selected blocks per row.
    pub counts: Tensor,
    /// [batch, heads, rows, n_blocks] u32: ascending block indices, padded with u32::MAX.
    pub indices: Tensor,
}

impl SelectedBlocks {
    /// Reads the lists back: one Vec of block indices per (batch, head, row), row-major.
    pub async fn read_async(&self, engine: &Engine) -> Result<Vec<Vec<u32>>> {
        let words = |b: Vec<u8>| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let counts = words(engine.read_bytes(&self.counts).await?);
        let idx = words(engine.read_bytes(&self.indices).await?);
        let nb = self.n_blocks;
        Ok(counts
            .iter()
            .enumerate()
            .map(|(r, &c)| {
                idx.get(r * nb..r * nb + (c as usize).min(nb))
                    .unwrap_or(&[])
                    .to_vec()
            })
            .collect())
    }

    /// Native convenience: blocks on `read_async`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, engine: &Engine) -> Result<Vec<Vec<u32>>> {
        pollster::block_on(self.read_async(engine))
    }
}

/// Fails before allocating a buffer that no binding could hold.
fn check_binding(engine: &Engine, what: &str, elements: u64) -> Result<()> {
    let bytes = elements.saturating_mul(4);
    let max = engine.gpu.max_binding();
    if bytes > max {
        return Err(Error::TooLarge {
            what: format!("{OP} {what}"),
            bytes,
            max,
        });
    }
    Ok(())
}

/// Buffers of the key-block-major path (per-query selection).
#[derive(Debug)]
pub(super) struct GatherBuffers {
    /// [batch, heads, n_blocks] u32 queries per key block.
    pub(super) kcount: Tensor,
    /// [batch, heads, n_blocks, seq] u32 entries query * 1024 + slot.
    pub(super) qlist: Tensor,
    /// [batch, heads, seq, slots, d] f32 unnormalized partial outputs.
    pub(super) pacc: Tensor,
    /// [batch, heads, seq, slots, 2] f32 (running max, sum) of each partial.
    pub(super) pml: Tensor,
    pub(super) slots: usize,
}

/// Intermediates of gated selections.
#[derive(Debug)]
pub(super) struct GateBuffers {
    /// [batch, n_blocks, n_kv_heads, d] block means of k.
    pub(super) kmean: Tensor,
    /// [batch, n_blocks, n_heads, d] block means of q (query-block rows).
    pub(super) qmean: Option<Tensor>,
    /// [batch, heads, rows, n_blocks] gates.
    pub(super) gates: Tensor,
    /// Gather path, or None for the query-major path.
    pub(super) gather: Option<GatherBuffers>,
    /// [1] u32 each, bound in place of the gather lists when there are none.
    pub(super) dummies: [Tensor; 2],
}

/// Every buffer one call writes: the output, the intermediates and the selection. Allocated
/// once for repeated calls (benchmarks, decoding loops) of the same shapes and options.
#[derive(Debug)]
pub struct SparseBuffers {
    /// [batch, seq, n_heads, d]
    pub out: Tensor,
    /// Bit mask [batch, heads, rows, words], or [rows, words] for static masks.
    pub bits: Tensor,
    pub(super) gated: Option<GateBuffers>,
    /// The lists (gated selections always have them: the select kernel writes them).
    pub selection: Option<SelectedBlocks>,
}

impl SparseBuffers {
    /// Allocates for layout `l` (from `block_sparse_layout`); static masks are built and
    /// uploaded here. `union_per_query` picks the query-major path for per-query selections.
    pub fn new(
        engine: &Engine,
        l: &BlockLayout,
        opts: &SparseOptions,
        union_per_query: bool,
    ) -> Result<Self> {
        let nb = l.n_blocks() as usize;
        let words = l.words() as usize;
        let (b, h, kvh, d, seq) = (
            l.batch as usize,
            l.n_heads as usize,
            l.n_kv_heads as usize,
            l.head_dim as usize,
            l.seq as usize,
        );
        let out = engine.empty(&[b, seq, h, d], DType::F32)?;
        if let Some(mask) = static_mask(&opts.select, nb)? {
            let (bits, list, counts) = pack(&mask, nb);
            let selection = if opts.return_selection {
                Some(SelectedBlocks {
                    per_query: false,
                    dims: [1, 1, nb],
                    n_blocks: nb,
                    counts: engine.upload_u32(&[1, 1, nb], &counts)?,
                    indices: engine.upload_u32(&[1, 1, nb, nb], &list)?,
                })
            } else {
                None
            };
            return Ok(Self {
                out,
                bits: engine.upload_u32(&[nb, words], &bits)?,
                gated: None,
                selection,
            });
        }
        let per_query = opts.granularity == Granularity::Query;
        let rows = if per_query { seq } else { nb };
        check_binding(engine, "gates", (b * h * rows * nb) as u64)?;
        let slots = match opts.select {
            BlockSelect::TopK(k) => (k as usize).min(nb),
            _ => nb,
        };
        let max = engine.gpu.max_binding() / 4;
        let gather_fits = [b * h * nb * seq, b * h * seq * slots * d]
            .iter()
            .all(|&n| n as u64 <= max)
            && seq < (1 << 22);
        let gather = if per_query && !union_per_query && gather_fits {
            Some(GatherBuffers {
                kcount: engine.empty(&[b, h, nb], DType::U32)?,
                qlist: engine.empty(&[b, h, nb, seq], DType::U32)?,
                pacc: engine.empty(&[b, h, seq, slots, d], DType::F32)?,
                pml: engine.empty(&[b, h, seq, slots, 2], DType::F32)?,
                slots,
            })
        } else {
            None
        };
        Ok(Self {
            out,
            bits: engine.empty(&[b, h, rows, words], DType::U32)?,
            gated: Some(GateBuffers {
                kmean: engine.empty(&[b, nb, kvh, d], DType::F32)?,
                qmean: if per_query {
                    None
                } else {
                    Some(engine.empty(&[b, nb, h, d], DType::F32)?)
                },
                gates: engine.empty(&[b, h, rows, nb], DType::F32)?,
                gather,
                dummies: [
                    engine.upload_u32(&[1], &[0])?,
                    engine.upload_u32(&[1], &[0])?,
                ],
            }),
            selection: Some(SelectedBlocks {
                per_query,
                dims: [b, h, rows],
                n_blocks: nb,
                counts: engine.empty(&[b, h, rows], DType::U32)?,
                indices: engine.empty(&[b, h, rows, nb], DType::U32)?,
            }),
        })
    }

    /// Whether calls run the key-block-major gather + merge path.
    pub fn gathers(&self) -> bool {
        self.gated.as_ref().is_some_and(|g| g.gather.is_some())
    }
}
