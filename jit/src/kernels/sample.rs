//! Token sampling on the GPU, so a decode step reads back one token id (plus the top few
//! logits for reporting) instead of the whole vocabulary-sized logit vector.
//!
//! Three stages, one spec: `Penalize` applies the repetition penalty in place; `Partial`
//! selects each workgroup's top k of its slice of the logits; `Final` merges those into the
//! global top k and samples (greedy, temperature, top-k, top-p) with a uniform number the
//! host draws from its seeded generator.

use crate::error::JitError;
use crate::kernels::{check_workgroup, illegal};
use crate::profile::DeviceProfile;
use crate::render::{render, section};
use crate::shaders::SAMPLE;
use crate::spec::{div_ceil, BindingDecl, KernelSpec, UniformStruct};

/// The most candidates the sampler keeps: top-k above this is refused, and "no top-k" means
/// this many (top-p then works within them).
pub const SAMPLE_KMAX: u32 = 64;
/// Top (id, logit) pairs reported per step.
pub const SAMPLE_REPORT: u32 = 5;
/// Words of the result buffer: token, kept count, REPORT (id, logit bits) pairs.
pub const SAMPLE_RESULT_WORDS: usize = 2 + 2 * SAMPLE_REPORT as usize;

crate::uniform_struct!(
    /// Uniforms of all three stages of `sample.wgsl`.
    SampleParams {
        n: u32, chunk: u32, k: u32, groups: u32,
        n_hist: u32, pad0: u32, pad1: u32, pad2: u32,
        temperature: f32, top_p: f32, u: f32, penalty: f32,
    }
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleStage {
    Penalize,
    Partial,
    Final,
}

impl SampleStage {
    fn name(self) -> &'static str {
        match self {
            SampleStage::Penalize => "penalize",
            SampleStage::Partial => "partial",
            SampleStage::Final => "final",
        }
    }
}

/// One stage over a logit vector of `n` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSpec {
    pub stage: SampleStage,
    pub n: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleConfig {
    pub wg: u32,
    /// Workgroups of the partial stage (each owns n / groups logits). `Final` must use the
    /// same value as the `Partial` it follows.
    pub groups: u32,
}

/// Sampling settings of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleSettings {
    /// <= 0: greedy.
    pub temperature: f32,
    /// Candidates considered, 1..=SAMPLE_KMAX (greedy uses 1 internally where it can).
    pub top_k: u32,
    /// Nucleus mass in (0, 1]; 1 keeps all top-k candidates.
    pub top_p: f32,
    /// The host's uniform draw in [0, 1).
    pub u: f32,
    pub penalty: f32,
}

impl SampleSettings {
    /// Greedy decoding: the argmax of the raw logits (no penalty).
    pub const GREEDY: SampleSettings = SampleSettings {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        u: 0.0,
        penalty: 1.0,
    };
}

impl SampleSpec {
    pub fn params(&self, cfg: &SampleConfig, s: &SampleSettings, n_hist: u32) -> SampleParams {
        SampleParams {
            n: self.n as u32,
            chunk: div_ceil(self.n, cfg.groups as u64),
            k: s.top_k.clamp(1, SAMPLE_KMAX),
            groups: cfg.groups,
            n_hist,
            temperature: s.temperature,
            top_p: s.top_p,
            u: s.u,
            penalty: s.penalty,
            ..Default::default()
        }
    }

    /// Dispatch of the penalize stage for `n_hist` ids.
    pub fn penalize_dispatch(cfg: &SampleConfig, n_hist: u32) -> [u32; 3] {
        [div_ceil(n_hist as u64, cfg.wg as u64).max(1), 1, 1]
    }
}

impl KernelSpec for SampleSpec {
    type Config = SampleConfig;

