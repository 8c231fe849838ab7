//! Tiled f32 matmul with register blocking, batched, with B plain ([K, N]) or transposed
//! ([N, K], the usual weight layout). The loop bodies are fully unrolled over the
//! per-invocation tile, so accumulators stay in registers on every compiler (the `render`
//! submodule).

use std::fmt::Write;

mod check;
mod render;

use crate::error::JitError;
use crate::profile::DeviceProfile;
use crate::spec::{div_ceil, BindingDecl, KernelSpec};

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

    /// A tiled config: `bm` x `bn` outputs per workgroup, `tm` x `tn` per invocation, K in
    /// steps of `bk`.
    pub fn tiled(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32, vec: u32, load_vec: u32) -> Self {
        MatmulConfig {
            bm,
            bn,
            bk,
            tm,
            tn,
            vec,
            load_vec,
            form: MatmulForm::Tiled,
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
        self.render_form(cfg)
    }

    fn dispatch(&self, cfg: &MatmulConfig) -> [u32; 3] {
        [
            div_ceil(self.n, cfg.bn as u64),
            div_ceil(self.m, cfg.bm as u64),
            self.batch.max(1) as u32,
        ]
    }

    fn check(&self, profile: &DeviceProfile, c: &MatmulConfig) -> Result<(), JitError> {
        self.check_config(profile, c)
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<MatmulConfig> {
        let mut out = Vec::new();
        for (bm, bn, tm, tn) in TILES {
            for bk in [8, 16, 32] {
                for vec in [1, 4] {
                    for load_vec in [1, 4] {
                        let c = MatmulConfig::tiled(bm, bn, bk, tm, tn, vec, load_vec);
                        if self.check(profile, &c).is_ok() {
                            out.push(c);
                        }
                    }
                }
            }
        }
        // The forms that need B transposed, from their (tm, tn, wg) shapes.
        type Make = fn(u32, u32, u32, u32) -> MatmulConfig;
        type Shapes = &'static [(u32, u32, u32)];
        let bt_forms: [(Make, Shapes); 2] = [
            (MatmulConfig::direct, &DIRECT),
            (MatmulConfig::split_k, &SPLIT_K),
        ];
        for (make, shapes) in bt_forms {
            for &(tm, tn, wg) in shapes {
                for load_vec in [1, 4] {
                    let c = make(tm, tn, wg, load_vec);
                    if self.check(profile, &c).is_ok() {
                        out.push(c);
                    }
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
        // 1.2-5x faster on an H100 from 8 to 64 rows (MiniLM's projections at batch 1).
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
                let c = MatmulConfig::tiled(bm, bn, bk, tm, tn, vec, load_vec);
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
            .unwrap_or(MatmulConfig::tiled(16, 16, 16, 1, 1, 1, 1))
    }
}
