//! GGUF/ggml block formats: the type table, CPU reference dequantization (f32 out, bit-exact with
//! ggml's `dequantize_row_*` and the `gguf` Python package) and repacking into 4-byte-aligned
//! `u32` words for the GPU.
//!
//! Block layouts follow ggml's `ggml-common.h`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-common.h>) and the dequantizers follow
//! `ggml-quants.c` (<https://github.com/ggml-org/ggml/blob/master/src/ggml-quants.c>).
//!
//! GPU layout ("repacked"): every block becomes a whole number of `u32` words. Blocks whose raw
//! size is a multiple of 4 with 4-aligned fields (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K, IQ4_XS) are
//! copied as is; Q4_0, Q5_0, Q8_0 and IQ4_NL get 2 pad bytes after their leading f16 scale so
//! the quants start on a word; Q3_K, Q6_K, TQ1_0 and TQ2_0 (f16 scale last) get 2 pad bytes at
//! the end; MXFP4 gets 3 after its scale byte; the codebook formats (IQ2_XXS ... IQ1_S, f16
//! scale first) get 2 after it, and IQ1_M (56 bytes, no f16 field) is copied. F16 and BF16 pack
//! 2 values per word (GPU block of 2 elements). Repacking is per block, so it runs on any chunk of whole
//! blocks (e.g. row chunks while weights stream in) and a row starts at a word boundary whenever
//! its length is a multiple of the GPU block.

mod codebook;
mod float;
pub mod grids;
mod kquants;
mod legacy;
mod lowbit;
mod synth;
mod validate;
pub mod wgsl;

pub use codebook::{
    expanded_offset, expanded_words, gpu_grid_table, iq1_m_scale_bits, ksigns, sign_mask_offset,
};
pub use lowbit::{e8m0_to_f32_half, IQ4NL_VALUES, MXFP4_VALUES};
pub use synth::{scale_offsets, synth_blocks};
pub use validate::validate_blocks;

use thiserror::Error;

/// Elements per super-block of the k-quants (`QK_K` in ggml).
pub const QK_K: usize = 256;

/// ggml tensor types that webjit can dequantize, with ggml's numeric type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
    IQ4NL,
    IQ4XS,
    TQ1_0,
    TQ2_0,
    MXFP4,
    IQ2XXS,
    IQ2XS,
    IQ2S,
    IQ3XXS,
    IQ3S,
    IQ1S,
    IQ1M,
}

