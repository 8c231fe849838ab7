//! section quantize
// {{KEY}}
// Quantizes activations X [M, K] f32 to 8 bits per element in blocks of 32 (as ggml's q8_1):
// xq holds the codes, 4 signed bytes per word, and xs holds (d, d * sum of the codes) per
// block, with d = max |x| / 127 over the block. One invocation per block.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QuantizeQ8Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // [M, K / 4]
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;       // [M, K / 4]
@group(0) @binding(3) var<storage, read_write> xs: array<vec2<f32>>; // [M, K / 32]

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.x + gid.y * nwg.x * {{WG}}u;
    if (b >= p.blocks) {
        return;
    }
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[b * 8u + i];
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = amax / 127.0;
    let id = select(0.0, 127.0 / amax, amax > 0.0);
    var sum = 0i;
    for (var i = 0u; i < 8u; i++) {
        let q = clamp(vec4<i32>(round(v[i] * id)), vec4<i32>(-127), vec4<i32>(127));
        sum += q.x + q.y + q.z + q.w;
        xq[b * 8u + i] = pack4xI8(q);
    }
    xs[b] = vec2<f32>(d, d * f32(sum));
}

//! section matvec
// {{KEY}}
// y[m, n_offset + r] = sum_k x[m, k] * W[r, k] for the rows r of one weight segment, M <= 8,
// with X quantized to 8 bits per block of 32 (the `quantize` section) and W's codes unpacked
// to signed bytes, so each 4 products are one dot4I8Packed. A block of 32 weights gives
//   d_x * (sa * dot(codes 0-15) + sb * dot(codes 16-31)) + mn * (d_x * sum of x's codes)
// where sa, sb are the weight scales of the block's halves and mn its offset (K-quant mins).
// A workgroup owns R rows; WG / R invocations share a row and stride over its blocks.
// {{SPLIT_NOTE}}
{{ENABLES}}
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QMatvecParams;
@group(0) @binding(1) var<storage, read> w: array<{{WTYPE}}>;    // [rows, row_words] repacked segment (words, or vec4s of them)
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;   // [M, K / 16] codes
@group(0) @binding(3) var<storage, read> xs: array<vec2<f32>>;   // [M, K / 32] (d, d * sum)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;    // [M, n]

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;
const M: u32 = {{M}}u;
const T: u32 = WG / R; // invocations per row
const BPS: u32 = {{BPS}}u; // blocks of 32 per step of the K loop

fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y) + dot4I8Packed(a.z, b.z) + dot4I8Packed(a.w, b.w);
}

{{DEQ}}

{{REDUCE_DECL}}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>{{EXTRA_BUILTINS}}) {
    let r = lid / T;
    let lane = lid % T;
    let row_u = (wid.x + wid.y * nwg.x) * R + r;
    let ok = row_u < p.rows;
    let row = min(row_u, p.rows - 1u); // tail rows recompute the last row, unwritten
    let nb = p.k / 32u;
    let base = row * p.row_words;
    var acc: array<f32, M>;
    // Each step takes BPS neighbouring blocks (blocks that share loads: Q4_K's two nibble
    // halves of the same bytes).
    for (var j = lane; j < nb / BPS; j += T) {
        var wbs = wblocks(base, j);
        for (var u = 0u; u < BPS; u++) {
            let wb = wbs[u];
            let jb = j * BPS + u;
            for (var m = 0u; m < M; m++) {
                let xi = (m * nb + jb) * 2u;
                let s = xs[m * nb + jb];
                let ia = dot16(wb.a, xq[xi]);
                let ib = dot16(wb.b, xq[xi + 1u]);
                acc[m] += s.x * (wb.sa * f32(ia) + wb.sb * f32(ib)) + wb.mn * s.y;
            }
        }
    }
{{REDUCE}}
}

//! section reduce_workgroup
var<workgroup> red: array<f32, M * WG>; // [M, WG] partial sums

