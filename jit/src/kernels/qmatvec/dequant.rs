//! Dequantization of whole rows of a repacked weight to f32: tests check GPU repacking and the
//! WGSL dequantizers against the CPU reference with it.

use super::problem::check_k;
use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal, linear_dispatch};
use crate::quant::wgsl::deq_wgsl;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::QMATVEC;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of the `dequant` section of `qmatvec.wgsl`.
    QDequantParams { rows: u32, k: u32, row_words: u32, pad: u32 }
);

/// Dequantize `rows` rows of K elements of a repacked weight to f32 [rows, K].
#[derive(Clone, Debug, PartialEq)]
pub struct QDequantSpec {
    pub format: GgmlType,
    pub rows: u64,
    pub k: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QDequantConfig {
    pub wg: u32,
}

impl QDequantSpec {
    pub fn params(&self) -> QDequantParams {
        QDequantParams {
            rows: self.rows as u32,
            k: self.k as u32,
            row_words: self.format.row_words(self.k as usize).unwrap_or(0) as u32,
            pad: 0,
        }
    }
}

impl KernelSpec for QDequantSpec {
    type Config = QDequantConfig;
    fn family(&self) -> &'static str {
        "qdequant"
    }
    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "qdequant.{}|r{}.k{}",
            self.format.name(),
            bucket(self.rows),
            bucket(self.k)
        )
    }
    fn key(&self, cfg: &QDequantConfig) -> String {
        format!("qdequant.{}.wg{}", self.format.name(), cfg.wg)
    }
    fn bindings(&self, _cfg: &QDequantConfig) -> Vec<BindingDecl> {
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "w"),
            BindingDecl::read_write(2, "out"),
        ];
        b.extend(crate::quant::wgsl::grid_binding(self.format));
        b
    }
    fn render(&self, cfg: &QDequantConfig) -> Result<String, JitError> {
        render(
            "qmatvec.wgsl",
            section("qmatvec.wgsl", QMATVEC, "dequant")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", QDequantParams::wgsl_decl()),
                ("DEQ", deq_wgsl(self.format)?),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }
    fn dispatch(&self, cfg: &QDequantConfig) -> [u32; 3] {
        linear_dispatch(self.rows * (self.k / 4), cfg.wg)
    }
    fn check(&self, profile: &crate::DeviceProfile, cfg: &QDequantConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        check_k(self.family(), self.format, self.k)?;
        if self.rows * (self.k / 4) > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 outputs",
            ));
        }
        Ok(())
    }
    fn space(&self, profile: &crate::DeviceProfile) -> Vec<QDequantConfig> {
        [64, 256]
            .into_iter()
            .map(|wg| QDequantConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }
    fn default_config(&self, _profile: &crate::DeviceProfile) -> QDequantConfig {
        QDequantConfig { wg: 64 }
    }
}
