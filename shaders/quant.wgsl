//! section common
// Dequantization of repacked GGUF blocks (see jit/src/quant/mod.rs for the word layout; block
// layouts follow ggml's ggml-common.h). Each format section defines
//   fn deq4(base: u32, k4: u32) -> vec4<f32>
// returning elements 4*k4 .. 4*k4+3 of the weight row whose first word is at `base`. The f32
// operations and their order match ggml's dequantize_row_* so results are bit-identical.
// The sections after this one are templates: W names the storage array the weight is bound to
// and S is a suffix of the functions that read it, so a kernel that reads two or three weights
// (gated, stacked) includes them once per weight (`crate::quant::wgsl::dequant_wgsl`). This
// section reads no weight and is included once.

// IEEE half (low 16 bits of h) to f32, exact for zeros, subnormals and normals.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // m * 2^-24 is exact in f32; the sign is applied after, so -0 stays -0.
        let v = f32(m) * bitcast<f32>(0x33800000u);
        return select(v, -v, sign != 0u);
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// The 4 bytes of a word, each shifted right by `s` bits.
fn bytes_shr(word: u32, s: u32) -> vec4<u32> {
    return vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(s));
}

//! section byte_at
// Byte `n` of the words starting at {{W}}[at].
fn byte_at{{S}}(at: u32, n: u32) -> u32 {
    return ({{W}}[at + (n >> 2u)] >> ((n & 3u) * 8u)) & 0xffu;
}

//! section f32
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let i = base + k4 * 4u;
    return bitcast<vec4<f32>>(vec4<u32>({{W}}[i], {{W}}[i + 1u], {{W}}[i + 2u], {{W}}[i + 3u]));
}

//! section f16
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let a = {{W}}[base + k4 * 2u];
    let b = {{W}}[base + k4 * 2u + 1u];
    return vec4<f32>(half_to_f32(a), half_to_f32(a >> 16u), half_to_f32(b), half_to_f32(b >> 16u));
}

//! section bf16
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let a = {{W}}[base + k4 * 2u];
    let b = {{W}}[base + k4 * 2u + 1u];
    return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
}

//! section q4_0
// 5 words: [d | pad] [qs x4]. Element j < 16: low nibble of qs[j]; j + 16: high nibble.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 5u;
    let i = k4 & 7u;
    let d = half_to_f32({{W}}[b]);
    let q = bytes_shr({{W}}[b + 1u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu);
    return d * (vec4<f32>(q) - 8.0);
}

//! section q4_1
// 5 words: [d | m] [qs x4]. y = d * q + m.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 5u;
    let i = k4 & 7u;
    let dm = {{W}}[b];
    let q = bytes_shr({{W}}[b + 1u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu);
    return half_to_f32(dm) * vec4<f32>(q) + half_to_f32(dm >> 16u);
}

//! section q5_0
// 6 words: [d | pad] [qh] [qs x4]. Bit 4*i + j of qh is bit 4 of element 4*i + j.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 6u;
    let i = k4 & 7u;
    let d = half_to_f32({{W}}[b]);
    let hb = (vec4<u32>({{W}}[b + 1u]) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(i * 4u))) & vec4<u32>(1u);
    let q = (bytes_shr({{W}}[b + 2u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu)) | (hb << vec4<u32>(4u));
    return d * (vec4<f32>(q) - 16.0);
}

//! section q5_1
// 6 words: [d | m] [qh] [qs x4]. y = d * q + m.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 6u;
    let i = k4 & 7u;
    let dm = {{W}}[b];
    let hb = (vec4<u32>({{W}}[b + 1u]) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(i * 4u))) & vec4<u32>(1u);
    let q = (bytes_shr({{W}}[b + 2u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu)) | (hb << vec4<u32>(4u));
    return half_to_f32(dm) * vec4<f32>(q) + half_to_f32(dm >> 16u);
}

//! section q8_0
// 9 words: [d | pad] [qs x8], qs signed bytes. y = q * d.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 9u;
    let d = half_to_f32({{W}}[b]);
    let word = {{W}}[b + 1u + (k4 & 7u)];
    let q = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(q) * d;
}

