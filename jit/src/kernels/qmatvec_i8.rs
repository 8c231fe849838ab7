//! The int8 dot-product path of the decode matvec: activations quantized to 8 bits per block
//! of 32 (`QuantizeQ8Spec`, ggml's q8_1 layout split into codes and scales), weights unpacked
//! to signed bytes, four products per `dot4I8Packed`. Integer sums are exact; the result differs
//! from the f32 path only by the activations' rounding (about 0.4% of each block's largest
//! value), so it is an alternative the tuner may pick where it is faster, never the default.
//!
//! Formats: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K (those of Gemma 3 Q4_K_M and of the issue's
//! benchmarks); others fall back to the f32 path (`QMatvecI8Spec::supports`).

use crate::error::JitError;
use crate::kernels::qmatvec::{QMatvecParams, QMatvecSpec, Reduce};
use crate::kernels::{check_workgroup, illegal, linear_dispatch, MAX_GROUPS_PER_DIM};
use crate::profile::DeviceProfile;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::{QMATVEC_I8, QUANT};
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

const FILE: &str = "qmatvec_i8.wgsl";

crate::uniform_struct!(
    /// Uniforms of the `quantize` section of `qmatvec_i8.wgsl`.
    QuantizeQ8Params { blocks: u32, pad0: u32, pad1: u32, pad2: u32 }
);

/// Elements per activation block (one scale each).
pub const Q8_BLOCK: u64 = 32;

/// X [M, K] f32 -> codes [M, K] as signed bytes (K / 4 words per row) and (d, d * sum) per
/// block of 32.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuantizeQ8Spec {
    pub m: u32,
    pub k: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeQ8Config {
    pub wg: u32,
}

impl QuantizeQ8Spec {
    pub fn blocks(&self) -> u64 {
        self.m as u64 * (self.k / Q8_BLOCK)
    }
    pub fn params(&self) -> QuantizeQ8Params {
        QuantizeQ8Params {
            blocks: self.blocks() as u32,
            ..Default::default()
        }
    }
}

fn check_k32(family: &str, k: u64) -> Result<(), JitError> {
    if k == 0 || !k.is_multiple_of(Q8_BLOCK) || k > u32::MAX as u64 {
        return Err(JitError::UnsupportedProblem {
            family: family.into(),
            reason: format!("K = {k} must be a positive multiple of {Q8_BLOCK} below 2^32"),
        });
    }
    Ok(())
}