impl GgmlType {
    pub const ALL: [GgmlType; 25] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::IQ4NL,
        GgmlType::IQ4XS,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::IQ2XXS,
        GgmlType::IQ2XS,
        GgmlType::IQ2S,
        GgmlType::IQ3XXS,
        GgmlType::IQ3S,
        GgmlType::IQ1S,
        GgmlType::IQ1M,
    ];

    /// ggml's `enum ggml_type` value (as stored in GGUF tensor infos).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::IQ4NL => 20,
            GgmlType::IQ4XS => 23,
            GgmlType::BF16 => 30,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
            GgmlType::MXFP4 => 39,
            GgmlType::IQ2XXS => 16,
            GgmlType::IQ2XS => 17,
            GgmlType::IQ3XXS => 18,
            GgmlType::IQ1S => 19,
            GgmlType::IQ3S => 21,
            GgmlType::IQ2S => 22,
            GgmlType::IQ1M => 29,
        }
    }

    /// The type with ggml id `id`, if webjit supports it.
    pub fn from_id(id: u32) -> Result<Self, QuantError> {
        Self::ALL
            .into_iter()
            .find(|t| t.id() == id)
            .ok_or(QuantError::UnsupportedType { id })
    }

    /// Lower-case name as ggml prints it (`q4_K`) is mixed case; we use all lower case.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::BF16 => "bf16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
            GgmlType::IQ4NL => "iq4_nl",
            GgmlType::IQ4XS => "iq4_xs",
            GgmlType::TQ1_0 => "tq1_0",
            GgmlType::TQ2_0 => "tq2_0",
            GgmlType::MXFP4 => "mxfp4",
            GgmlType::IQ2XXS => "iq2_xxs",
            GgmlType::IQ2XS => "iq2_xs",
            GgmlType::IQ2S => "iq2_s",
            GgmlType::IQ3XXS => "iq3_xxs",
            GgmlType::IQ3S => "iq3_s",
            GgmlType::IQ1S => "iq1_s",
            GgmlType::IQ1M => "iq1_m",
        }
    }

    /// Parses `name()` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Elements per ggml block (`ggml_blck_size`).
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::IQ4NL
            | GgmlType::MXFP4 => 32,
            _ => QK_K,
        }
    }

    /// Bytes per ggml block (`ggml_type_size`).
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::IQ4NL => 18,
            GgmlType::IQ4XS => 136,
            GgmlType::TQ1_0 => 54,
            GgmlType::TQ2_0 => 66,
            GgmlType::MXFP4 => 17,
            GgmlType::IQ2XXS => 66,
            GgmlType::IQ2XS => 74,
            GgmlType::IQ2S => 82,
            GgmlType::IQ3XXS => 98,
            GgmlType::IQ3S => 110,
            GgmlType::IQ1S => 50,
            GgmlType::IQ1M => 56,
        }
    }

    /// Elements per GPU block: the unit the repacked layout is made of (2 for the 16-bit floats,
    /// which pack two values per word; the ggml block otherwise).
    pub fn gpu_block_elems(self) -> usize {
        match self {
            GgmlType::F16 | GgmlType::BF16 => 2,
            t => t.block_elems(),
        }
    }

    /// `u32` words per GPU block in the repacked layout.
    pub fn gpu_block_words(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 => 5,
            GgmlType::Q4_1 => 5,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 6,
            GgmlType::Q8_0 => 9,
            GgmlType::Q2K => 21,
            GgmlType::Q3K => 28,
            GgmlType::Q4K => 36,
            GgmlType::Q5K => 44,
            GgmlType::Q6K => 53,
            GgmlType::IQ4NL => 5,
            GgmlType::IQ4XS => 34,
            GgmlType::TQ1_0 => 14,
            GgmlType::TQ2_0 => 17,
            GgmlType::MXFP4 => 5,
            GgmlType::IQ2XXS => 17,
            GgmlType::IQ2XS => 19,
            GgmlType::IQ2S => 21,
            GgmlType::IQ3XXS => 25,
            GgmlType::IQ3S => 28,
            GgmlType::IQ1S => 13,
            GgmlType::IQ1M => 14,
        }
    }

    /// Raw GGUF bytes of a row of `k` elements; an error unless `k` is a whole number of blocks.
    pub fn row_bytes(self, k: usize) -> Result<usize, QuantError> {
        let b = self.block_elems();
        if k == 0 || !k.is_multiple_of(b) {
            return Err(QuantError::RowNotBlockMultiple {
                format: self.name(),
                k,
                block: b,
            });
        }
        (k / b)
            .checked_mul(self.block_bytes())
            .ok_or(QuantError::Overflow {
                format: self.name(),
            })
    }

    /// Repacked `u32` words of a row of `k` elements; an error unless `k` is a whole number of
    /// GPU blocks.
    pub fn row_words(self, k: usize) -> Result<usize, QuantError> {
        let b = self.gpu_block_elems();
        if k == 0 || !k.is_multiple_of(b) {
            return Err(QuantError::RowNotBlockMultiple {
                format: self.name(),
                k,
                block: b,
            });
        }
        (k / b)
            .checked_mul(self.gpu_block_words())
            .ok_or(QuantError::Overflow {
                format: self.name(),
            })
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QuantError {
    #[error("ggml type id {id} is not supported")]
    UnsupportedType { id: u32 },
    #[error("{format}: row length {k} is not a multiple of the block size {block}")]
    RowNotBlockMultiple {
        format: &'static str,
        k: usize,
        block: usize,
    },
    #[error("{format}: {len} bytes is not a whole number of {block_bytes}-byte blocks")]
    PartialBlock {
        format: &'static str,
        len: usize,
        block_bytes: usize,
    },
    #[error("{format}: output holds {got} elements, input has {want}")]
    OutputLength {
        format: &'static str,
        got: usize,
        want: usize,
    },
    #[error("{format}: size overflows")]
    Overflow { format: &'static str },
    #[error(
        "{format}: block {block} of the data has the scale {scale}, which ggml's validation \
         rejects (its weights would be Inf or NaN)"
    )]
    NonFiniteScale {
        format: &'static str,
        block: usize,
        scale: String,
    },
}

