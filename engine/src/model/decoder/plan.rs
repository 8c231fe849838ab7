//! The layer plan: how each layer computes, decided once at load from the architecture's
//! config, the weights' formats and the device, so that the forward pass only follows it.
//! A new decoder architecture is a `DecoderConfig` (what the model is) and, where it differs,
//! a rule here (how it runs), not an edit inside the layer loop.

use webjit_jit::profile::DeviceProfile;

use super::matrix::Matrix;
use crate::model::llm_config::DecoderConfig;
use crate::ops::RopeOptions;

/// Which product a matrix takes for how many rows: the matvec up to `matvec_rows`, matvecs over
/// slices of `matvec_rows` rows up to `slice_rows`, the tiled matmul above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProductPlan {
    pub matvec_rows: usize,
    pub slice_rows: usize,
    /// Whether a decode step's matvecs fold the add_norm before them (the FFN's pre-norm and
    /// the next block's) into their own workgroups (`ops::NormIn`), where X fits workgroup
    /// memory: one dispatch less per fold.
    pub norm_prologue: bool,
}

impl ProductPlan {
    /// Adapters that run shaders on the CPU take prompts up to 64 tokens as 8-row matvecs:
    /// the tiled matmul's workgroup barriers are what they do worst. On SwiftShader (natively,
    /// 2 cores) a 17-row Q5_0 2048 x 640 product took 295 ms on the tiled default and 156 ms on
    /// the best tile, against 33 ms for 8 rows by the matvec; around 128 rows the two meet.
    pub fn for_device(profile: &DeviceProfile) -> Self {
        Self {
            matvec_rows: 8,
            slice_rows: if profile.cpu { 64 } else { 0 },
            norm_prologue: norm_prologue_default(profile),
        }
    }
}

/// Off by default: measured slower where it was meant to help. On an H100 (2026-12-07,
/// `bench model --synthetic-from`, tg128) Gemma 3 270M decoded at 899 / 871 tok/s with it
/// against 929 / 910 without (141 against 176 dispatches a step), Qwen2.5-0.5B 536 against
/// 601, Llama-3.2-1B 358 against 480: every workgroup of the folded matvec norms all of X
/// again (2048-4096 workgroups of K = 640-2048), which costs more than the dispatch it saves.
/// On lavapipe it was even. `WEBJIT_NORM_PROLOGUE=1` turns it on (native builds), as does
/// `Decoder::set_norm_prologue`.
fn norm_prologue_default(_profile: &DeviceProfile) -> bool {
    matches!(std::env::var("WEBJIT_NORM_PROLOGUE").as_deref(), Ok("1"))
}

/// How a layer computes q, k and v for a decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvPlan {
    /// q and k (and v when `with_v`) quantized in one format and K, each in one binding: one
    /// stacked matvec whose packed row the RoPE kernel reads.
    Stacked { with_v: bool },
    /// Three products.
    Separate,
}

/// Where the per-head q/k RMSNorms run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNormPlan {
    None,
    /// Both exist: inside the RoPE kernel (decode) or as row norms (prefill).
    Both,
    /// Only one exists: applied on its own, before the RoPE.
    Unpaired,
}

/// How a layer computes its gated FFN for decode-sized inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnPlan {
    /// Gate and up quantized alike: one matvec takes both and the activation.
    FusedGate,
    /// Two products and an elementwise gate.
    Separate,
}

/// One layer's plan.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    /// Attention over the last `window` positions (sliding-window layers); `None`: global.
    pub window: Option<u32>,
    pub rope: RopeOptions,
    pub qk_norm: QkNormPlan,
    pub qkv: QkvPlan,
    pub ffn: FfnPlan,
}

/// The matrices and norms of a layer, as far as the plan looks at them.
pub struct LayerShape<'a> {
    pub q: &'a Matrix,
    pub k: &'a Matrix,
    pub v: &'a Matrix,
    pub gate: &'a Matrix,
    pub up: &'a Matrix,
    pub q_norm: bool,
    pub k_norm: bool,
    /// Whether q, k and v have biases.
    pub biases: [bool; 3],
}

impl LayerPlan {
    pub fn decide(cfg: &DecoderConfig, layer: usize, w: &LayerShape<'_>) -> Self {
        let qk_norm = match (w.q_norm, w.k_norm) {
            (true, true) => QkNormPlan::Both,
            (false, false) => QkNormPlan::None,
            _ => QkNormPlan::Unpaired,
        };
        Self {
            window: if cfg.is_local(layer) {
                cfg.window
            } else {
                None
            },
            rope: RopeOptions {
                layout: cfg.rope_layout,
                base: cfg.rope_base_of(layer),
                rot_dims: cfg.rope_dims,
            },
            qk_norm,
            qkv: qkv_plan(w, qk_norm),
            ffn: match (w.gate, w.up) {
                (Matrix::Quantized(g), Matrix::Quantized(u))
                    if g.format() == u.format() && g.shape() == u.shape() =>
                {
                    FfnPlan::FusedGate
                }
                _ => FfnPlan::Separate,
            },
        }
    }
}

/// Stacked where q and k (and v) share a quantized format and K, each in one binding, and
/// the RoPE kernel can take both norms or none.
fn qkv_plan(w: &LayerShape<'_>, qk_norm: QkNormPlan) -> QkvPlan {
    let (Matrix::Quantized(q), Matrix::Quantized(k)) = (w.q, w.k) else {
        return QkvPlan::Separate;
    };
    let fits = |m: &crate::QTensor| {
        m.format() == q.format() && m.shape()[1] == q.shape()[1] && m.segments().len() == 1
    };
    // The stacked row takes one bias vector: all of q, k (and v) have biases, or none.
    let [bq, bk, bv] = w.biases;
    if !fits(q) || !fits(k) || qk_norm == QkNormPlan::Unpaired || bq != bk {
        return QkvPlan::Separate;
    }
    QkvPlan::Stacked {
        with_v: matches!(w.v, Matrix::Quantized(v) if fits(v)) && bv == bq,
    }
}
