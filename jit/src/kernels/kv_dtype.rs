//! Storage formats of a KV cache and the WGSL that reads and writes them.
//!
//! Every format stores a cache as rows, one per (batch, slot, kv head), of `row_words(d)` u32
//! words. The kernels reach a row only through `load_k(r, c)` / `load_v(r, c)` (vec4 `c` of row
//! `r` as f32) and, for the quantized formats, `kv_quant` / `kv_store_k` / `kv_store_v`
//! (shaders/kv_quant.wgsl), so attention and the writers are the same for every format.
//!
//! `kivi2` (KIVI, Liu et al. 2024) is not row-based: keys are quantized per channel over
//! groups of `KIVI_G` tokens, so its storage is laid out by group (shaders/kivi.wgsl), and its
//! decode attention has its own kernel (shaders/kivi_decode.wgsl) that scores a quantized key
//! from its codes against the query scaled once per group. Choices made here:
//! - 2-bit asymmetric groups with an f16 scale and minimum ((max - min) / 3 and min), codes
//!   rounded half up against the stored halves and clamped to 0..3; the group's inputs are the
//!   f16 values of the residual window (so a group quantizes the same whether it completed in
//!   a prompt or a decode step). tests/src/oracle_kivi.rs is the reference.
//! - Keys per channel over G = 128 tokens; values per token over runs of 32 channels (KIVI's
//!   group size; head dims are multiples of 32): 2.625 bits a value (K: 2 bits + 32 bits per
//!   128 tokens; V: 2 + 32 per 32). Gemma 3 270M's perplexity (scored by decode, ctx 512,
//!   first 4 chunks, lavapipe) over f16 scored the same way: value runs of 128 channels +9.1%,
//!   64 +7.7%, 32 +4.9%; key groups of 32 or 64 tokens (more bytes) were no better (+5.5%,
//!   +6.7% with runs of 32), nor was always reading the newest 128 positions from the residual
//!   window (+9.06% against +9.13%; the other runs above had it too).
//! - Full-precision residual: positions of the incomplete group stay f16 in a window of the
//!   last 2G positions (`KIVI_R`) kept in the same buffers after the quantized part. Two
//!   groups, not one, so that rewinding up to G positions (a generation's steps run ahead)
//!   finds the rows of a group that was flushed and must become incomplete again.
//! - A group is quantized by the flush kernel (kernels::kivi) when its last position is
//!   appended: prefill dispatches it before the residual write, a decode step only when it
//!   completes a group (every 128th step); other steps add no dispatch.
//! - Prefill attends its own fresh rows at full precision (as the paper does); later steps
//!   read the quantized groups.
//! - Linear caches only: sliding-window (ring) layers stay f16 under kivi2 (their window is a
//!   few groups; the model picks f16 for them), so the memory figures are the global layers'.

use crate::error::JitError;
use crate::render::section;
use crate::shaders::{ATTENTION_DECODE, KIVI, KV_QUANT};

/// Element type of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvDType {
    F32,
    /// IEEE half, two per u32 word.
    F16,
    /// llama.cpp's q8_0: blocks of 32 int8 with an f16 scale (34 bytes per 32 values).
    Q8_0,
    /// llama.cpp's q4_0: blocks of 32 4-bit values (q - 8) with an f16 scale (18 bytes per 32).
    Q4_0,
    /// KIVI's 2-bit keys per channel and values per token with an f16 residual window.
    Kivi2,
}

/// Tokens per kivi2 key group.
pub const KIVI_G: u64 = 128;
/// Positions of kivi2's f16 residual window (two groups, see the module doc).
pub const KIVI_R: u64 = 256;
/// Channels per kivi2 value group (KIVI's group size; the module doc has the measurements).
pub const KIVI_VG: u64 = 32;

