//! Fused prefill attention: online softmax over K/V tiles in workgroup memory, causal or
//! bidirectional, sliding window, per-batch padding lengths, grouped-query heads, soft-capping.
//!
//! Layouts (f32, row-major): q and out [batch, seq_q, n_heads, d]; k and v
//! [batch, seq_kv, n_kv_heads, d]; kv_lens [batch] (u32). Query row `i` sits at absolute
//! position `i + q_pos0`; key `j` at position `j`. Key `j` is visible to the query at position
//! `P` when `j < kv_lens[b]`, and `j <= P` if causal, and `P - j < window` if a window is set
//! (bidirectional windows also need `j - P < window`).

use crate::error::JitError;
use crate::kernels::{
    check_shared, check_workgroup, groups_dispatch, illegal, MAX_REGISTER_FLOATS,
};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{ATTENTION, ATTENTION_TILE};
use crate::spec::{div_ceil, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of the prefill section of `attention.wgsl`. `window = 0` means no window,
    /// `softcap = 0` no soft-capping.
    AttnParams {
        batch: u32, seq_q: u32, seq_kv: u32, n_heads: u32,
        n_kv_heads: u32, group: u32, q_tiles: u32, q_pos0: u32,
        causal: u32, window: u32, scale: f32, softcap: f32,
    }
);

/// Head dims the spaces are checked on; any multiple of 4 is accepted.
pub const COMMON_HEAD_DIMS: [u64; 6] = [64, 80, 96, 128, 256, 32];

/// The problem. Only `head_dim` shapes the WGSL (register arrays are sized by it); the rest
/// goes to uniforms.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionSpec {
    pub batch: u64,
    pub seq_q: u64,
    pub seq_kv: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    /// Invocations per workgroup.
    pub wg: u32,
    /// Query rows per invocation (register blocking).
    pub rows: u32,
    /// Keys per K/V tile in workgroup memory.
    pub kv_tile: u32,
    /// Invocations sharing one query row (each owns head_dim / tpr columns); > 1 cuts
    /// registers per invocation at the cost of exchanging partial dots in workgroup memory.
    pub tpr: u32,
}

impl AttentionConfig {
    /// Query rows per workgroup.
    pub fn q_tile(&self) -> u32 {
        self.wg / self.tpr.max(1) * self.rows
    }

    /// Floats of the partial-dot exchange array (1 when unused, as WGSL has no empty arrays).
    pub(crate) fn sp_len(&self) -> u64 {
        if self.tpr > 1 {
            self.rows as u64 * self.kv_tile as u64 * self.wg as u64
        } else {
            1
        }
    }

    /// Every (tpr, wg, rows, kv_tile) of a grid, in that nesting order, with `rows_for(tpr)`
    /// rows per invocation: a tiled attention kernel's space before its checks.
    pub(crate) fn grid<'a>(
        tprs: &'a [u32],
        wgs: &'a [u32],
        rows_for: impl Fn(u32) -> &'a [u32] + 'a,
        tiles: &'a [u32],
    ) -> impl Iterator<Item = AttentionConfig> + 'a {
        tprs.iter().flat_map(move |&tpr| {
            let rows_list = rows_for(tpr);
            wgs.iter().flat_map(move |&wg| {
                rows_list.iter().flat_map(move |&rows| {
                    tiles.iter().map(move |&kv_tile| AttentionConfig {
                        wg,
                        rows,
                        kv_tile,
                        tpr,
                    })
                })
            })
        })
    }

    /// The fewest threads per row (of `tprs`, ascending) that leave an invocation at most 16
    /// vec4 columns of a head of `head_dim` (about 128 registers of query and accumulator,
    /// so no spills on NVIDIA's 255); 1 if none divides the head.
    pub(crate) fn default_tpr(head_dim: u64, tprs: &[u32]) -> u32 {
        let d4 = (head_dim / 4).max(1);
        tprs.iter()
            .copied()
            .find(|&t| d4.is_multiple_of(t as u64) && d4 / t as u64 <= 16)
            .unwrap_or(1)
    }

    /// Floats one invocation keeps in registers for a head of `head_dim`: query and
    /// accumulator columns, and scores.
    pub(crate) fn register_floats(&self, head_dim: u64) -> u64 {
        2 * self.rows as u64 * head_dim / self.tpr.max(1) as u64
            + self.rows as u64 * self.kv_tile as u64
    }
}

