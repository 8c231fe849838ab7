//! section matvec_lanes
// {{KEY}}
// y[n_offset + r] = sum_k x[k] * W[r, k] for the rows r of one weight segment (M = 1), in f32
// like the `matvec` section (exact products; only the order of the sums differs), with the
// lanes spread over the super-blocks of K so that neighbouring lanes read neighbouring words of
// W and of X: 8 lanes to a super-block of 256 weights, each lane 32 of its weights (which ones:
// the format's `lane_x`). A lane's X values are the same for every row: it loads them once per
// super-block, pre-scaled for the decoder (`lane_x`), for all R rows of the workgroup.
// Codes become f32 without integer-to-float instructions: a code c masked in place at bit p
// (p + 6 <= 23) and or-ed into the exponent of 2^23 reads as 2^23 + c 2^p exactly, so
// (that - 2^23) x 2^-p = c x; the 2^-p factors are in the pre-scaled X. A value of X below
// 2^-110 in magnitude may lose its low bits there (subnormal), far below what f32 sums keep.
// Gated and stacked forms as in the `matvec` section.
// {{SPLIT_NOTE}}
{{ENABLES}}
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QMatvecParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;           // [rows, row_words] repacked segment
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [M, k / 4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [M, n]
{{W2_DECL}}

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;
const M: u32 = 1u;
const G: u32 = {{G}}u;
const SBW: u32 = {{SBW}}u; // words per super-block of 256 weights
const MAGIC: u32 = 0x4b000000u; // the exponent of 2^23

// The lane's 32 X values in the decoder's order and scale, and the plain sums the format needs.
struct LX {
    v: array<vec4<f32>, 8>,
    s: vec4<f32>,
}

{{DEQ}}

{{EPILOGUE}}

{{REDUCE_DECL}}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>{{EXTRA_BUILTINS}}) {
    let row0 = (wid.x + wid.y * nwg.x) * R;
    let nsb = p.k / 256u;
    let t = lid % 8u; // the lane's slot in its super-block
    var acc: array<f32, R * M * G>; // [G, R]
    for (var sb = lid / 8u; sb < nsb; sb += WG / 8u) {
        let xl = lane_x(sb * 64u, t);
        for (var r = 0u; r < R; r++) {
            let row = min(row0 + r, p.rows - 1u); // tail rows recompute the last row, unwritten
{{LANE_ACC}}
        }
    }
{{REDUCE}}
}

//! section acc_plain
            acc[r] += lane_dot(row * p.row_words + sb * SBW, t, xl);

//! section acc_gated
            acc[r] += lane_dot(row * p.row_words + sb * SBW, t, xl);
            acc[R + r] += lane_dot_2(row * p.row_words + sb * SBW, t, xl);

//! section acc_stacked2
            if (row < p.part1) {
                acc[r] += lane_dot(row * p.row_words + sb * SBW, t, xl);
            } else {
                acc[r] += lane_dot_2((row - p.part1) * p.row_words + sb * SBW, t, xl);
            }

//! section acc_stacked3
            if (row < p.part1) {
                acc[r] += lane_dot(row * p.row_words + sb * SBW, t, xl);
            } else if (row < p.part2) {
                acc[r] += lane_dot_2((row - p.part1) * p.row_words + sb * SBW, t, xl);
            } else {
                acc[r] += lane_dot_3((row - p.part2) * p.row_words + sb * SBW, t, xl);
            }

//! section q4_k_x
// Q4_K: 36 words a super-block, [d | dmin] [scales x 3] [qs x 32]. Word q of qs holds elements
// 4 (q % 8) .. + 3 of sub-block 2 (q / 8) in its low nibbles and of sub-block 2 (q / 8) + 1 in
// its high ones. Slot t = 4 h + u takes words 2u, 2u + 1 (+ 16 h) and 2u + 8, 2u + 9 (+ 16 h):
// sub-blocks 4h .. 4h + 3, elements 8u .. 8u + 7 of each. Nibble j of a word is masked in place
// at bit 4j for j <= 4 and, shifted down by 12, at 4j - 12 for j = 5, 6, 7: elements 0-3 of the
// low sub-block sit at bits 0, 8, 16, 12, of the high one at 4, 12, 8, 16.
const LO_SCALE = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.000244140625);
const HI_SCALE = vec4<f32>(0.0625, 0.000244140625, 0.00390625, 0.0000152587890625);

// X's elements of the lane: v[2i + e] for sub-block 4h + i, elements 8u + 4e .. + 3 (i in 0..3).
fn lane_x(x4: u32, t: u32) -> LX {
    let b = x4 + 32u * (t >> 2u) + 2u * (t & 3u);
    var o: LX;
    for (var i = 0u; i < 4u; i++) {
        let a = x[b + 8u * i];
        let c = x[b + 8u * i + 1u];
        o.s[i] = (a.x + a.y + a.z + a.w) + (c.x + c.y + c.z + c.w);
        let sc = select(LO_SCALE, HI_SCALE, (i & 1u) == 1u);
        o.v[2u * i] = a * sc;
        o.v[2u * i + 1u] = c * sc;
    }
    return o;
}

//! section q4_k_dot
// The 8 codes of word q against the pre-scaled X of its two sub-blocks.
fn nib_dot(q: u32, xa: vec4<f32>, xb: vec4<f32>) -> vec2<f32> {
    let s = q >> 12u;
    let lo = bitcast<vec4<f32>>((vec4<u32>(q, q, q, s) & vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000u)) | vec4<u32>(MAGIC));
    let hi = bitcast<vec4<f32>>((vec4<u32>(q, q, s, s) & vec4<u32>(0xf0u, 0xf000u, 0xf00u, 0xf0000u)) | vec4<u32>(MAGIC));
    return vec2<f32>(dot(xa, lo - vec4<f32>(8388608.0)), dot(xb, hi - vec4<f32>(8388608.0)));
}

