//! The 256-element k-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! Layouts: `block_q2_K` .. `block_q6_K` in ggml's `ggml-common.h`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-common.h>); dequantizers:
//! `dequantize_row_q2_K` .. `dequantize_row_q6_K` in `ggml-quants.c`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-quants.c>). Each function computes
//! the same f32 products in the same order as the reference, so results are bit-identical.

use super::f16_at;

/// `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }`. Element `128h + 32t + l` is bits `2t..2t+2`
/// of `qs[32h + l]`; sub-block `e / 16` has scale `scales & 15` and min `scales >> 4`.
pub(super) fn dequant_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = (qs[32 * h + l] >> (2 * t)) & 3;
        let sc = scales[e / 16];
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *ye = dl * q as f32 - ml;
    }
}

/// `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }`. Low 2 bits as in Q2_K; bit `e / 32` of
/// `hmask[e % 32]` clear means subtract 4; 16 signed 6-bit scales (offset 32) packed in 12 bytes.
pub(super) fn dequant_q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sb = &b[96..108];
    let d = f16_at(b, 108);
    let mut scales = [0i32; 16];
    for (j, s) in scales.iter_mut().enumerate() {
        let lo = if j < 8 { sb[j] & 0x0f } else { sb[j - 8] >> 4 };
        let hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = (lo | (hi << 4)) as i32 - 32;
    }
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo = ((qs[32 * h + l] >> (2 * t)) & 3) as i32;
        let high_clear = (hmask[l] >> (e / 32)) & 1 == 0;
        let q = lo - if high_clear { 4 } else { 0 };
        let dl = d * scales[e / 16] as f32;
        *ye = dl * q as f32;
    }
}

/// The 8 (scale, min) pairs of 6 bits packed in 12 bytes (`get_scale_min_k4` in ggml-quants.c).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }`. Element `64c + r` is the low (r < 32) or
/// high nibble of `qs[32c + r % 32]`; sub-block `e / 32`: y = d*sc * q - dmin*m.
pub(super) fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let sc = &b[4..16];
    let qs = &b[16..144];
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (c, r) = (e / 64, e % 64);
        let byte = qs[32 * c + r % 32];
        let q = if r < 32 { byte & 0x0f } else { byte >> 4 };
        let (s, m) = scale_min_k4(e / 32, sc);
        let d1 = d * s as f32;
        let m1 = dmin * m as f32;
        *ye = d1 * q as f32 - m1;
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }`: Q4_K plus bit `e / 32` of
/// `qh[e % 32]` as bit 4.
pub(super) fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let sc = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (c, r) = (e / 64, e % 64);
        let byte = qs[32 * c + r % 32];
        let lo = if r < 32 { byte & 0x0f } else { byte >> 4 };
        let q = lo | (((qh[e % 32] >> (e / 32)) & 1) << 4);
        let (s, m) = scale_min_k4(e / 32, sc);
        let d1 = d * s as f32;
        let m1 = dmin * m as f32;
        *ye = d1 * q as f32 - m1;
    }
}

/// `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }`. Element `128h + r`: low 4 bits are nibble
/// `r / 64` of `ql[64h + r % 64]`, high 2 bits are bits `2(r / 32)..` of `qh[32h + r % 32]`;
/// y = d * scale[e / 16] * (q - 32).
pub(super) fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (h, r) = (e / 128, e % 128);
        let lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
        let hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        let q = (lo | (hi << 4)) as i32 - 32;
        *ye = d * (scales[e / 16] as i8) as f32 * q as f32;
    }
}
