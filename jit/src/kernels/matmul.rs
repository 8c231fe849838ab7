//! Tiled f32 matmul with register blocking, batched, with B plain ([K, N]) or transposed
//! ([N, K], the usual weight layout). The loop bodies are generated here, fully unrolled over
//! the per-invocation tile, so accumulators stay in registers on every compiler.

use std::fmt::Write;

use crate::error::JitError;
use crate::kernels::illegal;
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{ELEMENTWISE, MATMUL};
use crate::spec::{div_ceil, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `matmul.wgsl`. Strides are per batch, in elements of the load type.
    /// `eps` is the LayerNorm epsilon of an `Epilogue::norm` product (unused otherwise).
    MatmulParams { m: u32, n: u32, k: u32, batch: u32, sa: u32, sb: u32, sc: u32, eps: f32 }
);

/// `c[b] = a[b] x op(b[b])` for `batch` matrices: a [M, K], b [K, N] or [N, K] if `trans_b`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulSpec {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub batch: u64,
    pub trans_b: bool,
    /// Work done on each output element before it is stored.
    pub epilogue: Epilogue,
}

/// What the matmul does to an output element `y[m, n]` on its way out, in this order:
/// `+ bias[n]`, then erf GELU, then `+ residual[m, n]`. This puts a linear layer's bias, its
/// activation and the residual add in the matmul's dispatch instead of one more each, which is
/// most of the dispatches of an encoder at batch 1. Each part adds a read-only binding after
/// the output (bias [N] first, then the residual, shaped like the output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Epilogue {
    pub bias: bool,
    pub gelu: bool,
    pub residual: bool,
    /// Stores the output as this many separate tensors of N / split columns each (0 or 1:
    /// one output): a fused Q/K/V projection writes q, k and v to their own buffers. Extra
    /// outputs bind right after `c`; needs batch 1, N divisible by `split`, no residual.
    pub split: u32,
    /// LayerNorm of A on the way in: each row of A is normalized over K (mean, variance,
    /// `eps` from the uniform) and scaled by `ln_g` [K] plus `ln_b` [K] before it meets B,
    /// and the workgroups of the first column tile also store the normalized A to `xn`
    /// ([M, K]) for later use (a post-LN encoder's residual stream). The statistics are
    /// computed in the matmul's own workgroups, so the LayerNorm that sits between an
    /// encoder's residual add and its next projection costs no dispatch. Binds `ln_g`,
    /// `ln_b` and `xn` last; needs batch 1.
    pub norm: bool,
}

impl Epilogue {
    /// The plain product.
    pub const NONE: Epilogue = Epilogue {
        bias: false,
        gelu: false,
        residual: false,
        split: 0,
        norm: false,
    };

    /// Output tensors written (1 unless split).
    pub fn outputs(&self) -> u32 {
        self.split.max(1)
    }

    /// Suffix of kernel and tune keys: empty for the plain product, so its keys (and the
    /// tuning records made for them) are unchanged.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if self.bias {
            s.push_str(".bias");
        }
        if self.gelu {
            s.push_str(".gelu");
        }
        if self.residual {
            s.push_str(".res");
        }
        if self.split > 1 {
            let _ = write!(s, ".split{}", self.split);
        }
        if self.norm {
            s.push_str(".ln");
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulConfig {
    /// Output tile of one workgroup.
    pub bm: u32,
    pub bn: u32,
    /// Depth of one workgroup-memory tile; in the split-K form, the invocations (the whole
    /// workgroup) that share one output tile's K.
    pub bk: u32,
    /// Output sub-tile of one invocation.
    pub tm: u32,
    pub tn: u32,
    /// Lanes of workgroup-memory reads and accumulators (1 or 4).
    pub vec: u32,
    /// Lanes of global loads (1 or 4; 4 needs K, and N when B is plain, divisible by 4).
    pub load_vec: u32,
    pub form: MatmulForm,
}

/// How a matmul config spreads the work (the last two need B transposed, [N, K]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulForm {
    /// Workgroup-memory tiles of A and B, K walked BK at a time.
    Tiled,
    /// Barrier-free: no workgroup memory; each invocation multiplies its `tm` rows of A by its
    /// `tn` rows of B straight from global memory. `bm = tm`, `bn = tn * workgroup size`,
    /// `bk = 0`, `vec = 1`. What CPU adapters run best.
    Direct,
    /// One workgroup per `tm` x `tn` output tile, its `bk` invocations splitting K and adding
    /// their partial sums in workgroup memory (a tree of barriers at the end only). `bm = tm`,
    /// `bn = tn`, `vec = 1`. For the few rows of an encoder at batch 1 on a GPU, where the
    /// tiled form's one workgroup per tile walks all of K serially and waits on memory each
    /// step (14 us for 8 x 384 x 384 on an H100).
    SplitK,
}

