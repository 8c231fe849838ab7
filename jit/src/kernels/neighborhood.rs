//! Fused neighborhood attention (NATTEN semantics) over 1-D, 2-D and 3-D token grids.
//!
//! Layouts (f32, row-major): q, k, v and out [batch, heads, X(, Y(, Z)), d]; the optional
//! relative positional bias rpb [heads, 2*kx-1(, 2*ky-1(, 2*kz-1))]. The spec pads every
//! problem to three axes, outermost first (a 1-D problem of length L is 1 x 1 x L with kernel
//! 1 on the padded axes), so one template serves every rank.
//!
//! Per axis of length L with kernel k (odd), dilation d and causal flag: positions with the
//! same index mod d form a group; in group indices (position / d, group length
//! ceil((L - g) / d)) the query at i sees [clamp(i - k/2, 0, group_len - k), + k - 1] when not
//! causal (NATTEN's border rule: the window shifts at the edges so it always holds k keys) and
//! [max(i - (k - 1), 0), i] when causal. The bias of a (query, key) pair is
//! rpb[h, (key - query) + k - 1, ...] with offsets in group indices, per axis (NAT's indexing).
//! Legal problems need k * d <= L per axis, so every group holds at least k positions.

use crate::error::JitError;
use crate::kernels::{
    check_shared, check_workgroup, groups_dispatch, illegal, MAX_REGISTER_FLOATS,
};
use crate::profile::DeviceProfile;
use crate::render::render;
use crate::shaders::NEIGHBORHOOD;
use crate::spec::{div_ceil, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `neighborhood.wgsl`, axes padded to three (outermost first).
    NaParams {
        batch_heads: u32, heads: u32, len0: u32, len1: u32,
        len2: u32, kern0: u32, kern1: u32, kern2: u32,
        dil0: u32, dil1: u32, dil2: u32, causal0: u32,
        causal1: u32, causal2: u32, tiles0: u32, tiles1: u32,
        tiles2: u32, has_rpb: u32, scale: f32, pad0: u32,
    }
);

/// Chunk lengths offered to the space.
const CHUNKS: [u32; 4] = [8, 16, 32, 64];

/// Largest supported head dim: q and the accumulator live in registers (2 x d floats).
pub const MAX_HEAD_DIM: u64 = 256;

/// The problem, axes padded to three. Only `rank` (in the key) and `head_dim` shape the
/// WGSL; sizes, kernel, dilation, causal flags and the bias go to uniforms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborhoodSpec {
    pub batch: u64,
    pub heads: u64,
    /// Number of real axes (1, 2 or 3); the first `3 - rank` entries below are padding.
    pub rank: u32,
    /// Axis lengths, outermost first.
    pub dims: [u64; 3],
    pub head_dim: u64,
    pub kernel: [u32; 3],
    pub dilation: [u32; 3],
    pub causal: [bool; 3],
    pub rpb: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborhoodConfig {
    /// Query tile per padded axis, in group indices.
    pub tile: [u32; 3],
    /// Keys per chunk of a line staged in workgroup memory.
    pub kv_chunk: u32,
    /// Queries per invocation, adjacent along padded axis 1 (they share K/V reads); divides
    /// `tile[1]`.
    pub rows: u32,
}

impl NeighborhoodConfig {
    pub fn invocations(&self) -> u32 {
        self.tile[0] * (self.tile[1] / self.rows.max(1)) * self.tile[2]
    }
}

/// Pads per-axis values of a rank-`n` problem to three axes.
fn pad3<T: Copy>(vals: &[T], fill: T) -> [T; 3] {
    let mut out = [fill; 3];
    let off = 3 - vals.len().min(3);
    for (i, &x) in vals.iter().take(3).enumerate() {
        out[off + i] = x;
    }
    out
}

