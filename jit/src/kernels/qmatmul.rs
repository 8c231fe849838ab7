//! Quantized matmul for prefill (many activation rows), dequantizing weight tiles into
//! workgroup memory. Same operands and segment handling as `qmatvec`: W [N, K] repacked GGUF
//! rows, X [M, K] f32, Y = X W^T [M, N] f32, one dispatch per weight segment.

use crate::error::JitError;
use crate::kernels::qmatvec::check_k;
use crate::kernels::{check_workgroup, illegal, MAX_GROUPS_PER_DIM};
use crate::kernels::{enables, vec_type};
use crate::profile::DeviceProfile;
use crate::quant::wgsl::deq_wgsl;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::QMATMUL;
use crate::spec::{dispatch_2d, div_ceil, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `qmatmul.wgsl`: this segment's `rows` go to columns `n_offset..` of Y.
    QMatmulParams { m: u32, n: u32, k: u32, row_words: u32, rows: u32, n_offset: u32, pad0: u32, pad1: u32 }
);

crate::uniform_struct!(
    /// Uniforms of `qmatmul.wgsl`'s `split_sum` section.
    SplitSumParams { len: u32, splits: u32, pad0: u32, pad1: u32 }
);

/// Most K splits a config may use.
pub const MAX_K_SPLITS: u32 = 8;

#[derive(Clone, Debug, PartialEq)]
pub struct QMatmulSpec {
    pub format: GgmlType,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// Rows of W in the largest segment (N when unsegmented).
    pub rows: u64,
}

/// Tile of Y per workgroup (TM x TN), K step (TK elements), register block per invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMatmulConfig {
    /// Tiles and products in f16 (sums stay f32); only where the device has `shader-f16`.
    pub f16: bool,
    pub tm: u32,
    pub tn: u32,
    pub tk: u32,
    pub rm: u32,
    pub rn: u32,
    /// K splits (1: none): KS workgroups per output tile each sum a K range into a partial
    /// output, then a `SplitSumSpec` pass adds the partials.
    pub ks: u32,
}

impl QMatmulConfig {
    pub fn invocations(&self) -> u32 {
        (self.tm / self.rm.max(1)) * (self.tn / self.rn.max(1))
    }
}

impl QMatmulSpec {
    pub fn params(&self, n_offset: u64, rows: u64) -> QMatmulParams {
        QMatmulParams {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            row_words: self.format.row_words(self.k as usize).unwrap_or(0) as u32,
            rows: rows as u32,
            n_offset: n_offset as u32,
            pad0: 0,
            pad1: 0,
        }
    }
    pub fn dispatch_rows(&self, cfg: &QMatmulConfig, rows: u64) -> [u32; 3] {
        [
            div_ceil(rows, cfg.tn as u64),
            div_ceil(self.m, cfg.tm as u64),
            cfg.ks.max(1),
        ]
    }
    /// The pass that adds a split config's partial outputs.
    pub fn split_sum(&self, cfg: &QMatmulConfig) -> Option<SplitSumSpec> {
        (cfg.ks > 1).then(|| SplitSumSpec {
            len: self.m * self.n,
            splits: cfg.ks,
        })
    }
}

