//! Reference decoders for the loader's upload conversions, written from the format
//! definitions (IEEE 754 binary16; bfloat16 = the top 16 bits of a binary32).

/// binary16 bits -> value: sign, 5-bit exponent (bias 15), 10-bit mantissa; subnormals at
/// exponent 0. Callers use finite values only.
pub fn f16_bits_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as f64;
    if e == 0 {
        sign * m * 2f64.powi(-24)
    } else {
        sign * (1.0 + m / 1024.0) * 2f64.powi(e - 15)
    }
}

pub fn bf16_bits_to_f64(b: u16) -> f64 {
    f32::from_bits((b as u32) << 16) as f64
}
