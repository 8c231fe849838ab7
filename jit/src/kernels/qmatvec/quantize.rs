//! The activation quantizer of the int8 matvec path: X [M, K] f32 to 8-bit codes per block of
//! 32, as ggml's q8_1 (codes and scales in separate arrays).

use crate::error::JitError;
use crate::kernels::{check_workgroup, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::QMATVEC_I8;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

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

pub(super) fn check_k32(family: &str, k: u64) -> Result<(), JitError> {
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
