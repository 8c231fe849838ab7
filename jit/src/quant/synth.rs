//! Synthetic blocks for tests and benchmarks, and where each format keeps its scales.

use super::GgmlType;

/// Byte offsets of the f16 scale fields in one ggml block (empty for the float types, for
/// MXFP4, whose scale is the E8M0 byte 0, and for IQ1_M, whose f16 scale is split in nibbles).
pub fn scale_offsets(t: GgmlType) -> &'static [usize] {
    match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::IQ4NL | GgmlType::IQ4XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::TQ1_0 => &[52],
        GgmlType::TQ2_0 => &[64],
        GgmlType::IQ2XXS
        | GgmlType::IQ2XS
        | GgmlType::IQ2S
        | GgmlType::IQ3XXS
        | GgmlType::IQ3S
        | GgmlType::IQ1S => &[0],
        // IQ1_M's scale is the top nibbles of its scale words (`iq1_m_scale_bits`).
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::MXFP4 | GgmlType::IQ1M => &[],
    }
}

/// Deterministic synthetic weights for tests and benchmarks: `blocks` blocks of random bytes
/// whose scale fields hold f16 values in about [2^-7, 2^-5] (either sign), and float elements
/// in about (-1, 1). Kernel speed does not depend on values; tests need finite, varied ones.
pub fn synth_blocks(t: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let bb = t.block_bytes();
    let mut out = vec![0u8; blocks * bb];
    for b in out.chunks_exact_mut(bb) {
        for c in b.chunks_mut(8) {
            let r = next().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        let r = next();
        match t {
            // Exponent pinned to [2^-8, 1): finite and well scaled.
            GgmlType::F32 => {
                let bits = (r as u32 & 0x807f_ffff) | (((r >> 32) as u32 % 8 + 119) << 23);
                b.copy_from_slice(&bits.to_le_bytes());
            }
            GgmlType::F16 => {
                let h = (r as u16 & 0x83ff) | (((r >> 16) as u16 % 8 + 7) << 10);
                b.copy_from_slice(&h.to_le_bytes());
            }
            GgmlType::BF16 => {
                let h = (r as u16 & 0x807f) | (((r >> 16) as u16 % 8 + 119) << 7);
                b.copy_from_slice(&h.to_le_bytes());
            }
            // E8M0 120..=122: half-scales 2^-8 .. 2^-6, so codes up to 12 give |y| <= 2^-2.5.
            GgmlType::MXFP4 => b[0] = 120 + (r % 3) as u8,
            // The f16 scale's 4 nibbles go to the top of the 4 scale words (bytes 48..56).
            GgmlType::IQ1M => {
                let h = (r as u16 & 0x83ff) | ((((r >> 10) as u16) % 3 + 8) << 10);
                for k in 0..4 {
                    b[49 + 2 * k] = (b[49 + 2 * k] & 0x0f) | ((((h >> (4 * k)) & 0xf) as u8) << 4);
                }
            }
            _ => {
                for (i, &off) in scale_offsets(t).iter().enumerate() {
                    let v = r >> (16 * i);
                    // exponent 8..=10 -> 2^-7 .. 2^-5; mins stay positive so affine formats
                    // are centred, scales of sign-free codes may be negative
                    let sign = if i == 0 { (v as u16) & 0x8000 } else { 0 };
                    let h = sign | (v as u16 & 0x03ff) | ((((v >> 10) as u16) % 3 + 8) << 10);
                    b[off..off + 2].copy_from_slice(&h.to_le_bytes());
                }
            }
        }
    }
    out
}
