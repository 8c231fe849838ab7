//! Decoder hyper-parameters read from GGUF metadata, for the `gemma3` architecture and the
//! `llama` family that shares its building blocks (RMSNorm, RoPE, GQA, gated FFN).
//!
//! Key names follow llama.cpp's GGUF conventions (`{arch}.embedding_length`, ...). Every value
//! that sizes an allocation is checked here, before any weight is touched.

use webjit_jit::kernels::rope::{RopeFreqs, RopeLayout};

use crate::error::{Error, Result};
use crate::loader::{MetaValue, ModelHeader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3.x, SmolLM2, TinyLlama, Mistral.
    Llama,
    /// Qwen 2 / 2.5: biases on q, k and v.
    Qwen2,
    /// Qwen 3 (dense): per-head q/k RMSNorm.
    Qwen3,
    /// Phi-3 / 3.5: fused qkv and gate_up weights, short/long RoPE factors.
    Phi3,
    /// Gemma 2: logit soft-caps, alternating sliding window, post-norms.
    Gemma2,
    /// Gemma 3: q/k norms, 5 local layers per global one, two RoPE bases.
    Gemma3,
}

impl Arch {
    /// Every architecture with a plan, by its GGUF `general.architecture` name.
    pub const ALL: [(&'static str, Arch); 6] = [
        ("llama", Arch::Llama),
        ("qwen2", Arch::Qwen2),
        ("qwen3", Arch::Qwen3),
        ("phi3", Arch::Phi3),
        ("gemma2", Arch::Gemma2),
        ("gemma3", Arch::Gemma3),
    ];

    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, a)| a)
            .ok_or_else(|| Error::UnsupportedArchitecture {
                arch: if name.is_empty() {
                    "(none: no general.architecture key)".into()
                } else {
                    name.into()
                },
                supported: Self::ALL.map(|(n, _)| n).join(", "),
            })
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (Gemma's GeGLU).
    GeluTanh,
    /// SiLU (llama's SwiGLU).
    Silu,
}

/// Where a model keeps its RoPE frequency factors (tensors read on the host at load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RopeFactorSource {
    None,
    /// `rope_freqs.weight` (Llama 3.1/3.2's rope scaling).
    Freqs,
    /// Phi-3's `rope_factors_short.weight` for contexts up to `original_context`,
    /// `rope_factors_long.weight` beyond (llama.cpp picks by the context it is given).
    ShortLong {
        original_context: usize,
    },
}

impl RopeFactorSource {
    /// The tensor whose factors a decoder of `max_context` positions uses.
    pub fn tensor(&self, max_context: usize) -> Option<&'static str> {
        match self {
            RopeFactorSource::None => None,
            RopeFactorSource::Freqs => Some("rope_freqs.weight"),
            RopeFactorSource::ShortLong { original_context } => {
                Some(if max_context > *original_context {
                    "rope_factors_long.weight"
                } else {
                    "rope_factors_short.weight"
                })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    pub arch: Arch,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: usize,
    pub eps: f32,
    pub rope_layout: RopeLayout,
    /// Rotated dims per head when fewer than `head_dim`.
    pub rope_dims: Option<usize>,
    /// RoPE base of global (full-attention) layers.
    pub rope_base: f64,
    /// RoPE base of sliding-window layers.
    pub rope_base_local: f64,
    /// Frequency factors, linear scaling and attention factor; the factors are filled in at
    /// load from `rope_factors` (see `with_rope_factors`).
    pub rope: RopeFreqs,
    pub rope_factors: RopeFactorSource,
    /// Sliding window of local layers.
    pub window: Option<u32>,
    /// Which layers are local (sliding window); all false without a window.
    pub local_layers: Vec<bool>,
    /// Input embeddings are multiplied by this (Gemma: sqrt(d_model)).
    pub embed_scale: f32,
    pub attn_scale: f32,
    /// Attention logits become `c * tanh(s / c)` (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Output logits become `c * tanh(l / c)` (Gemma 2).
    pub final_softcap: Option<f32>,
    pub activation: Activation,
}

impl DecoderConfig {
    pub fn is_local(&self, layer: usize) -> bool {
        self.window.is_some() && self.local_layers.get(layer).copied().unwrap_or(false)
    }

    /// The config with the RoPE factors a decoder of `max_context` positions uses, read from
    /// `host` (the loader's host copies of `HOST_TENSORS`).
    pub fn with_rope_factors(
        mut self,
        max_context: usize,
        host: &std::collections::HashMap<String, Vec<f32>>,
    ) -> Result<Self> {
        let Some(name) = self.rope_factors.tensor(max_context) else {
            return Ok(self);
        };
        let half = self.rope_dims.unwrap_or(self.head_dim) / 2;
        let f = match host.get(name) {
            Some(f) => f,
            // Llama 3.0 and older llama files have no rope_freqs: nothing to scale.
            None if self.rope_factors == RopeFactorSource::Freqs => return Ok(self),
            None => return Err(bad(format!("missing tensor `{name}`"))),
        };
        if f.len() != half || f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad(format!(
                "`{name}` has {} values, expected {half} finite positive factors",
                f.len()
            )));
        }
        self.rope.factors = Some(f.clone());
        Ok(self)
    }

