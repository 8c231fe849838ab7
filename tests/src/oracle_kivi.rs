//! KIVI-2 (Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache") on the
//! host: the reference that a `kivi2` KV cache's kernels are checked against.
//!
//! Format (the definition the kernels must follow; webjit's choices where the paper leaves
//! room):
//! - Asymmetric 2-bit groups: a group of values x gets min m = min(x) and scale
//!   s = (max(x) - m) / 3, both stored as f16 (round to nearest even). Codes are computed
//!   against the *stored* halves, so a code's error is set by what the cache holds:
//!   q = clamp(floor((x - m16) / s16 + 0.5), 0, 3), i.e. round half up (away from the min),
//!   with q = 0 for every element when s16 is 0. The cache returns q * s16 + m16 (exact in
//!   f64; one f32 rounding on the GPU, so bit-identical there).
//! - Keys per channel: one group per (kv head, channel) over `G` consecutive tokens
//!   (positions g*G .. g*G+G-1), as the paper does for keys (outlier channels get their own
//!   range).
//! - Values per token: one group per run of `VG` consecutive channels of a row (KIVI's group
//!   size; head dims are multiples of 32, so every run is whole).
//! - Codes are packed 16 to a u32 word, element i at bits 2*(i % 16) (low bits first): a
//!   value row's channels, and a key group's codes token by token (each token's d channels
//!   in d / 16 words, then the group's (scale, min) pairs), so a key reads like a value row.
//! - The most recent tokens (the ones of a group that is not complete yet, up to G - 1 of
//!   them) stay in full precision (f16 rows); when token g*G + G - 1 is appended, group g is
//!   quantized (keys and values together) and leaves the window.
//!
//! A GPU may compute (x - m16) / s16 an ulp away from the exact value, so a code whose scaled
//! value lies within `TIE_BAND` of a rounding boundary may land one step away; `near_tie`
//! marks those. The halves are rounded from f32 arithmetic on the GPU, so a scale within 1e-6
//! (relative) of an f16 midpoint may round to either neighbour: checkers read the stored
//! halves, accept either neighbour of the exact value (`f16_neighbours`), and recompute the
//! codes from them with `codes`.

use crate::oracle_attention::f16_to_f32;

/// Tokens per key group (and the longest full-precision window, G - 1 tokens).
pub const G: usize = 128;
/// Channels per value group.
pub const VG: usize = 32;
/// Distance (in quantization steps) from a rounding boundary inside which a GPU's last-ulp
/// differences may flip a code.
pub const TIE_BAND: f64 = 1e-4;

fn f16_bits(x: f64) -> u16 {
    half::f16::from_f64(x).to_bits()
}

/// One quantized group.
#[derive(Clone, Debug, PartialEq)]
pub struct KiviGroup {
    /// f16 bits of the scale s16 and the min m16.
    pub scale: u16,
    pub min: u16,
    /// Codes 0..=3.
    pub q: Vec<u8>,
    /// Codes whose rounding is within `TIE_BAND` of flipping.
    pub near_tie: Vec<bool>,
}

impl KiviGroup {
    /// Element i as the cache returns it.
    pub fn value(&self, i: usize) -> f32 {
        dequant(self.scale, self.min, self.q[i])
    }
}

/// q * s16 + m16: exact in f64 (halves and a 2-bit code), then rounded once to f32.
pub fn dequant(scale: u16, min: u16, q: u8) -> f32 {
    (q as f64 * f16_to_f32(scale) as f64 + f16_to_f32(min) as f64) as f32
}

/// The codes of `x` against stored halves `scale` and `min`, with their near-tie flags.
pub fn codes(x: &[f32], scale: u16, min: u16) -> (Vec<u8>, Vec<bool>) {
    let (s, m) = (f16_to_f32(scale) as f64, f16_to_f32(min) as f64);
    x.iter()
        .map(|&v| {
            if s == 0.0 {
                return (0, false);
            }
            let t = (v as f64 - m) / s;
            let q = (t + 0.5).floor().clamp(0.0, 3.0) as u8;
            // Boundaries are the half steps 0.5, 1.5, 2.5 (outside them the clamp decides).
            let f = t - t.floor();
            let near = (-0.5..=3.5).contains(&t) && (f - 0.5).abs() < TIE_BAND;
            (q, near)
        })
        .unzip()
}