//! section q2_k
// 21 words: scales[16] (words 0-3), qs[64] (4-19), [d | dmin] (20).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 21u;
    let e = (k4 & 63u) * 4u;
    let h = e >> 7u;
    let t = (e >> 5u) & 3u;
    let l = e & 31u;
    let q = bytes_shr({{W}}[b + 4u + ((32u * h + l) >> 2u)], 2u * t) & vec4<u32>(3u);
    let sc = byte_at{{S}}(b, e >> 4u);
    let dd = {{W}}[b + 20u];
    let dl = half_to_f32(dd) * f32(sc & 0xfu);
    let ml = half_to_f32(dd >> 16u) * f32(sc >> 4u);
    return dl * vec4<f32>(q) - ml;
}

//! section q3_k
// 28 words: hmask[32] (words 0-7), qs[64] (8-23), scales[12] (24-26), [d | pad] (27).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 28u;
    let e = (k4 & 63u) * 4u;
    let h = e >> 7u;
    let t = (e >> 5u) & 3u;
    let l = e & 31u;
    let lo = bytes_shr({{W}}[b + 8u + ((32u * h + l) >> 2u)], 2u * t) & vec4<u32>(3u);
    let hm = bytes_shr({{W}}[b + (l >> 2u)], e >> 5u) & vec4<u32>(1u);
    let q = vec4<i32>(lo) - 4 * (vec4<i32>(1) - vec4<i32>(hm));
    let j = e >> 4u;
    let lo4 = (byte_at{{S}}(b + 24u, j & 7u) >> select(4u, 0u, j < 8u)) & 0xfu;
    let hi2 = (byte_at{{S}}(b + 24u, 8u + (j & 3u)) >> (2u * (j >> 2u))) & 3u;
    let s = i32(lo4 | (hi2 << 4u)) - 32;
    let dl = half_to_f32({{W}}[b + 27u]) * f32(s);
    return dl * vec4<f32>(q);
}

//! section kscale
// The 6-bit (scale, min) pair `j` of a Q4_K/Q5_K block whose 12 scale bytes start at {{W}}[at]
// (get_scale_min_k4 in ggml-quants.c).
fn scale_min_k4{{S}}(at: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(byte_at{{S}}(at, j) & 63u, byte_at{{S}}(at, j + 4u) & 63u);
    }
    let s = (byte_at{{S}}(at, j + 4u) & 0xfu) | ((byte_at{{S}}(at, j - 4u) >> 6u) << 4u);
    let m = (byte_at{{S}}(at, j + 4u) >> 4u) | ((byte_at{{S}}(at, j) >> 6u) << 4u);
    return vec2<u32>(s, m);
}

//! section q4_k
// 36 words: [d | dmin] (0), scales[12] (1-3), qs[128] (4-35).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 36u;
    let e = (k4 & 63u) * 4u;
    let c = e >> 6u;
    let r = e & 63u;
    let q = bytes_shr({{W}}[b + 4u + ((32u * c + (r & 31u)) >> 2u)], select(0u, 4u, r >= 32u)) & vec4<u32>(0xfu);
    let sm = scale_min_k4{{S}}(b + 1u, e >> 5u);
    let dd = {{W}}[b];
    let d1 = half_to_f32(dd) * f32(sm.x);
    let m1 = half_to_f32(dd >> 16u) * f32(sm.y);
    return d1 * vec4<f32>(q) - m1;
}

//! section q5_k
// 44 words: [d | dmin] (0), scales[12] (1-3), qh[32] (4-11), qs[128] (12-43).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 44u;
    let e = (k4 & 63u) * 4u;
    let c = e >> 6u;
    let r = e & 63u;
    let lo = bytes_shr({{W}}[b + 12u + ((32u * c + (r & 31u)) >> 2u)], select(0u, 4u, r >= 32u)) & vec4<u32>(0xfu);
    let hb = bytes_shr({{W}}[b + 4u + ((e & 31u) >> 2u)], e >> 5u) & vec4<u32>(1u);
    let q = lo | (hb << vec4<u32>(4u));
    let sm = scale_min_k4{{S}}(b + 1u, e >> 5u);
    let dd = {{W}}[b];
    let d1 = half_to_f32(dd) * f32(sm.x);
    let m1 = half_to_f32(dd >> 16u) * f32(sm.y);
    return d1 * vec4<f32>(q) - m1;
}

