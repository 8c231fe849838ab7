//! The codebook (lattice) formats: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M.
//! Groups of 8 (IQ2, IQ1) or 4 (IQ3) weights are one index into a fixed grid of vectors
//! (`grids.rs`, generated from the `gguf` package), with a sign per weight (IQ2, IQ3) or a shift
//! of +-1/8 per group (IQ1), times a block scale.
//!
//! Layouts: `block_iq2_xxs` ... `block_iq1_m` in ggml's `ggml-common.h`; dequantizers:
//! `dequantize_row_iq*` in `ggml-quants.c`. The f32 operations and their order follow the `gguf`
//! package's numpy reference (the same as ggml's), so results are bit-identical: the scale is
//! computed first, then multiplied by the grid value (the sign is exact).

use super::f16_at;
use super::grids::*;

/// Grid entry `i` of the grid at word `offset` of `GRID_WORDS`: 16 bits of value codes.
pub(super) fn grid_entry(offset: usize, i: usize) -> u32 {
    (GRID_WORDS[offset + i / 2] >> (16 * (i % 2))) & 0xffff
}

/// Value `j` of an 8-value entry (2-bit codes) mapped by `values`.
fn val2(entry: u32, j: usize, values: &[i8]) -> f32 {
    values[((entry >> (2 * j)) & 3) as usize] as f32
}

/// Value `j` of a 4-value entry (4-bit codes) mapped by `values`.
fn val4(entry: u32, j: usize, values: &[i8]) -> f32 {
    values[((entry >> (4 * j)) & 15) as usize] as f32
}

/// ggml's `ksigns_iq2xs[i]`: the 7 sign bits `i` and an 8th that makes the count of set bits
/// even (the quantizer flips the least important weight to keep the parity, saving one bit).
pub fn ksigns(i: u32) -> u32 {
    let i = i & 127;
    i | ((i.count_ones() & 1) << 7)
}

fn u16_at(b: &[u8], at: usize) -> u32 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u32
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn signed(v: f32, signs: u32, j: usize) -> f32 {
    if (signs >> j) & 1 != 0 {
        -v
    } else {
        v
    }
}

/// `{ f16 d; u16 qs[32]; }`: per 32 weights two words: 4 grid indices (bytes of the first),
/// and in the second 4 x 7 sign bits then a 4-bit scale s: y = d (0.5 + s) / 4 * grid * sign.
pub(super) fn dequant_iq2_xxs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let (a0, a1) = (u32_at(b, 2 + 8 * ib), u32_at(b, 6 + 8 * ib));
        let db = d * (0.5 + (a1 >> 28) as f32) * 0.25;
        for l in 0..4 {
            let g = grid_entry(IQ2XXS_OFFSET, ((a0 >> (8 * l)) & 0xff) as usize);
            let s = ksigns(a1 >> (7 * l));
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = signed(db * val2(g, j, &IQ2XXS_VALUES), s, j);
            }
        }
    }
}

/// The two 4-bit scales of 32 weights in byte `sc`: db for weights 0-15 and 16-31.
fn iq2_scales(d: f32, sc: u8) -> [f32; 2] {
    [
        d * (0.5 + (sc & 0xf) as f32) * 0.25,
        d * (0.5 + (sc >> 4) as f32) * 0.25,
    ]
}

/// `{ f16 d; u16 qs[32]; u8 scales[8]; }`: per 8 weights a 9-bit grid index and 7 sign bits.
pub(super) fn dequant_iq2_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let db = iq2_scales(d, b[66 + ib]);
        for l in 0..4 {
            let q = u16_at(b, 2 + 2 * (4 * ib + l));
            let g = grid_entry(IQ2XS_OFFSET, (q & 511) as usize);
            let s = ksigns(q >> 9);
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = signed(db[l / 2] * val2(g, j, &IQ2XS_VALUES), s, j);
            }
        }
    }
}

/// `{ f16 d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]; }`: per 8 weights a 10-bit grid
/// index (qs byte, 2 bits of qh) and a byte of signs.
pub(super) fn dequant_iq2_s(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let db = iq2_scales(d, b[74 + ib]);
        for l in 0..4 {
            let g = 4 * ib + l;
            let idx = b[2 + g] as usize | ((((b[66 + ib] >> (2 * l)) & 3) as usize) << 8);
            let e = grid_entry(IQ2S_OFFSET, idx);
            let s = b[34 + g] as u32;
            for j in 0..8 {
                y[8 * g + j] = signed(db[l / 2] * val2(e, j, &IQ2S_VALUES), s, j);
            }
        }
    }
}