impl KernelSpec for QMatmulSpec {
    type Config = QMatmulConfig;
    fn family(&self) -> &'static str {
        "qmatmul"
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qmatmul.{}|m{}.n{}.k{}",
            self.format.name(),
            bucket(self.m),
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, c: &QMatmulConfig) -> String {
        format!(
            "qmatmul.{}.{}.f32acc.t{}x{}x{}.r{}x{}{}",
            self.format.name(),
            if c.f16 { "f16mul" } else { "f32mul" },
            c.tm,
            c.tn,
            c.tk,
            c.rm,
            c.rn,
            if c.ks > 1 {
                format!(".ks{}", c.ks)
            } else {
                String::new()
            }
        )
    }
    fn bindings(&self, _c: &QMatmulConfig) -> Vec<BindingDecl> {
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read(2, "x"),
            BindingDecl::read_write(3, "y"),
        ];
        b.extend(crate::quant::wgsl::grid_binding(self.format));
        b
    }
    fn render(&self, c: &QMatmulConfig) -> Result<String, JitError> {
        let f = "qmatmul.wgsl";
        render(
            f,
            section(f, QMATMUL, "main")?,
            &[
                ("KEY", self.key(c)),
                ("ENABLES", enables(c.f16, "")),
                ("V", vec_type(c.f16).into()),
                ("PARAMS", QMatmulParams::wgsl_decl()),
                ("TM", c.tm.to_string()),
                ("TN", c.tn.to_string()),
                ("TK", c.tk.to_string()),
                ("RM", c.rm.to_string()),
                ("RN", c.rn.to_string()),
                ("KS", c.ks.max(1).to_string()),
                ("DEQ", deq_wgsl(self.format)?),
            ],
        )
    }
    fn arithmetic(&self, c: &QMatmulConfig) -> &'static str {
        if c.f16 {
            "f16"
        } else {
            "f32"
        }
    }
    fn dispatch(&self, c: &QMatmulConfig) -> [u32; 3] {
        self.dispatch_rows(c, self.rows)
    }
    fn check(&self, profile: &DeviceProfile, c: &QMatmulConfig) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(c);
        check_k(fam, self.format, self.k)?;
        if self.m == 0 || self.n == 0 || self.rows == 0 || self.rows > self.n {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "M = {}, N = {}, segment rows = {}",
                    self.m, self.n, self.rows
                ),
            });
        }
        if self.m * self.n > u32::MAX as u64 || self.m * self.k / 4 > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: "X or Y has more than 2^32 elements".into(),
            });
        }
        if c.rm == 0 || c.rn == 0 || !c.tm.is_multiple_of(c.rm) || !c.tn.is_multiple_of(c.rn) {
            return Err(illegal(
                fam,
                &key,
                "tile sides must be multiples of the register block",
            ));
        }
        if c.tk == 0 || !c.tk.is_multiple_of(4) {
            return Err(illegal(fam, &key, "TK must be a positive multiple of 4"));
        }
        if !(1..=MAX_K_SPLITS).contains(&c.ks) {
            return Err(illegal(
                fam,
                &key,
                format!("K splits must be 1..={MAX_K_SPLITS}"),
            ));
        }
        // The partial outputs are one binding.
        let part = 4 * c.ks as u64 * self.m * self.n;
        if c.ks > 1
            && (part > profile.limits.max_storage_buffer_binding_size || part / 4 > u32::MAX as u64)
        {
            return Err(illegal(
                fam,
                &key,
                format!("{part} bytes of partial sums exceed one binding"),
            ));
        }
        check_workgroup(fam, &key, profile, c.invocations())?;
        if c.f16 && !profile.f16 {
            return Err(illegal(fam, &key, "the f16 path needs shader-f16"));
        }
        let elem = if c.f16 { 2 } else { 4 };
        let shared = elem * (c.tm + c.tn) as u64 * c.tk as u64;
        let max = profile.limits.max_compute_workgroup_storage_size as u64;
        if shared > max {
            return Err(illegal(
                fam,
                &key,
                format!("needs {shared} bytes of workgroup memory, the device has {max}"),
            ));
        }
        let [gx, gy, _] = self.dispatch(c);
        let lim = profile
            .limits
            .max_compute_workgroups_per_dimension
            .min(MAX_GROUPS_PER_DIM);
        if gx > lim || gy > lim {
            return Err(illegal(
                fam,
                &key,
                format!("grid {gx} x {gy} exceeds {lim} per dimension"),
            ));
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QMatmulConfig> {
        let mut out = Vec::new();
        for f16 in [false, true] {
            for (tm, tn) in [(16, 16), (32, 32), (32, 64), (64, 32), (64, 64)] {
                for tk in [16, 32] {
                    for (rm, rn) in [(1, 1), (2, 2), (4, 4), (2, 4), (4, 2)] {
                        // the f16 tiles are offered at the register blocks that pay
                        if f16 && rm * rn < 4 {
                            continue;
                        }
                        let c = QMatmulConfig {
                            f16,
                            tm,
                            tn,
                            tk,
                            rm,
                            rn,
                            ks: 1,
                        };
                        if c.invocations() >= 16 && self.check(profile, &c).is_ok() {
                            out.push(c);
                        }
                    }
                }
            }
        }
        // K splits for the smaller f32 tiles: the long-row, narrow-output shapes (a decoder's
        // down and output projections at prefill) leave the GPU short of workgroups otherwise.
        for (tm, tn) in [(16, 16), (32, 32)] {
            for ks in [2, 4] {
                for (rm, rn) in [(2, 2), (4, 4), (2, 4), (4, 2)] {
                    let c = QMatmulConfig {
                        f16: false,
                        tm,
                        tn,
                        tk: 16,
                        rm,
                        rn,
                        ks,
                    };
                    if c.invocations() >= 16 && self.check(profile, &c).is_ok() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
    fn default_config(&self, profile: &DeviceProfile) -> QMatmulConfig {
        // f16 multiplies (sums in f32) where the profile prefers them: on an H100 the f16
        // tiles were 1.3-1.6x faster than the f32 ones at Gemma 3 270M's prefill shapes
        // (M = 512: 640 x 2048 Q4_K 214 -> 137 us, 1024 x 640
        // Q5_0 75 -> 51, 2048 x 640 Q5_0 124 -> 84), and the golden Gemma prompts still match
        // llama.cpp with them (`tests/tests/gemma_f16_prefill.rs`).
        if profile.prefers_f16_prefill() {
            let groups = |t: u64| self.m.div_ceil(t) * self.n.div_ceil(t);
            let (tile, tk, rm, rn) = if groups(64) >= 256 {
                (64, 16, 4, 4)
            } else if groups(32) >= 256 {
                (32, 16, 4, 2)
            } else {
                (32, 32, 2, 2)
            };
            let c = QMatmulConfig {
                f16: true,
                tm: tile,
                tn: tile,
                tk,
                rm,
                rn,
                ks: 1,
            };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        // GPUs with wide subgroups (32 or more lanes): smaller tiles when 64 x 64 ones would
        // leave the GPU short of workgroups. The H100 tuner (`webjit tune --prompt-tokens 512`,
        // Gemma 3 270M) picked 16 x 16 or 32 x 32 tiles over
        // 64 x 64 for 6 of its 7 prefill shapes, 1.4-3.9x faster.
        // K splits where 32 x 32 tiles give few workgroups: as many as keep at most ~1280
        // workgroups and 512 elements of K per split, 4 below 256 tiles (H100 sweeps at
        // M = 512: 640 x 2048 Q4_K 214 -> 168 us with 4 splits,
        // 640 x 1024 106 -> 96 with 2, 256 x 640 Q5_0 39 -> 30 with 4; none for 1024 x 640).
        if profile.subgroups.as_ref().is_some_and(|s| s.max_size >= 32) {
            let groups = |t: u64| self.m.div_ceil(t) * self.n.div_ceil(t);
            let g32 = groups(32);
            let (tile, r, ks) = if groups(64) >= 1024 {
                (64, 4, 1)
            } else if g32 >= 256 {
                let ks = [4u64, 2]
                    .into_iter()
                    .find(|&ks| self.k / ks >= 512 && g32 * ks <= 1280)
                    .unwrap_or(1);
                (32, 4, ks as u32)
            } else if self.k / 4 >= 160 {
                (32, 4, 4)
            } else {
                (16, 2, 1)
            };
            let c = QMatmulConfig {
                f16: false,
                tm: tile,
                tn: tile,
                tk: 16,
                rm: r,
                rn: r,
                ks,
            };
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        for c in [
            QMatmulConfig {
                f16: false,
                tm: 64,
                tn: 64,
                tk: 16,
                rm: 4,
                rn: 4,
                ks: 1,
            },
            QMatmulConfig {
                f16: false,
                tm: 32,
                tn: 32,
                tk: 16,
                rm: 2,
                rn: 2,
                ks: 1,
            },
            QMatmulConfig {
                f16: false,
                tm: 16,
                tn: 16,
                tk: 16,
                rm: 1,
                rn: 1,
                ks: 1,
            },
        ] {
            if self.check(profile, &c).is_ok() {
                return c;
            }
        }
        QMatmulConfig {
            f16: false,
            tm: 16,
            tn: 16,
            tk: 16,
            rm: 2,
            rn: 2,
            ks: 1,
        }
    }
}

/// Sums the K splits' partial outputs of a split quantized matmul: y [len] = sum over s of
/// part [s, len].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SplitSumSpec {
    pub len: u64,
    pub splits: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitSumConfig {
    pub wg: u32,
}

impl SplitSumSpec {
    pub fn params(&self) -> SplitSumParams {
        SplitSumParams {
            len: self.len as u32,
            splits: self.splits,
            pad0: 0,
            pad1: 0,
        }
    }
}

impl KernelSpec for SplitSumSpec {
    type Config = SplitSumConfig;
    fn family(&self) -> &'static str {
        "split_sum"
    }
    fn tune_key(&self) -> String {
        format!(
            "split_sum|n{}.s{}",
            crate::tune::bucket(self.len),
            self.splits
        )
    }
    fn key(&self, c: &SplitSumConfig) -> String {
        format!("split_sum.f32.wg{}", c.wg)
    }
    fn bindings(&self, _c: &SplitSumConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "part"),
            BindingDecl::read_write(2, "y"),
        ]
    }
    fn render(&self, c: &SplitSumConfig) -> Result<String, JitError> {
        let f = "qmatmul.wgsl";
        render(
            f,
            section(f, QMATMUL, "split_sum")?,
            &[
                ("KEY", self.key(c)),
                ("PARAMS", SplitSumParams::wgsl_decl()),
                ("WG", c.wg.to_string()),
            ],
        )
    }
    fn dispatch(&self, c: &SplitSumConfig) -> [u32; 3] {
        dispatch_2d(div_ceil(self.len, c.wg as u64), MAX_GROUPS_PER_DIM)
    }
    fn check(&self, profile: &DeviceProfile, c: &SplitSumConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(c), profile, c.wg)?;
        if self.len == 0 || self.splits == 0 || self.len * self.splits as u64 > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!("{} splits of {} elements", self.splits, self.len),
            });
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<SplitSumConfig> {
        [64, 256]
            .into_iter()
            .map(|wg| SplitSumConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }
    fn default_config(&self, _profile: &DeviceProfile) -> SplitSumConfig {
        SplitSumConfig { wg: 256 }
    }
}
