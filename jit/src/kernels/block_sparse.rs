//! Block-sparse attention (MoBA / VMoBA): keys are split into blocks (boxes of a [T, H, W]
//! token grid; 1-D is [1, 1, seq]), each block is represented by its mean key, and each
//! selection row (a query, or a query block) attends only to the blocks it selects.
//!
//! Four kernels, in order:
//! - `means`: mean vector per block and head ([batch, n_blocks, heads, d]); also run on q for
//!   query-block gating;
//! - `gate`: `scale * q_row . mean(k_block)` for every (row, block) pair a row may choose;
//! - `select`: top-k or threshold selection per row (or over a whole head: global), written as
//!   a bit mask [batch, heads, rows, words] and a compact ascending index list
//!   [batch, heads, rows, n_blocks] with counts [batch, heads, rows];
//! - `attend`: fused online-softmax attention of each query over the blocks its row selected.
//!
//! Static masks (Sparse Transformer patterns, user masks) skip the first three: the host builds
//! the bit mask. Layouts (f32, row-major): q, out [batch, seq, n_heads, d]; k, v
//! [batch, seq, n_kv_heads, d].

use crate::error::JitError;
use crate::kernels::attention::{check_heads, row_out, tile_sections, AttentionConfig};
use crate::kernels::{
    check_shared, check_workgroup, groups_dispatch, illegal, linear_dispatch, MAX_REGISTER_FLOATS,
};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{BLOCK_SPARSE, BLOCK_SPARSE_ATTEND, BLOCK_SPARSE_GATHER, BLOCK_SPARSE_TILE};
use crate::spec::{div_ceil, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms shared by all block-sparse kernels (each reads the fields it needs).
    /// `per_query`: selection rows are query tokens (else query blocks); `mode`: 0 top-k,
    /// 1 threshold; `bits_bh`: 1 if each (batch, head) has its own mask rows, 0 if shared;
    /// `gather`: per-query rows also build per-block query lists for the gather kernel, whose
    /// partial results have `slots` entries per query.
    BsParams {
        batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32,
        group: u32, src_heads: u32, grid_t: u32, grid_h: u32,
        grid_w: u32, box_t: u32, box_h: u32, box_w: u32,
        nb_t: u32, nb_h: u32, nb_w: u32, n_blocks: u32,
        words: u32, rows: u32, per_query: u32, global_sel: u32,
        causal: u32, mode: u32, top_k: u32, threshold: f32,
        scale: f32, bits_bh: u32, q_tiles: u32, gather: u32,
        slots: u32, pad0: u32, pad1: u32, pad2: u32,
    }
);

/// Most blocks one problem may have: the attention kernel keeps a union bit mask of
/// MAX_BLOCKS / 32 words in workgroup memory.
pub const MAX_BLOCKS: u64 = 1024;

/// The geometry every block-sparse kernel shares. `grid` is [T, H, W] with T*H*W = seq,
/// `block` the box [bt, bh, bw] (each >= 1 and <= its grid axis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub batch: u64,
    pub seq: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub grid: [u64; 3],
    pub block: [u64; 3],
}

impl BlockLayout {
    /// Blocks per grid axis.
    pub fn blocks_per_axis(&self) -> [u64; 3] {
        [0, 1, 2].map(|a| self.grid[a].div_ceil(self.block[a].max(1)))
    }
    pub fn n_blocks(&self) -> u64 {
        self.blocks_per_axis().iter().product()
    }
    /// Tokens of the largest (full) block.
    pub fn block_tokens(&self) -> u64 {
        (0..3).map(|a| self.block[a].min(self.grid[a])).product()
    }
    /// u32 words of one selection row's bit mask.
    pub fn words(&self) -> u64 {
        self.n_blocks().div_ceil(32)
    }