/// `{ f16 d; u8 qs[64]; u32 scales_and_signs[8]; }`: per 4 weights an 8-bit grid index; per 32
/// weights a word of 4 x 7 sign bits and a 4-bit scale s: y = d (0.5 + s) / 2 * grid * sign.
pub(super) fn dequant_iq3_xxs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let a = u32_at(b, 66 + 4 * ib);
        let db = d * (0.5 + (a >> 28) as f32) * 0.5;
        for l in 0..4 {
            let s = ksigns(a >> (7 * l));
            for h in 0..2 {
                let e = grid_entry(IQ3XXS_OFFSET, b[2 + 8 * ib + 2 * l + h] as usize);
                for j in 0..4 {
                    let v = db * val4(e, j, &IQ3XXS_VALUES);
                    y[32 * ib + 8 * l + 4 * h + j] = signed(v, s, 4 * h + j);
                }
            }
        }
    }
}

/// `{ f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]; }`: per 4 weights a 9-bit grid
/// index (qs byte, a bit of qh); a sign bit per weight; per 32 a 4-bit scale s: y = d (1 + 2s).
pub(super) fn dequant_iq3_s(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let db = d * (1 + 2 * ((b[106 + ib / 2] >> (4 * (ib % 2))) & 0xf) as u32) as f32;
        for g in 0..8 {
            let idx = b[2 + 8 * ib + g] as usize | ((((b[66 + ib] >> g) & 1) as usize) << 8);
            let e = grid_entry(IQ3S_OFFSET, idx);
            for j in 0..4 {
                let w = 32 * ib + 4 * g + j;
                y[w] = signed(db * val4(e, j, &IQ3S_VALUES), b[74 + w / 8] as u32, w % 8);
            }
        }
    }
}

/// The IQ1 shift of a group of 8 weights: -1/8 when `neg`, else +1/8 (`IQ1S_DELTA`).
fn delta(neg: bool) -> f32 {
    if neg {
        -0.125
    } else {
        0.125
    }
}

/// `{ f16 d; u8 qs[32]; u16 qh[8]; }`: per 8 weights an 11-bit grid index (qs byte, 3 bits of
/// qh); per 32 a qh word with a 3-bit scale s (bits 12-14) and the shift's sign (bit 15):
/// y = d (2s + 1) * (grid + shift).
pub(super) fn dequant_iq1_s(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let qh = u16_at(b, 34 + 2 * ib);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let dt = delta(qh & 0x8000 != 0);
        for l in 0..4 {
            let idx = b[2 + 4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
            let e = grid_entry(IQ1S_OFFSET, idx);
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (val2(e, j, &IQ1S_VALUES) + dt);
            }
        }
    }
}

/// The f16 bits of an IQ1_M block's scale: the top nibbles of its 4 scale words (bytes 48-55),
/// lowest first.
pub fn iq1_m_scale_bits(b: &[u8]) -> u16 {
    let mut h = 0u32;
    for k in 0..4 {
        h |= (u16_at(b, 48 + 2 * k) >> 12) << (4 * k);
    }
    h as u16
}

/// `{ u8 qs[32]; u8 qh[16]; u8 scales[8]; }`: per 8 weights an 11-bit grid index (qs byte, 3
/// bits of a qh nibble) and the shift's sign (the nibble's bit 3); per 16 weights a 3-bit scale
/// s (bits 3t.. of the scale words): y = d (2s + 1) * (grid + shift).
pub(super) fn dequant_iq1_m(b: &[u8], y: &mut [f32]) {
    let d = super::f16_to_f32(iq1_m_scale_bits(b));
    for g in 0..32 {
        let t = g / 2; // the scale of weights 16 t ..
        let s = (u16_at(b, 48 + 2 * (t / 4)) >> (3 * (t % 4))) & 7;
        let dl = d * (2 * s + 1) as f32;
        let nib = (b[32 + g / 2] >> (4 * (g % 2))) & 0xf;
        let e = grid_entry(IQ1S_OFFSET, b[g] as usize | (((nib & 7) as usize) << 8));
        let dt = delta(nib & 8 != 0);
        for j in 0..8 {
            y[8 * g + j] = dl * (val2(e, j, &IQ1S_VALUES) + dt);
        }
    }
}

/// The GPU grid table: the grids byte-expanded (kernels read whole words of grid values
/// instead of decoding codes): per grid, entries of 8 values take 2 words and entries of 4
/// take 1, each value one unsigned byte (IQ1: 8 (g + 1), so 0, 8, 16); then the sign masks:
/// for every byte s, 2 words whose byte j is 0xff where bit j of s is set (int8 matvec).
const EXPANDED: [(usize, usize, usize); 6] = [
    // (packed offset, entries, values per entry)
    (IQ2XXS_OFFSET, 256, 8),
    (IQ2XS_OFFSET, 512, 8),
    (IQ2S_OFFSET, 1024, 8),
    (IQ3XXS_OFFSET, 256, 4),
    (IQ3S_OFFSET, 512, 4),
    (IQ1S_OFFSET, 2048, 8),
];