/// IEEE half bits to f32, exact (subnormals, infinities and NaN payloads included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24 is exact in f32.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Little-endian f16 at `b[at..at + 2]`.
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn check_blocks(t: GgmlType, raw: &[u8]) -> Result<usize, QuantError> {
    let bb = t.block_bytes();
    if !raw.len().is_multiple_of(bb) {
        return Err(QuantError::PartialBlock {
            format: t.name(),
            len: raw.len(),
            block_bytes: bb,
        });
    }
    Ok(raw.len() / bb)
}

/// Dequantizes whole blocks of raw GGUF bytes into `out` (one f32 per element), exactly as
/// ggml's reference `dequantize_row_*` does (same f32 operations in the same order).
pub fn dequantize(t: GgmlType, raw: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let blocks = check_blocks(t, raw)?;
    let want = blocks * t.block_elems();
    if out.len() != want {
        return Err(QuantError::OutputLength {
            format: t.name(),
            got: out.len(),
            want,
        });
    }
    let bb = t.block_bytes();
    let be = t.block_elems();
    for (b, y) in raw.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        match t {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::dequant_block(t, b, y),
            GgmlType::Q4_0 => legacy::dequant_q4_0(b, y),
            GgmlType::Q4_1 => legacy::dequant_q4_1(b, y),
            GgmlType::Q5_0 => legacy::dequant_q5_0(b, y),
            GgmlType::Q5_1 => legacy::dequant_q5_1(b, y),
            GgmlType::Q8_0 => legacy::dequant_q8_0(b, y),
            GgmlType::Q2K => kquants::dequant_q2_k(b, y),
            GgmlType::Q3K => kquants::dequant_q3_k(b, y),
            GgmlType::Q4K => kquants::dequant_q4_k(b, y),
            GgmlType::Q5K => kquants::dequant_q5_k(b, y),
            GgmlType::Q6K => kquants::dequant_q6_k(b, y),
            GgmlType::IQ4NL => lowbit::dequant_iq4_nl(b, y),
            GgmlType::IQ4XS => lowbit::dequant_iq4_xs(b, y),
            GgmlType::TQ1_0 => lowbit::dequant_tq1_0(b, y),
            GgmlType::TQ2_0 => lowbit::dequant_tq2_0(b, y),
            GgmlType::MXFP4 => lowbit::dequant_mxfp4(b, y),
            GgmlType::IQ2XXS => codebook::dequant_iq2_xxs(b, y),
            GgmlType::IQ2XS => codebook::dequant_iq2_xs(b, y),
            GgmlType::IQ2S => codebook::dequant_iq2_s(b, y),
            GgmlType::IQ3XXS => codebook::dequant_iq3_xxs(b, y),
            GgmlType::IQ3S => codebook::dequant_iq3_s(b, y),
            GgmlType::IQ1S => codebook::dequant_iq1_s(b, y),
            GgmlType::IQ1M => codebook::dequant_iq1_m(b, y),
        }
    }
    Ok(())
}

/// Convenience: dequantize to a new vector.
pub fn dequantize_vec(t: GgmlType, raw: &[u8]) -> Result<Vec<f32>, QuantError> {
    let blocks = check_blocks(t, raw)?;
    let mut out = vec![0.0; blocks * t.block_elems()];
    dequantize(t, raw, &mut out)?;
    Ok(out)
}

