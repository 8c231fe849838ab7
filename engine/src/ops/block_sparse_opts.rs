//! Options of block-sparse attention, their validation, and the static block masks
//! (Sparse Transformer patterns, user masks) built on the host.

use webjit_jit::kernels::block_sparse::BlockLayout;

use crate::error::{Error, Result};

pub(crate) const OP: &str = "block_sparse_attention";

/// How the key blocks of each selection row are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockSelect {
    /// MoBA: the k blocks with the largest gate `scale * q . mean(k_block)` (ties: lower block
    /// index). Under causal masking the row's own block is always attended and counts as one
    /// of the k; the others come from blocks entirely before the row's first token.
    TopK(u32),
    /// VMoBA: the smallest set of competing blocks, in decreasing gate order, whose cumulative
    /// softmax gate mass (softmax over the competing blocks of the group) reaches the
    /// threshold, in (0, 1]. 1.0 selects every competing block. The own block is forced under
    /// causal masking, as for top-k.
    Threshold(f32),
    /// A user block mask [q_blocks, k_blocks] of 0/1 (row = query block, column = key block),
    /// shared by every batch entry and head.
    Mask(BlockMask),
    /// Sparse Transformer "strided" at block granularity: query block i sees key block j when
    /// |i - j| < local or |i - j| is a multiple of stride.
    Strided { local: u32, stride: u32 },
    /// Sparse Transformer "fixed" at block granularity: blocks are grouped in chunks of `chunk`
    /// blocks; query block i sees key block j when both are in the same chunk, or j is one of
    /// the last `summary` blocks of its chunk.
    Fixed { chunk: u32, summary: u32 },
}

/// A block mask [q_blocks, k_blocks], row-major, each entry 0 or 1.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockMask {
    pub q_blocks: usize,
    pub k_blocks: usize,
    pub data: Vec<u32>,
}

/// The token grid the blocks partition. Tokens are in row-major (t, h, w) order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partition {
    /// A plain sequence: grid [1, 1, seq].
    #[default]
    D1,
    /// An image of h x w tokens: grid [1, h, w].
    D2 { h: u32, w: u32 },
    /// A video of t x h x w tokens.
    D3 { t: u32, h: u32, w: u32 },
}

/// What one selection row is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Granularity {
    /// Each query selects its own blocks (MoBA).
    #[default]
    Query,
    /// All queries of a query block share one selection, gated by the block's mean query
    /// (cheaper: one selection per block, and tiles of a block visit exactly its blocks).
    QueryBlock,
}

/// Options of `block_sparse_attention`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseOptions {
    /// Block box in tokens along (t, h, w); a 1-D partition uses [1, 1, B]. Boxes at the far
    /// edge of an axis are partial.
    pub block: [u32; 3],
    pub select: BlockSelect,
    pub partition: Partition,
    /// Key token j is visible to query token i only if j <= i (in token order).
    pub causal: bool,
    /// VMoBA global selection: rank all (query block, key block) pairs of a head together;
    /// top-k keeps k x n_blocks pairs per head, threshold takes the mass over all pairs.
    /// Needs `Granularity::QueryBlock`.
    pub global: bool,
    pub granularity: Granularity,
    /// Softmax (and gate) scale; `None` = 1/sqrt(head_dim).
    pub scale: Option<f32>,
    /// Also return the selected blocks (for visualization and tests).
    pub return_selection: bool,
}

impl SparseOptions {
    /// MoBA on a 1-D sequence: blocks of `block` tokens, per-query top-k, causal.
    pub fn moba(block: u32, top_k: u32) -> Self {
        Self {
            block: [1, 1, block],
            select: BlockSelect::TopK(top_k),
            partition: Partition::D1,
            causal: true,
            global: false,
            granularity: Granularity::Query,
            scale: None,
            return_selection: false,
        }
    }
}

fn invalid(detail: String) -> Error {
    Error::InvalidArgument { op: OP, detail }
}