/// Word offset of the expanded grid whose packed grid is at `packed` in the GPU table.
pub fn expanded_offset(packed: usize) -> Option<usize> {
    let mut at = 0;
    for (p, n, v) in EXPANDED {
        if p == packed {
            return Some(at);
        }
        at += n * v / 4;
    }
    None
}

/// Words of the expanded grid whose packed grid is at `packed` in the GPU table.
pub fn expanded_words(packed: usize) -> Option<usize> {
    EXPANDED
        .iter()
        .find(|(p, _, _)| *p == packed)
        .map(|(_, n, v)| n * v / 4)
}

/// Word offset of the sign masks in the GPU table.
pub fn sign_mask_offset() -> usize {
    EXPANDED.iter().map(|(_, n, v)| n * v / 4).sum::<usize>()
}

/// The whole GPU grid table: the expanded grids, then the sign masks.
pub fn gpu_grid_table() -> Vec<u32> {
    let mut t = Vec::with_capacity(sign_mask_offset() + 512);
    for (p, n, v) in EXPANDED {
        let (bits, values): (usize, &[i8]) = match p {
            IQ3XXS_OFFSET => (4, &IQ3XXS_VALUES),
            IQ3S_OFFSET => (4, &IQ3S_VALUES),
            IQ1S_OFFSET => (2, &[0, 8, 16]),
            _ => (2, &IQ2XXS_VALUES),
        };
        for i in 0..n {
            let e = grid_entry(p, i);
            let bytes: Vec<u8> = (0..v)
                .map(|j| values[((e >> (bits * j)) & ((1 << bits) - 1)) as usize] as u8)
                .collect();
            t.extend(
                bytes
                    .chunks(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
    }
    for s in 0..256u32 {
        let m = |j: u32| {
            if (s >> j) & 1 != 0 {
                0xffu32 << (8 * (j % 4))
            } else {
                0
            }
        };
        t.push((0..4).map(m).sum());
        t.push((4..8).map(m).sum());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_have_their_sizes_and_values() {
        let ends = [
            (IQ2XXS_OFFSET, 256),
            (IQ2XS_OFFSET, 512),
            (IQ2S_OFFSET, 1024),
            (IQ3XXS_OFFSET, 256),
            (IQ3S_OFFSET, 512),
            (IQ1S_OFFSET, 2048),
        ];
        for w in ends.windows(2) {
            assert_eq!(w[0].0 + w[0].1 / 2, w[1].0);
        }
        assert_eq!(IQ1S_OFFSET + 1024, GRID_WORDS.len());
        // ggml's iq2xxs_grid[0] is 0x0808080808080808 and iq1s_grid[0] is -1 x 8.
        assert_eq!(grid_entry(IQ2XXS_OFFSET, 0), 0);
        assert_eq!(val2(grid_entry(IQ1S_OFFSET, 0), 0, &IQ1S_VALUES), -1.0);
    }

    #[test]
    fn expanded_grids_hold_the_values_of_the_packed_ones() {
        let t = gpu_grid_table();
        assert_eq!(t.len(), sign_mask_offset() + 512);
        let at = expanded_offset(IQ2S_OFFSET).unwrap();
        for i in [0, 1, 517, 1023] {
            let e = grid_entry(IQ2S_OFFSET, i);
            for j in 0..8 {
                let b = (t[at + 2 * i + j / 4] >> (8 * (j % 4))) & 0xff;
                assert_eq!(b as f32, val2(e, j, &IQ2S_VALUES));
            }
        }
        let at = expanded_offset(IQ1S_OFFSET).unwrap();
        let e = grid_entry(IQ1S_OFFSET, 2047);
        let b = t[at + 2 * 2047 + 1] >> 24;
        assert_eq!(b as f32, 8.0 * (val2(e, 7, &IQ1S_VALUES) + 1.0));
        assert_eq!(t[sign_mask_offset() + 2 * 0x81], 0xff);
        assert_eq!(t[sign_mask_offset() + 2 * 0x81 + 1], 0xff00_0000);
    }

    #[test]
    fn ksigns_have_even_parity() {
        for i in 0..128 {
            assert_eq!(ksigns(i).count_ones() % 2, 0);
            assert_eq!(ksigns(i) & 127, i);
        }
    }
}
