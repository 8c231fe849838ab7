//! Row-wise ops with a reduction: RMSNorm (plain or Gemma's `1 + w`), LayerNorm, softmax.
//! One workgroup per row; rows of any length (the workgroup strides over the row).

use crate::error::JitError;
use crate::kernels::{check_vec, check_workgroup, illegal, MAX_GROUPS_PER_DIM};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{REDUCE, ROWWISE};
use crate::spec::{dispatch_2d, BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `rowwise.wgsl`. `cols` counts vector elements, `n` the true row length.
    RowParams { rows: u32, cols: u32, n: u32, eps: f32, w_offset: f32, pad0: u32, pad1: u32, pad2: u32 }
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowOp {
    /// `x / sqrt(mean(x^2) + eps) * (w + w_offset)`; Gemma uses `w_offset = 1`.
    RmsNorm,
    /// `(x - mean) / sqrt(var + eps) * (w + w_offset) + b`.
    LayerNorm,
    /// `exp(x - max) / sum(exp(x - max))`.
    Softmax,
    /// `x / max(||x||_2, eps)` (torch's `F.normalize`).
    L2Normalize,
    /// `r + x / sqrt(mean(x^2) + eps) * (w + w_offset)`: a post-norm and its residual add in
    /// one pass (Gemma's post-attention / post-FFN norms).
    RmsNormAdd,
    /// `out = r + x / sqrt(mean(x^2) + eps) * (w + w_offset)` and also
    /// `out2 = out / sqrt(mean(out^2) + eps) * (w2 + w_offset)`: Gemma's post-norm, residual
    /// add and the next pre-norm in one pass (two outputs).
    RmsNormAddNorm,
    /// `out = r + x` and `out2 = out / sqrt(mean(out^2) + eps) * (w2 + w_offset)`: llama's
    /// residual add and the next pre-norm in one pass (two outputs).
    AddNorm,
}

impl RowOp {
    pub fn name(self) -> &'static str {
        match self {
            RowOp::RmsNorm => "rmsnorm",
            RowOp::LayerNorm => "layernorm",
            RowOp::Softmax => "softmax",
            RowOp::L2Normalize => "l2norm",
            RowOp::RmsNormAdd => "rmsnorm_add",
            RowOp::RmsNormAddNorm => "rmsnorm_add_norm",
            RowOp::AddNorm => "add_norm",
        }
    }
    /// Input bindings, x included.
    pub fn inputs(self) -> u32 {
        match self {
            RowOp::RmsNorm => 2,
            RowOp::LayerNorm | RowOp::RmsNormAdd | RowOp::AddNorm => 3,
            RowOp::RmsNormAddNorm => 4,
            RowOp::Softmax | RowOp::L2Normalize => 1,
        }
    }
    /// Whether the op writes a second output (`out2`, the next norm's input).
    pub fn two_outputs(self) -> bool {
        matches!(self, RowOp::RmsNormAddNorm | RowOp::AddNorm)
    }
}

/// `rows` rows of `cols` f32 each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowwiseSpec {
    pub op: RowOp,
    pub rows: u64,
    pub cols: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowwiseConfig {
    pub wg: u32,
    pub vec: u32,
    /// Reductions by `subgroupAdd`/`subgroupMax` (where the device has subgroups) instead of
    /// a tree in workgroup memory.
    pub subgroup: bool,
}

impl RowwiseSpec {
    pub fn params(&self, cfg: &RowwiseConfig, eps: f32, w_offset: f32) -> RowParams {
        RowParams {
            rows: self.rows as u32,
            cols: (self.cols / cfg.vec as u64) as u32,
            n: self.cols as u32,
            eps,
            w_offset,
            ..Default::default()
        }
    }
}

impl KernelSpec for RowwiseSpec {
    type Config = RowwiseConfig;

