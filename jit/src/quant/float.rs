//! Unquantized element types: F32, F16 (IEEE half) and BF16 (the top 16 bits of an f32), as
//! converted by ggml's `ggml_fp16_to_fp32` / `ggml_bf16_to_fp32` in `ggml-impl.h`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-impl.h>).

use super::{f16_at, GgmlType};

/// One element (the ggml block of these types is one element).
pub(super) fn dequant_block(t: GgmlType, b: &[u8], y: &mut [f32]) {
    y[0] = match t {
        GgmlType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => f16_at(b, 0),
        // BF16 widens by shifting; NaN payloads are kept.
        _ => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
    };
}