impl KvDType {
    /// Every format, in the order error messages list them.
    pub const ALL: [KvDType; 5] = [
        KvDType::F32,
        KvDType::F16,
        KvDType::Q8_0,
        KvDType::Q4_0,
        KvDType::Kivi2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KvDType::F32 => "f32",
            KvDType::F16 => "f16",
            KvDType::Q8_0 => "q8_0",
            KvDType::Q4_0 => "q4_0",
            KvDType::Kivi2 => "kivi2",
        }
    }

    /// The width of the Walsh-Hadamard rotation its keys (and the queries meeting them) go
    /// through before rounding, for rows of `head_dim` values: the q8_0 and q4_0 formats (as
    /// llama.cpp does before a quantized cache), the largest power of two of at least 64 that
    /// divides the head dim; `None` for the other formats and head dims with no such divisor.
    /// Values are not rotated (llama.cpp rotates them too, and undoes it on the attention
    /// output, a dispatch per layer): on Gemma 3 270M in float64 (benchmarks/
    /// 2026-12-07-kv-quant-perplexity-cpu, 2026-12-08-kv-rotation-cpu) q4_0 keys alone cost
    /// +14.3% perplexity and +8.6% rotated, q4_0 values +0.4% either way, and rotating the
    /// values as well was 5% worse at ctx 128 and 0.8% better at ctx 512.
    pub fn key_rotation(self, head_dim: u64) -> Option<u64> {
        if !matches!(self, KvDType::Q8_0 | KvDType::Q4_0) || !head_dim.is_multiple_of(64) {
            return None;
        }
        let mut n = 64;
        while head_dim.is_multiple_of(2 * n) {
            n *= 2;
        }
        Some(n)
    }

    /// The format called `name` (as `name()` spells it).
    pub fn parse(name: &str) -> Option<KvDType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// "f32, f16, q8_0, q4_0, kivi2": the names `parse` accepts.
    pub fn names() -> String {
        Self::ALL.map(|t| t.name()).join(", ")
    }

    /// Stored in blocks of 32 values along the head dim.
    pub fn quantized(self) -> bool {
        matches!(self, KvDType::Q8_0 | KvDType::Q4_0)
    }

    /// u32 words per cache row of `head_dim` values (see shaders/kv_quant.wgsl, `quant_rows`);
    /// for kivi2 a quantized value row (its keys are stored by group: `cache_words`).
    pub fn row_words(self, head_dim: u64) -> u64 {
        let nb = head_dim / 32;
        match self {
            KvDType::F32 => head_dim,
            KvDType::F16 => head_dim / 2,
            KvDType::Q8_0 => nb * 8 + nb.div_ceil(2),
            KvDType::Q4_0 => nb * 4 + nb.div_ceil(2),
            KvDType::Kivi2 => head_dim / 16 + head_dim.div_ceil(KIVI_VG),
        }
    }

    /// u32 words of the K and of the V storage of a cache of `capacity` slots (kivi2: see
    /// shaders/kivi.wgsl, `common`).
    pub fn cache_words(self, batch: u64, capacity: u64, n_kv_heads: u64, d: u64) -> (u64, u64) {
        let rows = batch * capacity * n_kv_heads;
        if self != KvDType::Kivi2 {
            let w = rows * self.row_words(d);
            return (w, w);
        }
        let residual = batch * KIVI_R * n_kv_heads * d / 2;
        let keys = batch * capacity.div_ceil(KIVI_G) * n_kv_heads * (KIVI_G + 16) * d / 16;
        (keys + residual, rows * self.row_words(d) + residual)
    }

    /// Why `head_dim` cannot be stored in this format, if it cannot.
    pub fn check_head_dim(self, head_dim: u64) -> Result<(), String> {
        let unit = if self.quantized() || self == KvDType::Kivi2 {
            32
        } else {
            4
        };
        if head_dim == 0 || !head_dim.is_multiple_of(unit) {
            return Err(format!(
                "head dim {head_dim} must be a positive multiple of {unit} for a {} KV cache",
                self.name()
            ));
        }
        Ok(())
    }

    /// The WGSL that declares the cache word type `KV` and `load_k` / `load_v` for rows of
    /// `head_dim` values (kivi2: only its layout's constants and helpers; its decode attention
    /// is shaders/kivi_decode.wgsl); for the quantized formats also the block quantizer
    /// `kv_quant` and, with `store`, the row writers `kv_store_k` / `kv_store_v`. Dense formats
    /// declare `load` / `store` of one vec4 as before.
    pub(crate) fn wgsl(self, head_dim: u64, store: bool) -> Result<String, JitError> {
        let (f, a) = ("attention_decode.wgsl", ATTENTION_DECODE);
        let q = "kv_quant.wgsl";
        let mut out = format!("const KV_D4: u32 = {}u;\n", head_dim / 4);
        match self {
            KvDType::F32 | KvDType::F16 => {
                let name = if self == KvDType::F32 {
                    "kv_f32"
                } else {
                    "kv_f16"
                };
                out += section(f, a, name)?;
                out += section(q, KV_QUANT, "dense_rows")?;
            }
            KvDType::Q8_0 | KvDType::Q4_0 => {
                out += section(q, KV_QUANT, self.name())?;
                out += section(q, KV_QUANT, "quant_rows")?;
                if store {
                    out += section(q, KV_QUANT, "quant_store")?;
                }
            }
            KvDType::Kivi2 => {
                out += &format!(
                    "const KG: u32 = {KIVI_G}u;\nconst KR: u32 = {KIVI_R}u;\n\
                     const KVG: u32 = {KIVI_VG}u;\n"
                );
                out += section("kivi.wgsl", KIVI, "common")?;
            }
        }
        Ok(out)
    }
}
