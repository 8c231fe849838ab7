//! The quantized KV cache formats on the host: ggml's reference quantizers
//! (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref` in ggml-quants.c) written again in Rust
//! from their definition, and a decoder of the cache rows as webjit stores them (u32 words:
//! the blocks' quants, then their f16 scales two per word; see shaders/kv_quant.wgsl).
//!
//! A GPU may compute `1 / d` or `x * id` an ulp away from C's f32 arithmetic, so an element
//! whose scaled value sits within `TIE_BAND` of a rounding boundary may legitimately land one
//! step away; every other element must match exactly.

use webjit_engine::jit::kernels::kv_dtype::KvDType;

use crate::oracle_attention::f16_to_f32;

/// Distance (in units of the quantization step) from a rounding boundary inside which a GPU's
/// last-ulp differences may flip the rounding.
pub const TIE_BAND: f32 = 1e-4;

/// One block of 32 values as ggml's reference quantizer makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RefBlock {
    /// f16 bits of the scale.
    pub d: u16,
    /// The value of each element in units of d: q8_0's q, q4_0's n - 8.
    pub q: [i8; 32],
    /// Elements whose rounding is within `TIE_BAND` of flipping.
    pub near_tie: [bool; 32],
}

impl RefBlock {
    /// Element i as the cache returns it.
    pub fn value(&self, i: usize) -> f32 {
        self.q[i] as f32 * f16_to_f32(self.d)
    }
}

fn f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// quantize_row_q8_0_ref on 32 values: d = max|x| / 127, q = roundf(x * (1/d)).
pub fn quant_q8_0(x: &[f32]) -> RefBlock {
    assert_eq!(x.len(), 32);
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = RefBlock {
        d: f16_bits(d),
        q: [0; 32],
        near_tie: [false; 32],
    };
    for (i, &v) in x.iter().enumerate() {
        let s = v * id;
        // f32::round is C's roundf: halves away from zero.
        b.q[i] = s.round() as i8;
        b.near_tie[i] = ((s.abs().fract()) - 0.5).abs() < TIE_BAND;
    }
    b
}

/// quantize_row_q4_0_ref on 32 values: m = the first value of largest magnitude, d = m / -8,
/// n = min(15, trunc(x * (1/d) + 8.5)), stored value n - 8.
pub fn quant_q4_0(x: &[f32]) -> RefBlock {
    assert_eq!(x.len(), 32);
    let (mut amax, mut m) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            m = v;
        }
    }
    let d = m / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = RefBlock {
        d: f16_bits(d),
        q: [0; 32],
        near_tie: [false; 32],
    };
    for (i, &v) in x.iter().enumerate() {
        let s = v * id + 8.5;
        // C's (int8_t) cast truncates; s >= 0.5 here.
        let n = (s as i8).min(15);
        b.q[i] = n - 8;
        let f = s.fract();
        b.near_tie[i] = !(TIE_BAND..=1.0 - TIE_BAND).contains(&f);
    }
    b
}

pub fn quant(dtype: KvDType, x: &[f32]) -> RefBlock {
    match dtype {
        KvDType::Q8_0 => quant_q8_0(x),
        KvDType::Q4_0 => quant_q4_0(x),
        other => panic!("{other:?} is not a quantized KV format"),
    }
}

/// Quant words per block.
fn block_words(dtype: KvDType) -> usize {
    match dtype {
        KvDType::Q8_0 => 8,
        KvDType::Q4_0 => 4,
        other => panic!("{other:?} is not a quantized KV format"),
    }
}

/// u32 words of one cache row of `hd` values.
pub fn row_words(dtype: KvDType, hd: usize) -> usize {
    let nb = hd / 32;
    nb * block_words(dtype) + nb.div_ceil(2)
}

/// The blocks of one stored cache row: (f16 scale bits, values in units of d).
pub fn decode_row(dtype: KvDType, words: &[u32], hd: usize) -> Vec<(u16, [i8; 32])> {
    let nb = hd / 32;
    let bw = block_words(dtype);
    assert_eq!(words.len(), row_words(dtype, hd));
    (0..nb)
        .map(|blk| {
            let sw = words[nb * bw + blk / 2];
            let d = (sw >> (16 * (blk % 2))) as u16;
            let bytes: Vec<u8> = words[blk * bw..(blk + 1) * bw]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            let mut q = [0i8; 32];
            for j in 0..32 {
                q[j] = match dtype {
                    KvDType::Q8_0 => bytes[j] as i8,
                    // Byte j: value j in the low nibble, value j + 16 in the high one.
                    _ => ((bytes[j % 16] >> (4 * (j / 16))) & 15) as i8 - 8,
                };
            }
            (d, q)
        })
        .collect()
}