//! section q6_k
// 53 words: ql[128] (0-31), qh[64] (32-47), scales[16] signed (48-51), [d | pad] (52).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 53u;
    let e = (k4 & 63u) * 4u;
    let h = e >> 7u;
    let r = e & 127u;
    let lo = bytes_shr({{W}}[b + ((64u * h + (r & 63u)) >> 2u)], 4u * (r >> 6u)) & vec4<u32>(0xfu);
    let hi = bytes_shr({{W}}[b + 32u + ((32u * h + (r & 31u)) >> 2u)], 2u * (r >> 5u)) & vec4<u32>(3u);
    let q = vec4<i32>(lo | (hi << vec4<u32>(4u))) - vec4<i32>(32);
    let j = e >> 4u;
    let sc = bitcast<i32>({{W}}[b + 48u + (j >> 2u)] << (24u - 8u * (j & 3u))) >> 24u;
    let ds = half_to_f32({{W}}[b + 52u]) * f32(sc);
    return ds * vec4<f32>(q);
}

//! section lut16
// Table lookup of 4 codes (0..15): the 16 signed-byte values of a code table are packed 4 per
// word, little-endian, in t (IQ4NL_VALUES, MXFP4_VALUES in jit/src/quant/lowbit.rs). The word
// is picked by selects on bits 2 and 3 of the code, not by indexing t with it: a vector
// indexed by a runtime value may live in (slow) local memory.
fn lut16{{S}}(t: vec4<u32>, q: vec4<u32>) -> vec4<f32> {
    let b2 = (q & vec4<u32>(4u)) != vec4<u32>(0u);
    let b3 = q >= vec4<u32>(8u);
    let w = select(select(vec4<u32>(t.x), vec4<u32>(t.y), b2), select(vec4<u32>(t.z), vec4<u32>(t.w), b2), b3);
    return vec4<f32>(bitcast<vec4<i32>>(w << (vec4<u32>(24u) - 8u * (q & vec4<u32>(3u)))) >> vec4<u32>(24u));
}

//! section iq4_nl
// 5 words: [d | pad] [qs x4]; Q4_0's layout with the codes looked up in kvalues_iq4nl.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 5u;
    let i = k4 & 7u;
    let d = half_to_f32({{W}}[b]);
    let q = bytes_shr({{W}}[b + 1u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu);
    let kv = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
    return d * lut16{{S}}(kv, q);
}

//! section iq4_xs
// 34 words: [d | scales_h] (0), scales_l[4] (1), qs[128] (2-33). Sub-block ib = e / 32 is an
// IQ4_NL block (qs bytes 16 ib ..) with scale d * (6-bit scale - 32): low 4 bits from nibble ib
// of scales_l, high 2 from bits 2 ib of scales_h.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 34u;
    let e = (k4 & 63u) * 4u;
    let ib = e >> 5u;
    let j = e & 31u;
    let q = bytes_shr({{W}}[b + 2u + 4u * ib + ((j & 15u) >> 2u)], select(0u, 4u, j >= 16u)) & vec4<u32>(0xfu);
    let h = {{W}}[b];
    let ls = ((({{W}}[b + 1u] >> (4u * ib)) & 0xfu) | (((h >> (16u + 2u * ib)) & 3u) << 4u));
    let dl = half_to_f32(h) * f32(i32(ls) - 32);
    let kv = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
    return dl * lut16{{S}}(kv, q);
}