/// The exact f64 scale of a group, (max - min) / 3, and its min.
pub fn exact_params(x: &[f32]) -> (f64, f64) {
    let lo = x.iter().fold(f32::INFINITY, |a, &v| a.min(v)) as f64;
    let hi = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
    ((hi - lo) / 3.0, lo)
}

/// Quantizes one group as the kernel does (halves rounded to nearest even from the exact
/// values; see the module doc for the GPU's allowance).
pub fn quant_group(x: &[f32]) -> KiviGroup {
    assert!(!x.is_empty());
    let (s, m) = exact_params(x);
    let (scale, min) = (f16_bits(s), f16_bits(m));
    let (q, near_tie) = codes(x, scale, min);
    KiviGroup {
        scale,
        min,
        q,
        near_tie,
    }
}

/// The halves a GPU may store for exact value `x`: its round-to-nearest-even half and, when
/// `x` lies within 1e-6 (relative) of the midpoint between two halves, the other one.
pub fn f16_neighbours(x: f64) -> Vec<u16> {
    let lo = f16_bits(x * (1.0 - 1e-6));
    let hi = f16_bits(x * (1.0 + 1e-6));
    let mut v = vec![f16_bits(x), lo, hi];
    v.sort_unstable();
    v.dedup();
    v
}

/// The key groups of one token group: `rows` holds `G` (or any number of) token rows of `d`
/// channels each, token-major; group c is channel c over those tokens.
pub fn key_groups(rows: &[f32], d: usize) -> Vec<KiviGroup> {
    assert_eq!(rows.len() % d, 0);
    (0..d)
        .map(|c| {
            let col: Vec<f32> = rows.iter().skip(c).step_by(d).copied().collect();
            quant_group(&col)
        })
        .collect()
}

/// The value groups of one token row: runs of `VG` channels (the last one shorter if `VG` does
/// not divide the row).
pub fn value_groups(row: &[f32]) -> Vec<KiviGroup> {
    row.chunks(VG).map(quant_group).collect()
}

/// Codes packed 16 to a word, element i at bits 2 * (i % 16).
pub fn pack(q: &[u8]) -> Vec<u32> {
    q.chunks(16)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (i, &v)| w | ((v as u32 & 3) << (2 * i)))
        })
        .collect()
}

/// The first `n` codes of packed words.
pub fn unpack(words: &[u32], n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((words[i / 16] >> (2 * (i % 16))) & 3) as u8)
        .collect()
}

/// Bytes one (kv head, token) takes once quantized, keys and values, for head dim `d`:
/// 2 bits a value, plus a (scale, min) pair of halves per key channel per G tokens and per
/// value group.
pub fn quantized_bytes_per_token(d: usize) -> f64 {
    let k = d as f64 / 4.0 + 4.0 * d as f64 / G as f64;
    let v = d as f64 / 4.0 + 4.0 * d.div_ceil(VG) as f64;
    k + v
}

/// Asserts that a stored group (halves and codes) is `x` quantized as the module doc defines:
/// each half one the GPU may store for the exact value, every code the one for the stored
/// halves, or one step away at a near tie.
pub fn check_group(label: &str, x: &[f32], scale: u16, min: u16, q: &[u8]) {
    let (s, m) = exact_params(x);
    assert!(
        f16_neighbours(s).contains(&scale),
        "{label}: scale {} vs exact {s}",
        f16_to_f32(scale)
    );
    assert!(
        f16_neighbours(m).contains(&min),
        "{label}: min {} vs exact {m}",
        f16_to_f32(min)
    );
    let (want, near) = codes(x, scale, min);
    for i in 0..x.len() {
        let diff = (q[i] as i32 - want[i] as i32).abs();
        assert!(
            diff == 0 || (diff == 1 && near[i]),
            "{label} elem {i}: code {} vs {} (x {}, scale {}, min {})",
            q[i],
            want[i],
            x[i],
            f16_to_f32(scale),
            f16_to_f32(min)
        );
    }
}