    /// Uniforms with the geometry filled in; the op sets the selection fields.
    pub fn params(&self) -> BsParams {
        let nb = self.blocks_per_axis();
        BsParams {
            batch: self.batch as u32,
            seq: self.seq as u32,
            n_heads: self.n_heads as u32,
            n_kv_heads: self.n_kv_heads as u32,
            group: (self.n_heads / self.n_kv_heads.max(1)) as u32,
            src_heads: self.n_kv_heads as u32,
            grid_t: self.grid[0] as u32,
            grid_h: self.grid[1] as u32,
            grid_w: self.grid[2] as u32,
            box_t: self.block[0] as u32,
            box_h: self.block[1] as u32,
            box_w: self.block[2] as u32,
            nb_t: nb[0] as u32,
            nb_h: nb[1] as u32,
            nb_w: nb[2] as u32,
            n_blocks: self.n_blocks() as u32,
            words: self.words() as u32,
            rows: self.n_blocks() as u32,
            ..Default::default()
        }
    }

    /// Problem checks shared by every kernel (sizes fit the u32 indexing of the WGSL).
    pub fn check(&self, family: &str) -> Result<(), JitError> {
        check_heads(family, self.n_heads, self.n_kv_heads, self.head_dim)?;
        let unsupported = |reason: String| JitError::UnsupportedProblem {
            family: family.into(),
            reason,
        };
        if self.grid.iter().product::<u64>() != self.seq {
            return Err(unsupported(format!(
                "grid {:?} does not hold seq {} tokens",
                self.grid, self.seq
            )));
        }
        if (0..3).any(|a| self.block[a] == 0 || self.block[a] > self.grid[a].max(1)) {
            return Err(unsupported(format!(
                "block {:?} must be >= 1 and within grid {:?} on every axis",
                self.block, self.grid
            )));
        }
        if self.n_blocks() > MAX_BLOCKS {
            return Err(unsupported(format!(
                "{} blocks exceed the supported {MAX_BLOCKS}; use larger blocks",
                self.n_blocks()
            )));
        }
        let el = self.batch * self.seq * self.n_heads.max(self.n_kv_heads) * self.head_dim;
        let gates = self.batch * self.n_heads * self.seq * self.n_blocks();
        if el / 4 > u32::MAX as u64 || gates > u32::MAX as u64 {
            return Err(unsupported(
                "tensors above 2^32 vec4 elements or gates above 2^32".into(),
            ));
        }
        Ok(())
    }
}

/// The config of the simple one-invocation-per-item kernels (means, gate, select).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BsWgConfig {
    pub wg: u32,
}

/// Which of the simple kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BsStage {
    /// Block means of a tensor with `src_heads` heads.
    Means,
    /// Gates of `rows` selection rows.
    Gate,
    /// Selection over `rows` rows.
    Select,
    /// Gather mode: merges each query's per-block partial results.
    Merge,
}

/// One of the means / gate / select kernels over a layout. `rows` is the number of selection
/// rows (seq for per-query selection, n_blocks for query blocks); `src_heads` the heads of the
/// tensor whose block means are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BsStageSpec {
    pub stage: BsStage,
    pub layout: BlockLayout,
    pub rows: u64,
    pub src_heads: u64,
}

impl BsStageSpec {
    fn items(&self) -> u64 {
        let l = &self.layout;
        match self.stage {
            BsStage::Means => l.batch * l.n_blocks() * self.src_heads * (l.head_dim / 4),
            BsStage::Gate => l.batch * l.n_heads * self.rows * l.n_blocks(),
            BsStage::Select => l.batch * l.n_heads * self.rows,
            BsStage::Merge => l.batch * l.n_heads * l.seq * (l.head_dim / 4),
        }
    }
    fn name(&self) -> &'static str {
        match self.stage {
            BsStage::Means => "means",
            BsStage::Gate => "gate",
            BsStage::Select => "select",
            BsStage::Merge => "merge",
        }
    }
}

impl KernelSpec for BsStageSpec {
    type Config = BsWgConfig;

