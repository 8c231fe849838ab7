//! Embedding gather from a table that may be split over several buffer segments.

use crate::error::JitError;
use crate::kernels::qmatvec::check_k;
use crate::kernels::{check_vec, check_workgroup, illegal, linear_dispatch};
use crate::profile::DeviceProfile;
use crate::quant::wgsl::deq_wgsl;
use crate::quant::GgmlType;
use crate::render::{render, section};
use crate::shaders::EMBEDDING;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `embedding.wgsl`; `dim` counts vector elements.
    GatherParams { n: u32, dim: u32, row_lo: u32, seg_rows: u32, scale: f32, pad0: u32, add_rows: u32, pad2: u32 }
);

/// Gather `n` rows of `dim` f32 from a table segment.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingSpec {
    pub n: u64,
    pub dim: u64,
    /// When nonzero, output row `i` also gets row `i % add_rows` of a second table `add`
    /// (binding 4): an encoder's position embeddings added in the gather's dispatch.
    pub add_rows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingConfig {
    pub wg: u32,
    pub vec: u32,
}

impl EmbeddingSpec {
    pub fn params(
        &self,
        cfg: &EmbeddingConfig,
        row_lo: u32,
        seg_rows: u32,
        scale: f32,
    ) -> GatherParams {
        GatherParams {
            n: self.n as u32,
            dim: (self.dim / cfg.vec as u64) as u32,
            row_lo,
            seg_rows,
            scale,
            add_rows: self.add_rows as u32,
            ..Default::default()
        }
    }
}

impl KernelSpec for EmbeddingSpec {
    type Config = EmbeddingConfig;

    fn family(&self) -> &'static str {
        "embedding"
    }

    fn tune_key(&self) -> String {
        format!(
            "embedding|n{}.d{}",
            crate::tune::bucket(self.n),
            crate::tune::bucket(self.dim)
        )
    }

    fn key(&self, cfg: &EmbeddingConfig) -> String {
        format!(
            "embedding.f32.v{}.wg{}{}",
            cfg.vec,
            cfg.wg,
            if self.add_rows > 0 { ".add" } else { "" }
        )
    }

    fn bindings(&self, _cfg: &EmbeddingConfig) -> Vec<BindingDecl> {
        let mut v = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "ids"),
            BindingDecl::read(2, "table"),
            BindingDecl::read_write(3, "out"),
        ];
        if self.add_rows > 0 {
            v.push(BindingDecl::read(4, "add"));
        }
        v
    }

    fn render(&self, cfg: &EmbeddingConfig) -> Result<String, JitError> {
        let f = "embedding.wgsl";
        let t = if cfg.vec == 4 { "vec4<f32>" } else { "f32" };
        let (add_decl, add) = if self.add_rows > 0 {
            (
                section(f, EMBEDDING, "add_decl")?,
                section(f, EMBEDDING, "add")?.trim_end(),
            )
        } else {
            ("", "")
        };
        render(
            f,
            section(f, EMBEDDING, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", GatherParams::wgsl_decl()),
                ("T", t.into()),
                ("ADD_DECL", add_decl.into()),
                ("ADD", add.into()),
            ],
        )
    }

    fn overrides(&self, cfg: &EmbeddingConfig) -> Vec<(String, f64)> {
        vec![("WG".into(), cfg.wg as f64)]
    }

    fn dispatch(&self, cfg: &EmbeddingConfig) -> [u32; 3] {
        linear_dispatch(self.n * self.dim / cfg.vec as u64, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &EmbeddingConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        let dim4 = self.dim.is_multiple_of(4);
        check_vec(self.family(), &self.key(cfg), cfg.vec, dim4, "dim")?;
        if self.n * self.dim > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 output elements",
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<EmbeddingConfig> {
        super::wg_vec_space(
            |wg, vec| EmbeddingConfig { wg, vec },
            |c| self.check(profile, c).is_ok(),
        )
    }

    fn default_config(&self, _profile: &DeviceProfile) -> EmbeddingConfig {
        EmbeddingConfig {
            wg: 128,
            vec: if self.dim.is_multiple_of(4) { 4 } else { 1 },
        }
    }
}

/// Gather `n` rows of `dim` elements from a segment of a quantized table, dequantized to f32
/// (Gemma's Q8_0 token embedding, 262144 x 640). The uniform's `pad0` carries the row stride
/// in u32 words.
#[derive(Clone, Debug, PartialEq)]
pub struct QEmbeddingSpec {
    pub format: GgmlType,
    pub n: u64,
    pub dim: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QEmbeddingConfig {
    pub wg: u32,
}

impl QEmbeddingSpec {
    pub fn params(&self, row_lo: u32, seg_rows: u32, scale: f32) -> GatherParams {
        GatherParams {
            n: self.n as u32,
            dim: (self.dim / 4) as u32,
            row_lo,
            seg_rows,
            scale,
            pad0: self.format.row_words(self.dim as usize).unwrap_or(0) as u32,
            ..Default::default()
        }
    }
}

impl KernelSpec for QEmbeddingSpec {
    type Config = QEmbeddingConfig;

    fn family(&self) -> &'static str {
        "qembedding"
    }

    fn tune_key(&self) -> String {
        format!(
            "qembedding.{}|n{}.d{}",
            self.format.name(),
            crate::tune::bucket(self.n),
            crate::tune::bucket(self.dim)
        )
    }

    fn key(&self, cfg: &QEmbeddingConfig) -> String {
        format!("qembedding.{}.wg{}", self.format.name(), cfg.wg)
    }

    fn bindings(&self, _cfg: &QEmbeddingConfig) -> Vec<BindingDecl> {
        let mut b = vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "ids"),
            BindingDecl::read(2, "w"),
            BindingDecl::read_write(3, "out"),
        ];
        b.extend(crate::quant::wgsl::grid_binding(self.format));
        b
    }

    fn render(&self, cfg: &QEmbeddingConfig) -> Result<String, JitError> {
        render(
            "embedding.wgsl",
            section("embedding.wgsl", EMBEDDING, "quantized")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", GatherParams::wgsl_decl()),
                ("DEQ", deq_wgsl(self.format)?),
                ("WG", cfg.wg.to_string()),
            ],
        )
    }

    fn dispatch(&self, cfg: &QEmbeddingConfig) -> [u32; 3] {
        linear_dispatch(self.n * self.dim / 4, cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &QEmbeddingConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        check_k(self.family(), self.format, self.dim)?;
        if self.n * self.dim > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 output elements",
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<QEmbeddingConfig> {
        super::WORKGROUP_SIZES
            .into_iter()
            .map(|wg| QEmbeddingConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, _profile: &DeviceProfile) -> QEmbeddingConfig {
        QEmbeddingConfig { wg: 64 }
    }
}
