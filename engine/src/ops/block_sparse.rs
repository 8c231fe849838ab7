//! Block-sparse attention (MoBA / VMoBA / static block masks):
//! `ops::block_sparse_attention(q, k, v, &SparseOptions)`.
//!
//! Gated selections run block means of k (and of q for query-block rows), gates and selection,
//! then attention over the selected blocks: per-query selections use the key-block-major
//! `gather` kernel plus a `merge` of each query's per-block partials (work proportional to the
//! selected pairs); query-block rows and static masks (built on the host) use the query-major
//! `attend` kernel, whose tiles visit exactly their rows' blocks. Per-query selections fall back
//! to `attend` (over the union of a tile's selections) when the partials would not fit a
//! binding.

use webjit_jit::kernels::block_sparse::{
    BlockLayout, BsAttnConfig, BsAttnSpec, BsParams, BsStage, BsStageSpec, BsWgConfig,
};
use webjit_jit::KernelSpec;

use super::block_sparse_opts::SparseOptions;
use super::block_sparse_opts::{layout, pack, static_mask, BlockSelect, Granularity, OP};
use super::{expect_f32, expect_single, no_out, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::{DType, Tensor};
use crate::Engine;

/// Explicit configs for each kernel (None = tuned or default), for tests and the tuner.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseConfigs {
    pub means: Option<BsWgConfig>,
    pub gate: Option<BsWgConfig>,
    pub select: Option<BsWgConfig>,
    pub attend: Option<BsAttnConfig>,
    pub gather: Option<BsAttnConfig>,
    pub merge: Option<BsWgConfig>,
    /// Per-query selections: use the query-major `attend` kernel instead of gather + merge.
    pub union_per_query: bool,
}

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

/// Output [batch, seq, n_heads, d] and, if requested, the selection.
#[derive(Debug)]
pub struct SparseOutput {
    pub out: Tensor,
    pub selection: Option<SelectedBlocks>,
}

/// Block-sparse attention. Shapes: q [batch, seq, n_heads, d]; k, v [batch, seq, n_kv_heads, d]
/// (f32, self-attention: same seq). n_heads must be a multiple of n_kv_heads. Records the
/// output [batch, seq, n_heads, d] and, with `opts.return_selection`, the selected blocks.
/// `Call::spec` gives the validated `BlockLayout`; `Call::config` takes one config per kernel
/// (`SparseConfigs`).
pub fn block_sparse_attention<'a>(
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a SparseOptions,
) -> Call<'a, BlockSparse<'a>> {
    Call::new(BlockSparse {
        q,
        k,
        v,
        opts,
        bufs: None,
        attend: true,
    })
}

pub struct BlockSparse<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a SparseOptions,
    /// Buffers made once for repeated calls (`Call::buffers`).
    bufs: Option<&'a SparseBuffers>,
    /// False: only the gating and selection (`Call::select_only`).
    attend: bool,
}

impl<'a> Call<'a, BlockSparse<'a>> {
    /// Records into buffers made by `SparseBuffers::new` for the same operand shapes and
    /// options (benchmarks, decoding loops) instead of new ones.
    pub fn buffers(mut self, bufs: &'a SparseBuffers) -> Self {
        self.op_mut().bufs = Some(bufs);
        self
    }

    /// Only the gating and selection (block means, gates, select): fills the selection without
    /// computing attention (visualization, timing breakdowns). Static masks record nothing.
    pub fn select_only(mut self) -> Self {
        self.op_mut().attend = false;
        self
    }
}

impl OpSpec for BlockSparse<'_> {
    type Spec = BlockLayout;
    fn spec(&self) -> Result<BlockLayout> {
        block_sparse_layout(self.q, self.k, self.v, self.opts)
    }
}

