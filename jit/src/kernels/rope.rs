//! Rotary position embedding, NeoX (rotate halves) and normal (rotate adjacent pairs) layouts.
//! The cos/sin table is computed on the host in f64 (see `rope_table`), so any base works.

use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal, linear_dispatch, WORKGROUP_SIZES};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::ROPE;
use crate::spec::{BindingDecl, KernelSpec, UniformStruct};

crate::uniform_struct!(
    /// Uniforms of `rope.wgsl`.
    RopeParams { tokens: u32, heads: u32, head_dim: u32, rot: u32 }
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeLayout {
    /// Pairs `(i, i + rot/2)`: GPT-NeoX, Gemma, Qwen (llama.cpp `LLAMA_ROPE_TYPE_NEOX`).
    Neox,
    /// Pairs `(2i, 2i + 1)`: original RoPE and llama (llama.cpp `LLAMA_ROPE_TYPE_NORM`).
    Normal,
}

impl RopeLayout {
    pub fn name(self) -> &'static str {
        match self {
            RopeLayout::Neox => "neox",
            RopeLayout::Normal => "normal",
        }
    }
}

/// x: [tokens, heads, head_dim]; the first `rot` dims of each head are rotated.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub layout: RopeLayout,
    pub tokens: u64,
    pub heads: u64,
    pub head_dim: u64,
    pub rot: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RopeConfig {
    pub wg: u32,
}

impl RopeSpec {
    pub fn params(&self) -> RopeParams {
        RopeParams {
            tokens: self.tokens as u32,
            heads: self.heads as u32,
            head_dim: self.head_dim as u32,
            rot: self.rot as u32,
        }
    }
}

/// How a model scales RoPE's rotation beyond `base`: per-pair frequency factors (Llama 3.1's
/// `rope_freqs`, Phi-3's short/long factors) divide each pair's angle, a linear `freq_scale`
/// multiplies every angle, and `attn_factor` multiplies cos and sin (so both q and k, and thus
/// the attention logits by its square), as llama.cpp's `ggml_rope_ext` does without YaRN.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeFreqs {
    /// [rot / 2] divisors of each pair's angle; `None`: all 1.
    pub factors: Option<Vec<f32>>,
    pub freq_scale: f64,
    pub attn_factor: f64,
}

impl Default for RopeFreqs {
    fn default() -> Self {
        Self {
            factors: None,
            freq_scale: 1.0,
            attn_factor: 1.0,
        }
    }
}

/// cos/sin of `pos * base^(-2i/rot)` for each position and pair, interleaved, in f64 then f32.
/// Returns [positions.len(), rot / 2, 2].
pub fn rope_table(positions: &[u32], rot: usize, base: f64) -> Vec<f32> {
    rope_table_with(positions, rot, base, &RopeFreqs::default())
}

/// `rope_table` with frequency factors, linear scaling and an attention factor (`freqs`; its
/// factors, when given, must number rot / 2).
pub fn rope_table_with(positions: &[u32], rot: usize, base: f64, freqs: &RopeFreqs) -> Vec<f32> {
    let half = rot / 2;
    let freq: Vec<f64> = (0..half)
        .map(|i| {
            let factor = freqs
                .factors
                .as_ref()
                .and_then(|f| f.get(i))
                .map_or(1.0, |&f| f as f64);
            freqs.freq_scale * base.powf(-2.0 * i as f64 / rot as f64) / factor
        })
        .collect();
    let m = freqs.attn_factor;
    let mut out = Vec::with_capacity(positions.len() * half * 2);
    for &pos in positions {
        for &f in &freq {
            let theta = pos as f64 * f;
            out.push((theta.cos() * m) as f32);
            out.push((theta.sin() * m) as f32);
        }
    }
    out
}

impl KernelSpec for RopeSpec {
    type Config = RopeConfig;

    fn family(&self) -> &'static str {
        "rope"
    }

    fn tune_key(&self) -> String {
        use crate::tune::bucket;
        format!(
            "rope.{}|r{}.d{}",
            self.layout.name(),
            bucket(self.tokens * self.heads),
            bucket(self.head_dim)
        )
    }

    fn key(&self, cfg: &RopeConfig) -> String {
        format!("rope.{}.f32.wg{}", self.layout.name(), cfg.wg)
    }

    fn bindings(&self, _cfg: &RopeConfig) -> Vec<BindingDecl> {
        vec![
            BindingDecl::uniform(0, "p"),
            BindingDecl::read(1, "x"),
            BindingDecl::read(2, "cs"),
            BindingDecl::read_write(3, "out"),
        ]
    }

    fn render(&self, cfg: &RopeConfig) -> Result<String, JitError> {
        let (i0, i1) = match self.layout {
            RopeLayout::Neox => ("j", "j + half_rot"),
            RopeLayout::Normal => ("2u * j", "2u * j + 1u"),
        };
        render(
            "rope.wgsl",
            section("rope.wgsl", ROPE, "main")?,
            &[
                ("KEY", self.key(cfg)),
                ("PARAMS", RopeParams::wgsl_decl()),
                ("I0", i0.into()),
                ("I1", i1.into()),
            ],
        )
    }

    fn overrides(&self, cfg: &RopeConfig) -> Vec<(String, f64)> {
        vec![("WG".into(), cfg.wg as f64)]
    }

    fn dispatch(&self, cfg: &RopeConfig) -> [u32; 3] {
        linear_dispatch(self.tokens * self.heads * (self.head_dim / 2), cfg.wg)
    }

    fn check(&self, profile: &DeviceProfile, cfg: &RopeConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        if !self.head_dim.is_multiple_of(2)
            || !self.rot.is_multiple_of(2)
            || self.rot > self.head_dim
            || self.rot == 0
        {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                format!(
                    "head_dim {} and rotary dims {} must be even with rot <= head_dim",
                    self.head_dim, self.rot
                ),
            ));
        }
        if self.tokens * self.heads * self.head_dim > u32::MAX as u64 {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "more than 2^32 elements",
            ));
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<RopeConfig> {
        WORKGROUP_SIZES
            .iter()
            .map(|&wg| RopeConfig { wg })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, _profile: &DeviceProfile) -> RopeConfig {
        RopeConfig { wg: 64 }
    }
}
