//! Mean pooling over the real (unpadded) tokens of each sequence.

use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::POOL;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `pool.wgsl`; `dim` counts vector elements.
    PoolParams { batch: u32, seq: u32, dim: u32, pad: u32 }
);

/// x: [batch, seq, dim] -> [batch, dim], averaging the first `lens[b]` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub batch: u64,
    pub seq: u64,
    pub dim: u64,
}

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
            pad: 0,
        }
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
        format!("pool.mean.f32.v{}.wg{}", cfg.vec, cfg.wg)
    }

    fn bindings(&self, _cfg: &PoolConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "x"),
            BindingDecl::read(2, "lens"),
            BindingDecl::read_write(3, "out"),
        ]
    }

    fn render(&self, cfg: &PoolConfig) -> Result<String, JitError> {
        let t = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        render(
            "pool.wgsl",
            section("pool.wgsl", POOL, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", PoolParams::wgsl_decl()),
                ("T", t.into()),
            ],
        )
    }

    fn overrides(&self, cfg: &PoolConfig) -> Vec<(String, f64)> {
        vec![("WG".into(), cfg.wg as f64)]
    }

    fn dispatch(&self, cfg: &PoolConfig) -> [u32; 3] {
        linear_dispatch(self.batch * self.dim / cfg.vec as u64, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &PoolConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        if cfg.vec != 1 && cfg.vec != 4 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "vector width must be 1 or 4",
            ));
        }
        if cfg.vec == 4 && !self.dim.is_multiple_of(4) {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "vec4 needs dim divisible by 4",
            ));
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

    fn default_config(&self, _profile: &DeviceProfile) -> PoolConfig {
        PoolConfig {
            wg: 64,
            vec: if self.dim.is_multiple_of(4) { 4 } else { 1 },
        }
    }
}