impl Op for BlockSparse<'_> {
    type Config = SparseConfigs;
    type Output = SparseOutput;
    fn record_op(
        self,
        rec: &mut Recorder<'_>,
        out: Option<&Tensor>,
        cfgs: Option<SparseConfigs>,
    ) -> Result<SparseOutput> {
        no_out(OP, out)?;
        let cfgs = cfgs.unwrap_or_default();
        let (q, k, v, opts) = (self.q, self.k, self.v, self.opts);
        let made;
        let bufs = match self.bufs {
            Some(b) => b,
            None => {
                let l = block_sparse_layout(q, k, v, opts)?;
                made = SparseBuffers::new(rec.engine(), &l, opts, cfgs.union_per_query)?;
                &made
            }
        };
        let ctx = Ctx {
            q,
            k,
            v,
            opts,
            cfgs: &cfgs,
        };
        record(rec, &ctx, bufs, self.attend)?;
        Ok(SparseOutput {
            out: bufs.out.clone(),
            selection: if opts.return_selection {
                bufs.selection.clone()
            } else {
                None
            },
        })
    }
}

/// One call's operands, options and caller's configs.
struct Ctx<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    opts: &'a SparseOptions,
    cfgs: &'a SparseConfigs,
}

impl Ctx<'_> {
    /// A replay of the whole op with one kernel's config set by `set` (the others as called).
    fn replay<C: Clone + 'static>(
        &self,
        set: fn(&mut SparseConfigs, C),
    ) -> ReplayFactory<'static, C> {
        let (q, k, v) = (self.q.clone(), self.k.clone(), self.v.clone());
        let (opts, cfgs) = (self.opts.clone(), self.cfgs.clone());
        ReplayFactory::ready(move |rec, c: &C| {
            let mut cf = cfgs.clone();
            set(&mut cf, c.clone());
            Ok(block_sparse_attention(&q, &k, &v, &opts)
                .config(cf)
                .record(rec)?
                .out)
        })
    }
}

/// The validated layout for these operands and options.
fn block_sparse_layout(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &SparseOptions,
) -> Result<BlockLayout> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_f32(OP, t)?;
        expect_single(OP, name, t)?;
        if t.shape().len() != 4 {
            return Err(Error::Shape {
                op: OP,
                detail: format!("{name} must be [batch, seq, heads, d], got {:?}", t.shape()),
            });
        }
    }
    let (qs, ks) = (q.shape(), k.shape());
    if k.shape() != v.shape() || qs[0] != ks[0] || qs[1] != ks[1] || qs[3] != ks[3] {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "q {qs:?}, k {ks:?} and v {:?} must share batch, seq and head dim (k = v)",
                v.shape()
            ),
        });
    }
    if ks[2] == 0 || !qs[2].is_multiple_of(ks[2]) {
        return Err(Error::Shape {
            op: OP,
            detail: format!(
                "{} query heads are not a multiple of {} kv heads",
                qs[2], ks[2]
            ),
        });
    }
    layout(opts, qs[0], qs[1], qs[2], ks[2], qs[3])
}

fn scale_of(opts: &SparseOptions, head_dim: u64) -> Result<f32> {
    let scale = opts.scale.unwrap_or(1.0 / (head_dim.max(1) as f32).sqrt());
    if !scale.is_finite() {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!("scale must be finite, got {scale}"),
        });
    }
    Ok(scale)
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
struct GatherBuffers {
    /// [batch, heads, n_blocks] u32 queries per key block.
    kcount: Tensor,
    /// [batch, heads, n_blocks, seq] u32 entries query * 1024 + slot.
    qlist: Tensor,
    /// [batch, heads, seq, slots, d] f32 unnormalized partial outputs.
    pacc: Tensor,
    /// [batch, heads, seq, slots, 2] f32 (running max, sum) of each partial.
    pml: Tensor,
    slots: usize,
}

/// Intermediates of gated selections.
#[derive(Debug)]
struct GateBuffers {
    /// [batch, n_blocks, n_kv_heads, d] block means of k.
    kmean: Tensor,
    /// [batch, n_blocks, n_heads, d] block means of q (query-block rows).
    qmean: Option<Tensor>,
    /// [batch, heads, rows, n_blocks] gates.
    gates: Tensor,
    /// Gather path, or None for the query-major path.
    gather: Option<GatherBuffers>,
    /// [1] u32 each, bound in place of the gather lists when there are none.
    dummies: [Tensor; 2],
}

