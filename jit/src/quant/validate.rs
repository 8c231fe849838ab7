//! Rejecting blocks whose scale is not a number, as ggml's `ggml_validate_row_data` does
//! (`ggml-quants.c`): an f16 scale that is Inf or NaN, or the MXFP4 E8M0 scale 0xFF (NaN in the
//! OCP MX spec). Such blocks decode to Inf/NaN weights on the CPU reference (as in ggml), and
//! the GPU's half conversion does not keep Inf/NaN, so repacking refuses them instead of
//! uploading weights that would silently differ. Applied by `repack` to the formats added with
//! the low-bit work (IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4, and the codebook formats IQ2_XXS ...
//! IQ1_M); the older formats are repacked as they come.
//!
//! MXFP4 scales 0xFD and 0xFE (2^125, 2^126 once halved) are valid in ggml but overflow to
//! Inf for the largest codes; they are accepted, and the GPU gives the same Inf.

use super::{GgmlType, QuantError};

/// Whether `repack` validates blocks of `t`.
pub(super) fn validated(t: GgmlType) -> bool {
    matches!(
        t,
        GgmlType::IQ4NL
            | GgmlType::IQ4XS
            | GgmlType::TQ1_0
            | GgmlType::TQ2_0
            | GgmlType::MXFP4
            | GgmlType::IQ2XXS
            | GgmlType::IQ2XS
            | GgmlType::IQ2S
            | GgmlType::IQ3XXS
            | GgmlType::IQ3S
            | GgmlType::IQ1S
            | GgmlType::IQ1M
    )
}

/// Checks whole blocks of raw GGUF bytes of `t` for non-finite scales (every format: f16 `d`
/// and `dmin` fields and the MXFP4 E8M0 byte). The error names the first bad block of `raw`.
pub fn validate_blocks(t: GgmlType, raw: &[u8]) -> Result<(), QuantError> {
    let bb = t.block_bytes();
    for (i, b) in raw.chunks_exact(bb).enumerate() {
        if t == GgmlType::MXFP4 {
            if b[0] == 0xff {
                return Err(QuantError::NonFiniteScale {
                    format: t.name(),
                    block: i,
                    scale: "E8M0 0xff (NaN)".into(),
                });
            }
            continue;
        }
        // IQ1_M's f16 scale is spread over the top nibbles of its scale words.
        let iq1m = (t == GgmlType::IQ1M).then(|| super::iq1_m_scale_bits(b));
        let fields = super::scale_offsets(t)
            .iter()
            .map(|&off| u16::from_le_bytes([b[off], b[off + 1]]));
        for h in fields.chain(iq1m) {
            if h & 0x7c00 == 0x7c00 {
                let what = if h & 0x3ff == 0 { "Inf" } else { "NaN" };
                return Err(QuantError::NonFiniteScale {
                    format: t.name(),
                    block: i,
                    scale: format!("f16 {h:#06x} ({what})"),
                });
            }
        }
    }
    Ok(())
}