/// Every row of a stored cache (`words`: rows of `row_words`) as f32 values.
pub fn dequant_rows(dtype: KvDType, words: &[u32], hd: usize) -> Vec<f32> {
    words
        .chunks(row_words(dtype, hd))
        .flat_map(|row| {
            decode_row(dtype, row, hd).into_iter().flat_map(|(d, q)| {
                let d = f16_to_f32(d);
                q.map(|v| v as f32 * d)
            })
        })
        .collect()
}

/// True when f32 `d` is so close to a midpoint between two halves that an ulp of difference
/// in computing it may round it to either.
fn near_f16_tie(d: f32) -> bool {
    let h = half::f16::from_f32(d);
    let lo = h.to_f32();
    let other = if d > lo {
        half::f16::from_bits(h.to_bits().wrapping_add(1))
    } else {
        half::f16::from_bits(h.to_bits().wrapping_sub(1))
    };
    let mid = (lo as f64 + other.to_f32() as f64) / 2.0;
    ((d as f64 - mid) / d as f64).abs() < 1e-6
}

/// Asserts that a stored cache row holds ggml's quantization of `x` (see the module doc for
/// the one-step allowance at rounding boundaries).
pub fn check_row(label: &str, dtype: KvDType, words: &[u32], x: &[f32]) {
    let hd = x.len();
    for (blk, (d, q)) in decode_row(dtype, words, hd).into_iter().enumerate() {
        let want = quant(dtype, &x[blk * 32..(blk + 1) * 32]);
        let fd = f16_to_f32(want.d);
        let d_ok = d == want.d || (near_f16_tie(fd) && d.abs_diff(want.d) == 1);
        assert!(
            d_ok,
            "{label} block {blk}: scale {:?} vs ggml's {:?}",
            f16_to_f32(d),
            fd
        );
        for j in 0..32 {
            let diff = (q[j] as i32 - want.q[j] as i32).abs();
            assert!(
                diff == 0 || (diff == 1 && want.near_tie[j]),
                "{label} block {blk} elem {j}: stored {} vs ggml's {} (x {})",
                q[j],
                want.q[j],
                x[blk * 32 + j]
            );
        }
    }
}

/// Asserts that `got` is `x` quantized by ggml's reference and dequantized (the rows a
/// quantized cache's append writes back for the prompt's own attention).
pub fn check_roundtrip(label: &str, dtype: KvDType, x: &[f32], got: &[f32]) {
    assert_eq!(x.len(), got.len());
    for (blk, (xb, gb)) in x.chunks(32).zip(got.chunks(32)).enumerate() {
        let want = quant(dtype, xb);
        let step = f16_to_f32(want.d).abs();
        for j in 0..32 {
            let w = want.value(j);
            let ok = gb[j] == w || (want.near_tie[j] && (gb[j] - w).abs() <= step * 1.001);
            assert!(
                ok,
                "{label} block {blk} elem {j}: {} vs ggml's {w} (x {})",
                gb[j], xb[j]
            );
        }
    }
}

/// Asserts that a stored row quantizes `want` (computed in f64, so the GPU's input to the
/// quantizer differs from it by f32 rounding): every block's scale within 0.1% (f16 rounding
/// is 0.05%) of ggml's for `want`, and every value within half a step of `want` (q8_0), or one
/// step (q4_0, whose value opposite the largest one is clamped to 7 steps of 8), plus the
/// scale's f16 rounding.
pub fn check_row_close(label: &str, dtype: KvDType, words: &[u32], want: &[f64]) {
    let hd = want.len();
    let w32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    for (blk, (d, q)) in decode_row(dtype, words, hd).into_iter().enumerate() {
        let r = quant(dtype, &w32[blk * 32..(blk + 1) * 32]);
        let (got_d, want_d) = (f16_to_f32(d) as f64, f16_to_f32(r.d) as f64);
        assert!(
            (got_d - want_d).abs() <= 1e-3 * want_d.abs() + 1e-7,
            "{label} block {blk}: scale {got_d} vs ggml's {want_d}"
        );
        // The values were scaled by 1 / d before d was rounded to f16, which moves a value of
        // q steps by up to q * 2^-11 steps: 127 steps by 0.062 (q8_0), 8 by 0.004 (q4_0).
        let tol = match dtype {
            KvDType::Q8_0 => 0.57,
            _ => 1.01,
        } * want_d.abs()
            + 1e-6;
        for j in 0..32 {
            let (g, w) = (q[j] as f64 * got_d, want[blk * 32 + j]);
            assert!(
                (g - w).abs() <= tol,
                "{label} block {blk} elem {j}: {g} vs {w} (step {want_d})"
            );
        }
    }
}