// 4 bytes (each below 64) as f32 exactly, the fourth moved down to bit 16.
fn bytes_f(v: u32) -> vec4<f32> {
    let f = bitcast<vec4<f32>>((vec4<u32>(v, v, v, v >> 8u) & vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u)) | vec4<u32>(MAGIC));
    return (f - vec4<f32>(8388608.0)) * vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.0000152587890625);
}

fn lane_dot(b: u32, t: u32, v: LX) -> f32 {
    let h = t >> 2u;
    let q = b + 4u + 16u * h + 2u * (t & 3u);
    let d0 = nib_dot(w[q], v.v[0], v.v[2]);
    let d1 = nib_dot(w[q + 1u], v.v[1], v.v[3]);
    let d2 = nib_dot(w[q + 8u], v.v[4], v.v[6]);
    let d3 = nib_dot(w[q + 9u], v.v[5], v.v[7]);
    // ggml's get_scale_min_k4 for sub-blocks 4h .. 4h + 3, one byte each.
    let sy = w[b + 1u];
    let sz = w[b + 2u];
    let sw = w[b + 3u];
    let first = h == 0u;
    let sc = select((sw & 0x0f0f0f0fu) | ((sy >> 2u) & 0x30303030u), sy & 0x3f3f3f3fu, first);
    let mn = select(((sw >> 4u) & 0x0f0f0f0fu) | ((sz >> 2u) & 0x30303030u), sz & 0x3f3f3f3fu, first);
    let hd = w[b];
    let dots = vec4<f32>(d0.x + d1.x, d0.y + d1.y, d2.x + d3.x, d2.y + d3.y);
    return half_to_f32(hd) * dot(bytes_f(sc), dots) - half_to_f32(hd >> 16u) * dot(bytes_f(mn), v.s);
}

//! section q6_k_x
// Q6_K: 53 words a super-block, ql[128] (words 0-31), qh[64] (32-47), scales[16] signed
// (48-51), [d | pad] (52). Element 128 h + 32 c + l (l < 32) is the low (c < 2) or high nibble
// of ql byte 64 h + 32 (c % 2) + l, plus bits 2c of qh byte 32 h + l as bits 4-5, minus 32,
// times scale 8 h + 2 c + l / 16. Slot t = 4 h + u takes l = 8u .. 8u + 7 for c = 0 .. 3: ql
// words 16 h + 2u (+1) and + 8, qh words 32 + 8 h + 2u (+1), the four scales
// 8 h + u / 2 + 2 c. A code byte k is masked in place at bit 8k (k < 3) or, shifted down by 8,
// at bit 16.
const Q6_SCALE = vec4<f32>(1.0, 0.00390625, 0.0000152587890625, 0.0000152587890625);

// X's elements of the lane: v[2c + e] = elements 128 h + 32 c + 8u + 4e .. + 3.
fn lane_x(x4: u32, t: u32) -> LX {
    let b = x4 + 32u * (t >> 2u) + 2u * (t & 3u);
    var o: LX;
    for (var i = 0u; i < 8u; i++) {
        o.v[i] = x[b + 8u * (i >> 1u) + (i & 1u)] * Q6_SCALE;
    }
    return o;
}

//! section q6_k_dot
// Four 6-bit codes (low nibbles lq, high bits from hq's bits 4-5 after the caller's shift)
// against their pre-scaled X.
fn code_dot(lq: u32, hq: u32, xv: vec4<f32>) -> f32 {
    let c = (lq & 0x0f0f0f0fu) | (hq & 0x30303030u);
    let f = bitcast<vec4<f32>>((vec4<u32>(c, c, c, c >> 8u) & vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u)) | vec4<u32>(MAGIC));
    // Minus 2^23 and the code offset 32 (in each byte's place).
    return dot(xv, f - vec4<f32>(8388640.0, 8396800.0, 10485760.0, 10485760.0));
}

// Signed byte k of v as f32.
fn sbyte(v: u32, k: u32) -> f32 {
    return f32(bitcast<i32>(v << (24u - 8u * k)) >> 24u);
}

fn lane_dot(b: u32, t: u32, v: LX) -> f32 {
    let h = t >> 2u;
    let u = t & 3u;
    let a = b + 16u * h + 2u * u;
    let qh = b + 32u + 8u * h + 2u * u;
    var s = vec4<f32>(0.0);
    for (var e = 0u; e < 2u; e++) {
        let l0 = w[a + e];
        let l1 = w[a + 8u + e];
        let hb = w[qh + e];
        s += vec4<f32>(code_dot(l0, hb << 4u, v.v[e]),
                       code_dot(l1, hb << 2u, v.v[2u + e]),
                       code_dot(l0 >> 4u, hb, v.v[4u + e]),
                       code_dot(l1 >> 4u, hb >> 2u, v.v[6u + e]));
    }
    let s0 = w[b + 48u + 2u * h];
    let s1 = w[b + 49u + 2u * h];
    let k = u >> 1u;
    let sc = vec4<f32>(sbyte(s0, k), sbyte(s0, k + 2u), sbyte(s1, k), sbyte(s1, k + 2u));
    return half_to_f32(w[b + 52u]) * dot(sc, s);
}