//! section tq1_0
// 14 words: qs[48] (0-11), qh[4] (12), [d | pad] (13). A byte holds 5 (qs) or 4 (qh) trits:
// trit n is ((byte * 3^n mod 256) * 3) >> 8, minus 1. Elements 0-159 are trit e / 32 of
// qs[e % 32], 160-239 trit (e - 160) / 16 of qs[32 + e % 16], 240-255 trit (e - 240) / 4 of
// qh[e % 4]; 4 neighbouring elements are 4 bytes of one word with one trit index.
// The word (x) and trit index (y) of elements e .. e + 3 of a block (e a multiple of 4).
fn tq1_at{{S}}(e: u32) -> vec2<u32> {
    if (e >= 240u) {
        return vec2<u32>(12u, (e - 240u) >> 2u);
    } else if (e >= 160u) {
        return vec2<u32>(8u + ((e & 15u) >> 2u), (e - 160u) >> 4u);
    }
    return vec2<u32>((e & 31u) >> 2u, e >> 5u);
}
// 3^n without indexing by n (see lut16).
fn tq1_pow3{{S}}(n: u32) -> u32 {
    return select(select(select(select(1u, 3u, n == 1u), 9u, n == 2u), 27u, n == 3u), 81u, n == 4u);
}
// Trit n of each byte of `word` minus 1, given p3 = 3^n. Only the low 8 bits of each product
// matter, so the bytes need no mask first.
fn tq1_trits{{S}}(word: u32, p3: u32) -> vec4<f32> {
    let q = (bytes_shr(word, 0u) * vec4<u32>(p3)) & vec4<u32>(0xffu);
    return vec4<f32>(vec4<i32>((q * 3u) >> vec4<u32>(8u)) - vec4<i32>(1));
}
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 14u;
    let at = tq1_at{{S}}((k4 & 63u) * 4u);
    return tq1_trits{{S}}({{W}}[b + at.x], tq1_pow3{{S}}(at.y)) * half_to_f32({{W}}[b + 13u]);
}

//! section tq2_0
// 17 words: qs[64] (0-15), [d | pad] (16). Q2_K's code layout; y = (q - 1) * d.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 17u;
    let e = (k4 & 63u) * 4u;
    let h = e >> 7u;
    let t = (e >> 5u) & 3u;
    let l = e & 31u;
    let q = bytes_shr({{W}}[b + ((32u * h + l) >> 2u)], 2u * t) & vec4<u32>(3u);
    return vec4<f32>(vec4<i32>(q) - vec4<i32>(1)) * half_to_f32({{W}}[b + 16u]);
}

//! section mxfp4
// 5 words: [e | pad] [qs x4]; Q4_0's code layout, codes looked up in kvalues_mxfp4 (E2M1
// doubled), times the E8M0 scale halved: 2^(e - 128), f32 subnormals for e < 2 (which a GPU
// may flush to zero: such weights are below 2^-125).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 3u) * 5u;
    let i = k4 & 7u;
    let e = {{W}}[b] & 0xffu;
    let d = bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << e, e < 2u));
    let q = bytes_shr({{W}}[b + 1u + (i & 3u)], (i >> 2u) * 4u) & vec4<u32>(0xfu);
    let kv = vec4<u32>(0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu);
    return lut16{{S}}(kv, q) * d;
}

//! section grid
// The codebook formats (IQ2_XXS ... IQ1_M; jit/src/quant/codebook.rs). Their grids are read
// from the grid table (`gpu_grid_table` in codebook.rs, from the packed grids of grids.rs):
// every grid entry expanded to one unsigned byte per value, 4 per word, and sign masks for the
// int8 matvec. It is bound as the read-only storage buffer `grid` (35 KiB, uploaded once per
// engine). Not a module-scope const array: indexed by a runtime value, naga gives every
// invocation a local copy of it. Not workgroup memory either: filling it costs every
// workgroup of a matvec more loads than its weights, and qmatmul's tiles already use most of
// the 16 KiB. A small storage table stays in the GPU's L1/texture cache, as ggml's CUDA
// tables do. Reading whole words of values costs less ALU work than decoding 2-bit codes.
// T is the table: `grid` itself, or the matvec's workgroup copy of one format's grid.
fn grid_bytes{{S}}(at: u32) -> vec4<f32> {
    return vec4<f32>(bytes_shr({{T}}[at], 0u) & vec4<u32>(0xffu));
}

