//! Decoder hyper-parameters read from GGUF metadata, for the `gemma3` architecture and the
//! `llama` family that shares its building blocks (RMSNorm, RoPE, GQA, gated FFN).
//!
//! Key names follow llama.cpp's GGUF conventions (`{arch}.embedding_length`, ...). Every value
//! that sizes an allocation is checked here, before any weight is touched.

use webjit_jit::kernels::rope::RopeLayout;

use crate::error::{Error, Result};
use crate::loader::{MetaValue, ModelHeader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    Llama,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (Gemma's GeGLU).
    GeluTanh,
    /// SiLU (llama's SwiGLU).
    Silu,
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
    /// RoPE base of global (full-attention) layers.
    pub rope_base: f64,
    /// RoPE base of sliding-window layers.
    pub rope_base_local: f64,
    /// Sliding window of local layers.
    pub window: Option<u32>,
    /// Layer `i` is local (sliding window) when `i % swa_period != swa_period - 1`; 0 = all
    /// layers are global.
    pub swa_period: usize,
    /// Input embeddings are multiplied by this (Gemma: sqrt(d_model)).
    pub embed_scale: f32,
    pub attn_scale: f32,
    pub activation: Activation,
}

impl DecoderConfig {
    pub fn is_local(&self, layer: usize) -> bool {
        self.window.is_some()
            && self.swa_period > 0
            && layer % self.swa_period != self.swa_period - 1
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
        let arch = match arch_name {
            "gemma3" => Arch::Gemma3,
            "llama" => Arch::Llama,
            other => {
                return Err(Error::Unsupported {
                    what: format!("model architecture `{other}` (webjit decodes gemma3 and llama)"),
                })
            }
        };
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
        // The llama family's settings; Gemma 3 changes what differs.
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
            rope_layout: RopeLayout::Normal,
            rope_base,
            rope_base_local: rope_base,
            window: None,
            swa_period: 0,
            embed_scale: 1.0,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            activation: Activation::Silu,
        };
        if arch == Arch::Gemma3 {
            cfg.rope_layout = RopeLayout::Neox;
            // llama.cpp's default for gemma3 when the file has no separate key.
            cfg.rope_base_local = float("rope.freq_base_swa")?.unwrap_or(10_000.0);
            cfg.window = int("attention.sliding_window")?
                .map(|w| u32::try_from(w).unwrap_or(u32::MAX).max(1));
            cfg.swa_period = 6;
            cfg.embed_scale = (d_model as f32).sqrt();
            cfg.activation = Activation::GeluTanh;
        }
        Ok(cfg)
    }
}

fn bad(detail: String) -> Error {
    Error::BadModel { detail }
}
