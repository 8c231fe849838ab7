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

use super::block_sparse_buffers::{GateBuffers, GatherBuffers, SelectedBlocks, SparseBuffers};
use super::block_sparse_opts::SparseOptions;
use super::block_sparse_opts::{layout, static_mask, BlockSelect, Granularity, OP};
use super::{expect_f32, expect_single, no_out, Call, Op, OpSpec};
use crate::error::{Error, Result};
use crate::recorder::{Bind, Recorder, ReplayFactory};
use crate::tensor::Tensor;

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