/// Positions of a kivi2 cache's residual window (two groups).
pub const R: usize = 2 * G;

/// Shape of a kivi2 cache.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub batch: usize,
    pub capacity: usize,
    pub hk: usize,
    pub d: usize,
}

impl Layout {
    fn groups(&self) -> usize {
        self.capacity.div_ceil(G)
    }
    /// Words of one quantized value row: codes, then one (scale, min) pair per group.
    pub fn value_row_words(&self) -> usize {
        self.d / 16 + self.d.div_ceil(VG)
    }
    /// Words of one (batch, group, kv head) of keys: G rows of d / 16 code words, then one
    /// (scale, min) pair per channel.
    fn key_group_words(&self) -> usize {
        (G + 16) * self.d / 16
    }
    fn key_res(&self) -> usize {
        self.batch * self.groups() * self.hk * self.key_group_words()
    }
    fn value_res(&self) -> usize {
        self.batch * self.capacity * self.hk * self.value_row_words()
    }
    /// Words of the K and V storage.
    pub fn words(&self) -> (usize, usize) {
        let res = self.batch * R * self.hk * self.d / 2;
        (self.key_res() + res, self.value_res() + res)
    }

    /// Key group (b, g, h), channel c as stored: (scale, min, codes of its G tokens). Token
    /// t's codes are words t * d / 16 .. of the group, channel c in word c / 16 (`pack`).
    pub fn key_group(
        &self,
        kw: &[u32],
        b: usize,
        g: usize,
        h: usize,
        c: usize,
    ) -> (u16, u16, Vec<u8>) {
        let dw = self.d / 16;
        let base = ((b * self.groups() + g) * self.hk + h) * self.key_group_words();
        let q = (0..G)
            .map(|t| ((kw[base + t * dw + c / 16] >> (2 * (c % 16))) & 3) as u8)
            .collect();
        let sm = kw[base + G * dw + c];
        (sm as u16, (sm >> 16) as u16, q)
    }

    /// Value group `vg` of row (b, pos, h) as stored: (scale, min, codes).
    pub fn value_group(
        &self,
        vw: &[u32],
        b: usize,
        pos: usize,
        h: usize,
        vg: usize,
    ) -> (u16, u16, Vec<u8>) {
        let base = ((b * self.capacity + pos) * self.hk + h) * self.value_row_words();
        let (c0, c1) = (vg * VG, (vg * VG + VG).min(self.d));
        let words = &vw[base + c0 / 16..base + c1 / 16];
        let sm = vw[base + self.d / 16 + vg];
        (sm as u16, (sm >> 16) as u16, unpack(words, c1 - c0))
    }

    /// Residual row (b, pos, h) of K (`kw`, keys) or V as f32.
    pub fn residual(&self, w: &[u32], keys: bool, b: usize, pos: usize, h: usize) -> Vec<f32> {
        let base = if keys {
            self.key_res()
        } else {
            self.value_res()
        };
        let at = base + ((b * R + pos % R) * self.hk + h) * self.d / 2;
        crate::oracle_attention::unpack_f16_pairs(&w[at..at + self.d / 2])
    }

    /// Every position < `len` as a cache of that length returns it: [batch, len, hk, d] of K
    /// and of V (positions of complete groups dequantized, the rest from the residual).
    pub fn decode(&self, kw: &[u32], vw: &[u32], len: usize) -> (Vec<f32>, Vec<f32>) {
        let (hk, d) = (self.hk, self.d);
        let full = len / G * G;
        let mut k = vec![0.0f32; self.batch * len * hk * d];
        let mut v = k.clone();
        for b in 0..self.batch {
            for pos in 0..len {
                for h in 0..hk {
                    let at = ((b * len + pos) * hk + h) * d;
                    if pos >= full {
                        k[at..at + d].copy_from_slice(&self.residual(kw, true, b, pos, h));
                        v[at..at + d].copy_from_slice(&self.residual(vw, false, b, pos, h));
                        continue;
                    }
                    for c in 0..d {
                        let (s, m, q) = self.key_group(kw, b, pos / G, h, c);
                        k[at + c] = dequant(s, m, q[pos % G]);
                    }
                    for vg in 0..d.div_ceil(VG) {
                        let (s, m, q) = self.value_group(vw, b, pos, h, vg);
                        for (i, &qi) in q.iter().enumerate() {
                            v[at + vg * VG + i] = dequant(s, m, qi);
                        }
                    }
                }
            }
        }
        (k, v)
    }