// ggml's ksigns_iq2xs[i]: 7 sign bits and an 8th that makes the count of set bits even.
fn ksigns{{S}}(i: u32) -> u32 {
    return i | ((countOneBits(i) & 1u) << 7u);
}

// The 4 grid bytes of word `at`, byte j negated where bit j of s is set, as f32. Integer work
// on the whole word instead of a select per value: the multiply spreads bits 0-3 of s to bit 0
// of bytes 0-3 (the shifted copies of the 4 bits never overlap), a negated byte is its two's
// complement (~g + 1: no signed format has a zero grid value, so no carry leaves a byte), and
// the shifts sign-extend each byte. Exact: db * -g is -(db * g) in IEEE arithmetic.
fn grid_signed{{S}}(at: u32, s: u32) -> vec4<f32> {
    let neg = ((s & 0xfu) * 0x00204081u) & 0x01010101u;
    let w = ({{T}}[at] ^ (neg * 0xffu)) + neg;
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

//! section iq2_xxs
// 17 words: [d | pad] (0), then per 32 weights 2 words (1 + 2 ib): 4 grid indices (bytes), and
// 4 x 7 sign bits with a 4-bit scale s on top: y = d (0.5 + s) / 4 * grid * sign.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 17u;
    let e = (k4 & 63u) * 4u;
    let ib = e >> 5u;
    let l = (e >> 3u) & 3u;
    let h = (e >> 2u) & 1u;
    let a0 = {{W}}[b + 1u + 2u * ib];
    let a1 = {{W}}[b + 2u + 2u * ib];
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(a1 >> 28u)) * 0.25;
    let s = ksigns{{S}}((a1 >> (7u * l)) & 127u) >> (4u * h);
    return db * grid_signed{{S}}({{E}}u + 2u * ((a0 >> (8u * l)) & 0xffu) + h, s);
}

//! section iq2_xs
// 19 words: [d | pad] (0), qs[32] u16 (1-16): a 9-bit grid index and 7 sign bits per 8
// weights, scales[8] (17-18): a 4-bit scale s per 16 weights: y = d (0.5 + s) / 4 * grid * sign.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 19u;
    let e = (k4 & 63u) * 4u;
    let g8 = e >> 3u;
    let h = (e >> 2u) & 1u;
    let q = ({{W}}[b + 1u + (g8 >> 1u)] >> (16u * (g8 & 1u))) & 0xffffu;
    let sc = (byte_at{{S}}(b + 17u, e >> 5u) >> (4u * ((e >> 4u) & 1u))) & 0xfu;
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(sc)) * 0.25;
    let s = ksigns{{S}}(q >> 9u) >> (4u * h);
    return db * grid_signed{{S}}({{E}}u + 2u * (q & 511u) + h, s);
}

//! section iq2_s
// 21 words: [d | pad] (0), qs[32] (1-8), signs[32] (9-16), qh[8] (17-18), scales[8] (19-20).
// Per 8 weights a 10-bit grid index (qs byte, 2 bits of qh) and a sign byte; scales as IQ2_XS.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 21u;
    let e = (k4 & 63u) * 4u;
    let g8 = e >> 3u;
    let ib = e >> 5u;
    let h = (e >> 2u) & 1u;
    let idx = byte_at{{S}}(b + 1u, g8) | (((byte_at{{S}}(b + 17u, ib) >> (2u * (g8 & 3u))) & 3u) << 8u);
    let sc = (byte_at{{S}}(b + 19u, ib) >> (4u * ((e >> 4u) & 1u))) & 0xfu;
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(sc)) * 0.25;
    let s = byte_at{{S}}(b + 9u, g8) >> (4u * h);
    return db * grid_signed{{S}}({{E}}u + 2u * idx + h, s);
}

