//! What a generation is asked for and what it reports: sampling and stopping options, the
//! statistics, the seeded generator of the sampler's draws, why a generation stopped.

use webjit_jit::kernels::sample::SampleSettings;

use crate::error::Result;
use crate::ops::{SampleResult, Sampler};
use crate::tensor::Tensor;

/// Sampling and stopping settings. `Default` is greedy, 128 tokens, no penalty.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// <= 0: greedy (argmax, ties to the lower id).
    pub temperature: f32,
    /// 0: the sampler's maximum (64 candidates).
    pub top_k: u32,
    pub top_p: f32,
    /// llama.cpp's repetition penalty over the last 64 tokens; 1 = off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }
}

impl GenerateOptions {
    /// The sampler settings of one step with the uniform draw `u`, checked.
    pub(super) fn settings(&self, u: f32) -> Result<SampleSettings> {
        let s = SampleSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            u,
            penalty: self.repeat_penalty,
        };
        Sampler::validate(&s)?;
        Ok(s)
    }
}

/// What a generation did, with timings measured around GPU completion.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    /// Per generated token: the top (id, logit) pairs of the distribution it was drawn from.
    pub top_logits: Vec<Vec<(u32, f32)>>,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// GPU dispatches recorded per decode step (forward + sampling).
    pub dispatches_per_token: u32,
    /// Tokens whose readback was awaited with the step after them already queued on the GPU,
    /// so that the GPU did not wait for the host to record it: all but the first and last of
    /// a greedy or sampled run, none with a repetition penalty (it needs each token first).
    pub queued_behind: usize,
    /// Stopped on an end-of-generation token (not on the token limit or the callback).
    pub stopped_on_eog: bool,
    /// Why the generation ended (`None` while it runs).
    pub stop_reason: Option<StopReason>,
}

/// splitmix64: a tiny seeded generator for the sampler's uniform draws (the same seed gives
/// the same tokens on every platform).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 24 bits (exact in f32).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// What one `Session::step` produced.
pub struct Step {
    pub result: SampleResult,
    /// [1, vocab] logits of the last fed position.
    pub logits: Tensor,
    /// Dispatches recorded (forward + sampling).
    pub dispatches: u32,
    /// Host seconds spent recording and submitting the step (before waiting for the GPU).
    pub record_s: f64,
    /// The part of `record_s` spent in `submit` (finishing the command encoder, writing the
    /// uniforms, handing the work to the queue).
    pub submit_s: f64,
}

/// Why a `Generation` stopped. Serialized as its `name()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-generation token was sampled (it is reported).
    Eog,
    MaxTokens,
    /// The KV cache is full.
    Context,
    /// `Session::stop`.
    Stopped,
    /// A step failed.
    Error,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::MaxTokens => "max_tokens",
            StopReason::Context => "context",
            StopReason::Stopped => "stopped",
            StopReason::Error => "error",
        }
    }
}