//! section reduce_workgroup_body
    for (var m = 0u; m < M; m++) {
        red[m * WG + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = T / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var m = 0u; m < M; m++) {
                red[m * WG + lid] += red[m * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && ok) {
        for (var m = 0u; m < M; m++) {
            y[m * p.n + p.n_offset + row_u] = red[m * WG + lid];
        }
    }

//! section reduce_subgroup
const MAX_SG: u32 = {{MAX_SG}}u; // most subgroups a workgroup can hold
var<workgroup> red: array<f32, M * MAX_SG>; // [M, MAX_SG] subgroup sums

//! section reduce_subgroup_body
    // The config check guarantees T >= the subgroup size, so no subgroup spans two rows.
    for (var m = 0u; m < M; m++) {
        let s = subgroupAdd(acc[m]);
        if (sg_lane == 0u) {
            red[m * MAX_SG + sg_id] = s;
        }
    }
    workgroupBarrier();
    if (lane == 0u && ok) {
        let per = T / sg_size;
        let g0 = lid / sg_size;
        for (var m = 0u; m < M; m++) {
            var t = 0.0;
            for (var g = 0u; g < per; g++) {
                t += red[m * MAX_SG + g0 + g];
            }
            y[m * p.n + p.n_offset + row_u] = t;
        }
    }

//! section q8_0
// 9 words: [d | pad] [qs x8], qs signed bytes.
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + j * 9u;
    let d = half_to_f32(w[b]);
    return W8(vec4<u32>(w[b + 1u], w[b + 2u], w[b + 3u], w[b + 4u]),
              vec4<u32>(w[b + 5u], w[b + 6u], w[b + 7u], w[b + 8u]), d, d, 0.0);
}

//! section q4_0
// 5 words: [d | pad] [qs x4]; elements 0-15 in the low nibbles, 16-31 in the high, minus 8.
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + j * 5u;
    let d = half_to_f32(w[b]);
    let q = vec4<u32>(w[b + 1u], w[b + 2u], w[b + 3u], w[b + 4u]);
    let lo = sub_bytes(q & vec4<u32>(0x0f0f0f0fu), 0x08080808u);
    let hi = sub_bytes((q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu), 0x08080808u);
    return W8(lo, hi, d, d, 0.0);
}

//! section q5_0
// 6 words: [d | pad] [qh] [qs x4]; element i is nibble i of qs plus bit i of qh as bit 4,
// minus 16.
// Bits 0-3 of h to bit 4 of bytes 0-3.
fn spread4(h: u32) -> u32 {
    return ((h & 1u) << 4u) | ((h & 2u) << 11u) | ((h & 4u) << 18u) | ((h & 8u) << 25u);
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + j * 6u;
    let d = half_to_f32(w[b]);
    let qh = w[b + 1u];
    let q = vec4<u32>(w[b + 2u], w[b + 3u], w[b + 4u], w[b + 5u]);
    let ha = vec4<u32>(spread4(qh), spread4(qh >> 4u), spread4(qh >> 8u), spread4(qh >> 12u));
    let hb = vec4<u32>(spread4(qh >> 16u), spread4(qh >> 20u), spread4(qh >> 24u), spread4(qh >> 28u));
    let lo = sub_bytes((q & vec4<u32>(0x0f0f0f0fu)) | ha, 0x10101010u);
    let hi = sub_bytes(((q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu)) | hb, 0x10101010u);
    return W8(lo, hi, d, d, 0.0);
}

//! section q4_k
// 36 words = 9 vec4s: [d | dmin, scales[12]] (vec4 0), qs[128] (vec4s 1-8); rows are whole
// super-blocks, so every super-block starts on a vec4. Sub-block s (32 elements) is the low
// (even s) or high (odd s) nibbles of qs bytes 32 * (s / 2) ...; its weights are
// d * sc[s] * q - dmin * m[s]. Step j takes sub-blocks 2 (j % 4) and 2 (j % 4) + 1 of
// super-block j / 4: both halves of the same 32 bytes, in two 16-byte loads.