/// Every buffer one call writes: the output, the intermediates and the selection. Allocated
/// once for repeated calls (benchmarks, decoding loops) of the same shapes and options.
#[derive(Debug)]
pub struct SparseBuffers {
    /// [batch, seq, n_heads, d]
    pub out: Tensor,
    /// Bit mask [batch, heads, rows, words], or [rows, words] for static masks.
    pub bits: Tensor,
    gated: Option<GateBuffers>,
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

fn record(rec: &mut Recorder, ctx: &Ctx<'_>, bufs: &SparseBuffers, attend: bool) -> Result<()> {
    let (q, k, v, opts, cfgs) = (ctx.q, ctx.k, ctx.v, ctx.opts, ctx.cfgs);
    let l = block_sparse_layout(q, k, v, opts)?;
    let scale = scale_of(opts, l.head_dim)?;
    let is_static = static_mask(&opts.select, l.n_blocks() as usize)?.is_some();
    if bufs.out.shape() != q.shape() || bufs.gated.is_some() == is_static {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: format!(
                "buffers were made for q {:?} and another selection, got q {:?} and {:?}",
                bufs.out.shape(),
                q.shape(),
                opts.select
            ),
        });
    }
    let mut params = l.params();
    params.scale = scale;
    params.causal = opts.causal as u32;
    params.rows = l.n_blocks() as u32;
    params.bits_bh = 0;
    if let (Some(gb), Some(sel)) = (&bufs.gated, &bufs.selection) {
        select_blocks(rec, ctx, &l, &mut params, bufs, gb, sel)?;
        if !attend {
            return Ok(());
        }
        if let Some(g) = &gb.gather {
            return gather_and_merge(rec, ctx, l, &mut params, bufs, g, sel);
        }
    }
    if !attend {
        return Ok(());
    }
    let spec = BsAttnSpec {
        layout: l,
        gather: false,
    };
    let (c, kernel) = rec.kernel(&spec, cfgs.attend.clone(), || {
        ctx.replay(|cf, c| cf.attend = Some(c))
    })?;
    params.q_tiles = spec.q_tiles(&c);
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[
            Bind::whole("q", q),
            Bind::whole("k", k),
            Bind::whole("v", v),
            Bind::whole("bits", &bufs.bits),
            Bind::whole("out", &bufs.out),
        ],
        spec.dispatch(&c),
    )
}

fn stage_spec(l: &BlockLayout, stage: BsStage, rows: u64, src_heads: u64) -> BsStageSpec {
    BsStageSpec {
        stage,
        layout: l.clone(),
        rows,
        src_heads,
    }
}

/// One of the stage kernels (means, gate, select, merge), whose config `field` selects.
fn run_stage(
    rec: &mut Recorder,
    ctx: &Ctx<'_>,
    spec: BsStageSpec,
    field: fn(&mut SparseConfigs) -> &mut Option<BsWgConfig>,
    p: &BsParams,
    binds: &[Bind],
) -> Result<()> {
    let mut cfgs = ctx.cfgs.clone();
    let cfg = field(&mut cfgs).clone();
    let (c, kernel) = rec.kernel(&spec, cfg, || match spec.stage {
        BsStage::Means => ctx.replay(|cf, c| cf.means = Some(c)),
        BsStage::Gate => ctx.replay(|cf, c| cf.gate = Some(c)),
        BsStage::Select => ctx.replay(|cf, c| cf.select = Some(c)),
        BsStage::Merge => ctx.replay(|cf, c| cf.merge = Some(c)),
    })?;
    rec.dispatch(&kernel, bytemuck::bytes_of(p), binds, spec.dispatch(&c))
}