    fn family(&self) -> &'static str {
        "sample"
    }

    /// The partial and final stages run one config (the sampler sizes its buffers for it),
    /// so they share a record, filed under the partial stage's key.
    fn tune_key(&self) -> String {
        let stage = match self.stage {
            SampleStage::Penalize => "penalize",
            _ => "partial",
        };
        format!("sample.{stage}|n{}", crate::tune::bucket(self.n))
    }

    fn key(&self, cfg: &SampleConfig) -> String {
        match self.stage {
            SampleStage::Penalize => format!("sample.penalize.wg{}", cfg.wg),
            s => format!("sample.{}.wg{}.g{}", s.name(), cfg.wg, cfg.groups),
        }
    }

    fn bindings(&self, _cfg: &SampleConfig) -> Vec<BindingDecl> {
        match self.stage {
            SampleStage::Penalize => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "hist"),
                BindingDecl::read_write(2, "logits"),
            ],
            SampleStage::Partial => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "logits"),
                BindingDecl::read_write(2, "cand"),
            ],
            SampleStage::Final => vec![
                BindingDecl::uniform(0, "p"),
                BindingDecl::read(1, "cand"),
                BindingDecl::read_write(2, "res"),
            ],
        }
    }

    fn render(&self, cfg: &SampleConfig) -> Result<String, JitError> {
        let f = "sample.wgsl";
        // The stage's section first: it begins with the key comment.
        let mut body = section(f, SAMPLE, self.stage.name())?.to_string();
        if self.stage != SampleStage::Penalize {
            body.push_str(section(f, SAMPLE, "common")?);
        }
        let mut values = vec![
            ("KEY", self.key(cfg)),
            ("PARAMS", SampleParams::wgsl_decl()),
            ("WG", cfg.wg.to_string()),
        ];
        if self.stage != SampleStage::Penalize {
            values.push(("KMAX", SAMPLE_KMAX.to_string()));
        }
        if self.stage == SampleStage::Final {
            values.push(("REPORT", SAMPLE_REPORT.to_string()));
        }
        render(f, &body, &values)
    }

    fn dispatch(&self, cfg: &SampleConfig) -> [u32; 3] {
        match self.stage {
            // The real size depends on the history length: see `penalize_dispatch`.
            SampleStage::Penalize => [1, 1, 1],
            SampleStage::Partial => [cfg.groups, 1, 1],
            SampleStage::Final => [1, 1, 1],
        }
    }

    fn check(&self, profile: &DeviceProfile, cfg: &SampleConfig) -> Result<(), JitError> {
        check_workgroup(self.family(), &self.key(cfg), profile, cfg.wg)?;
        if !cfg.wg.is_power_of_two() {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "the tree reduction needs a power-of-two workgroup",
            ));
        }
        if cfg.groups == 0 || cfg.groups > profile.limits.max_compute_workgroups_per_dimension {
            return Err(illegal(
                self.family(),
                &self.key(cfg),
                "groups must be 1..=max workgroups per dimension",
            ));
        }
        if self.n == 0 || self.n >= u32::MAX as u64 {
            return Err(JitError::UnsupportedProblem {
                family: self.family().into(),
                reason: format!("{} logits (must be 1..2^32-1)", self.n),
            });
        }
        Ok(())
    }

    fn space(&self, profile: &DeviceProfile) -> Vec<SampleConfig> {
        let groups: &[u32] = match self.stage {
            SampleStage::Penalize => &[1],
            _ => &[32, 64, 128, 256],
        };
        [64u32, 128, 256]
            .into_iter()
            .flat_map(|wg| {
                groups
                    .iter()
                    .map(move |&groups| SampleConfig { wg, groups })
            })
            .filter(|c| self.check(profile, c).is_ok())
            .collect()
    }

    fn default_config(&self, profile: &DeviceProfile) -> SampleConfig {
        let wg = if profile.limits.max_compute_invocations_per_workgroup >= 256 {
            256
        } else {
            64
        };
        let groups = match self.stage {
            SampleStage::Penalize => 1,
            _ => 128,
        };
        SampleConfig { wg, groups }
    }
}