/// Shared checks of head layout and sizes (also used by the decode spec).
pub(crate) fn check_heads(
    family: &str,
    n_heads: u64,
    n_kv_heads: u64,
    head_dim: u64,
) -> Result<(), JitError> {
    let unsupported = |reason: String| JitError::UnsupportedProblem {
        family: family.into(),
        reason,
    };
    if head_dim == 0 || !head_dim.is_multiple_of(4) {
        return Err(unsupported(format!(
            "head dim {head_dim} must be a positive multiple of 4 (rows are read as vec4)"
        )));
    }
    if head_dim > 512 {
        return Err(unsupported(format!(
            "head dim {head_dim} is above the supported maximum of 512"
        )));
    }
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(unsupported(format!(
            "{n_heads} query heads cannot be grouped over {n_kv_heads} kv heads \
             (query heads must be a positive multiple of kv heads)"
        )));
    }
    Ok(())
}

impl AttentionSpec {
    pub fn params(
        &self,
        cfg: &AttentionConfig,
        q_pos0: u32,
        causal: bool,
        window: u32,
        scale: f32,
        softcap: f32,
    ) -> AttnParams {
        AttnParams {
            batch: self.batch as u32,
            seq_q: self.seq_q as u32,
            seq_kv: self.seq_kv as u32,
            n_heads: self.n_heads as u32,
            n_kv_heads: self.n_kv_heads as u32,
            group: (self.n_heads / self.n_kv_heads.max(1)) as u32,
            q_tiles: self.q_tiles(cfg),
            q_pos0,
            causal: causal as u32,
            window,
            scale,
            softcap,
        }
    }

    pub fn q_tiles(&self, cfg: &AttentionConfig) -> u32 {
        div_ceil(self.seq_q, cfg.q_tile() as u64).max(1)
    }

    fn shared_bytes(&self, cfg: &AttentionConfig) -> u64 {
        2 * cfg.kv_tile as u64 * self.head_dim * 4 + 4 + 4 * cfg.sp_len()
    }
}

impl KernelSpec for AttentionSpec {
    type Config = AttentionConfig;

    fn family(&self) -> &'static str {
        "attention"
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "attention.d{}|b{}.q{}.kv{}.h{}.g{}",
            self.head_dim,
            bucket(self.batch),
            bucket(self.seq_q),
            bucket(self.seq_kv),
            self.n_heads,
            self.n_heads / self.n_kv_heads.max(1)
        )
    }

    fn key(&self, cfg: &AttentionConfig) -> String {
        format!(
            "attention.prefill.f32.d{}.wg{}.t{}.r{}.bk{}",
            self.head_dim, cfg.wg, cfg.tpr, cfg.rows, cfg.kv_tile
        )
    }

    fn bindings(&self, _cfg: &AttentionConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "q"),
            BindingDecl::read(2, "k"),
            BindingDecl::read(3, "v"),
            BindingDecl::read(4, "kv_lens"),
            BindingDecl::read_write(5, "out"),
        ]
    }

    fn render(&self, cfg: &AttentionConfig) -> Result<String, JitError> {
        let f = "attention.wgsl";
        let mut values = vec![
            ("KEY", self.key(cfg)),
            ("PARAMS", AttnParams::wgsl_decl()),
            row_out()?,
        ];
        values.extend(tile_sections(self.head_dim, cfg)?);
        render(f, section(f, ATTENTION, "prefill")?, &values)
    }

    fn dispatch(&self, cfg: &AttentionConfig) -> [u32; 3] {
        if self.seq_q == 0 {
            return groups_dispatch(0);
        }
        groups_dispatch(self.q_tiles(cfg) as u64 * self.n_heads * self.batch)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &AttentionConfig) -> Result<(), JitError> {
        let fam = self.family();
        check_heads(fam, self.n_heads, self.n_kv_heads, self.head_dim)?;
        let key = self.key(cfg);
        check_workgroup(fam, &key, profile, cfg.wg)?;
        if !matches!(cfg.rows, 1 | 2 | 4) {
            return Err(illegal(fam, &key, "rows per invocation must be 1, 2 or 4"));
        }
        if cfg.kv_tile == 0 || cfg.kv_tile > 128 {
            return Err(illegal(fam, &key, "kv tile must be 1..=128 keys"));
        }
        if !matches!(cfg.tpr, 1 | 2 | 4 | 8) || !cfg.wg.is_multiple_of(cfg.tpr) {
            return Err(illegal(
                fam,
                &key,
                "threads per row must be 1, 2, 4 or 8 and divide the workgroup",
            ));
        }
        if !(self.head_dim / 4).is_multiple_of(cfg.tpr as u64) {
            return Err(illegal(
                fam,
                &key,
                format!(
                    "{} vec4 columns of the head do not split over {} threads per row",
                    self.head_dim / 4,
                    cfg.tpr
                ),
            ));
        }
        let regs = cfg.register_floats(self.head_dim);
        if regs > MAX_REGISTER_FLOATS {
            return Err(illegal(
                fam,
                &key,
                format!(
                    "{regs} floats of registers per invocation (2 x rows x head dim / threads \
                     per row + rows x kv tile) exceed {MAX_REGISTER_FLOATS}"
                ),
            ));
        }
        let shared = self.shared_bytes(cfg);
        check_shared(fam, &key, profile, shared, "K and V tiles need")?;
        let q_el = self.batch * self.seq_q * self.n_heads * self.head_dim;
        let kv_el = self.batch * self.seq_kv * self.n_kv_heads * self.head_dim;
        if q_el / 4 > u32::MAX as u64 || kv_el / 4 > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: "q or k/v above 2^32 vec4 elements".into(),
            });
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<AttentionConfig> {
        // Tiles of 4 keys only where nothing larger fits (head dim 256 on 16 KiB devices).
        let tiles: &[u32] = if self.head_dim >= 256 {
            &[4, 8, 16, 32]
        } else {
            &[8, 16, 32]
        };
        let rows_for = |tpr| -> &[u32] {
            if tpr == 1 {
                &[1, 2, 4]
            } else {
                &[1, 2]
            }
        };
        AttentionConfig::grid(&[1, 2, 4], &[64, 128, 256], rows_for, tiles)
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> AttentionConfig {
        // Keep each invocation at 32 vec4 of query + accumulator (about 128 registers, so no
        // spills on NVIDIA's 255): wider heads split columns over more threads per row. Then
        // the largest K/V tile that fits amortizes the barriers.
        let d4 = (self.head_dim / 4).max(1);
        let tpr = AttentionConfig::default_tpr(self.head_dim, &[1, 2, 4, 8]);
        let rows = if d4 / tpr as u64 <= 8 { 2 } else { 1 };
        // CPU adapters pay for every invocation and every barrier whether its rows exist or
        // not: the smallest workgroup, one row each and 8-key tiles. On native SwiftShader
        // this took MiniLM's 8-token attention from 7.0 to 0.81 ms, and was also the fastest
        // config for Gemma's 64-token prompt (head dim 256).
        // A few query rows of a narrow head (an encoder's sentence) on a GPU: the same small
        // config, 11.7 against 28.8 us for 8 rows x 12 heads of 32 on an H100.
        let short = self.seq_q <= 64 && self.head_dim <= 64;
        if profile.cpu || short {
            for kv_tile in [8, 4] {
                let c = AttentionConfig {
                    wg: 64,
                    rows: 1,
                    kv_tile,
                    tpr,
                };
                if self.check(profile, &c).is_ok() && self.space(profile).contains(&c) {
                    return c;
                }
            }
        }
        for wg in [128, 64] {
            for kv_tile in [32, 16, 8, 4] {
                let c = AttentionConfig {
                    wg,
                    rows,
                    kv_tile,
                    tpr,
                };
                if self.check(profile, &c).is_ok() && self.space(profile).contains(&c) {
                    return c;
                }
            }
        }
        self.space(profile)
            .into_iter()
            .next()
            .unwrap_or(AttentionConfig {
                wg: 64,
                rows: 1,
                kv_tile: 4,
                tpr: 1,
            })
    }
}