    fn family(&self) -> &'static str {
        "block_sparse"
    }

    fn key(&self, cfg: &BsWgConfig) -> String {
        match self.stage {
            BsStage::Select => format!("block_sparse.select.wg{}", cfg.wg),
            _ => format!(
                "block_sparse.{}.f32.d{}.wg{}",
                self.name(),
                self.layout.head_dim,
                cfg.wg
            ),
        }
    }

    fn tune_key(&self) -> String {
        let l = &self.layout;
        format!(
            "block_sparse.{}.d{}|s{}.nb{}.r{}",
            self.name(),
            l.head_dim,
            l.seq.next_power_of_two(),
            l.n_blocks().next_power_of_two(),
            self.rows.next_power_of_two()
        )
    }

    fn bindings(&self, _cfg: &BsWgConfig) -> Vec<BindingDecl> {
        match self.stage {
            BsStage::Means => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "x"),
                BindingDecl::read_write(2, "mean"),
            ],
            BsStage::Gate => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "qs"),
                BindingDecl::read(2, "kmean"),
                BindingDecl::read_write(3, "gates"),
                BindingDecl::read_write(4, "kcount"),
            ],
            BsStage::Select => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "gates"),
                BindingDecl::read_write(2, "bits"),
                BindingDecl::read_write(3, "list"),
                BindingDecl::read_write(4, "counts"),
                BindingDecl::read_write(5, "kcount"),
                BindingDecl::read_write(6, "qlist"),
            ],
            BsStage::Merge => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "counts"),
                BindingDecl::read(2, "pacc"),
                BindingDecl::read(3, "pml"),
                BindingDecl::read_write(4, "out"),
            ],
        }
    }

    fn render(&self, cfg: &BsWgConfig) -> Result<String, JitError> {
        let f = "block_sparse.wgsl";
        let name = self.name();
        let body = section(f, BLOCK_SPARSE, name)?;
        let mut values = vec![("KEY", self.key(cfg)), ("WG", cfg.wg.to_string())];
        if matches!(self.stage, BsStage::Means | BsStage::Gate | BsStage::Merge) {
            values.push(("D4", (self.layout.head_dim / 4).to_string()));
        }
        let body = render(f, body, &values)?;
        let common = render(
            f,
            section(f, BLOCK_SPARSE, "common")?,
            &[("PARAMS", BsParams::wgsl_decl())],
        )?;
        // The key comment must come first.
        Ok(format!("{body}\n{common}"))
    }

    fn dispatch(&self, cfg: &BsWgConfig) -> [u32; 3] {
        let n = self.items();
        if n == 0 {
            return [0, 1, 1];
        }
        linear_dispatch(n, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &BsWgConfig) -> Result<(), JitError> {
        let fam = self.family();
        self.layout.check(fam)?;
        check_workgroup(fam, &self.key(cfg), profile, cfg.wg)
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<BsWgConfig> {
        [32, 64, 128, 256]
            .into_iter()
            .map(|wg| BsWgConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> BsWgConfig {
        // Selection rows are long serial loops: small groups spread them over more cores.
        let want = if self.stage == BsStage::Select {
            64
        } else {
            128
        };
        let c = BsWgConfig { wg: want };
        if self.check(profile, &c).is_ok() {
            return c;
        }
        self.space(profile)
            .into_iter()
            .next()
            .unwrap_or(BsWgConfig { wg: 32 })
    }
}

/// The fused attention kernels' config: the dense prefill kernel's, as they share its tiled
/// layout (attention_tile.wgsl).
pub type BsAttnConfig = AttentionConfig;

/// Fused attention over the selected blocks: query-major over the union of a query tile's
/// blocks (`attend`), or key-block major over the queries that selected each block, writing
/// per-block partial results for the merge kernel (`gather`, per-query selection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BsAttnSpec {
    pub layout: BlockLayout,
    pub gather: bool,
}

impl BsAttnSpec {
    /// Query tiles per query block (attend), or per key block's query list (gather).
    pub fn q_tiles(&self, cfg: &BsAttnConfig) -> u32 {
        let n = if self.gather {
            self.layout.seq
        } else {
            self.layout.block_tokens()
        };
        div_ceil(n, cfg.q_tile() as u64).max(1)
    }

    fn shared_bytes(&self, cfg: &BsAttnConfig) -> u64 {
        let maxw = if self.gather { 1 } else { MAX_BLOCKS / 32 };
        2 * cfg.kv_tile as u64 * self.layout.head_dim * 4
            + 4 * cfg.kv_tile as u64
            + 8 * maxw
            + 4 * cfg.sp_len()
    }
}

impl KernelSpec for BsAttnSpec {
    type Config = BsAttnConfig;

    fn family(&self) -> &'static str {
        "block_sparse"
    }

    fn key(&self, cfg: &BsAttnConfig) -> String {
        format!(
            "block_sparse.{}.f32.d{}.wg{}.t{}.r{}.bk{}",
            if self.gather { "gather" } else { "attend" },
            self.layout.head_dim,
            cfg.wg,
            cfg.tpr,
            cfg.rows,
            cfg.kv_tile
        )
    }

    fn tune_key(&self) -> String {
        let l = &self.layout;
        format!(
            "block_sparse.{}.d{}|s{}.b{}",
            if self.gather { "gather" } else { "attend" },
            l.head_dim,
            l.seq.next_power_of_two(),
            l.block_tokens().next_power_of_two()
        )
    }

    fn bindings(&self, _cfg: &BsAttnConfig) -> Vec<BindingDecl> {
        if self.gather {
            return vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "q"),
                BindingDecl::read(2, "k"),
                BindingDecl::read(3, "v"),
                BindingDecl::read(4, "kcount"),
                BindingDecl::read(5, "qlist"),
                BindingDecl::read_write(6, "pacc"),
                BindingDecl::read_write(7, "pml"),
            ];
        }
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "q"),
            BindingDecl::read(2, "k"),
            BindingDecl::read(3, "v"),
            BindingDecl::read(4, "bits"),
            BindingDecl::read_write(5, "out"),
        ]
    }

    fn render(&self, cfg: &BsAttnConfig) -> Result<String, JitError> {
        let t = "block_sparse_tile.wgsl";
        let mut values = vec![
            ("KEY", self.key(cfg)),
            (
                "BS_TILE_DECLS",
                section(t, BLOCK_SPARSE_TILE, "decls")?.into(),
            ),
            ("STAGE_KEYS", section(t, BLOCK_SPARSE_TILE, "stage")?.into()),
            ("MASK_KEYS", section(t, BLOCK_SPARSE_TILE, "mask")?.into()),
        ];
        values.extend(tile_sections(self.layout.head_dim, cfg)?);
        let body = if self.gather {
            let f = "block_sparse_gather.wgsl";
            render(f, section(f, BLOCK_SPARSE_GATHER, "gather")?, &values)?
        } else {
            let f = "block_sparse_attend.wgsl";
            values.push(row_out()?);
            values.push(("MAXW", (MAX_BLOCKS / 32).to_string()));
            render(f, section(f, BLOCK_SPARSE_ATTEND, "attend")?, &values)?
        };
        let common = render(
            "block_sparse.wgsl",
            section("block_sparse.wgsl", BLOCK_SPARSE, "common")?,
            &[("PARAMS", BsParams::wgsl_decl())],
        )?;
        Ok(format!("{body}\n{common}"))
    }

    fn dispatch(&self, cfg: &BsAttnConfig) -> [u32; 3] {
        let l = &self.layout;
        if l.seq == 0 {
            return groups_dispatch(0);
        }
        groups_dispatch(self.q_tiles(cfg) as u64 * l.n_blocks() * l.n_heads * l.batch)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &BsAttnConfig) -> Result<(), JitError> {
        let fam = self.family();
        self.layout.check(fam)?;
        let key = self.key(cfg);
        check_workgroup(fam, &key, profile, cfg.wg)?;
        if !self.gather && (cfg.wg as u64) < MAX_BLOCKS / 32 {
            return Err(illegal(
                fam,
                &key,
                "the workgroup must have an invocation per union mask word (>= 32)",
            ));
        }
        if !matches!(cfg.rows, 1 | 2 | 4) {
            return Err(illegal(fam, &key, "rows per invocation must be 1, 2 or 4"));
        }
        if !matches!(cfg.tpr, 1 | 2 | 4)
            || !cfg.wg.is_multiple_of(cfg.tpr)
            || !(self.layout.head_dim / 4).is_multiple_of(cfg.tpr as u64)
        {
            return Err(illegal(
                fam,
                &key,
                "threads per row must be 1, 2 or 4, dividing the workgroup and the head's vec4 \
                 columns",
            ));
        }
        if cfg.kv_tile == 0 || cfg.kv_tile > 128 {
            return Err(illegal(fam, &key, "kv tile must be 1..=128 keys"));
        }
        let regs = cfg.register_floats(self.layout.head_dim);
        if regs > MAX_REGISTER_FLOATS {
            return Err(illegal(
                fam,
                &key,
                format!("{regs} register floats per invocation exceed {MAX_REGISTER_FLOATS}"),
            ));
        }
        let shared = self.shared_bytes(cfg);
        check_shared(fam, &key, profile, shared, "tiles need")
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<BsAttnConfig> {
        // Tiles below 16 keys only where larger ones may not fit (wide heads on 16 KiB
        // devices): below 16 keys the barriers per tile dominate.
        let tiles: &[u32] = match self.layout.head_dim {
            256.. => &[4, 8, 16, 32],
            128.. => &[8, 16, 32],
            _ => &[16, 32],
        };
        // Split rows only where a row's columns burden the registers (head dim >= 64).
        let tprs: &[u32] = match self.layout.head_dim {
            256.. => &[1, 2, 4],
            64.. => &[1, 2],
            _ => &[1],
        };
        // Split rows exist to save registers: one row per invocation.
        let rows_for = |tpr| -> &[u32] {
            if tpr == 1 {
                &[1, 2, 4]
            } else {
                &[1]
            }
        };
        AttentionConfig::grid(tprs, &[32, 64, 128], rows_for, tiles)
            // 32 invocations only as the small-block fallback (one row, unsplit).
            .filter(|c| c.wg > 32 || (c.rows == 1 && c.tpr == 1))
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> BsAttnConfig {
        // Query tiles never span two blocks, so tiles larger than a block leave rows idle, and
        // K/V tiles larger than a block stage padding: take the largest of each that fits a
        // block (gather tiles hold queries of many blocks: size them like a block too). Two
        // rows per invocation reuse each staged key twice, but only small heads keep 2 rows of
        // query and accumulator within ~128 registers (as the dense kernel's default does;
        // more spills on NVIDIA's 255).
        let n = self.layout.block_tokens();
        // Like the dense kernel, at most 16 vec4 columns of a row per invocation.
        let tpr = AttentionConfig::default_tpr(self.layout.head_dim, &[1, 2, 4]);
        let shapes: &[(u32, u32)] = if self.layout.head_dim <= 32 {
            &[(64, 2), (128, 1), (64, 1), (32, 1)]
        } else {
            &[(128, 1), (64, 1), (32, 1)]
        };
        let fits = |x: u32| x as u64 <= n;
        let space = self.space(profile);
        let pick = shapes
            .iter()
            .filter(|&&(wg, rows)| fits(wg / tpr * rows) || (wg, rows) == (32, 1))
            .flat_map(|&(wg, rows)| {
                [32, 16, 8, 4]
                    .into_iter()
                    .filter(move |&t| fits(t))
                    .map(move |kv_tile| BsAttnConfig {
                        wg,
                        rows,
                        kv_tile,
                        tpr,
                    })
            })
            .find(|c| space.contains(c));
        if let Some(c) = pick {
            return c;
        }
        // Blocks smaller than every tile: the smallest tile, in a query tile that fits.
        let small = space
            .iter()
            .filter(|c| fits(c.q_tile()) || c.q_tile() == 32)
            .min_by_key(|c| (c.kv_tile, u32::MAX - c.q_tile()));
        if let Some(c) = small {
            return c.clone();
        }
        self.space(profile)
            .into_iter()
            .next()
            .unwrap_or(BsAttnConfig {
                wg: 32,
                rows: 1,
                kv_tile: 8,
                tpr: 1,
            })
    }
}
