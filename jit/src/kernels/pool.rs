//! Mean pooling over the real (unpadded) tokens of each sequence.

use crate::error::JitError;
use crate::kernels::{check_vec, check_workgroup, illegal, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::{POOL, REDUCE};
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `pool.wgsl`; `dim` counts vector elements; `eps` is the LayerNorm epsilon
    /// and `l2_eps` the least length divided by (the `rows` section).
    PoolParams { batch: u32, seq: u32, dim: u32, pad: u32, eps: f32, l2_eps: f32, pad1: u32, pad2: u32 }
);

/// x: [batch, seq, dim] -> [batch, dim], averaging the first `lens[b]` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub batch: u64,
    pub seq: u64,
    pub dim: u64,
    /// LayerNorm each token's row first (binds `ln_g`, `ln_b` [dim] after the output).
    pub norm: bool,
    /// Divide each pooled vector by its Euclidean length.
    pub l2: bool,
}

/// Columns of the pooled vector one invocation keeps at most (the `rows` form).
const MAX_COLS: u64 = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub wg: u32,
    pub vec: u32,
}

impl PoolSpec {
    pub fn params(&self, cfg: &PoolConfig) -> PoolParams {
        PoolParams {
            batch: self.batch as u32,
            seq: self.seq as u32,
            dim: (self.dim / cfg.vec as u64) as u32,
            ..Default::default()
        }
    }

    /// The `rows` form: one workgroup per sequence, needed for a LayerNorm or L2.
    fn whole_rows(&self) -> bool {
        self.norm || self.l2
    }

    fn cols(&self, cfg: &PoolConfig) -> u64 {
        (self.dim / cfg.vec.max(1) as u64).div_ceil(cfg.wg.max(1) as u64)
    }
}

impl KernelSpec for PoolSpec {
    type Config = PoolConfig;

    fn family(&self) -> &'static str {
        "pool"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "pool.mean|b{}.s{}.d{}",
            bucket(self.batch),
            bucket(self.seq),
            bucket(self.dim)
        )
    }

    fn key(&self, cfg: &PoolConfig) -> String {
        if self.whole_rows() {
            return format!(
                "pool.mean{}{}.f32.v{}.wg{}.c{}",
                if self.norm { ".ln" } else { "" },
                if self.l2 { ".l2" } else { "" },
                cfg.vec,
                cfg.wg,
                self.cols(cfg)
            );
        }
        format!("pool.mean.f32.v{}.wg{}", cfg.vec, cfg.wg)
    }

    fn bindings(&self, _cfg: &PoolConfig) -> Vec<BindingDecl> {
        let mut v = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "x"),
            BindingDecl::read(2, "lens"),
            BindingDecl::read_write(3, "out"),
        ];
        if self.norm {
            v.push(BindingDecl::read(4, "ln_g"));
            v.push(BindingDecl::read(5, "ln_b"));
        }
        v
    }

    fn render(&self, cfg: &PoolConfig) -> Result<String, JitError> {
        let f = "pool.wgsl";
        let t = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let head = render(
            f,
            section(f, POOL, "head")?,
            &[("PARAMS", PoolParams::wgsl_decl()), ("T", t.into())],
        )?;
        if !self.whole_rows() {
            return render(
                f,
                section(f, POOL, "main")?,
                &[("KEY", self.key(cfg)), ("HEAD", head)],
            );
        }
        let (decl, apply) = if self.norm {
            (
                section(f, POOL, "norm_decl")?,
                section(f, POOL, "norm_apply")?,
            )
        } else {
            ("", "")
        };
        let hsum = if cfg.vec == 4 {
            "hsum_vec4"
        } else {
            "hsum_f32"
        };
        render(
            f,
            section(f, POOL, "rows")?,
            &[
                ("KEY", self.key(cfg)),
                ("HEAD", head),
                ("V", cfg.vec.to_string()),
                ("WG", cfg.wg.to_string()),
                ("COLS", self.cols(cfg).to_string()),
                ("NORM", self.norm.to_string()),
                ("L2", self.l2.to_string()),
                ("NORM_DECL", decl.into()),
                ("NORM_APPLY", apply.into()),
                ("HSUM", section(f, POOL, hsum)?.into()),
                (
                    "REDUCE",
                    section("reduce.wgsl", REDUCE, "workgroup")?.into(),
                ),
            ],
        )
    }

    fn overrides(&self, cfg: &PoolConfig) -> Vec<(String, f64)> {
        if self.whole_rows() {
            return Vec::new();
        }
        vec![("WG".into(), cfg.wg as f64)]
    }

    fn dispatch(&self, cfg: &PoolConfig) -> [u32; 3] {
        if self.whole_rows() {
            return [self.batch as u32, 1, 1];
        }
        linear_dispatch(self.batch * self.dim / cfg.vec as u64, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &PoolConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        let dim4 = self.dim.is_multiple_of(4);
        check_vec(self.family(), &self.key(cfg), cfg.vec, dim4, "dim")?;
        if self.whole_rows() {
            if !cfg.wg.is_power_of_two() || self.cols(cfg) > MAX_COLS {
                return Err(illegal(
                    self.family(),
                    &self.key(cfg),
                    format!(
                        "whole-row pooling needs a power-of-2 workgroup and at most {MAX_COLS} columns per invocation"
                    ),
                ));
            }
            if self.batch > profile.limits.max_compute_workgroups_per_dimension as u64 {
                return Err(illegal(
                    self.family(),
                    &self.key(cfg),
                    "more sequences than workgroups per dimension",
                ));
            }
        }
        if self.batch * self.seq * self.dim > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 input elements",
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<PoolConfig> {
        super::wg_vec_space(
            |wg, vec| PoolConfig { wg, vec },
            |c| self.check(profile, c).is_ok(),
        )
    }

    fn default_config(&self, profile: &DeviceProfile) -> PoolConfig {
        let vec = if self.dim.is_multiple_of(4) { 4 } else { 1 };
        if self.whole_rows() {
            // One workgroup per sequence: enough invocations for a column each (up to 128),
            // fewer on CPU adapters, which pay per invocation at every barrier.
            let cap = if profile.cpu { 32 } else { 128 };
            let want = (self.dim / vec as u64).next_power_of_two().clamp(32, cap) as u32;
            for wg in [want, 256, 64, 32] {
                let c = PoolConfig { wg, vec };
                if self.check(profile, &c).is_ok() {
                    return c;
                }
            }
        }
        PoolConfig { wg: 64, vec }
    }
}