impl KernelSpec for QuantizeQ8Spec {
    type Config = QuantizeQ8Config;
    fn family(&self) -> &'static str {
        "quantize_q8"
    }
    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!("quantize_q8|m{}.k{}", self.m, bucket(self.k))
    }
    fn key(&self, cfg: &QuantizeQ8Config) -> String {
        format!("quantize_q8.wg{}", cfg.wg)
    }
    fn bindings(&self, _cfg: &QuantizeQ8Config) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "x"),
            BindingDecl::read_write(2, "xq"),
            BindingDecl::read_write(3, "xs"),
        ]
    }
    fn render(&self, cfg: &QuantizeQ8Config) -> Result<String, JitError> {
        render(
            FILE,
            section(FILE, QMATVEC_I8, "quantize")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", QuantizeQ8Params::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }
    fn dispatch(&self, cfg: &QuantizeQ8Config) -> [u32; 3] {
        linear_dispatch(self.blocks(), cfg.wg)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &QuantizeQ8Config) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        check_k32(self.family(), self.k)?;
        if self.m == 0 || self.blocks() > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!("M = {} rows of K = {}", self.m, self.k),
            });
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QuantizeQ8Config> {
        [32, 64, 128]
            .into_iter()
            .map(|wg| QuantizeQ8Config { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }
    fn default_config(&self, _profile: &DeviceProfile) -> QuantizeQ8Config {
        QuantizeQ8Config { wg: 64 }
    }
}

/// Y[M, N] = X[M, K] W[N, K]^T with X given as `QuantizeQ8Spec`'s codes and scales, for one
/// weight segment of `rows` rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QMatvecI8Spec {
    pub format: GgmlType,
    /// Activation rows, 1..=8.
    pub m: u32,
    pub n: u64,
    pub k: u64,
    /// Rows of W in the segment one dispatch covers (N when unsegmented).
    pub rows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMatvecI8Config {
    pub wg: u32,
    /// Rows of W per workgroup; WG / R invocations share a row.
    pub r: u32,
    /// Workgroup or subgroup reduction (`Reduce::None` is not offered).
    pub reduce: Reduce,
}

impl QMatvecI8Spec {
    /// Formats with an int8 path.
    pub fn supports(format: GgmlType) -> bool {
        matches!(
            format,
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q6K
        )
    }
    /// The uniforms: those of the f32 matvec (the same struct, its stacked fields unused).
    pub fn params(&self, n_offset: u64, rows: u64) -> QMatvecParams {
        QMatvecSpec {
            format: self.format,
            m: self.m,
            n: self.n,
            k: self.k,
            rows: self.rows,
            gate: None,
            stacked: 0,
            prenorm: None,
        }
        .params(n_offset, rows)
    }
    /// Workgroups for a segment of `rows` rows.
    pub fn dispatch_rows(&self, cfg: &QMatvecI8Config, rows: u64) -> [u32; 3] {
        dispatch_2d(
            crate::spec::div_ceil(rows, cfg.r as u64),
            MAX_GROUPS_PER_DIM,
        )
    }
    /// The quantization the activations need.
    pub fn quantize_spec(&self) -> QuantizeQ8Spec {
        QuantizeQ8Spec {
            m: self.m,
            k: self.k,
        }
    }
    /// Blocks of 32 one step of the K loop takes: Q4_K's neighbouring sub-blocks are the low
    /// and high nibbles of the same bytes, so one step unpacks both (K is a multiple of 256).
    fn blocks_per_step(&self) -> u32 {
        if self.format == GgmlType::Q4K {
            2
        } else {
            1
        }
    }
    fn max_sg(cfg: &QMatvecI8Config) -> u32 {
        cfg.wg.div_ceil(4)
    }
}

impl KernelSpec for QMatvecI8Spec {
    type Config = QMatvecI8Config;
    fn family(&self) -> &'static str {
        "qmatvec_i8"
    }
    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qmatvec_i8.{}|m{}.n{}.k{}",
            self.format.name(),
            self.m,
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, cfg: &QMatvecI8Config) -> String {
        let red = match cfg.reduce {
            Reduce::Subgroup => "sgred",
            _ => "wgred",
        };
        format!(
            "qmatvec_i8.{}.m{}.dot4i8.wg{}.r{}.{red}",
            self.format.name(),
            self.m,
            cfg.wg,
            cfg.r
        )
    }
    fn bindings(&self, _cfg: &QMatvecI8Config) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read(2, "xq"),
            BindingDecl::read(3, "xs"),
            BindingDecl::read_write(4, "y"),
        ]
    }
    fn render(&self, cfg: &QMatvecI8Config) -> Result<String, JitError> {
        let mut deq = section("quant.wgsl", QUANT, "common")?.to_string();
        if self.format != GgmlType::Q4K {
            // Q4_K reads its weights as vec4<u32> and decodes its scales in place.
            deq.push_str(section("quant.wgsl", QUANT, "byte_at")?);
        }
        deq.push_str(section(FILE, QMATVEC_I8, self.format.name())?);
        if self.blocks_per_step() == 1 {
            deq.push_str(
                "\nfn wblocks(base: u32, j: u32) -> array<W8, 1> {\n    \
                 return array<W8, 1>(wblock(base, j));\n}\n",
            );
        }
        let (note, decl, body, extra) = match cfg.reduce {
            Reduce::Subgroup => (
                "// subgroup builtins: naga accepts them with Capabilities::SUBGROUP",
                render(
                    FILE,
                    section(FILE, QMATVEC_I8, "reduce_subgroup")?,
                    &[("MAX_SG", Self::max_sg(cfg).to_string())],
                )?,
                section(FILE, QMATVEC_I8, "reduce_subgroup_body")?.to_string(),
                ",\n        @builtin(subgroup_invocation_id) sg_lane: u32,\n        \
                 @builtin(subgroup_id) sg_id: u32,\n        \
                 @builtin(subgroup_size) sg_size: u32",
            ),
            _ => (
                "",
                section(FILE, QMATVEC_I8, "reduce_workgroup")?.to_string(),
                section(FILE, QMATVEC_I8, "reduce_workgroup_body")?.to_string(),
                "",
            ),
        };
        render(
            FILE,
            section(FILE, QMATVEC_I8, "matvec")?,
            &[
                ("KEY", self.key(cfg)),
                (
                    "SPLIT_NOTE",
                    match cfg.reduce {
                        Reduce::Subgroup => {
                            "Partial sums meet by subgroupAdd, then in workgroup memory."
                        }
                        _ => "Partial sums meet in a workgroup-memory tree.",
                    }
                    .into(),
                ),
                ("ENABLES", note.into()),
                ("PARAMS", QMatvecParams::wgsl_decl()),
                ("WG", cfg.wg.to_string()),
                ("R", cfg.r.to_string()),
                ("M", self.m.to_string()),
                ("BPS", self.blocks_per_step().to_string()),
                (
                    "WTYPE",
                    if self.format == GgmlType::Q4K {
                        "vec4<u32>"
                    } else {
                        "u32"
                    }
                    .into(),
                ),
                ("DEQ", deq),
                ("REDUCE_DECL", decl),
                ("EXTRA_BUILTINS", extra.into()),
                ("REDUCE", body),
            ],
        )
    }
    fn dispatch(&self, cfg: &QMatvecI8Config) -> [u32; 3] {
        self.dispatch_rows(cfg, self.rows)
    }
    fn check(&self, profile: &DeviceProfile, cfg: &QMatvecI8Config) -> Result<(), JitError> {
        let fam = self.family();
        let key = self.key(cfg);
        if !Self::supports(self.format) {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "no int8 path for {} (Q4_0, Q5_0, Q8_0, Q4_K and Q6_K have one)",
                    self.format.name()
                ),
            });
        }
        check_workgroup(fam, &key, profile, cfg.wg)?;
        super::qmatvec::check_k(fam, self.format, self.k)?;
        check_k32(fam, self.k)?;
        if self.m == 0 || self.m > super::qmatvec::QMATVEC_MAX_M {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!(
                    "M = {} activation rows; the matvec takes 1..={}",
                    self.m,
                    super::qmatvec::QMATVEC_MAX_M
                ),
            });
        }
        if self.n == 0 || self.rows == 0 || self.rows > self.n || self.n > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: fam.into(),
                reason: format!("N = {} with a segment of {} rows", self.n, self.rows),
            });
        }
        if !cfg.wg.is_power_of_two() || ![1, 2, 4, 8].contains(&cfg.r) || cfg.r > cfg.wg {
            return Err(illegal(
                fam,
                &key,
                "a power-of-two workgroup and 1, 2, 4 or 8 rows per workgroup",
            ));
        }
        match cfg.reduce {
            Reduce::Subgroup => match &profile.subgroups {
                Some(sg) if cfg.wg / cfg.r >= sg.max_size => {}
                Some(sg) => {
                    return Err(illegal(
                        fam,
                        &key,
                        format!(
                            "{} invocations per row, fewer than a subgroup of up to {}",
                            cfg.wg / cfg.r,
                            sg.max_size
                        ),
                    ))
                }
                None => {
                    return Err(illegal(
                        fam,
                        &key,
                        "subgroup reduction needs subgroup support",
                    ))
                }
            },
            Reduce::Workgroup => {}
            Reduce::None => return Err(illegal(fam, &key, "needs a reduction")),
        }
        let per = match cfg.reduce {
            Reduce::Subgroup => Self::max_sg(cfg),
            _ => cfg.wg,
        };
        let bytes = 4 * (self.m * per) as u64;
        let max = profile.limits.max_compute_workgroup_storage_size as u64;
        if bytes > max {
            return Err(illegal(
                fam,
                &key,
                format!("needs {bytes} bytes of workgroup memory, the device has {max}"),
            ));
        }
        Ok(())
    }
    fn space(&self, profile: &DeviceProfile) -> Vec<QMatvecI8Config> {
        let mut out = Vec::new();
        for reduce in [Reduce::Workgroup, Reduce::Subgroup] {
            for wg in [32, 64, 128, 256] {
                for r in [1, 2, 4, 8] {
                    let c = QMatvecI8Config { wg, r, reduce };
                    if self.check(profile, &c).is_ok() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
    fn default_config(&self, profile: &DeviceProfile) -> QMatvecI8Config {
        let sg = profile.subgroups.is_some();
        for (wg, r) in [(128, 4), (128, 2), (64, 2), (64, 1), (32, 1)] {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                let c = QMatvecI8Config { wg, r, reduce };
                if (sg || reduce == Reduce::Workgroup) && self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
        QMatvecI8Config {
            wg: 32,
            r: 1,
            reduce: Reduce::Workgroup,
        }
    }
}