//! section iq3_xxs
// 25 words: [d | pad] (0), qs[64] (1-16): a grid index per 4 weights, then per 32 weights a
// word (17 + ib) of 4 x 7 sign bits and a 4-bit scale s: y = d (0.5 + s) / 2 * grid * sign.
// Grid codes 0..7 are 4, 12, ..., 52, and 62 for 7.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 25u;
    let e = (k4 & 63u) * 4u;
    let a = {{W}}[b + 17u + (e >> 5u)];
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(a >> 28u)) * 0.5;
    let s = ksigns{{S}}((a >> (7u * ((e >> 3u) & 3u))) & 127u) >> (4u * ((e >> 2u) & 1u));
    return db * grid_signed{{S}}({{E}}u + byte_at{{S}}(b + 1u, e >> 2u), s);
}

//! section iq3_s
// 28 words: [d | pad] (0), qs[64] (1-16), qh[8] (17-18), signs[32] (19-26), scales[4] (27).
// Per 4 weights a 9-bit grid index (qs byte, a bit of qh); a sign bit per weight; per 32
// weights a 4-bit scale s: y = d (1 + 2 s) * grid * sign. Grid codes c are 2 c + 1.
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 28u;
    let e = (k4 & 63u) * 4u;
    let g4 = e >> 2u;
    let ib = e >> 5u;
    let idx = byte_at{{S}}(b + 1u, g4) | (((byte_at{{S}}(b + 17u, ib) >> (g4 & 7u)) & 1u) << 8u);
    let sc = ({{W}}[b + 27u] >> (4u * ib)) & 0xfu;
    let db = half_to_f32({{W}}[b]) * f32(1u + 2u * sc);
    let s = byte_at{{S}}(b + 19u, e >> 3u) >> (4u * (g4 & 1u));
    return db * grid_signed{{S}}({{E}}u + idx, s);
}

//! section iq1_s
// 13 words: [d | pad] (0), qs[32] (1-8), qh[8] u16 (9-12). Per 8 weights an 11-bit grid index
// (qs byte, 3 bits of qh); per 32 a qh word with a 3-bit scale s (bits 12-14) and the sign of
// the shift (bit 15): y = d (2 s + 1) * (grid + -1/8).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 13u;
    let e = (k4 & 63u) * 4u;
    let ib = e >> 5u;
    let qh = ({{W}}[b + 9u + (ib >> 1u)] >> (16u * (ib & 1u))) & 0xffffu;
    let dl = half_to_f32({{W}}[b]) * f32(2u * ((qh >> 12u) & 7u) + 1u);
    let dt = select(0.125, -0.125, (qh & 0x8000u) != 0u);
    let idx = byte_at{{S}}(b + 1u, e >> 3u) | (((qh >> (3u * ((e >> 3u) & 3u))) & 7u) << 8u);
    // The expanded bytes are 8 (g + 1): g exactly.
    let g = grid_bytes{{S}}({{E}}u + 2u * idx + ((e >> 2u) & 1u)) * 0.125 - 1.0;
    return dl * (g + dt);
}

//! section iq1_m
// 14 words: qs[32] (0-7), qh[16] (8-11), scales[8] as 4 u16 (12-13). The f16 scale d is the top
// nibbles of the 4 scale words; per 16 weights a 3-bit scale s (bits 3 (t % 4) of word t / 4);
// per 8 weights a qh nibble: 3 more grid-index bits and the shift's sign (bit 3).
fn deq4{{S}}(base: u32, k4: u32) -> vec4<f32> {
    let b = base + (k4 >> 6u) * 14u;
    let e = (k4 & 63u) * 4u;
    let g8 = e >> 3u;
    let t = e >> 4u;
    let s0 = {{W}}[b + 12u];
    let s1 = {{W}}[b + 13u];
    let dh = ((s0 >> 12u) & 0xfu) | ((s0 >> 24u) & 0xf0u) | (((s1 >> 12u) & 0xfu) << 8u) | ((s1 >> 16u) & 0xf000u);
    let sw = {{W}}[b + 12u + (t >> 3u)] >> (16u * ((t >> 2u) & 1u));
    let dl = half_to_f32(dh) * f32(2u * ((sw >> (3u * (t & 3u))) & 7u) + 1u);
    let nib = (byte_at{{S}}(b + 8u, g8 >> 1u) >> (4u * (g8 & 1u))) & 0xfu;
    let dt = select(0.125, -0.125, (nib & 8u) != 0u);
    let idx = byte_at{{S}}(b, g8) | ((nib & 7u) << 8u);
    // The expanded bytes are 8 (g + 1): g exactly.
    let g = grid_bytes{{S}}({{E}}u + 2u * idx + ((e >> 2u) & 1u)) * 0.125 - 1.0;
    return dl * (g + dt);
}