    fn family(&self) -> &'static str {
        "rowwise"
    }

    fn memo_key(&self) -> Option<u64> {
        Some(crate::spec::hash_of(self))
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "rowwise.{}|r{}.c{}",
            self.op.name(),
            bucket(self.rows),
            bucket(self.cols)
        )
    }

    fn key(&self, cfg: &RowwiseConfig) -> String {
        format!(
            "rowwise.{}.f32.v{}.wg{}{}",
            self.op.name(),
            cfg.vec,
            cfg.wg,
            if cfg.subgroup { ".sg" } else { "" }
        )
    }

    fn bindings(&self, _cfg: &RowwiseConfig) -> Vec<BindingDecl> {
        let mut b = vec![BindingDecl::uniform(0, "p"), BindingDecl::read(1, "x")];
        let names: &[&str] = match self.op {
            RowOp::RmsNormAdd => &["w", "res"],
            RowOp::RmsNormAddNorm => &["w", "res", "w2"],
            RowOp::AddNorm => &["res", "w2"],
            _ => &["w", "b"],
        };
        for i in 1..self.op.inputs() {
            b.push(BindingDecl::read(1 + i, names[i as usize - 1]));
        }
        b.push(BindingDecl::read_write(1 + self.op.inputs(), "out"));
        if self.op.two_outputs() {
            b.push(BindingDecl::read_write(2 + self.op.inputs(), "out2"));
        }
        b
    }

    fn render(&self, cfg: &RowwiseConfig) -> Result<String, JitError> {
        let f = "rowwise.wgsl";
        let (t, lanes) = if cfg.vec == 4 {
            ("vec4<f32>", "lanes_vec4")
        } else {
            ("f32", "lanes_f32")
        };
        let mut extra = match self.op {
            RowOp::RmsNorm => section(f, ROWWISE, "rmsnorm_decl")?,
            RowOp::LayerNorm => section(f, ROWWISE, "layernorm_decl")?,
            RowOp::RmsNormAdd => section(f, ROWWISE, "rmsnorm_add_decl")?,
            RowOp::RmsNormAddNorm => section(f, ROWWISE, "rmsnorm_add_norm_decl")?,
            RowOp::AddNorm => section(f, ROWWISE, "add_norm_decl")?,
            RowOp::Softmax | RowOp::L2Normalize => "",
        }
        .to_string();
        if self.op.two_outputs() {
            extra.push_str(section(f, ROWWISE, "next_norm")?);
        }
        let r = "reduce.wgsl";
        let (reduce, builtins, sg_init) = if cfg.subgroup {
            (
                render(
                    r,
                    section(r, REDUCE, "subgroup")?,
                    &[("MAX_SG", cfg.wg.div_ceil(4).to_string())],
                )?,
                section(r, REDUCE, "subgroup_builtins")?,
                section(r, REDUCE, "subgroup_init")?,
            )
        } else {
            (section(r, REDUCE, "workgroup")?.to_string(), "", "")
        };
        render(
            f,
            section(f, ROWWISE, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", RowParams::wgsl_decl()),
                ("T", t.into()),
                ("WG", cfg.wg.to_string()),
                ("EXTRA_DECL", extra),
                ("OUT_BINDING", (1 + self.op.inputs()).to_string()),
                ("LANES", section(f, ROWWISE, lanes)?.into()),
                ("REDUCE", reduce),
                ("EXTRA_BUILTINS", builtins.into()),
                ("SG_INIT", sg_init.into()),
                ("BODY", section(f, ROWWISE, self.op.name())?.into()),
            ],
        )
    }

    fn dispatch(&self, _cfg: &RowwiseConfig) -> [u32; 3] {
        dispatch_2d(self.rows.min(u32::MAX as u64) as u32, MAX_GROUPS_PER_DIM)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &RowwiseConfig) -> Result<(), JitError> {
        let key = self.key(cfg);
        check_workgroup(self.family(), &key, profile, cfg.wg)?;
        if !cfg.wg.is_power_of_two() {
            return Err(illegal(
                self.family(),
                &key,
                "tree reduction needs a power-of-two workgroup",
            ));
        }
        if cfg.subgroup && profile.subgroups.is_none() {
            return Err(illegal(
                self.family(),
                &key,
                "subgroup reduction needs subgroup support",
            ));
        }
        let cols4 = self.cols.is_multiple_of(4);
        check_vec(self.family(), &key, cfg.vec, cols4, "a row length")?;
        if self.cols == 0 || self.rows * self.cols > u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!(
                    "{} rows of {} columns is empty or above 2^32 elements",
                    self.rows, self.cols
                ),
            });
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<RowwiseConfig> {
        let mut space = Vec::new();
        for subgroup in [false, true] {
            space.extend(super::wg_vec_space(
                |wg, vec| RowwiseConfig { wg, vec, subgroup },
                |c| self.check(profile, c).is_ok(),
            ));
        }
        space
    }

    fn default_config(&self, profile: &DeviceProfile) -> RowwiseConfig {
        let vec = if self.cols.is_multiple_of(4) { 4 } else { 1 };
        // Enough invocations to cover a row once, within 32..=256.
        let want = (self.cols / vec as u64).next_power_of_two().clamp(32, 256) as u32;
        let max = profile.limits.max_compute_invocations_per_workgroup.max(1);
        let wg = want.min(1u32 << (31 - max.leading_zeros())).max(32);
        // Subgroup reductions on GPUs with wide subgroups (32+ lanes): two barriers per
        // reduction instead of log2(wg) + 2.
        let subgroup = profile.subgroups.as_ref().is_some_and(|s| s.max_size >= 32);
        // CPU adapters: 32 invocations, scalar, where every barrier of the reduction costs a
        // switch between emulated invocations (whole-model tuning picked `v1.wg32` for the
        // fused norm on SwiftShader in Chromium, 1.1 -> 0.1 ms, and on lavapipe).
        let (wg, vec) = if profile.cpu { (32, 1) } else { (wg, vec) };
        let c = RowwiseConfig { wg, vec, subgroup };
        if self.check(profile, &c).is_ok() {
            c
        } else {
            RowwiseConfig {
                wg: 64,
                vec: 1,
                subgroup: false,
            }
        }
    }
}
