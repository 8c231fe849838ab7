//! The non-linear 4-bit formats IQ4_NL and IQ4_XS, the ternary formats TQ1_0 and TQ2_0 (BitNet
//! b1.58) and MXFP4 (OCP microscaling FP4).
//!
//! Layouts: `block_iq4_nl`, `block_iq4_xs`, `block_tq1_0`, `block_tq2_0` and `block_mxfp4` in
//! ggml's `ggml-common.h` (<https://github.com/ggml-org/ggml/blob/master/src/ggml-common.h>);
//! dequantizers: `dequantize_row_*` in `ggml-quants.c`
//! (<https://github.com/ggml-org/ggml/blob/master/src/ggml-quants.c>). Each element is one f32
//! product of the block scale and a small integer, so the order of the two factors does not
//! matter and results are bit-identical to ggml and the `gguf` package.

use super::f16_at;

/// The 16 code values of IQ4_NL and IQ4_XS (`kvalues_iq4nl`): a non-uniform grid fitted to the
/// distribution of weights, denser near zero.
pub const IQ4NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The E2M1 (FP4) code values doubled so they are integers (`kvalues_mxfp4`): codes 0-7 are
/// 0, 0.5, 1, 1.5, 2, 3, 4, 6 times 2, codes 8-15 the same negated (8 is -0, stored as 0).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// `{ f16 d; u8 qs[16]; }`: element j < 16 is the low nibble of qs[j], j + 16 its high nibble;
/// y = d * IQ4NL_VALUES[code].
pub(super) fn dequant_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        y[j] = d * IQ4NL_VALUES[(b[2 + j] & 0x0f) as usize] as f32;
        y[j + 16] = d * IQ4NL_VALUES[(b[2 + j] >> 4) as usize] as f32;
    }
}

/// The 6-bit scale of sub-block `ib` (0..8) of an IQ4_XS block: low 4 bits from nibble `ib` of
/// `scales_l`, high 2 bits from bits `2 ib` of `scales_h`; the scale is that minus 32.
pub(super) fn iq4_xs_scale(b: &[u8], ib: usize) -> i32 {
    let scales_h = u16::from_le_bytes([b[2], b[3]]) as u32;
    let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) as u32 & 0x0f;
    let hi = (scales_h >> (2 * ib)) & 3;
    (lo | (hi << 4)) as i32 - 32
}

/// `{ f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }`: 8 sub-blocks of 32 laid out as
/// IQ4_NL blocks (qs bytes 16 ib ..), each with scale d * (6-bit scale - 32).
pub(super) fn dequant_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[8..136];
    for ib in 0..8 {
        let dl = d * iq4_xs_scale(b, ib) as f32;
        for j in 0..16 {
            let q = qs[16 * ib + j];
            y[32 * ib + j] = dl * IQ4NL_VALUES[(q & 0x0f) as usize] as f32;
            y[32 * ib + j + 16] = dl * IQ4NL_VALUES[(q >> 4) as usize] as f32;
        }
    }
}

/// Trit `n` (0 = most significant) of a TQ1_0 byte, as -1, 0 or 1. A byte holds 5 trits as
/// the fixed-point fraction byte / 256 ~ t / 243: multiplying by 3^n (mod 256) shifts trit n
/// to the top, and (q * 3) >> 8 reads it.
fn trit(byte: u8, n: u32) -> i32 {
    let q = byte.wrapping_mul(3u8.pow(n));
    ((q as u32 * 3) >> 8) as i32 - 1
}

/// The byte and trit index of element `e` (0..256) of a TQ1_0 block: elements 0-159 are trit
/// `e / 32` of `qs[e % 32]`, 160-239 trit `(e - 160) / 16` of `qs[32 + e % 16]`, 240-255 trit
/// `(e - 240) / 4` of `qh[e % 4]` (byte 48 + e % 4).
pub(super) fn tq1_0_source(e: usize) -> (usize, u32) {
    if e < 160 {
        (e % 32, (e / 32) as u32)
    } else if e < 240 {
        (32 + (e - 160) % 16, ((e - 160) / 16) as u32)
    } else {
        (48 + (e - 240) % 4, ((e - 240) / 4) as u32)
    }
}

/// `{ u8 qs[48]; u8 qh[4]; f16 d; }`: 256 trits, 5 per qs byte and 4 per qh byte; y = t * d.
pub(super) fn dequant_tq1_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 52);
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (byte, n) = tq1_0_source(e);
        *ye = trit(b[byte], n) as f32 * d;
    }
}

/// `{ u8 qs[64]; f16 d; }`: element `128h + 32t + l` is bits `2t..2t+2` of `qs[32h + l]` (as in
/// Q2_K) minus 1; y = q * d.
pub(super) fn dequant_tq2_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 64);
    for (e, ye) in y.iter_mut().enumerate().take(256) {
        let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = ((b[32 * h + l] >> (2 * t)) & 3) as i32 - 1;
        *ye = q as f32 * d;
    }
}

/// Half of the E8M0 scale `e` (2^(e - 128)), as ggml's `ggml_e8m0_to_fp32_half`: the code
/// values are doubled, so the block scale is halved. e = 0 and 1 give the f32 subnormals
/// 2^-128 and 2^-127; e = 255 (NaN in the OCP spec) gives 2^127, as in ggml.
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// `{ u8 e; u8 qs[16]; }`: element j < 16 is the low nibble of qs[j], j + 16 its high nibble;
/// y = MXFP4_VALUES[code] * 2^(e - 128). Scales of 2^125 and more overflow to infinity for the
/// largest codes, as in ggml.
pub(super) fn dequant_mxfp4(b: &[u8], y: &mut [f32]) {
    let d = e8m0_to_f32_half(b[0]);
    for j in 0..16 {
        y[j] = MXFP4_VALUES[(b[1 + j] & 0x0f) as usize] as f32 * d;
        y[j + 16] = MXFP4_VALUES[(b[1 + j] >> 4) as usize] as f32 * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trits_decode_base3_bytes() {
        // The quantizer stores sum(t_i * 3^(4-i)) as ceil(v * 256 / 243).
        for v in 0..243u32 {
            let byte = ((v * 256).div_ceil(243)) as u8;
            let mut rest = v;
            for n in (0..5).rev() {
                assert_eq!(trit(byte, n), (rest % 3) as i32 - 1, "v {v} n {n}");
                rest /= 3;
            }
        }
    }

    #[test]
    fn tq1_0_sources_cover_every_byte_trit_once() {
        let mut seen = std::collections::HashSet::new();
        for e in 0..256 {
            let (byte, n) = tq1_0_source(e);
            assert!(byte < 52 && n < if byte < 48 { 5 } else { 4 });
            assert!(seen.insert((byte, n)));
        }
    }

    #[test]
    fn wgsl_tables_pack_the_code_values() {
        // quant.wgsl's lut16 tables: 4 signed bytes per word, little-endian.
        for t in [IQ4NL_VALUES, MXFP4_VALUES] {
            let w: Vec<String> = t
                .chunks(4)
                .map(|c| {
                    let b = [c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8];
                    format!("{:#010x}u", u32::from_le_bytes(b))
                })
                .collect();
            let lit = format!("kv = vec4<u32>({});", w.join(", "));
            assert!(crate::shaders::QUANT.contains(&lit), "{lit}");
        }
    }

    #[test]
    fn e8m0_half_is_a_power_of_two() {
        for e in 0..=255u8 {
            assert_eq!(e8m0_to_f32_half(e) as f64, 2f64.powi(e as i32 - 128), "{e}");
        }
    }
}