//! section iq2_xxs_8
// The codebook formats' 8-wide dequantization for the matvec (`deqv`): elements 8 k8 ..
// 8 k8 + 7, one grid entry (IQ2, IQ1) or two (IQ3) with one scale and one sign byte, decoded
// once for the 8 instead of once per 4 as deq4 does. Same operations in the same order as deq4.
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 17u;
    let g8 = k8 & 31u;
    let ib = g8 >> 2u;
    let l = g8 & 3u;
    let a0 = {{W}}[b + 1u + 2u * ib];
    let a1 = {{W}}[b + 2u + 2u * ib];
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(a1 >> 28u)) * 0.25;
    let at = {{E}}u + 2u * ((a0 >> (8u * l)) & 0xffu);
    let s = ksigns{{S}}((a1 >> (7u * l)) & 127u);
    return array<vec4<f32>, 2>(db * grid_signed{{S}}(at, s), db * grid_signed{{S}}(at + 1u, s >> 4u));
}

//! section iq2_xs_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 19u;
    let g8 = k8 & 31u;
    let q = ({{W}}[b + 1u + (g8 >> 1u)] >> (16u * (g8 & 1u))) & 0xffffu;
    let sc = (byte_at{{S}}(b + 17u, g8 >> 2u) >> (4u * ((g8 >> 1u) & 1u))) & 0xfu;
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(sc)) * 0.25;
    let at = {{E}}u + 2u * (q & 511u);
    let s = ksigns{{S}}(q >> 9u);
    return array<vec4<f32>, 2>(db * grid_signed{{S}}(at, s), db * grid_signed{{S}}(at + 1u, s >> 4u));
}

//! section iq2_s_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 21u;
    let g8 = k8 & 31u;
    let ib = g8 >> 2u;
    let idx = byte_at{{S}}(b + 1u, g8) | (((byte_at{{S}}(b + 17u, ib) >> (2u * (g8 & 3u))) & 3u) << 8u);
    let sc = (byte_at{{S}}(b + 19u, ib) >> (4u * ((g8 >> 1u) & 1u))) & 0xfu;
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(sc)) * 0.25;
    let at = {{E}}u + 2u * idx;
    let s = byte_at{{S}}(b + 9u, g8);
    return array<vec4<f32>, 2>(db * grid_signed{{S}}(at, s), db * grid_signed{{S}}(at + 1u, s >> 4u));
}

//! section iq3_xxs_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 25u;
    let g8 = k8 & 31u;
    let a = {{W}}[b + 17u + (g8 >> 2u)];
    let db = half_to_f32({{W}}[b]) * (0.5 + f32(a >> 28u)) * 0.5;
    let s = ksigns{{S}}((a >> (7u * (g8 & 3u))) & 127u);
    // The grid indices of weights 8 g8 .. 8 g8 + 3 and + 4 .. + 7: qs bytes 2 g8 and 2 g8 + 1.
    let qq = {{W}}[b + 1u + (g8 >> 1u)] >> (16u * (g8 & 1u));
    return array<vec4<f32>, 2>(db * grid_signed{{S}}({{E}}u + (qq & 0xffu), s),
                               db * grid_signed{{S}}({{E}}u + ((qq >> 8u) & 0xffu), s >> 4u));
}