    /// Asserts that the storage of a cache of length `len` holds `k` and `v` ([batch, len, hk,
    /// d], as appended) as the format defines: every complete group quantized from the f16
    /// values (`check_group`), and the residual window's positions (the last `R`, at least the
    /// incomplete group) as f16.
    pub fn check(&self, label: &str, kw: &[u32], vw: &[u32], k: &[f32], v: &[f32], len: usize) {
        let (hk, d) = (self.hk, self.d);
        let f16 = |x: f32| half::f16::from_f32(x).to_f32();
        let row = |x: &[f32], b: usize, pos: usize, h: usize| -> Vec<f32> {
            let at = ((b * len + pos) * hk + h) * d;
            x[at..at + d].iter().map(|&e| f16(e)).collect()
        };
        for b in 0..self.batch {
            for h in 0..hk {
                for g in 0..len / G {
                    for c in 0..d {
                        let x: Vec<f32> = (0..G).map(|t| row(k, b, g * G + t, h)[c]).collect();
                        let (s, m, q) = self.key_group(kw, b, g, h, c);
                        check_group(
                            &format!("{label} K b{b} h{h} group {g} ch {c}"),
                            &x,
                            s,
                            m,
                            &q,
                        );
                    }
                }
                for pos in 0..len / G * G {
                    let x = row(v, b, pos, h);
                    for (vg, xs) in x.chunks(VG).enumerate() {
                        let (s, m, q) = self.value_group(vw, b, pos, h, vg);
                        check_group(
                            &format!("{label} V b{b} h{h} pos {pos} group {vg}"),
                            xs,
                            s,
                            m,
                            &q,
                        );
                    }
                }
                for pos in len.saturating_sub(R)..len {
                    assert_eq!(
                        self.residual(kw, true, b, pos, h),
                        row(k, b, pos, h),
                        "{label} K residual b{b} pos {pos} h{h}"
                    );
                    assert_eq!(
                        self.residual(vw, false, b, pos, h),
                        row(v, b, pos, h),
                        "{label} V residual b{b} pos {pos} h{h}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn grid_values_round_trip_exactly() {
        // min -1.5, max 1.5: s = 1 exactly; the values sit on the grid, so codes and
        // dequantized values are exact.
        let x: Vec<f32> = (0..G).map(|i| -1.5 + (i % 4) as f32).collect();
        let g = quant_group(&x);
        assert_eq!(f16_to_f32(g.scale), 1.0);
        assert_eq!(f16_to_f32(g.min), -1.5);
        for (i, &v) in x.iter().enumerate() {
            assert_eq!(g.q[i], (i % 4) as u8);
            assert_eq!(g.value(i), v);
            assert!(!g.near_tie[i]);
        }
    }

    #[test]
    fn halves_round_up_and_are_flagged() {
        // s = 2, min 0: 1.0 and 3.0 are exact half steps; they go up to codes 1 and 2.
        let x = [0.0f32, 6.0, 1.0, 3.0, 0.9, 3.1];
        let g = quant_group(&x);
        assert_eq!(f16_to_f32(g.scale), 2.0);
        assert_eq!(g.q, vec![0, 3, 1, 2, 0, 2]);
        assert_eq!(g.near_tie, vec![false, false, true, true, false, false]);
        assert_eq!(g.value(2), 2.0);
        assert_eq!(g.value(3), 4.0);
    }

    #[test]
    fn constant_group_has_zero_scale_and_returns_its_min() {
        let g = quant_group(&[0.3f32; 32]);
        assert_eq!(g.scale, 0);
        assert!(g.q.iter().all(|&q| q == 0));
        assert_eq!(g.value(7), half::f16::from_f32(0.3).to_f32());
    }

    #[test]
    fn codes_clamp_when_the_rounded_halves_miss_the_range() {
        // A range of 0.3 at 1000 (f16 spacing 0.5): the min rounds up to 1000.5, half a step
        // above the smallest value, whose code clamps to 0 instead of -1.
        let g = quant_group(&[1000.4f32, 1000.7]);
        assert_eq!(f16_to_f32(g.min), 1000.5);
        assert_eq!(g.q, vec![0, 2]);
        // The min rounds down to 1000 here: the largest value is 5 steps up, clamped to 3.
        let g = quant_group(&[1000.2f32, 1000.5]);
        assert_eq!(f16_to_f32(g.min), 1000.0);
        assert_eq!(g.q, vec![2, 3]);
    }

    #[test]
    fn keys_group_by_channel_and_values_by_token_run() {
        let d = 4;
        // Token t, channel c = c * 100 + t: each channel spans t over its own offset.
        let rows: Vec<f32> = (0..8)
            .flat_map(|t| (0..d).map(move |c| (c * 100 + t) as f32))
            .collect();
        let ks = key_groups(&rows, d);
        assert_eq!(ks.len(), d);
        for (c, k) in ks.iter().enumerate() {
            assert_eq!(f16_to_f32(k.min), (c * 100) as f32);
            assert_eq!(f16_to_f32(k.scale), half::f16::from_f64(7.0 / 3.0).to_f32());
        }
        let row: Vec<f32> = (0..96).map(|i| i as f32).collect();
        let vs = value_groups(&row);
        assert_eq!(vs.iter().map(|g| g.q.len()).collect::<Vec<_>>(), [32; 3]);
        assert_eq!(f16_to_f32(vs[2].min), 64.0);
        assert_eq!(
            f16_to_f32(vs[2].scale),
            half::f16::from_f64(31.0 / 3.0).to_f32()
        );
    }

    #[test]
    fn packing_puts_element_i_at_bits_2i() {
        let q: Vec<u8> = (0..20).map(|i| (i % 4) as u8).collect();
        let w = pack(&q);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], 0xe4e4_e4e4);
        assert_eq!(w[1], 0xe4);
        assert_eq!(unpack(&w, 20), q);
    }

    #[test]
    fn error_is_within_half_a_step_plus_the_halves_rounding() {
        let mut seed = 7u64;
        for n in [G, 64, 2] {
            for _ in 0..50 {
                let x: Vec<f32> = (0..n).map(|_| lcg(&mut seed) * 3.0).collect();
                let g = quant_group(&x);
                let (s, m) = exact_params(&x);
                let (s16, m16) = (f16_to_f32(g.scale) as f64, f16_to_f32(g.min) as f64);
                let bound = 0.5 * s16 + (m - m16).abs() + 3.0 * (s - s16).abs() + 1e-6;
                for (i, &v) in x.iter().enumerate() {
                    let e = (g.value(i) as f64 - v as f64).abs();
                    assert!(e <= bound, "x {v} -> {} (bound {bound})", g.value(i));
                }
                check_group("self", &x, g.scale, g.min, &g.q);
            }
        }
    }

    #[test]
    fn checker_rejects_a_wrong_code_and_a_wrong_scale() {
        let x: Vec<f32> = (0..G).map(|i| -1.5 + (i % 4) as f32).collect();
        let g = quant_group(&x);
        let mut q = g.q.clone();
        q[5] ^= 1;
        let r = std::panic::catch_unwind(|| check_group("bad", &x, g.scale, g.min, &q));
        assert!(r.is_err());
        let r = std::panic::catch_unwind(|| check_group("bad", &x, g.scale + 1, g.min, &g.q));
        assert!(r.is_err());
    }

    #[test]
    fn quantized_token_is_about_2_6_bits_a_value() {
        // Gemma 3 270M (d 256): 64 + 8 bytes for K and 64 + 32 for V, against 512 + 512 in f16.
        assert_eq!(quantized_bytes_per_token(256), 168.0);
        // tiny-llama-like d 64: 16 + 2 for K, 16 + 8 for V.
        assert_eq!(quantized_bytes_per_token(64), 42.0);
    }
}