// Byte i of the 12 scale bytes (words 1-3 of the header).
fn kbyte(h: vec4<u32>, i: u32) -> u32 {
    return (h[1u + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xffu;
}

// ggml's get_scale_min_k4: 6-bit scale and min of sub-block s.
fn kscale(h: vec4<u32>, s: u32) -> vec2<u32> {
    if (s < 4u) {
        return vec2<u32>(kbyte(h, s) & 63u, kbyte(h, s + 4u) & 63u);
    }
    return vec2<u32>((kbyte(h, s + 4u) & 0xfu) | ((kbyte(h, s - 4u) >> 6u) << 4u),
                     (kbyte(h, s + 4u) >> 4u) | ((kbyte(h, s) >> 6u) << 4u));
}

fn wblocks(base: u32, j: u32) -> array<W8, 2> {
    let b = (base >> 2u) + (j >> 2u) * 9u;
    let pr = j & 3u;
    let hd = w[b];
    let qa = w[b + 1u + 2u * pr];
    let qb = w[b + 2u + 2u * pr];
    let m4 = vec4<u32>(0x0f0f0f0fu);
    let sh = vec4<u32>(4u);
    let s0 = kscale(hd, 2u * pr);
    let s1 = kscale(hd, 2u * pr + 1u);
    let d = half_to_f32(hd.x);
    let dmin = half_to_f32(hd.x >> 16u);
    let d0 = d * f32(s0.x);
    let d1 = d * f32(s1.x);
    return array<W8, 2>(W8(qa & m4, qb & m4, d0, d0, -(dmin * f32(s0.y))),
                        W8((qa >> sh) & m4, (qb >> sh) & m4, d1, d1, -(dmin * f32(s1.y))));
}

//! section q6_k
// 53 words: ql[128] (0-31), qh[64] (32-47), scales[16] signed (48-51), [d | pad] (52).
// Sub-block s = 4 h + t (32 elements): low 4 bits from the nibble t / 2 of ql bytes
// 64 h + 32 (t % 2) ..., high 2 bits from bits 2 t of qh bytes 32 h ..., minus 32; the two
// halves have scales sc[8 h + 2 t] and sc[8 h + 2 t + 1].
fn sc6(at: u32, i: u32) -> f32 {
    return f32(bitcast<i32>(w[at + (i >> 2u)] << (24u - 8u * (i & 3u))) >> 24u);
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 53u;
    let s = j & 7u;
    let h = s >> 2u;
    let t = s & 3u;
    let ql = b + 16u * h + 8u * (t & 1u);
    let qh = b + 32u + 8u * h;
    let shl = vec4<u32>(4u * (t >> 1u));
    let shh = vec4<u32>(2u * t);
    let m4 = vec4<u32>(0x0f0f0f0fu);
    let m2 = vec4<u32>(0x03030303u);
    let la = (vec4<u32>(w[ql], w[ql + 1u], w[ql + 2u], w[ql + 3u]) >> shl) & m4;
    let lb = (vec4<u32>(w[ql + 4u], w[ql + 5u], w[ql + 6u], w[ql + 7u]) >> shl) & m4;
    let ha = (vec4<u32>(w[qh], w[qh + 1u], w[qh + 2u], w[qh + 3u]) >> shh) & m2;
    let hb = (vec4<u32>(w[qh + 4u], w[qh + 5u], w[qh + 6u], w[qh + 7u]) >> shh) & m2;
    let d = half_to_f32(w[b + 52u]);
    let i = 8u * h + 2u * t;
    return W8(sub_bytes(la | (ha << vec4<u32>(4u)), 0x20202020u),
              sub_bytes(lb | (hb << vec4<u32>(4u)), 0x20202020u),
              d * sc6(b + 48u, i), d * sc6(b + 48u, i + 1u), 0.0);
}

//! section lut_bytes
// The bytes of v (codes 0..15) replaced by the signed-byte values of a 16-entry table packed 4
// per word, little-endian, in t (IQ4NL_VALUES, MXFP4_VALUES in jit/src/quant/lowbit.rs). The
// word of each code is picked by selects on its bits 2 and 3, not by indexing t (a vector
// indexed by a runtime value may live in slow local memory).
fn lut_word(t: vec4<u32>, v: u32) -> u32 {
    let c = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu);
    let b2 = (c & vec4<u32>(4u)) != vec4<u32>(0u);
    let b3 = c >= vec4<u32>(8u);
    let w = select(select(vec4<u32>(t.x), vec4<u32>(t.y), b2), select(vec4<u32>(t.z), vec4<u32>(t.w), b2), b3);
    return pack4xU8(w >> (8u * (c & vec4<u32>(3u))));
}

fn lut_bytes(t: vec4<u32>, v: vec4<u32>) -> vec4<u32> {
    return vec4<u32>(lut_word(t, v.x), lut_word(t, v.y), lut_word(t, v.z), lut_word(t, v.w));
}

//! section iq4_nl
// 5 words: [d | pad] [qs x4]; Q4_0's nibbles looked up in kvalues_iq4nl.
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + j * 5u;
    let d = half_to_f32(w[b]);
    let q = vec4<u32>(w[b + 1u], w[b + 2u], w[b + 3u], w[b + 4u]);
    let kv = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
    let m4 = vec4<u32>(0x0f0f0f0fu);
    return W8(lut_bytes(kv, q & m4), lut_bytes(kv, (q >> vec4<u32>(4u)) & m4), d, d, 0.0);
}