//! section iq3_s_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 28u;
    let g8 = k8 & 31u;
    let ib = g8 >> 2u;
    // Grid indices 2 g8 and 2 g8 + 1: qs bytes, and bits 2 (g8 % 4) and + 1 of qh byte ib.
    let qq = {{W}}[b + 1u + (g8 >> 1u)] >> (16u * (g8 & 1u));
    let qh = byte_at{{S}}(b + 17u, ib) >> (2u * (g8 & 3u));
    let i0 = (qq & 0xffu) | ((qh & 1u) << 8u);
    let i1 = ((qq >> 8u) & 0xffu) | (((qh >> 1u) & 1u) << 8u);
    let sc = ({{W}}[b + 27u] >> (4u * ib)) & 0xfu;
    let db = half_to_f32({{W}}[b]) * f32(1u + 2u * sc);
    let s = byte_at{{S}}(b + 19u, g8);
    return array<vec4<f32>, 2>(db * grid_signed{{S}}({{E}}u + i0, s), db * grid_signed{{S}}({{E}}u + i1, s >> 4u));
}

//! section iq1_s_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 13u;
    let g8 = k8 & 31u;
    let ib = g8 >> 2u;
    let qh = ({{W}}[b + 9u + (ib >> 1u)] >> (16u * (ib & 1u))) & 0xffffu;
    let dl = half_to_f32({{W}}[b]) * f32(2u * ((qh >> 12u) & 7u) + 1u);
    let dt = select(0.125, -0.125, (qh & 0x8000u) != 0u);
    let at = {{E}}u + 2u * (byte_at{{S}}(b + 1u, g8) | (((qh >> (3u * (g8 & 3u))) & 7u) << 8u));
    let g0 = grid_bytes{{S}}(at) * 0.125 - 1.0;
    let g1 = grid_bytes{{S}}(at + 1u) * 0.125 - 1.0;
    return array<vec4<f32>, 2>(dl * (g0 + dt), dl * (g1 + dt));
}

//! section iq1_m_8
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 14u;
    let g8 = k8 & 31u;
    let t = g8 >> 1u;
    let s0 = {{W}}[b + 12u];
    let s1 = {{W}}[b + 13u];
    let dh = ((s0 >> 12u) & 0xfu) | ((s0 >> 24u) & 0xf0u) | (((s1 >> 12u) & 0xfu) << 8u) | ((s1 >> 16u) & 0xf000u);
    let sw = {{W}}[b + 12u + (t >> 3u)] >> (16u * ((t >> 2u) & 1u));
    let dl = half_to_f32(dh) * f32(2u * ((sw >> (3u * (t & 3u))) & 7u) + 1u);
    let nib = (byte_at{{S}}(b + 8u, g8 >> 1u) >> (4u * (g8 & 1u))) & 0xfu;
    let dt = select(0.125, -0.125, (nib & 8u) != 0u);
    let at = {{E}}u + 2u * (byte_at{{S}}(b, g8) | ((nib & 7u) << 8u));
    let g0 = grid_bytes{{S}}(at) * 0.125 - 1.0;
    let g1 = grid_bytes{{S}}(at + 1u) * 0.125 - 1.0;
    return array<vec4<f32>, 2>(dl * (g0 + dt), dl * (g1 + dt));
}

//! section tq1_0_8
// TQ1_0's 8-wide dequantization for the matvec (helpers in the tq1_0 section): two neighbouring
// words (the last 16 elements: one word, trits n and n + 1) share the block, 3^n and the scale.
fn deqv{{S}}(base: u32, k8: u32) -> array<vec4<f32>, 2> {
    let b = base + (k8 >> 5u) * 14u;
    let e = (k8 & 31u) * 8u;
    let at = tq1_at{{S}}(e);
    let last = e >= 240u;
    let p3 = tq1_pow3{{S}}(at.y);
    let d = half_to_f32({{W}}[b + 13u]);
    return array<vec4<f32>, 2>(tq1_trits{{S}}({{W}}[b + at.x], p3) * d,
                               tq1_trits{{S}}({{W}}[b + select(at.x + 1u, at.x, last)], select(p3, 3u * p3, last)) * d);
}