/// Validates the options against a sequence of `seq` tokens and builds the layout.
pub(crate) fn layout(
    opts: &SparseOptions,
    batch: usize,
    seq: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Result<BlockLayout> {
    let grid: [u64; 3] = match opts.partition {
        Partition::D1 => [1, 1, seq as u64],
        Partition::D2 { h, w } => [1, h as u64, w as u64],
        Partition::D3 { t, h, w } => [t as u64, h as u64, w as u64],
    };
    if grid.iter().product::<u64>() != seq as u64 {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "partition grid {grid:?} (t, h, w) holds {} tokens, but q has seq {seq}",
                grid.iter().product::<u64>()
            ),
        });
    }
    let block = opts.block.map(|b| b as u64);
    if block.contains(&0) {
        return Err(invalid(format!(
            "block {block:?} has a zero extent; every axis needs >= 1 token"
        )));
    }
    if let Some(a) = (0..3).find(|&a| block[a] > grid[a]) {
        return Err(invalid(format!(
            "block {block:?} is larger than the grid {grid:?} on axis {}",
            ["t", "h", "w"][a]
        )));
    }
    match &opts.select {
        BlockSelect::TopK(0) => return Err(invalid("top_k must be >= 1".into())),
        BlockSelect::Threshold(t) if !(*t > 0.0 && *t <= 1.0) => {
            return Err(invalid(format!("threshold must be in (0, 1], got {t}")))
        }
        BlockSelect::Strided { stride: 0, .. } => {
            return Err(invalid("strided pattern needs stride >= 1".into()))
        }
        BlockSelect::Fixed { chunk, summary } if *chunk == 0 || summary > chunk => {
            return Err(invalid(format!(
                "fixed pattern needs chunk >= 1 and summary <= chunk, got chunk {chunk}, \
                 summary {summary}"
            )))
        }
        _ => {}
    }
    if opts.global && opts.granularity != Granularity::QueryBlock {
        return Err(invalid(
            "global selection ranks (query block, key block) pairs: use Granularity::QueryBlock"
                .into(),
        ));
    }
    if opts.global
        && !matches!(
            opts.select,
            BlockSelect::TopK(_) | BlockSelect::Threshold(_)
        )
    {
        return Err(invalid(
            "global selection applies to top-k and threshold, not static masks".into(),
        ));
    }
    let l = BlockLayout {
        batch: batch as u64,
        seq: seq as u64,
        n_heads: n_heads as u64,
        n_kv_heads: n_kv_heads as u64,
        head_dim: head_dim as u64,
        grid,
        block,
    };
    l.check(OP)?;
    Ok(l)
}

/// The static block mask [n_blocks, n_blocks] of a Mask / Strided / Fixed selection (validated),
/// or None for gated selections.
pub(crate) fn static_mask(select: &BlockSelect, n_blocks: usize) -> Result<Option<Vec<bool>>> {
    let nb = n_blocks;
    let pairs = (0..nb).flat_map(|i| (0..nb).map(move |j| (i, j)));
    Ok(Some(match select {
        BlockSelect::TopK(_) | BlockSelect::Threshold(_) => return Ok(None),
        BlockSelect::Mask(m) => {
            if m.q_blocks != nb || m.k_blocks != nb || m.data.len() != nb * nb {
                return Err(Error::Shape {
                    op: OP,
                    detail: format!(
                        "block mask is [{}, {}] with {} entries; this partition has {nb} query \
                         and {nb} key blocks",
                        m.q_blocks,
                        m.k_blocks,
                        m.data.len()
                    ),
                });
            }
            if let Some(i) = m.data.iter().position(|&x| x > 1) {
                return Err(invalid(format!(
                    "block mask entry {i} is {}; entries must be 0 or 1",
                    m.data[i]
                )));
            }
            m.data.iter().map(|&x| x == 1).collect()
        }
        BlockSelect::Strided { local, stride } => pairs
            .map(|(i, j)| {
                let d = i.abs_diff(j);
                d < *local as usize || d.is_multiple_of(*stride as usize)
            })
            .collect(),
        BlockSelect::Fixed { chunk, summary } => {
            let (c, s) = (*chunk as usize, *summary as usize);
            pairs
                .map(|(i, j)| i / c == j / c || j % c >= c - s)
                .collect()
        }
    }))
}

/// Packs a [rows, n_blocks] bool mask into [rows, words] u32 bit words, and lists each row's
/// blocks ([rows, n_blocks], padded with u32::MAX) with counts [rows].
pub(crate) fn pack(mask: &[bool], n_blocks: usize) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let words = n_blocks.div_ceil(32);
    let rows = mask.len() / n_blocks.max(1);
    let mut bits = vec![0u32; rows * words];
    let mut list = vec![u32::MAX; rows * n_blocks];
    let mut counts = vec![0u32; rows];
    for r in 0..rows {
        for j in 0..n_blocks {
            if mask[r * n_blocks + j] {
                bits[r * words + j / 32] |= 1 << (j % 32);
                list[r * n_blocks + counts[r] as usize] = j as u32;
                counts[r] += 1;
            }
        }
    }
    (bits, list, counts)
}