//! section iq4_xs
// 34 words: [d | scales_h] (0), scales_l (1), qs[128] (2-33); block j is sub-block j % 8 of
// super-block j / 8, an IQ4_NL block with scale d * (6-bit scale - 32).
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 34u;
    let ib = j & 7u;
    let h = w[b];
    let ls = ((w[b + 1u] >> (4u * ib)) & 0xfu) | (((h >> (16u + 2u * ib)) & 3u) << 4u);
    let dl = half_to_f32(h) * f32(i32(ls) - 32);
    let qb = b + 2u + 4u * ib;
    let q = vec4<u32>(w[qb], w[qb + 1u], w[qb + 2u], w[qb + 3u]);
    let kv = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
    let m4 = vec4<u32>(0x0f0f0f0fu);
    return W8(lut_bytes(kv, q & m4), lut_bytes(kv, (q >> vec4<u32>(4u)) & m4), dl, dl, 0.0);
}

//! section mxfp4
// 5 words: [e | pad] [qs x4]; Q4_0's nibbles looked up in kvalues_mxfp4 (E2M1 doubled), scale
// 2^(e - 128).
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + j * 5u;
    let e = w[b] & 0xffu;
    let d = bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << e, e < 2u));
    let q = vec4<u32>(w[b + 1u], w[b + 2u], w[b + 3u], w[b + 4u]);
    let kv = vec4<u32>(0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu);
    let m4 = vec4<u32>(0x0f0f0f0fu);
    return W8(lut_bytes(kv, q & m4), lut_bytes(kv, (q >> vec4<u32>(4u)) & m4), d, d, 0.0);
}

//! section tq2_0
// 17 words: qs[64] (0-15), [d | pad] (16). Block j is sub-block s = j % 8 of super-block j / 8:
// bits 2 (s % 4) of qs bytes 32 (s / 4) ..., minus 1.
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 17u;
    let s = j & 7u;
    let qa = b + 8u * (s >> 2u);
    let sh = vec4<u32>(2u * (s & 3u));
    let m2 = vec4<u32>(0x03030303u);
    let a = (vec4<u32>(w[qa], w[qa + 1u], w[qa + 2u], w[qa + 3u]) >> sh) & m2;
    let c = (vec4<u32>(w[qa + 4u], w[qa + 5u], w[qa + 6u], w[qa + 7u]) >> sh) & m2;
    let d = half_to_f32(w[b + 16u]);
    return W8(sub_bytes(a, 0x01010101u), sub_bytes(c, 0x01010101u), d, d, 0.0);
}

//! section tq1_0
// 14 words: qs[48] (0-11), qh[4] (12), [d | pad] (13). Trit n of a byte is
// ((byte * 3^n mod 256) * 3) >> 8, minus 1. Sub-block s = j % 8 of super-block j / 8: s < 5 is
// trit s of qs bytes 0-31; s = 5, 6 are trits 2 (s - 5) and 2 (s - 5) + 1 of qs bytes 32-47;
// s = 7 is trit 4 of qs bytes 32-47, then trits 0-3 of the 4 qh bytes.
fn trits(word: u32, p: u32) -> u32 {
    let q = (bytes_shr(word, 0u) * p) & vec4<u32>(0xffu);
    return pack4xI8(vec4<i32>((q * 3u) >> vec4<u32>(8u)) - vec4<i32>(1));
}