    pub fn rope_base_of(&self, layer: usize) -> f64 {
        if self.is_local(layer) {
            self.rope_base_local
        } else {
            self.rope_base
        }
    }

    pub fn from_header(h: &ModelHeader) -> Result<Self> {
        let arch_name = h.architecture.as_deref().unwrap_or("");
        let arch = Arch::from_name(arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let int = |k: &str| -> Result<Option<usize>> {
            match h.get(&key(k)) {
                None => Ok(None),
                Some(MetaValue::Uint(v)) => Ok(usize::try_from(*v).ok()),
                Some(MetaValue::Int(v)) if *v >= 0 => Ok(usize::try_from(*v).ok()),
                Some(v) => Err(bad(format!("`{}` is {v:?}, expected an integer", key(k)))),
            }
        };
        let need = |k: &str| -> Result<usize> {
            int(k)?.ok_or_else(|| bad(format!("missing metadata `{}`", key(k))))
        };
        let float = |k: &str| -> Result<Option<f64>> {
            match h.get(&key(k)) {
                None => Ok(None),
                Some(MetaValue::Float(v)) => Ok(Some(*v)),
                Some(MetaValue::Uint(v)) => Ok(Some(*v as f64)),
                Some(v) => Err(bad(format!("`{}` is {v:?}, expected a number", key(k)))),
            }
        };
        let d_model = need("embedding_length")?;
        let n_layers = need("block_count")?;
        let ffn = need("feed_forward_length")?;
        let n_heads = need("attention.head_count")?;
        let n_kv_heads = int("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match int("attention.key_length")? {
            Some(k) => k,
            None if n_heads > 0 => d_model / n_heads,
            None => 0,
        };
        if let Some(vl) = int("attention.value_length")? {
            if vl != head_dim {
                return Err(bad(format!(
                    "value length {vl} differs from key length {head_dim}"
                )));
            }
        }
        let context = int("context_length")?.unwrap_or(4096);
        let eps = float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6);
        let rope_base = float("rope.freq_base")?.unwrap_or(10_000.0);
        let vocab = h
            .tensor("token_embd.weight")
            .and_then(|t| t.shape.first().copied())
            .ok_or_else(|| bad("missing tensor `token_embd.weight`".into()))?;
        let vocab = usize::try_from(vocab).map_err(|_| bad(format!("vocabulary {vocab}")))?;

        let limits: [(&str, usize, usize); 7] = [
            ("embedding_length", d_model, 1 << 16),
            ("block_count", n_layers, 1024),
            ("feed_forward_length", ffn, 1 << 18),
            ("attention.head_count", n_heads, 1024),
            ("attention.head_count_kv", n_kv_heads, 1024),
            ("attention.key_length", head_dim, 1024),
            ("vocabulary", vocab, 1 << 24),
        ];
        for (name, v, max) in limits {
            if v == 0 || v > max {
                return Err(bad(format!("{name} = {v} is outside 1..={max}")));
            }
        }
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(bad(format!(
                "{n_heads} heads are not a multiple of {n_kv_heads} kv heads"
            )));
        }
        if !head_dim.is_multiple_of(4) {
            return Err(bad(format!("head dim {head_dim} is not a multiple of 4")));
        }
        if !(eps.is_finite() && eps > 0.0 && rope_base.is_finite() && rope_base > 0.0) {
            return Err(bad(format!("eps {eps} / rope base {rope_base}")));
        }
        let context = context.clamp(1, 1 << 20);
        if int("expert_count")?.unwrap_or(0) > 0 {
            return Err(Error::Unsupported {
                what: format!(
                    "mixture-of-experts `{arch_name}` models ({} experts): webjit decodes dense models only",
                    int("expert_count")?.unwrap_or(0)
                ),
            });
        }
        let rope_dims = match int("rope.dimension_count")? {
            Some(r) if r < head_dim && r >= 2 && r % 2 == 0 => Some(r),
            Some(r) if r == head_dim => None,
            Some(r) => {
                return Err(bad(format!(
                    "rope dimension count {r} for head dim {head_dim}"
                )))
            }
            None => None,
        };
        let rope = RopeFreqs {
            factors: None,
            freq_scale: rope_freq_scale(h, arch_name)?,
            attn_factor: float("rope.scaling.attn_factor")?.unwrap_or(1.0),
        };
        if !(rope.attn_factor.is_finite() && rope.attn_factor > 0.0) {
            return Err(bad(format!("rope attn factor {}", rope.attn_factor)));
        }
        let window = int("attention.sliding_window")?
            .filter(|&w| w > 0)
            .map(|w| u32::try_from(w).unwrap_or(u32::MAX));
        // The llama family's settings; each architecture changes what differs.
        let mut cfg = DecoderConfig {
            arch,
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn,
            vocab,
            context,
            eps: eps as f32,
            rope_layout: RopeLayout::Neox,
            rope_dims,
            rope_base,
            rope_base_local: rope_base,
            rope,
            rope_factors: RopeFactorSource::None,
            window: None,
            local_layers: vec![false; n_layers],
            embed_scale: 1.0,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            attn_softcap: None,
            final_softcap: None,
            activation: Activation::Silu,
        };
        let softcap = |k: &str| -> Result<Option<f32>> {
            match float(k)? {
                Some(c) if c.is_finite() && c > 0.0 => Ok(Some(c as f32)),
                Some(c) => Err(bad(format!("`{}` is {c}, expected > 0", key(k)))),
                None => Ok(None),
            }
        };
        match arch {
            Arch::Llama => {
                cfg.rope_layout = RopeLayout::Normal;
                cfg.rope_factors = RopeFactorSource::Freqs;
                // Mistral v0.1 declares a window on every layer. (llama.cpp ignores the key for
                // `llama` files; a prompt longer than the window then differs from it.)
                if window.is_some() {
                    cfg.window = window;
                    cfg.local_layers = vec![true; n_layers];
                }
            }
            Arch::Qwen2 | Arch::Qwen3 => {}
            Arch::Phi3 => {
                // Phi-3's window is not applied (as llama.cpp, which disables it for phi3:
                // the converted files declare one that the models were not run with).
                let orig = int("rope.scaling.original_context_length")?.unwrap_or(context);
                cfg.rope_factors = RopeFactorSource::ShortLong {
                    original_context: orig,
                };
            }
            Arch::Gemma2 => {
                cfg.window = Some(window.unwrap_or(4096));
                cfg.local_layers = swa_layers(h, arch_name, n_layers, 2)?;
                cfg.embed_scale = (d_model as f32).sqrt();
                cfg.activation = Activation::GeluTanh;
                cfg.attn_softcap = softcap("attn_logit_softcapping")?;
                cfg.final_softcap = softcap("final_logit_softcapping")?;
                // Gemma 2 27B scales queries by d_model / heads, not the head dim.
                if n_layers == 46 {
                    cfg.attn_scale = 1.0 / ((d_model / n_heads) as f32).sqrt();
                }
                cfg.rope_base_local = float("rope.freq_base_swa")?.unwrap_or(rope_base);
            }
            Arch::Gemma3 => {
                // llama.cpp's default for gemma3 when the file has no separate key.
                cfg.rope_base_local = float("rope.freq_base_swa")?.unwrap_or(10_000.0);
                cfg.window = window.map(|w| w.max(1));
                cfg.local_layers = swa_layers(h, arch_name, n_layers, 6)?;
                cfg.embed_scale = (d_model as f32).sqrt();
                cfg.activation = Activation::GeluTanh;
            }
        }
        Ok(cfg)
    }
}