impl MatmulConfig {
    /// A barrier-free config: `tm` x `tn` outputs per invocation, `wg` invocations side by
    /// side along N.
    pub fn direct(tm: u32, tn: u32, wg: u32, load_vec: u32) -> Self {
        MatmulConfig {
            bm: tm,
            bn: tn * wg,
            bk: 0,
            tm,
            tn,
            vec: 1,
            load_vec,
            form: MatmulForm::Direct,
        }
    }

    /// A split-K config: `tm` x `tn` outputs per workgroup of `wg` invocations (a power of 2).
    pub fn split_k(tm: u32, tn: u32, wg: u32, load_vec: u32) -> Self {
        MatmulConfig {
            bm: tm,
            bn: tn,
            bk: wg,
            tm,
            tn,
            vec: 1,
            load_vec,
            form: MatmulForm::SplitK,
        }
    }

    pub fn workgroup_size(&self) -> u32 {
        match self.form {
            MatmulForm::SplitK => self.bk,
            _ => (self.bm / self.tm.max(1)) * (self.bn / self.tn.max(1)),
        }
    }
}

/// Names of the extra outputs of a split epilogue.
const SPLIT_OUTPUTS: [&str; 3] = ["c1", "c2", "c3"];

/// Barrier-free shapes offered to the space (B transposed): (tm, tn, workgroup size).
const DIRECT: [(u32, u32, u32); 8] = [
    (4, 1, 64),
    (4, 4, 32),
    (8, 1, 64),
    (8, 2, 32),
    (8, 4, 32),
    (16, 1, 32),
    (16, 2, 32),
    (16, 4, 32),
];

/// Split-K shapes offered to the space (B transposed): (tm, tn, workgroup size).
const SPLIT_K: [(u32, u32, u32); 8] = [
    (4, 1, 64),
    (8, 1, 64),
    (8, 2, 64),
    (16, 1, 64),
    (4, 1, 128),
    (8, 1, 128),
    (16, 1, 128),
    (8, 2, 256),
];

/// Tile shapes offered to the space: (bm, bn, tm, tn).
const TILES: [(u32, u32, u32, u32); 10] = [
    (16, 16, 1, 1),
    (32, 32, 2, 2),
    (32, 32, 4, 4),
    (64, 64, 4, 4),
    (64, 64, 8, 8),
    (64, 32, 4, 2),
    (128, 64, 8, 4),
    (64, 128, 4, 8),
    (128, 128, 8, 8),
    (32, 64, 2, 4),
];

/// Products of at most this many rows (B transposed) default to the barrier-free form on CPU
/// adapters, `CPU_DIRECT_TM` rows per invocation.
const CPU_DIRECT_MAX_M: u64 = 64;
const CPU_DIRECT_TM: u32 = 8;
/// Products of at most this many rows (B transposed) default to the split-K form elsewhere.
const GPU_SPLIT_K_MAX_M: u64 = 64;

/// The dot products shared by the direct and split-K forms: row and column bases (clamped
/// at the edges), `tm` x `tn` accumulators, the loop body over LV-wide step `q` of K, and
/// the horizontal sum of accumulator (i, j).
struct DotTile {
    rows: String,
    decl: String,
    body: String,
}

impl DotTile {
    /// `norm`: A's values pass through `nrm` (the `Epilogue::norm` LayerNorm) as loaded.
    fn new(tm: u32, tn: u32, norm: bool) -> Self {
        let mut t = DotTile {
            rows: String::new(),
            decl: String::new(),
            body: String::new(),
        };
        for i in 0..tm {
            let _ = writeln!(
                t.rows,
                "    let ar{i} = a_base + min(row0 + {i}u, p.m - 1u) * kv;"
            );
            if norm {
                // Each row's mean and 1 / std, out of workgroup memory once.
                let _ = writeln!(t.rows, "    let ls{i} = ln_stat[{i}u];");
            }
        }
        if norm {
            // The LayerNorm's scale and shift at this step of K, shared by the rows.
            t.body
                .push_str("        let lg = ln_g[q];\n        let lb = ln_b[q];\n");
        }
        for j in 0..tn {
            let _ = writeln!(
                t.rows,
                "    let br{j} = b_base + min(col0 + {j}u, p.n - 1u) * kv;"
            );
            let _ = writeln!(t.body, "        let b{j} = b[br{j} + q];");
        }
        for i in 0..tm {
            if norm {
                let _ = writeln!(
                    t.body,
                    "        let a{i} = fma((a[ar{i} + q] - LT(ls{i}.x)) * ls{i}.y, lg, lb);"
                );
            } else {
                let _ = writeln!(t.body, "        let a{i} = a[ar{i} + q];");
            }
            for j in 0..tn {
                let _ = writeln!(t.decl, "    var acc_{i}_{j} = LT(0.0);");
                let _ = writeln!(
                    t.body,
                    "        acc_{i}_{j} = fma(a{i}, b{j}, acc_{i}_{j});"
                );
            }
        }
        t
    }

    fn sum(i: u32, j: u32, lv: u32) -> String {
        if lv == 4 {
            format!("dot(acc_{i}_{j}, vec4<f32>(1.0))")
        } else {
            format!("acc_{i}_{j}")
        }
    }
}