/// Where a block's bytes go in its repacked words: the pad bytes that make it whole words are
/// inserted at `pad_at` (`None`: the block is copied as is).
fn pad_at(t: GgmlType) -> Option<usize> {
    match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4NL => Some(2),
        // The codebook formats but IQ1_M lead with an f16 scale.
        GgmlType::IQ2XXS
        | GgmlType::IQ2XS
        | GgmlType::IQ2S
        | GgmlType::IQ3XXS
        | GgmlType::IQ3S
        | GgmlType::IQ1S => Some(2),
        // The E8M0 scale byte gets a word of its own.
        GgmlType::MXFP4 => Some(1),
        GgmlType::Q3K | GgmlType::Q6K | GgmlType::TQ1_0 | GgmlType::TQ2_0 => Some(t.block_bytes()),
        _ => None,
    }
}

/// Appends the repacked words of whole blocks of raw GGUF bytes to `out`. Chunks may be any
/// whole number of GPU blocks (whole rows, when rows are streamed), and repacking chunks one
/// after another gives the same words as repacking everything at once.
pub fn repack(t: GgmlType, raw: &[u8], out: &mut Vec<u32>) -> Result<(), QuantError> {
    // The GPU block of the 16-bit floats is 2 elements = 4 bytes.
    let gbb = t.gpu_block_elems() / t.block_elems() * t.block_bytes();
    if !raw.len().is_multiple_of(gbb) {
        return Err(QuantError::PartialBlock {
            format: t.name(),
            len: raw.len(),
            block_bytes: gbb,
        });
    }
    if validate::validated(t) {
        validate_blocks(t, raw)?;
    }
    let words = t.gpu_block_words();
    out.reserve(raw.len() / gbb * words);
    let mut buf = [0u8; 4 * 53];
    for b in raw.chunks_exact(gbb) {
        let dst = &mut buf[..words * 4];
        dst.fill(0);
        match pad_at(t) {
            None => dst[..gbb].copy_from_slice(b),
            Some(p) => {
                let pad = words * 4 - gbb;
                dst[..p].copy_from_slice(&b[..p]);
                dst[p + pad..].copy_from_slice(&b[p..]);
            }
        }
        out.extend(
            dst.chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_ggml() {
        // (id, block elems, block bytes) from ggml's type_traits.
        let want = [
            (0, 1, 4),
            (1, 1, 2),
            (30, 1, 2),
            (2, 32, 18),
            (3, 32, 20),
            (6, 32, 22),
            (7, 32, 24),
            (8, 32, 34),
            (10, 256, 84),
            (11, 256, 110),
            (12, 256, 144),
            (13, 256, 176),
            (14, 256, 210),
            (20, 32, 18),
            (23, 256, 136),
            (34, 256, 54),
            (35, 256, 66),
            (39, 32, 17),
            (16, 256, 66),
            (17, 256, 74),
            (22, 256, 82),
            (18, 256, 98),
            (21, 256, 110),
            (19, 256, 50),
            (29, 256, 56),
        ];
        for (t, w) in GgmlType::ALL.into_iter().zip(want) {
            assert_eq!((t.id(), t.block_elems(), t.block_bytes()), w, "{t:?}");
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
            let gbytes = t.gpu_block_elems() / t.block_elems() * t.block_bytes();
            assert!(t.gpu_block_words() * 4 >= gbytes && t.gpu_block_words() * 4 < gbytes + 4);
        }
        assert!(GgmlType::from_id(9).is_err());
    }

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn repack_chunks_equal_whole_and_rejects_partial_blocks() {
        for t in GgmlType::ALL {
            let n = 3 * t.gpu_block_elems() / t.block_elems() * t.block_bytes();
            // Finite scales: repacking refuses the others for the validated formats.
            let raw = synth_blocks(t, n / t.block_bytes(), 37);
            let mut whole = Vec::new();
            repack(t, &raw, &mut whole).unwrap();
            assert_eq!(whole.len(), 3 * t.gpu_block_words());
            let mut parts = Vec::new();
            let third = n / 3;
            for c in raw.chunks(third) {
                repack(t, c, &mut parts).unwrap();
            }
            assert_eq!(whole, parts, "{t:?}");
            assert!(repack(t, &raw[..n - 1], &mut parts).is_err());
        }
        assert!(matches!(
            GgmlType::Q4K.row_bytes(300),
            Err(QuantError::RowNotBlockMultiple { .. })
        ));
    }
}