fn trits4(q: vec4<u32>, n: u32) -> vec4<u32> {
    // 3^n without indexing by n (see lut_bytes).
    let p = select(select(select(select(1u, 3u, n == 1u), 9u, n == 2u), 27u, n == 3u), 81u, n == 4u);
    return vec4<u32>(trits(q.x, p), trits(q.y, p), trits(q.z, p), trits(q.w, p));
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 14u;
    let s = j & 7u;
    let d = half_to_f32(w[b + 13u]);
    if (s < 5u) {
        let qa = vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]);
        let qb = vec4<u32>(w[b + 4u], w[b + 5u], w[b + 6u], w[b + 7u]);
        return W8(trits4(qa, s), trits4(qb, s), d, d, 0.0);
    }
    let q = vec4<u32>(w[b + 8u], w[b + 9u], w[b + 10u], w[b + 11u]);
    let n = 2u * (s - 5u);
    if (s < 7u) {
        return W8(trits4(q, n), trits4(q, n + 1u), d, d, 0.0);
    }
    let h = w[b + 12u];
    return W8(trits4(q, 4u), vec4<u32>(trits(h, 1u), trits(h, 3u), trits(h, 9u), trits(h, 27u)), d, d, 0.0);
}

//! section w8
// 32 weights as signed bytes (a: elements 0-15, b: 16-31), their scales and offset.
struct W8 {
    a: vec4<u32>,
    b: vec4<u32>,
    sa: f32,
    sb: f32,
    mn: f32,
}

// Each byte of v minus c (bytes of v below 128, of c at most 128), wrapped to a signed byte.
fn sub_bytes(v: vec4<u32>, c: u32) -> vec4<u32> {
    return ((v | vec4<u32>(0x80808080u)) - vec4<u32>(c)) ^ vec4<u32>(0x80808080u);
}

//! section wblocks_one
// One block per step (every format but Q4_K).
fn wblocks(base: u32, j: u32) -> array<W8, 1> {
    return array<W8, 1>(wblock(base, j));
}

//! section subgroup_builtins
,
        @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_id) sg_id: u32,
        @builtin(subgroup_size) sg_size: u32

//! section codebook_bytes
// The codebook formats. Grid values times signs are small integers, so a block of 32 unpacks
// to signed bytes like the other formats; the values come as whole words from the grid
// table's byte-expanded grids ({{B}}: jit/src/quant/codebook.rs, `gpu_grid_table`), and signs
// as byte masks from its sign masks ({{M}}): decoding codes per byte cost more ALU work than
// reading the bytes (the IQ2 matvecs were ALU-bound on an H100).
// The unsigned bytes of v (1..127) negated where m's bytes are 0xff: 256 - b never carries.
fn neg_bytes(v: u32, m: u32) -> u32 {
    return (v ^ m) + (m & 0x01010101u);
}

// The 8 sign masks of sign byte s.
fn sign_masks(s: u32) -> vec2<u32> {
    let i = {{M}}u + 2u * s;
    return vec2<u32>(grid[i], grid[i + 1u]);
}

// An 8-value entry idx of the expanded grid at word `at`, negated by sign byte s.
fn grid8(at: u32, idx: u32, s: u32) -> vec2<u32> {
    let i = at + 2u * idx;
    let m = sign_masks(s);
    return vec2<u32>(neg_bytes(grid[i], m.x), neg_bytes(grid[i + 1u], m.y));
}

// IQ1: an entry of 8 (g + 1) bytes to 8 (grid + shift) = 8 g +- 1.
fn grid8_iq1(idx: u32, neg: bool) -> vec2<u32> {
    let i = {{B}}u + 2u * idx;
    let c = select(0x07070707u, 0x09090909u, neg);
    let v = vec2<u32>(grid[i], grid[i + 1u]);
    return ((v | vec2<u32>(0x80808080u)) - vec2<u32>(c)) ^ vec2<u32>(0x80808080u);
}

//! section iq2_xxs
// 17 words: [d | pad], then 2 words per block of 32 (grid indices; signs and scale).
fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 17u;
    let ib = j & 7u;
    let a0 = w[b + 1u + 2u * ib];
    let a1 = w[b + 2u + 2u * ib];
    let db = half_to_f32(w[b]) * (0.5 + f32(a1 >> 28u)) * 0.25;
    let q0 = grid8({{B}}u, a0 & 0xffu, ksigns(a1 & 127u));
    let q1 = grid8({{B}}u, (a0 >> 8u) & 0xffu, ksigns((a1 >> 7u) & 127u));
    let q2 = grid8({{B}}u, (a0 >> 16u) & 0xffu, ksigns((a1 >> 14u) & 127u));
    let q3 = grid8({{B}}u, a0 >> 24u, ksigns((a1 >> 21u) & 127u));
    return W8(vec4<u32>(q0, q1), vec4<u32>(q2, q3), db, db, 0.0);
}