/// Key-block-major attention of each query over its selected blocks, then the merge.
fn gather_and_merge(
    rec: &mut Recorder,
    ctx: &Ctx<'_>,
    l: BlockLayout,
    params: &mut BsParams,
    bufs: &SparseBuffers,
    g: &GatherBuffers,
    sel: &SelectedBlocks,
) -> Result<()> {
    let (q, k, v) = (ctx.q, ctx.k, ctx.v);
    let spec = BsAttnSpec {
        layout: l.clone(),
        gather: true,
    };
    let (c, kernel) = rec.kernel(&spec, ctx.cfgs.gather.clone(), || {
        ctx.replay(|cf, c| cf.gather = Some(c))
    })?;
    params.q_tiles = spec.q_tiles(&c);
    rec.dispatch(
        &kernel,
        bytemuck::bytes_of(params),
        &[
            Bind::whole("q", q),
            Bind::whole("k", k),
            Bind::whole("v", v),
            Bind::whole("kcount", &g.kcount),
            Bind::whole("qlist", &g.qlist),
            Bind::whole("pacc", &g.pacc),
            Bind::whole("pml", &g.pml),
        ],
        spec.dispatch(&c),
    )?;
    run_stage(
        rec,
        ctx,
        stage_spec(&l, BsStage::Merge, l.seq, l.n_kv_heads),
        |cf| &mut cf.merge,
        params,
        &[
            Bind::whole("counts", &sel.counts),
            Bind::whole("pacc", &g.pacc),
            Bind::whole("pml", &g.pml),
            Bind::whole("out", &bufs.out),
        ],
    )
}

/// Block means, gates and selection into `bufs`. Sets the selection fields of `params`.
fn select_blocks(
    rec: &mut Recorder,
    ctx: &Ctx<'_>,
    l: &BlockLayout,
    params: &mut BsParams,
    bufs: &SparseBuffers,
    gb: &GateBuffers,
    sel: &SelectedBlocks,
) -> Result<()> {
    let (q, k, opts) = (ctx.q, ctx.k, ctx.opts);
    let per_query = opts.granularity == Granularity::Query;
    let rows = if per_query { l.seq } else { l.n_blocks() };
    if sel.per_query != per_query || gb.gates.shape()[2] as u64 != rows {
        return Err(Error::InvalidArgument {
            op: OP,
            detail: "buffers were made for another selection granularity".into(),
        });
    }
    params.rows = rows as u32;
    params.per_query = per_query as u32;
    params.global_sel = opts.global as u32;
    params.bits_bh = 1;
    params.gather = gb.gather.is_some() as u32;
    params.slots = gb.gather.as_ref().map_or(0, |g| g.slots as u32);
    match opts.select {
        BlockSelect::TopK(kk) => {
            params.mode = 0;
            // More than every block is every block; clamping keeps k x rows within u32.
            params.top_k = kk.min(l.n_blocks() as u32);
        }
        BlockSelect::Threshold(t) => {
            params.mode = 1;
            params.threshold = t;
        }
        _ => {}
    }
    let mut pm = *params;
    pm.src_heads = l.n_kv_heads as u32;
    run_stage(
        rec,
        ctx,
        stage_spec(l, BsStage::Means, rows, l.n_kv_heads),
        |cf| &mut cf.means,
        &pm,
        &[Bind::whole("x", k), Bind::whole("mean", &gb.kmean)],
    )?;
    let qsrc = match &gb.qmean {
        Some(qmean) => {
            pm.src_heads = l.n_heads as u32;
            run_stage(
                rec,
                ctx,
                stage_spec(l, BsStage::Means, rows, l.n_heads),
                |cf| &mut cf.means,
                &pm,
                &[Bind::whole("x", q), Bind::whole("mean", qmean)],
            )?;
            qmean
        }
        None => q,
    };
    let (kcount, qlist) = match &gb.gather {
        Some(g) => (&g.kcount, &g.qlist),
        None => (&gb.dummies[0], &gb.dummies[1]),
    };
    run_stage(
        rec,
        ctx,
        stage_spec(l, BsStage::Gate, rows, l.n_kv_heads),
        |cf| &mut cf.gate,
        params,
        &[
            Bind::whole("qs", qsrc),
            Bind::whole("kmean", &gb.kmean),
            Bind::whole("gates", &gb.gates),
            Bind::whole("kcount", kcount),
        ],
    )?;
    run_stage(
        rec,
        ctx,
        stage_spec(l, BsStage::Select, rows, l.n_kv_heads),
        |cf| &mut cf.select,
        params,
        &[
            Bind::whole("gates", &gb.gates),
            Bind::whole("bits", &bufs.bits),
            Bind::whole("list", &sel.indices),
            Bind::whole("counts", &sel.counts),
            Bind::whole("kcount", kcount),
            Bind::whole("qlist", qlist),
        ],
    )
}