impl MatmulSpec {
    pub fn params(&self, cfg: &MatmulConfig) -> MatmulParams {
        let lv = cfg.load_vec as u64;
        MatmulParams {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            batch: self.batch as u32,
            sa: (self.m * self.k / lv) as u32,
            sb: (self.k * self.n / lv) as u32,
            sc: (self.m * self.n) as u32,
            eps: 0.0,
        }
    }

    fn gen_acc_decl(cfg: &MatmulConfig) -> String {
        let vt = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let mut s = String::new();
        for r in 0..cfg.tm {
            for j in 0..cfg.tn / cfg.vec {
                let _ = writeln!(s, "    var acc_{r}_{j} = {vt}(0.0);");
            }
        }
        s
    }

    /// Load of a BR x BK tile of a row-major matrix whose rows run along k (A, or B^T),
    /// stored transposed into `dst` ([BK, BR / V]); `norm`: through `nrm` (A of an
    /// `Epilogue::norm` product).
    #[allow(clippy::too_many_arguments)]
    fn gen_load_k_major(
        cfg: &MatmulConfig,
        src: &str,
        dst: &str,
        br: u32,
        rows: &str,
        base: &str,
        origin: &str,
        norm: bool,
    ) -> String {
        let lv = cfg.load_vec;
        let per_row = cfg.bk / lv;
        let count = br * per_row;
        let wg = cfg.workgroup_size();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "        for (var l = 0u; l < {}u; l = l + 1u) {{",
            count / wg
        );
        let _ = writeln!(s, "            let idx = lid + l * {wg}u;");
        let _ = writeln!(s, "            let r = idx / {per_row}u;");
        let _ = writeln!(s, "            let kq = (idx % {per_row}u) * {lv}u;");
        let _ = writeln!(s, "            let gr = {origin} + r;");
        let _ = writeln!(s, "            let gk = k0 + kq;");
        let _ = writeln!(s, "            var v = LT(0.0);");
        let load = format!("{src}[{base} + (gr * p.k + gk) / {lv}u]");
        let load = if norm {
            format!("nrm({load}, r, gk / {lv}u)")
        } else {
            load
        };
        let _ = writeln!(
            s,
            "            if (gr < {rows} && gk < p.k) {{ v = {load}; }}"
        );
        for q in 0..lv {
            let comp = if lv == 4 {
                format!("v[{q}]")
            } else {
                "v".into()
            };
            if cfg.vec == 4 {
                let _ = writeln!(
                    s,
                    "            {dst}[(kq + {q}u) * {}u + r / 4u][r % 4u] = {comp};",
                    br / 4
                );
            } else {
                let _ = writeln!(s, "            {dst}[(kq + {q}u) * {br}u + r] = {comp};");
            }
        }
        s.push_str("        }\n");
        s
    }

    /// Load of a BK x BN tile of plain B ([K, N]), rows along n, stored as is ([BK, BN / V]).
    fn gen_load_n_major(cfg: &MatmulConfig) -> String {
        let lv = cfg.load_vec;
        let per_row = cfg.bn / lv;
        let count = cfg.bk * per_row;
        let wg = cfg.workgroup_size();
        let bnv = cfg.bn / cfg.vec;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "        for (var l = 0u; l < {}u; l = l + 1u) {{",
            count / wg
        );
        let _ = writeln!(s, "            let idx = lid + l * {wg}u;");
        let _ = writeln!(s, "            let kr = idx / {per_row}u;");
        let _ = writeln!(s, "            let nq = (idx % {per_row}u) * {lv}u;");
        let _ = writeln!(s, "            let gk = k0 + kr;");
        let _ = writeln!(s, "            let gn = col0 + nq;");
        let _ = writeln!(s, "            var v = LT(0.0);");
        let _ = writeln!(
            s,
            "            if (gk < p.k && gn < p.n) {{ v = b[b_base + (gk * p.n + gn) / {lv}u]; }}"
        );
        match (cfg.vec, lv) {
            (4, 4) | (1, 1) => {
                let _ = writeln!(s, "            Bs[kr * {bnv}u + nq / {}u] = v;", cfg.vec);
            }
            (4, 1) => {
                let _ = writeln!(s, "            Bs[kr * {bnv}u + nq / 4u][nq % 4u] = v;");
            }
            _ => {
                for q in 0..4 {
                    let _ = writeln!(s, "            Bs[kr * {bnv}u + nq + {q}u] = v[{q}];");
                }
            }
        }
        s.push_str("        }\n");
        s
    }

    fn render_direct(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let (tm, tn, lv) = (cfg.tm, cfg.tn, cfg.load_vec);
        let lt = if lv == 4 { "vec4<f32>" } else { "f32" };
        let tile = DotTile::new(tm, tn, self.epilogue.norm);
        let mut store = String::new();
        for i in 0..tm {
            let _ = writeln!(store, "    if (row0 + {i}u < p.m) {{");
            for j in 0..tn {
                let sum = DotTile::sum(i, j, lv);
                let _ = writeln!(
                    store,
                    "        if (col0 + {j}u < p.n) {{ put(c_base + (row0 + {i}u) * p.n + col0 + {j}u, row0 + {i}u, col0 + {j}u, {sum}); }}"
                );
            }
            store.push_str("    }\n");
        }
        render(
            "matmul.wgsl",
            section("matmul.wgsl", MATMUL, "direct")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", MatmulParams::wgsl_decl()),
                ("LT", lt.into()),
                ("TM", tm.to_string()),
                ("TN", tn.to_string()),
                ("LV", lv.to_string()),
                ("WG", cfg.workgroup_size().to_string()),
                ("EPILOGUE", self.gen_epilogue(cfg)?),
                ("NORM_PRE", self.gen_norm_pre()),
                ("ROWS", tile.rows),
                ("ACC_DECL", tile.decl),
                ("BODY", tile.body),
                ("STORE", store),
            ],
        )
    }

    fn render_split_k(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let (tm, tn, lv, wg) = (cfg.tm, cfg.tn, cfg.load_vec, cfg.bk);
        let lt = if lv == 4 { "vec4<f32>" } else { "f32" };
        let tile = DotTile::new(tm, tn, self.epilogue.norm);
        let mut parts = String::new();
        for i in 0..tm {
            for j in 0..tn {
                let sum = DotTile::sum(i, j, lv);
                let _ = writeln!(parts, "    part[{}u * WG + lid] = {sum};", i * tn + j);
            }
        }
        render(
            "matmul.wgsl",
            section("matmul.wgsl", MATMUL, "splitk")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", MatmulParams::wgsl_decl()),
                ("LT", lt.into()),
                ("TM", tm.to_string()),
                ("TN", tn.to_string()),
                ("LV", lv.to_string()),
                ("WG", wg.to_string()),
                ("PART_LEN", (tm * tn * wg).to_string()),
                ("EPILOGUE", self.gen_epilogue(cfg)?),
                ("NORM_PRE", self.gen_norm_pre()),
                ("ROWS", tile.rows),
                ("ACC_DECL", tile.decl),
                ("BODY", tile.body),
                ("PARTS", parts),
            ],
        )
    }

    fn check_direct(&self, profile: &DeviceProfile, c: &MatmulConfig) -> Result<(), JitError> {
        let key = self.key(c);
        let f = self.family();
        let l = &profile.limits;
        if !self.trans_b {
            return Err(illegal(f, &key, "this form needs B transposed"));
        }
        let shape_ok = match c.form {
            MatmulForm::Direct => c.bk == 0 && c.bn.is_multiple_of(c.tn),
            MatmulForm::SplitK => c.bn == c.tn && c.bk.is_power_of_two() && c.tm * c.tn <= c.bk,
            MatmulForm::Tiled => false,
        };
        if c.tm == 0 || c.tn == 0 || c.bm != c.tm || c.vec != 1 || !shape_ok {
            return Err(illegal(f, &key, "malformed config of its form"));
        }
        if c.tm * c.tn > 64 {
            return Err(illegal(f, &key, "at most 64 outputs per invocation"));
        }
        let shared = self.norm_shared(c)
            + if c.form == MatmulForm::SplitK {
                c.tm * c.tn * c.bk * 4
            } else {
                0
            };
        if shared > l.max_compute_workgroup_storage_size {
            return Err(illegal(
                f,
                &key,
                format!("{shared} bytes of workgroup memory exceed the device's limit"),
            ));
        }
        if ![1, 4].contains(&c.load_vec) {
            return Err(illegal(f, &key, "load width must be 1 or 4"));
        }
        if c.load_vec == 4 && !self.k.is_multiple_of(4) {
            return Err(illegal(f, &key, "vec4 loads need K divisible by 4"));
        }
        super::check_workgroup(f, &key, profile, c.workgroup_size())?;
        self.check_sizes(profile, c, &key)
    }

    /// Workgroup memory of the `Epilogue::norm` statistics (none without it).
    fn norm_shared(&self, c: &MatmulConfig) -> u32 {
        if self.epilogue.norm {
            (c.workgroup_size() + c.bm) * 8
        } else {
            0
        }
    }

    /// Checks shared by every form: a non-empty problem, operands indexable in u32, and a grid
    /// within the device's limits.
    fn check_sizes(
        &self,
        profile: &DeviceProfile,
        c: &MatmulConfig,
        key: &str,
    ) -> Result<(), JitError> {
        let f = self.family();
        let l = &profile.limits;
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: "empty matrix".into(),
            });
        }
        let biggest =
            (self.batch.max(1)) * (self.m * self.k).max(self.k * self.n).max(self.m * self.n);
        if biggest > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: format!("an operand has {biggest} elements, above 2^32"),
            });
        }
        if div_ceil(self.m, c.bm as u64) > l.max_compute_workgroups_per_dimension
            || div_ceil(self.n, c.bn as u64) > l.max_compute_workgroups_per_dimension
            || self.batch > l.max_compute_workgroups_per_dimension as u64
        {
            return Err(illegal(
                f,
                key,
                "grid exceeds the device's workgroups per dimension",
            ));
        }
        Ok(())
    }

    /// The call that computes the `Epilogue::norm` statistics of the workgroup's rows (and
    /// stores them normalized from the first column tile), at the top of every form.
    fn gen_norm_pre(&self) -> String {
        if self.epilogue.norm {
            "    ln_prep(lid, row0, a_base, wid.x == 0u);\n".into()
        } else {
            String::new()
        }
    }

    /// `Epilogue::norm`'s bindings, workgroup memory and functions: `ln_prep` (statistics of
    /// the workgroup's `bm` rows, `wg / bm` invocations per row, and the normalized rows to
    /// `xn` when asked) and `nrm(value, row of the tile, LV-wide step of K)`.
    fn gen_norm(cfg: &MatmulConfig, first_binding: u32) -> String {
        let (bm, wg, lv) = (cfg.bm, cfg.workgroup_size(), cfg.load_vec);
        let (sum, first) = if lv == 4 {
            ("dot(v, vec4<f32>(1.0))", "a[base].x")
        } else {
            ("v", "a[base]")
        };
        let b = first_binding;
        format!(
            r#"@group(0) @binding({b}) var<storage, read> ln_g: array<LT>; // [K]
@group(0) @binding({b1}) var<storage, read> ln_b: array<LT>; // [K]
@group(0) @binding({b2}) var<storage, read_write> xn: array<LT>; // [M, K], A normalized
const LN_G: u32 = {g}u; // invocations per row of the tile
var<workgroup> ln_part: array<vec2<f32>, {wg}>;
var<workgroup> ln_stat: array<vec2<f32>, {bm}>; // mean, 1 / std of each row of the tile
fn ln_sum(v: LT) -> f32 {{
    return {sum};
}}
fn nrm(v: LT, r: u32, q: u32) -> LT {{
    let s = ln_stat[r];
    return (v - LT(s.x)) * s.y * ln_g[q] + ln_b[q];
}}
// Mean and variance of rows row0 .. row0 + {bm} of A (shifted by each row's first value, so
// a large mean does not swamp the variance), then, from the first column tile, those rows
// normalized to xn.
fn ln_prep(lid: u32, row0: u32, a_base: u32, store: bool) {{
    let kv = p.k / {lv}u;
    let ri = lid / LN_G;
    let gi = lid % LN_G;
    let gr = min(row0 + ri, p.m - 1u);
    let base = a_base + gr * kv;
    let shift = {first};
    var s = vec2<f32>(0.0);
    for (var q = gi; q < kv; q = q + LN_G) {{
        let v = a[base + q] - LT(shift);
        s = s + vec2<f32>(ln_sum(v), ln_sum(v * v));
    }}
    ln_part[lid] = s;
    workgroupBarrier();
    for (var st = LN_G / 2u; st > 0u; st = st >> 1u) {{
        if (gi < st) {{
            ln_part[lid] = ln_part[lid] + ln_part[lid + st];
        }}
        workgroupBarrier();
    }}
    if (gi == 0u) {{
        let mean = ln_part[lid].x / f32(p.k);
        let vr = max(ln_part[lid].y / f32(p.k) - mean * mean, 0.0);
        ln_stat[ri] = vec2<f32>(shift + mean, inverseSqrt(vr + p.eps));
    }}
    workgroupBarrier();
    if (store && row0 + ri < p.m) {{
        for (var q = gi; q < kv; q = q + LN_G) {{
            xn[base + q] = nrm(a[base + q], ri, q);
        }}
    }}
}}
"#,
            b1 = b + 1,
            b2 = b + 2,
            g = wg / bm.max(1),
        )
    }

    /// The epilogue's bindings and `epi(value, output index, column)`.
    fn gen_epilogue(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        let e = self.epilogue;
        let mut s = String::new();
        let mut next = 4;
        for i in 1..e.outputs() {
            let _ = writeln!(
                s,
                "@group(0) @binding({next}) var<storage, read_write> c{i}: array<f32>; // part {i} of the output"
            );
            next += 1;
        }
        if e.bias {
            let _ = writeln!(
                s,
                "@group(0) @binding({next}) var<storage, read> bias: array<f32>; // [N]"
            );
            next += 1;
        }
        if e.residual {
            let _ = writeln!(
                s,
                "@group(0) @binding({next}) var<storage, read> res: array<f32>; // like c"
            );
            next += 1;
        }
        if e.norm {
            s.push_str(&Self::gen_norm(cfg, next));
        }
        if e.gelu {
            s.push_str("alias T = f32;\n");
            s.push_str(section("elementwise.wgsl", ELEMENTWISE, "math")?);
            s.push('\n');
        }
        s.push_str("fn epi(v: f32, ci: u32, gc: u32) -> f32 {\n    var y = v;\n");
        if e.bias {
            s.push_str("    y = y + bias[gc];\n");
        }
        if e.gelu {
            s.push_str("    y = gelu_erf(y);\n");
        }
        if e.residual {
            s.push_str("    y = y + res[ci];\n");
        }
        s.push_str("    return y;\n}\n");
        // Stores output element (gr, gc) at flat index ci of [M, N] (or, split, at its row and
        // column of its part).
        s.push_str("fn put(ci: u32, gr: u32, gc: u32, v: f32) {\n");
        if e.outputs() > 1 {
            let parts = e.outputs();
            let _ = writeln!(s, "    let y = epi(v, ci, gc);");
            let _ = writeln!(s, "    let nb = p.n / {parts}u;");
            let _ = writeln!(s, "    let part = gc / nb;");
            let _ = writeln!(s, "    let o = gr * nb + gc - part * nb;");
            for i in 0..parts {
                let name = if i == 0 {
                    "c".to_string()
                } else {
                    format!("c{i}")
                };
                let kw = if i == 0 { "if" } else { "} else if" };
                let _ = writeln!(s, "    {kw} (part == {i}u) {{ {name}[o] = y;");
            }
            s.push_str("    }\n");
        } else {
            s.push_str("    c[ci] = epi(v, ci, gc);\n");
        }
        s.push_str("}\n");
        Ok(s)
    }

    fn gen_compute(cfg: &MatmulConfig) -> String {
        let v = cfg.vec;
        let (wg_x, wg_y) = (cfg.bn / cfg.tn, cfg.bm / cfg.tm);
        let (bmv, bnv) = (cfg.bm / v, cfg.bn / v);
        let mut s = String::new();
        for j in 0..cfg.tn / v {
            let _ = writeln!(
                s,
                "            let b{j} = Bs[kk * {bnv}u + tx + {}u];",
                j * wg_x
            );
        }
        for i in 0..cfg.tm / v {
            let _ = writeln!(
                s,
                "            let a{i} = As[kk * {bmv}u + ty + {}u];",
                i * wg_y
            );
            for r in 0..v {
                let row = i * v + r;
                let av = if v == 4 {
                    format!("vec4<f32>(a{i}[{r}])")
                } else {
                    format!("a{i}")
                };
                for j in 0..cfg.tn / v {
                    let _ = writeln!(
                        s,
                        "            acc_{row}_{j} = fma({av}, b{j}, acc_{row}_{j});"
                    );
                }
            }
        }
        s
    }

    fn gen_store(cfg: &MatmulConfig) -> String {
        let v = cfg.vec;
        let (wg_x, wg_y) = (cfg.bn / cfg.tn, cfg.bm / cfg.tm);
        let mut s = String::new();
        for i in 0..cfg.tm / v {
            for r in 0..v {
                let row = i * v + r;
                let _ = writeln!(
                    s,
                    "    {{ let gr = row0 + (ty + {}u) * {v}u + {r}u;",
                    i * wg_y
                );
                let _ = writeln!(s, "      if (gr < p.m) {{");
                for j in 0..cfg.tn / v {
                    for q in 0..v {
                        let comp = if v == 4 {
                            format!("acc_{row}_{j}[{q}]")
                        } else {
                            format!("acc_{row}_{j}")
                        };
                        let _ = writeln!(
                            s,
                            "        {{ let gc = col0 + (tx + {}u) * {v}u + {q}u; if (gc < p.n) {{ put(c_base + gr * p.n + gc, gr, gc, {comp}); }} }}",
                            j * wg_x
                        );
                    }
                }
                s.push_str("      }\n    }\n");
            }
        }
        s
    }
}