//! section iq2_xs
// 19 words: [d | pad], qs (1-16: 9-bit grid index and 7 sign bits per 8), scales (17-18).
fn iq2xs_group(q: u32) -> vec2<u32> {
    return grid8({{B}}u, q & 511u, ksigns((q >> 9u) & 127u));
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 19u;
    let ib = j & 7u;
    let d = half_to_f32(w[b]);
    let sc = (w[b + 17u + (ib >> 2u)] >> (8u * (ib & 3u))) & 0xffu;
    let q0 = w[b + 1u + 2u * ib];
    let q1 = w[b + 2u + 2u * ib];
    let a = vec4<u32>(iq2xs_group(q0 & 0xffffu), iq2xs_group(q0 >> 16u));
    let c = vec4<u32>(iq2xs_group(q1 & 0xffffu), iq2xs_group(q1 >> 16u));
    return W8(a, c, d * (0.5 + f32(sc & 0xfu)) * 0.25, d * (0.5 + f32(sc >> 4u)) * 0.25, 0.0);
}

//! section iq2_s
// 21 words: [d | pad], qs (1-8), signs (9-16), qh (17-18), scales (19-20).
fn iq2s_group(qs: u32, qh: u32, sg: u32, l: u32) -> vec2<u32> {
    let idx = ((qs >> (8u * l)) & 0xffu) | (((qh >> (2u * l)) & 3u) << 8u);
    return grid8({{B}}u, idx, (sg >> (8u * l)) & 0xffu);
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 21u;
    let ib = j & 7u;
    let d = half_to_f32(w[b]);
    let qs = w[b + 1u + ib];
    let sg = w[b + 9u + ib];
    let qh = (w[b + 17u + (ib >> 2u)] >> (8u * (ib & 3u))) & 0xffu;
    let sc = (w[b + 19u + (ib >> 2u)] >> (8u * (ib & 3u))) & 0xffu;
    let a = vec4<u32>(iq2s_group(qs, qh, sg, 0u), iq2s_group(qs, qh, sg, 1u));
    let c = vec4<u32>(iq2s_group(qs, qh, sg, 2u), iq2s_group(qs, qh, sg, 3u));
    return W8(a, c, d * (0.5 + f32(sc & 0xfu)) * 0.25, d * (0.5 + f32(sc >> 4u)) * 0.25, 0.0);
}

//! section iq3_xxs
// 25 words: [d | pad], qs (1-16: a grid index per 4), a word per block of 32 (17-24): 4 x 7
// sign bits and the scale. Entries are one word of 4 values.
fn iq3xxs_pair(qs: u32, s: u32, h: u32) -> vec2<u32> {
    let m = sign_masks(s);
    let i0 = (qs >> (16u * h)) & 0xffu;
    let i1 = (qs >> (16u * h + 8u)) & 0xffu;
    return vec2<u32>(neg_bytes(grid[{{B}}u + i0], m.x), neg_bytes(grid[{{B}}u + i1], m.y));
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 25u;
    let ib = j & 7u;
    let a = w[b + 17u + ib];
    let db = half_to_f32(w[b]) * (0.5 + f32(a >> 28u)) * 0.5;
    let q0 = w[b + 1u + 2u * ib];
    let q1 = w[b + 2u + 2u * ib];
    let x = vec4<u32>(iq3xxs_pair(q0, ksigns(a & 127u), 0u), iq3xxs_pair(q0, ksigns((a >> 7u) & 127u), 1u));
    let y = vec4<u32>(iq3xxs_pair(q1, ksigns((a >> 14u) & 127u), 0u), iq3xxs_pair(q1, ksigns((a >> 21u) & 127u), 1u));
    return W8(x, y, db, db, 0.0);
}

