//! Storage formats of a KV cache and the WGSL that reads and writes them.
//!
//! Every format stores a cache as rows, one per (batch, slot, kv head), of `row_words(d)` u32
//! words. The kernels reach a row only through `load_k(r, c)` / `load_v(r, c)` (vec4 `c` of row
//! `r` as f32) and, for the quantized formats, `kv_quant` / `kv_store_k` / `kv_store_v`
//! (shaders/kv_quant.wgsl), so attention and the writers are the same for every format.

use crate::error::JitError;
use crate::render::section;
use crate::shaders::{ATTENTION_DECODE, KV_QUANT};

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
}

impl KvDType {
    /// Every format, in the order error messages list them.
    pub const ALL: [KvDType; 4] = [KvDType::F32, KvDType::F16, KvDType::Q8_0, KvDType::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            KvDType::F32 => "f32",
            KvDType::F16 => "f16",
            KvDType::Q8_0 => "q8_0",
            KvDType::Q4_0 => "q4_0",
        }
    }

    /// The format called `name` (as `name()` spells it).
    pub fn parse(name: &str) -> Option<KvDType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// "f32, f16, q8_0, q4_0": the names `parse` accepts.
    pub fn names() -> String {
        Self::ALL.map(|t| t.name()).join(", ")
    }

    /// Stored in blocks of 32 values along the head dim.
    pub fn quantized(self) -> bool {
        matches!(self, KvDType::Q8_0 | KvDType::Q4_0)
    }

    /// u32 words per cache row of `head_dim` values (see shaders/kv_quant.wgsl, `quant_rows`).
    pub fn row_words(self, head_dim: u64) -> u64 {
        let nb = head_dim / 32;
        match self {
            KvDType::F32 => head_dim,
            KvDType::F16 => head_dim / 2,
            KvDType::Q8_0 => nb * 8 + nb.div_ceil(2),
            KvDType::Q4_0 => nb * 4 + nb.div_ceil(2),
        }
    }

    /// Why `head_dim` cannot be stored in this format, if it cannot.
    pub fn check_head_dim(self, head_dim: u64) -> Result<(), String> {
        let unit = if self.quantized() { 32 } else { 4 };
        if head_dim == 0 || !head_dim.is_multiple_of(unit) {
            return Err(format!(
                "head dim {head_dim} must be a positive multiple of {unit} for a {} KV cache",
                self.name()
            ));
        }
        Ok(())
    }

    /// The WGSL that declares the cache word type `KV` and `load_k` / `load_v` for rows of
    /// `head_dim` values; for the quantized formats also the block quantizer `kv_quant` and,
    /// with `store`, the row writers `kv_store_k` / `kv_store_v`. Dense formats declare
    /// `load` / `store` of one vec4 as before.
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
        }
        Ok(out)
    }
}