/// Which layers are local: `{arch}.attention.sliding_window_pattern` as a per-layer bool array
/// or a period n (layer i local unless i % n == n - 1), else `default_period`.
fn swa_layers(
    h: &ModelHeader,
    arch: &str,
    n_layers: usize,
    default_period: usize,
) -> Result<Vec<bool>> {
    let k = format!("{arch}.attention.sliding_window_pattern");
    let period = match h.get(&k) {
        None => default_period,
        Some(MetaValue::Uint(p)) => usize::try_from(*p).unwrap_or(0),
        Some(MetaValue::Int(p)) if *p >= 0 => usize::try_from(*p).unwrap_or(0),
        Some(MetaValue::Array(a)) => {
            let v: Vec<bool> = a
                .bools()
                .ok_or_else(|| bad(format!("`{k}` is not an array of bools")))?;
            if v.len() != n_layers {
                return Err(bad(format!(
                    "`{k}` has {} entries for {n_layers} layers",
                    v.len()
                )));
            }
            return Ok(v);
        }
        Some(v) => return Err(bad(format!("`{k}` is {v:?}"))),
    };
    Ok((0..n_layers)
        .map(|i| period > 0 && i % period != period - 1)
        .collect())
}

/// Linear RoPE scaling (`rope.scaling.type = linear`, factor f: angles / f). Other scaling
/// types are refused, except those a model expresses through factor tensors (Llama 3's
/// `llama3`, Phi-3's `longrope`/`su`), which `RopeFactorSource` applies.
fn rope_freq_scale(h: &ModelHeader, arch: &str) -> Result<f64> {
    let ty = match h.get(&format!("{arch}.rope.scaling.type")) {
        Some(MetaValue::Str(t)) => t.as_str(),
        _ => "none",
    };
    let factor = match h.get(&format!("{arch}.rope.scaling.factor")) {
        Some(MetaValue::Float(f)) => *f,
        Some(MetaValue::Uint(f)) => *f as f64,
        _ => 0.0,
    };
    match ty {
        "none" | "llama3" | "longrope" | "su" => Ok(1.0),
        "linear" if factor > 0.0 && factor.is_finite() => Ok(1.0 / factor),
        "linear" => Ok(1.0),
        other => Err(Error::Unsupported {
            what: format!(
                "RoPE scaling `{other}` (webjit applies none, linear, llama3 and longrope factors)"
            ),
        }),
    }
}

fn bad(detail: String) -> Error {
    Error::BadModel { detail }
}