impl KernelSpec for MatmulSpec {
    type Config = MatmulConfig;

    fn family(&self) -> &'static str {
        "matmul"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "matmul.f32.{}{}|m{}.n{}.k{}",
            if self.trans_b { "nt" } else { "nn" },
            self.epilogue.suffix(),
            bucket(self.m * self.batch.max(1)),
            bucket(self.n),
            bucket(self.k)
        )
    }

    fn key(&self, c: &MatmulConfig) -> String {
        if c.form != MatmulForm::Tiled {
            return format!(
                "matmul.f32.{}.{}.wg{}.tm{}.tn{}.lv{}{}",
                if self.trans_b { "nt" } else { "nn" },
                if c.form == MatmulForm::Direct {
                    "direct"
                } else {
                    "splitk"
                },
                c.workgroup_size(),
                c.tm,
                c.tn,
                c.load_vec,
                self.epilogue.suffix()
            );
        }
        format!(
            "matmul.f32.{}.bm{}.bn{}.bk{}.tm{}.tn{}.v{}.lv{}{}",
            if self.trans_b { "nt" } else { "nn" },
            c.bm,
            c.bn,
            c.bk,
            c.tm,
            c.tn,
            c.vec,
            c.load_vec,
            self.epilogue.suffix()
        )
    }

    fn bindings(&self, _cfg: &MatmulConfig) -> Vec<BindingDecl> {
        let mut v = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "a"),
            BindingDecl::read(2, "b"),
            BindingDecl::read_write(3, "c"),
        ];
        let mut next = 4;
        for name in SPLIT_OUTPUTS
            .iter()
            .take(self.epilogue.outputs() as usize - 1)
        {
            v.push(BindingDecl::read_write(next, name));
            next += 1;
        }
        if self.epilogue.bias {
            v.push(BindingDecl::read(next, "bias"));
            next += 1;
        }
        if self.epilogue.residual {
            v.push(BindingDecl::read(next, "res"));
            next += 1;
        }
        if self.epilogue.norm {
            v.push(BindingDecl::read(next, "ln_g"));
            v.push(BindingDecl::read(next + 1, "ln_b"));
            v.push(BindingDecl::read_write(next + 2, "xn"));
        }
        v
    }

    fn render(&self, cfg: &MatmulConfig) -> Result<String, JitError> {
        match cfg.form {
            MatmulForm::Direct => return self.render_direct(cfg),
            MatmulForm::SplitK => return self.render_split_k(cfg),
            MatmulForm::Tiled => {}
        }
        let vt = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let lt = if cfg.load_vec == 4 {
            "vec4<f32>"
        } else {
            "f32"
        };
        let load_a = Self::gen_load_k_major(
            cfg,
            "a",
            "As",
            cfg.bm,
            "p.m",
            "a_base",
            "row0",
            self.epilogue.norm,
        );
        let load_b = if self.trans_b {
            Self::gen_load_k_major(cfg, "b", "Bs", cfg.bn, "p.n", "b_base", "col0", false)
        } else {
            Self::gen_load_n_major(cfg)
        };
        render(
            "matmul.wgsl",
            section("matmul.wgsl", MATMUL, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", MatmulParams::wgsl_decl()),
                ("VT", vt.into()),
                ("LT", lt.into()),
                ("BM", cfg.bm.to_string()),
                ("BN", cfg.bn.to_string()),
                ("BK", cfg.bk.to_string()),
                ("V", cfg.vec.to_string()),
                ("LV", cfg.load_vec.to_string()),
                ("WG_X", (cfg.bn / cfg.tn).to_string()),
                ("WG_Y", (cfg.bm / cfg.tm).to_string()),
                ("WG", cfg.workgroup_size().to_string()),
                ("AS_LEN", (cfg.bk * cfg.bm / cfg.vec).to_string()),
                ("BS_LEN", (cfg.bk * cfg.bn / cfg.vec).to_string()),
                ("ACC_DECL", Self::gen_acc_decl(cfg)),
                ("LOAD_A", load_a),
                ("LOAD_B", load_b),
                ("COMPUTE", Self::gen_compute(cfg)),
                ("STORE", Self::gen_store(cfg)),
                ("EPILOGUE", self.gen_epilogue(cfg)?),
                ("NORM_PRE", self.gen_norm_pre()),
            ],
        )
    }

    fn dispatch(&self, cfg: &MatmulConfig) -> [u32; 3] {
        [
            div_ceil(self.n, cfg.bn as u64),
            div_ceil(self.m, cfg.bm as u64),
            self.batch.max(1) as u32,
        ]
    }

    fn check(&self, profile: &DeviceProfile, c: &MatmulConfig) -> Result<(), JitError> {
        let key = self.key(c);
        let f = self.family();
        let l = &profile.limits;
        let e = self.epilogue;
        if e.outputs() > 1
            && (self.batch > 1
                || e.residual
                || e.outputs() as usize > SPLIT_OUTPUTS.len() + 1
                || !self.n.is_multiple_of(e.outputs() as u64))
        {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: format!(
                    "a split output needs batch 1, no residual, at most {} parts and N divisible by {}",
                    SPLIT_OUTPUTS.len() + 1,
                    e.outputs()
                ),
            });
        }
        if e.norm && self.batch > 1 {
            return Err(JitError::UnsupportedProblem {
                family: f.into(),
                reason: "a LayerNorm of A needs batch 1".into(),
            });
        }
        if e.norm {
            let wg = c.workgroup_size();
            if c.bm == 0 || wg < c.bm || !wg.is_multiple_of(c.bm) {
                return Err(illegal(
                    f,
                    &key,
                    "a LayerNorm of A needs a whole number of invocations per row of the tile",
                ));
            }
        }
        if c.form != MatmulForm::Tiled {
            return self.check_direct(profile, c);
        }
        if ![1, 4].contains(&c.vec) || ![1, 4].contains(&c.load_vec) {
            return Err(illegal(f, &key, "vector widths must be 1 or 4"));
        }
        if c.tm == 0 || c.tn == 0 || !c.bm.is_multiple_of(c.tm) || !c.bn.is_multiple_of(c.tn) {
            return Err(illegal(
                f,
                &key,
                "invocation tile must divide the workgroup tile",
            ));
        }
        if c.vec == 4 && (!c.tm.is_multiple_of(4) || !c.tn.is_multiple_of(4)) {
            return Err(illegal(
                f,
                &key,
                "vec4 accumulators need tm and tn divisible by 4",
            ));
        }
        let wg = c.workgroup_size();
        super::check_workgroup(f, &key, profile, wg)?;
        if !c.bk.is_multiple_of(c.load_vec) || !c.bn.is_multiple_of(c.load_vec) {
            return Err(illegal(f, &key, "load width must divide bk and bn"));
        }
        let loads_a = c.bm * c.bk / c.load_vec;
        let loads_b = c.bn * c.bk / c.load_vec;
        if !loads_a.is_multiple_of(wg)
            || !loads_b.is_multiple_of(wg)
            || loads_a < wg
            || loads_b < wg
        {
            return Err(illegal(
                f,
                &key,
                format!("tile loads ({loads_a}, {loads_b}) must be whole multiples of the workgroup ({wg})"),
            ));
        }
        let shared = (c.bm + c.bn) * c.bk * 4 + self.norm_shared(c);
        if shared > l.max_compute_workgroup_storage_size {
            return Err(illegal(
                f,
                &key,
                format!(
                    "{shared} bytes of workgroup memory exceed the device's {}",
                    l.max_compute_workgroup_storage_size
                ),
            ));
        }
        if c.load_vec == 4
            && (!self.k.is_multiple_of(4) || (!self.trans_b && !self.n.is_multiple_of(4)))
        {
            return Err(illegal(
                f,
                &key,
                "vec4 loads need K (and N when B is not transposed) divisible by 4",
            ));
        }
        self.check_sizes(profile, c, &key)
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<MatmulConfig> {
        let mut out = Vec::new();
        for (bm, bn, tm, tn) in TILES {
            for bk in [8, 16, 32] {
                for vec in [1, 4] {
                    for load_vec in [1, 4] {
                        let c = MatmulConfig {
                            bm,
                            bn,
                            bk,
                            tm,
                            tn,
                            vec,
                            load_vec,
                            form: MatmulForm::Tiled,
                        };
                        if self.check(profile, &c).is_ok() {
                            out.push(c);
                        }
                    }
                }
            }
        }
        for (tm, tn, wg) in DIRECT {
            for load_vec in [1, 4] {
                let c = MatmulConfig::direct(tm, tn, wg, load_vec);
                if self.check(profile, &c).is_ok() {
                    out.push(c);
                }
            }
        }
        for (tm, tn, wg) in SPLIT_K {
            for load_vec in [1, 4] {
                let c = MatmulConfig::split_k(tm, tn, wg, load_vec);
                if self.check(profile, &c).is_ok() {
                    out.push(c);
                }
            }
        }
        out
    }

    fn default_config(&self, profile: &DeviceProfile) -> MatmulConfig {
        // CPU adapters run workgroup barriers worst; for the few rows of an encoder at small
        // batch (and of prompts) the barrier-free form reads each weight row once per 8 rows.
        if profile.cpu && self.trans_b && self.m <= CPU_DIRECT_MAX_M {
            let lv = if self.k.is_multiple_of(4) { 4 } else { 1 };
            let c = MatmulConfig::direct(CPU_DIRECT_TM, 4, 32, lv);
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        // GPUs: a few rows (an encoder at batch 1, short prompts) leave the tiled form with
        // a handful of workgroups each walking all of K; splitting K over 64 invocations was
        // 1.2-5x faster on an H100 from 8 to 64 rows (BENCHMARKS.md, "Sentence embeddings").
        if !profile.cpu && self.trans_b && self.m <= GPU_SPLIT_K_MAX_M {
            let lv = if self.k.is_multiple_of(4) { 4 } else { 1 };
            let c = MatmulConfig::split_k(8, 1, 64, lv);
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        let lv = if self.k.is_multiple_of(4) && (self.trans_b || self.n.is_multiple_of(4)) {
            4
        } else {
            1
        };
        let prefs: [(u32, u32, u32, u32, u32, u32); 4] = if self.m * self.n >= 512 * 512 {
            [
                (128, 128, 8, 8, 8, 4),
                (64, 64, 16, 4, 4, 4),
                (32, 32, 16, 2, 2, 1),
                (16, 16, 16, 1, 1, 1),
            ]
        } else {
            [
                (32, 32, 16, 4, 4, 4),
                (32, 32, 16, 2, 2, 1),
                (16, 16, 16, 1, 1, 1),
                (16, 16, 8, 1, 1, 1),
            ]
        };
        for (bm, bn, bk, tm, tn, vec) in prefs {
            for load_vec in [lv, 1] {
                let c = MatmulConfig {
                    bm,
                    bn,
                    bk,
                    tm,
                    tn,
                    vec,
                    load_vec,
                    form: MatmulForm::Tiled,
                };
                if self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
        // The first legal config of the space; the spec guarantees 16x16 scalar tiles fit
        // every WebGPU device, so this is only reached for problems `check` rejects anyway.
        self.space(profile)
            .into_iter()
            .next()
            .unwrap_or(MatmulConfig {
                bm: 16,
                bn: 16,
                bk: 16,
                tm: 1,
                tn: 1,
                vec: 1,
                load_vec: 1,
                form: MatmulForm::Tiled,
            })
    }
}
