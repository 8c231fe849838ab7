//! The 32-element "legacy" formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! Layouts: `block_q4_0` .. `block_q8_0` in ggml's `ggml-common.h`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-common.h>); dequantizers:
//! `dequantize_row_q4_0` .. `dequantize_row_q8_0` in `ggml-quants.c`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-quants.c>). Element `j < 16` of a
//! 4/5-bit block is the low nibble of `qs[j]`, element `j + 16` its high nibble.

use super::f16_at;

/// `{ f16 d; u8 qs[16]; }`: y = d * (q - 8).
pub(super) fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * ((qs[j] & 0x0f) as i32 - 8) as f32;
        y[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
    }
}

/// `{ f16 d; f16 m; u8 qs[16]; }`: y = d * q + m.
pub(super) fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * (qs[j] & 0x0f) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// `{ f16 d; u8 qh[4]; u8 qs[16]; }`: bit j of the little-endian u32 `qh` is bit 4 of element j;
/// y = d * (q - 16).
pub(super) fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let lo = (qs[j] & 0x0f) as u32 | ((qh >> j) & 1) << 4;
        let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (lo as i32 - 16) as f32;
        y[j + 16] = d * (hi as i32 - 16) as f32;
    }
}

/// `{ f16 d; f16 m; u8 qh[4]; u8 qs[16]; }`: y = d * q + m.
pub(super) fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let lo = (qs[j] & 0x0f) as u32 | ((qh >> j) & 1) << 4;
        let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = d * lo as f32 + m;
        y[j + 16] = d * hi as f32 + m;
    }
}

/// `{ f16 d; i8 qs[32]; }`: y = q * d.
pub(super) fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}