//! section iq3_s
// 28 words: [d | pad], qs (1-16), qh (17-18), signs (19-26), scales (27). Entries are one word
// of 4 values; a sign byte covers two.
fn iq3s_pair(q: u32, qh: u32, sg: u32, p: u32) -> vec2<u32> {
    // Entries 2p and 2p + 1 of the block: bytes 2 (p % 2) .. of q, bits 2p .. of qh.
    let i0 = ((q >> (16u * (p & 1u))) & 0xffu) | (((qh >> (2u * p)) & 1u) << 8u);
    let i1 = ((q >> (16u * (p & 1u) + 8u)) & 0xffu) | (((qh >> (2u * p + 1u)) & 1u) << 8u);
    let m = sign_masks((sg >> (8u * p)) & 0xffu);
    return vec2<u32>(neg_bytes(grid[{{B}}u + i0], m.x), neg_bytes(grid[{{B}}u + i1], m.y));
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 28u;
    let ib = j & 7u;
    let db = half_to_f32(w[b]) * f32(1u + 2u * ((w[b + 27u] >> (4u * ib)) & 0xfu));
    let q0 = w[b + 1u + 2u * ib];
    let q1 = w[b + 2u + 2u * ib];
    let qh = (w[b + 17u + (ib >> 2u)] >> (8u * (ib & 3u))) & 0xffu;
    let sg = w[b + 19u + ib];
    let x = vec4<u32>(iq3s_pair(q0, qh, sg, 0u), iq3s_pair(q0, qh, sg, 1u));
    let y = vec4<u32>(iq3s_pair(q1, qh, sg, 2u), iq3s_pair(q1, qh, sg, 3u));
    return W8(x, y, db, db, 0.0);
}

//! section iq1_s
// 13 words: [d | pad], qs (1-8), qh u16 (9-12). Codes 8 (grid + shift) = 8 g +- 1, so the
// block scale is d (2 s + 1) / 8.
fn iq1s_group(qs: u32, qh: u32, l: u32) -> vec2<u32> {
    let idx = ((qs >> (8u * l)) & 0xffu) | (((qh >> (3u * l)) & 7u) << 8u);
    return grid8_iq1(idx, (qh & 0x8000u) != 0u);
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 13u;
    let ib = j & 7u;
    let qh = (w[b + 9u + (ib >> 1u)] >> (16u * (ib & 1u))) & 0xffffu;
    let dl = half_to_f32(w[b]) * f32(2u * ((qh >> 12u) & 7u) + 1u) * 0.125;
    let qs = w[b + 1u + ib];
    let x = vec4<u32>(iq1s_group(qs, qh, 0u), iq1s_group(qs, qh, 1u));
    let y = vec4<u32>(iq1s_group(qs, qh, 2u), iq1s_group(qs, qh, 3u));
    return W8(x, y, dl, dl, 0.0);
}

//! section iq1_m
// 14 words: qs (0-7), qh (8-11), scales (12-13; the f16 scale in their top nibbles). Codes as
// IQ1_S; a 3-bit scale per 16 weights.
fn iq1m_group(qs: u32, qh: u32, l: u32) -> vec2<u32> {
    let nib = (qh >> (4u * l)) & 0xfu;
    let idx = ((qs >> (8u * l)) & 0xffu) | ((nib & 7u) << 8u);
    return grid8_iq1(idx, (nib & 8u) != 0u);
}

fn wblock(base: u32, j: u32) -> W8 {
    let b = base + (j >> 3u) * 14u;
    let ib = j & 7u;
    let s0 = w[b + 12u];
    let s1 = w[b + 13u];
    let dh = ((s0 >> 12u) & 0xfu) | ((s0 >> 24u) & 0xf0u) | (((s1 >> 12u) & 0xfu) << 8u) | ((s1 >> 16u) & 0xf000u);
    let d = half_to_f32(dh);
    let sw = w[b + 12u + (ib >> 2u)] >> (16u * ((ib >> 1u) & 1u) + 6u * (ib & 1u));
    let qs = w[b + ib];
    let qh = (w[b + 8u + (ib >> 1u)] >> (16u * (ib & 1u))) & 0xffffu;
    let x = vec4<u32>(iq1m_group(qs, qh, 0u), iq1m_group(qs, qh, 1u));
    let y = vec4<u32>(iq1m_group(qs, qh, 2u), iq1m_group(qs, qh, 3u));
    return W8(x, y, d * f32(2u * (sw & 7u) + 1u) * 0.125, d * f32(2u * ((sw >> 3u) & 7u) + 1u) * 0.125, 0.0);
}