impl NeighborhoodSpec {
    /// Builds the padded problem from per-axis slices of the real rank (1..=3, all the same
    /// length; `check` reports any other length or illegal value).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: u64,
        heads: u64,
        dims: &[u64],
        head_dim: u64,
        kernel: &[u32],
        dilation: &[u32],
        causal: &[bool],
        rpb: bool,
    ) -> Self {
        let n = dims.len();
        let same = kernel.len() == n && dilation.len() == n && causal.len() == n;
        Self {
            batch,
            heads,
            // Rank 0 marks per-axis arguments of different lengths, which `check` rejects.
            rank: if same { n as u32 } else { 0 },
            dims: pad3(dims, 1),
            head_dim,
            kernel: pad3(kernel, 1),
            dilation: pad3(dilation, 1),
            causal: pad3(causal, false),
            rpb,
        }
    }

    /// Query tiles per axis: the longest group (group 0) over the tile.
    pub fn tiles(&self, cfg: &NeighborhoodConfig) -> [u32; 3] {
        let mut t = [1; 3];
        for (a, ta) in t.iter_mut().enumerate() {
            let gl = self.dims[a].div_ceil(self.dilation[a].max(1) as u64);
            *ta = div_ceil(gl, cfg.tile[a] as u64).max(1);
        }
        t
    }

    fn groups(&self, cfg: &NeighborhoodConfig) -> u64 {
        let t = self.tiles(cfg);
        (0..3)
            .map(|a| t[a] as u64 * self.dilation[a] as u64)
            .product::<u64>()
            * self.batch
            * self.heads
    }

    pub fn params(&self, cfg: &NeighborhoodConfig, scale: f32) -> NaParams {
        let t = self.tiles(cfg);
        NaParams {
            batch_heads: (self.batch * self.heads) as u32,
            heads: self.heads as u32,
            len0: self.dims[0] as u32,
            len1: self.dims[1] as u32,
            len2: self.dims[2] as u32,
            kern0: self.kernel[0],
            kern1: self.kernel[1],
            kern2: self.kernel[2],
            dil0: self.dilation[0],
            dil1: self.dilation[1],
            dil2: self.dilation[2],
            causal0: self.causal[0] as u32,
            causal1: self.causal[1] as u32,
            causal2: self.causal[2] as u32,
            tiles0: t[0],
            tiles1: t[1],
            tiles2: t[2],
            has_rpb: self.rpb as u32,
            scale,
            pad0: 0,
        }
    }

    /// Tokens per (batch, head).
    pub fn tokens(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Keys of the window of a non-causal query (the product of the kernel sizes).
    pub fn window_volume(&self) -> u64 {
        self.kernel.iter().map(|&k| k as u64).product()
    }

    /// Elements of the bias: heads x prod(2k - 1).
    pub fn rpb_len(&self) -> u64 {
        self.heads
            * self
                .kernel
                .iter()
                .map(|&k| 2 * k as u64 - 1)
                .product::<u64>()
    }

    /// Rejects problems no config can run, saying why (the engine op reports the same rules
    /// as typed argument errors first).
    pub fn check_problem(&self) -> Result<(), JitError> {
        let bad = |reason: String| JitError::UnsupportedProblem {
            family: "neighborhood".into(),
            reason,
        };
        if !(1..=3).contains(&self.rank) {
            return Err(bad(format!(
                "rank {} is not 1, 2 or 3 (or the per-axis arguments differ in length)",
                self.rank
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(4) || self.head_dim > MAX_HEAD_DIM {
            return Err(bad(format!(
                "head dim {} must be a positive multiple of 4 up to {MAX_HEAD_DIM}",
                self.head_dim
            )));
        }
        for a in 0..3 {
            let (l, k, d) = (self.dims[a], self.kernel[a] as u64, self.dilation[a] as u64);
            if l == 0 || d == 0 || k.is_multiple_of(2) || k * d > l {
                return Err(bad(format!(
                    "axis {a}: length {l}, kernel {k}, dilation {d}: need an odd kernel and \
                     1 <= kernel * dilation <= length"
                )));
            }
        }
        let el = self.batch * self.heads * self.tokens() * self.head_dim;
        if el / 4 > u32::MAX as u64 || self.batch * self.heads > u32::MAX as u64 {
            return Err(bad("tensors above 2^32 vec4 elements".into()));
        }
        Ok(())
    }

    /// Tile shapes offered for each rank (padded axes have tile 1). Small outer tiles keep
    /// the lines of the union close to the lines each query needs.
    fn tile_shapes(&self) -> &'static [[u32; 3]] {
        match self.rank {
            1 => &[[1, 1, 32], [1, 1, 64], [1, 1, 128]],
            2 => &[
                [1, 4, 8],
                [1, 8, 8],
                [1, 2, 16],
                [1, 4, 16],
                [1, 8, 16],
                [1, 2, 32],
                [1, 4, 32],
            ],
            _ => &[[2, 4, 8], [4, 4, 4], [4, 4, 8], [2, 8, 8], [1, 4, 16]],
        }
    }

    /// Keys of one line of a tile's union along the innermost axis (at most).
    fn union_line(&self, tile: [u32; 3]) -> u32 {
        tile[2] + self.kernel[2].saturating_sub(1)
    }
}

impl KernelSpec for NeighborhoodSpec {
    type Config = NeighborhoodConfig;

    fn family(&self) -> &'static str {
        "neighborhood"
    }

    fn key(&self, cfg: &NeighborhoodConfig) -> String {
        let t = cfg.tile;
        format!(
            "neighborhood.f32.r{}.d{}.t{}x{}x{}.bk{}.q{}",
            self.rank, self.head_dim, t[0], t[1], t[2], cfg.kv_chunk, cfg.rows
        )
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        let dims: Vec<String> = self.dims.iter().map(|&l| bucket(l).to_string()).collect();
        let ks: Vec<String> = self.kernel.iter().map(|k| k.to_string()).collect();
        format!(
            "neighborhood.f32.r{}.d{}|{}.k{}.h{}",
            self.rank,
            self.head_dim,
            dims.join("x"),
            ks.join("x"),
            bucket(self.batch * self.heads)
        )
    }

    fn bindings(&self, _cfg: &NeighborhoodConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "q"),
            BindingDecl::read(2, "k"),
            BindingDecl::read(3, "v"),
            BindingDecl::read(4, "rpb"),
            BindingDecl::read_write(5, "out"),
        ]
    }

    fn render(&self, cfg: &NeighborhoodConfig) -> Result<String, JitError> {
        render(
            "neighborhood.wgsl",
            NEIGHBORHOOD,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", NaParams::wgsl_decl()),
                ("D4", (self.head_dim / 4).to_string()),
                ("T0", cfg.tile[0].to_string()),
                ("T1", cfg.tile[1].to_string()),
                ("T2", cfg.tile[2].to_string()),
                ("BK", cfg.kv_chunk.to_string()),
                ("R", cfg.rows.to_string()),
            ],
        )
    }

    fn dispatch(&self, cfg: &NeighborhoodConfig) -> [u32; 3] {
        groups_dispatch(self.groups(cfg))
    }

    fn check(&self, profile: &DeviceProfile, cfg: &NeighborhoodConfig) -> Result<(), JitError> {
        let fam = self.family();
        self.check_problem()?;
        let key = self.key(cfg);
        check_workgroup(fam, &key, profile, cfg.invocations())?;
        for a in 0..3 {
            if cfg.tile[a] == 0 || (a < 3 - self.rank as usize && cfg.tile[a] != 1) {
                return Err(illegal(
                    fam,
                    &key,
                    format!("tile of axis {a} must be >= 1, and 1 on padded axes"),
                ));
            }
        }
        if !matches!(cfg.rows, 1 | 2 | 4) || !cfg.tile[1].is_multiple_of(cfg.rows) {
            return Err(illegal(
                fam,
                &key,
                "queries per invocation must be 1, 2 or 4 and divide the axis-1 tile",
            ));
        }
        let regs = cfg.rows as u64 * (2 * self.head_dim + cfg.kv_chunk as u64);
        if regs > MAX_REGISTER_FLOATS {
            return Err(illegal(
                fam,
                &key,
                format!(
                    "{regs} floats of registers per invocation (rows x (2 x head dim + chunk)) \
                     exceed {MAX_REGISTER_FLOATS}"
                ),
            ));
        }
        if !matches!(cfg.kv_chunk, 4 | 8 | 16 | 32 | 64) {
            return Err(illegal(
                fam,
                &key,
                "kv chunk must be 4, 8, 16, 32 or 64 keys",
            ));
        }
        // K and V chunks of kv_chunk rows of head_dim + 4 floats (one vec4 of bank padding).
        let shared = 2 * cfg.kv_chunk as u64 * (self.head_dim + 4) * 4;
        check_shared(fam, &key, profile, shared, "K and V chunks need")?;
        if self.groups(cfg) > u32::MAX as u64 {
            return Err(illegal(fam, &key, "more than 2^32 workgroups"));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<NeighborhoodConfig> {
        let mut out = Vec::new();
        for &tile in self.tile_shapes() {
            // Chunks hold up to four short lines of the tile's union; longer ones would mostly
            // stage padding.
            let line = self.union_line(tile).next_power_of_two();
            for kv_chunk in CHUNKS {
                if kv_chunk > 4 * line {
                    continue;
                }
                for rows in [1, 2] {
                    let c = NeighborhoodConfig {
                        tile,
                        kv_chunk,
                        rows,
                    };
                    if self.check(profile, &c).is_ok() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    fn default_config(&self, profile: &DeviceProfile) -> NeighborhoodConfig {
        // Lanes of a warp walk their windows in lockstep only when a whole line of the union
        // fits one chunk (else each lane's keys split differently over the chunks and the warp
        // pays for the longest part of every chunk). Two lines per chunk halve the barriers
        // per key: take the smallest chunk holding two lines, else one.
        let space = self.space(profile);
        let prefs: &[[u32; 3]] = match self.rank {
            1 => &[[1, 1, 32], [1, 1, 64]],
            2 => &[[1, 4, 16], [1, 8, 8], [1, 4, 8]],
            _ => &[[2, 4, 8], [4, 4, 4]],
        };
        for &tile in prefs {
            let line = self.union_line(tile);
            let fits = |bk: u32, lines: u32| bk >= lines * line;
            if let Some(c) = CHUNKS
                .into_iter()
                .filter(|&bk| fits(bk, 2))
                .chain(CHUNKS.into_iter().filter(|&bk| fits(bk, 1)))
                .map(|kv_chunk| NeighborhoodConfig {
                    tile,
                    kv_chunk,
                    rows: 1,
                })
                .find(|c| space.contains(c))
            {
                return c;
            }
        }
        // Long windows: the largest chunk of the first preferred tile, else anything legal.
        let first = prefs[0];
        space
            .iter()
            .rev()
            .find(|c| c.tile == first && c.rows == 1)
            .or(space.first())
            .cloned()
            .unwrap_or(NeighborhoodConfig {
                tile: first,
                kv_chunk: 8,
                rows: 1,
            })
    }
}