/// The attention_tile.wgsl pieces a tiled attention kernel composes, by placeholder:
/// `TILE_DECLS` (constants and workgroup tiles), `ROW_STATE` (per-invocation query and softmax
/// state), `ROW_INIT` (one row's query and empty state), `TILE_SCORES` (q . k of a staged
/// tile) and `ONLINE_SOFTMAX` (one row's fold of a tile's masked logits). Shared by the dense
/// prefill and the block-sparse attend and gather kernels.
pub(crate) fn tile_sections(
    head_dim: u64,
    cfg: &AttentionConfig,
) -> Result<Vec<(&'static str, String)>, JitError> {
    let f = "attention_tile.wgsl";
    let piece = |name: &str| section(f, ATTENTION_TILE, name).map(str::to_string);
    let decls = render(
        f,
        section(f, ATTENTION_TILE, "decls")?,
        &[
            ("D4", (head_dim / 4).to_string()),
            ("WG", cfg.wg.to_string()),
            ("R", cfg.rows.to_string()),
            ("TPR", cfg.tpr.to_string()),
            ("BK", cfg.kv_tile.to_string()),
            ("SP", cfg.sp_len().to_string()),
        ],
    )?;
    Ok(vec![
        ("TILE_DECLS", decls),
        ("ROW_STATE", piece("row_state")?),
        ("ROW_INIT", piece("row_init")?),
        ("TILE_SCORES", piece("scores")?),
        ("ONLINE_SOFTMAX", piece("online_softmax")?),
    ])
}

/// attention_tile.wgsl's `row_out` (`ROW_OUT`): one row normalized and stored to `out`.
pub(crate) fn row_out() -> Result<(&'static str, String), JitError> {
    let text = section("attention_tile.wgsl", ATTENTION_TILE, "row_out")?;
    Ok(("ROW_OUT", text.to_string()))
}
