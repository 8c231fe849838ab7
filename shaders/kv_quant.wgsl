//! section dense_rows
// Row access of a dense (f32 or f16) cache: vec4 `c` of cache row `r` (a row is one
// (batch, slot, kv head) of KV_D4 vec4s).
fn load_k(r: u32, c: u32) -> vec4<f32> {
    return load(kc[r * KV_D4 + c]);
}
fn load_v(r: u32, c: u32) -> vec4<f32> {
    return load(vc[r * KV_D4 + c]);
}
//! section q8_0
// llama.cpp's q8_0 blocks: 32 values as int8 q and one f16 scale d, value = q * d.
// Quantized as ggml's reference quantize_row_q8_0 does: d = max|x| / 127, q = roundf(x / d)
// (computed as x * (1 / d), the f32 d before its f16 rounding; halves round away from zero).
// Word w of a block's quants holds values 4w..4w+3 in its bytes, low byte first.
alias KV = u32;
const KV_BW: u32 = 8u; // quant words per block
fn kv_quant(x: array<vec4<f32>, 8>) -> KvBlock {
    var xs = x;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(xs[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    var b: KvBlock;
    b.d = d;
    for (var i = 0u; i < 8u; i++) {
        let q = vec4<u32>(vec4<i32>(round_away(xs[i] * id))) & vec4<u32>(255u);
        b.q[i] = q.x | (q.y << 8u) | (q.z << 16u) | (q.w << 24u);
    }
    return b;
}
// The quant word that holds vec4 `c` (0..8) of a block.
fn kv_word(c: u32) -> u32 {
    return c;
}
fn kv_unpack(w: u32, c: u32, d: f32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u),
                      bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u)) * d;
}
//! section q4_0
// llama.cpp's q4_0 blocks: 32 values as 4-bit n and one f16 scale d, value = (n - 8) * d.
// Quantized as ggml's reference quantize_row_q4_0 does: m = the value of largest magnitude
// (the first one on ties), d = m / -8, n = min(15, trunc(x * (1 / d) + 8.5)).
// Byte j of a block holds value j (low nibble) and value j + 16 (high nibble), as in ggml, so
// vec4 c < 4 is the low nibbles of word c and vec4 c >= 4 the high nibbles of word c - 4.
alias KV = u32;
const KV_BW: u32 = 4u; // quant words per block
fn kv_quant(x: array<vec4<f32>, 8>) -> KvBlock {
    var xs = x;
    var amax = 0.0;
    var m = 0.0;
    for (var i = 0u; i < 8u; i++) {
        for (var e = 0u; e < 4u; e++) {
            let v = xs[i][e];
            if (amax < abs(v)) {
                amax = abs(v);
                m = v;
            }
        }
    }
    let d = m / -8.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    var b: KvBlock;
    b.d = d;
    for (var w = 0u; w < 4u; w++) {
        let lo = min(vec4<u32>(15u), vec4<u32>(xs[w] * id + 8.5));
        let hi = min(vec4<u32>(15u), vec4<u32>(xs[w + 4u] * id + 8.5));
        let n = lo | (hi << vec4<u32>(4u));
        b.q[w] = n.x | (n.y << 8u) | (n.z << 16u) | (n.w << 24u);
    }
    return b;
}
fn kv_word(c: u32) -> u32 {
    return c % 4u;
}
fn kv_unpack(w: u32, c: u32, d: f32) -> vec4<f32> {
    let n = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>((c / 4u) * 4u))) & vec4<u32>(15u);
    return (vec4<f32>(n) - 8.0) * d;
}
//! section quant_rows
// A quantized cache row (one (batch, slot, kv head)) is KV_NB blocks of KV_BW quant words,
// then the KV_NB f16 scales, two per word (the last word half empty when KV_NB is odd).
// Block 2k and 2k + 1 share a scale word, so writers handle blocks in pairs.
struct KvBlock {
    q: array<u32, 8>,
    d: f32, // the scale before its f16 rounding
}
const KV_NB: u32 = KV_D4 / 8u;                        // blocks per row
const KV_RW: u32 = KV_NB * KV_BW + (KV_NB + 1u) / 2u; // words per row
const KV_PAIRS: u32 = (KV_NB + 1u) / 2u;
// roundf: halves away from zero (WGSL's round() goes to even). x - trunc(x) is exact.
fn round_away(x: vec4<f32>) -> vec4<f32> {
    let t = trunc(x);
    return select(t, t + sign(x), abs(x - t) >= vec4<f32>(0.5));
}
fn kv_f16(d: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x;
}
// vec4 `c` (0..8) of block `b` as the cache will return it.
fn kv_dequant(b: KvBlock, c: u32) -> vec4<f32> {
    var q = b.q;
    return kv_unpack(q[kv_word(c)], c, kv_f16(b.d));
}
fn load_k(r: u32, c: u32) -> vec4<f32> {
    let base = r * KV_RW;
    let blk = c / 8u;
    let d = unpack2x16float(kc[base + KV_NB * KV_BW + blk / 2u])[blk % 2u];
    return kv_unpack(kc[base + blk * KV_BW + kv_word(c % 8u)], c % 8u, d);
}
fn load_v(r: u32, c: u32) -> vec4<f32> {
    let base = r * KV_RW;
    let blk = c / 8u;
    let d = unpack2x16float(vc[base + KV_NB * KV_BW + blk / 2u])[blk % 2u];
    return kv_unpack(vc[base + blk * KV_BW + kv_word(c % 8u)], c % 8u, d);
}
//! section quant_store
// Writes blocks 2 * pr and (when `two`) 2 * pr + 1 of cache row `r`, with their scale word.
fn kv_store_k(r: u32, pr: u32, b0: KvBlock, b1: KvBlock, two: bool) {
    let base = r * KV_RW;
    var q0 = b0.q;
    var q1 = b1.q;
    for (var w = 0u; w < KV_BW; w++) {
        kc[base + 2u * pr * KV_BW + w] = q0[w];
        if (two) {
            kc[base + (2u * pr + 1u) * KV_BW + w] = q1[w];
        }
    }
    kc[base + KV_NB * KV_BW + pr] = pack2x16float(vec2<f32>(b0.d, select(0.0, b1.d, two)));
}
fn kv_store_v(r: u32, pr: u32, b0: KvBlock, b1: KvBlock, two: bool) {
    let base = r * KV_RW;
    var q0 = b0.q;
    var q1 = b1.q;
    for (var w = 0u; w < KV_BW; w++) {
        vc[base + 2u * pr * KV_BW + w] = q0[w];
        if (two) {
            vc[base + (2u * pr + 1u) * KV_BW + w] = q1[w];
        }
    }
    vc[base + KV_NB * KV_BW + pr] = pack2x16float(vec2<f32>(b0.d, select(0.0, b1.d, two)));
}
//! section append
// {{KEY}}
// Appends rows to a quantized KV cache: new row i (absolute position pos + i) goes to slot
// (pos + i) % capacity. One invocation per (batch, new row, kv head, pair of blocks). Every
// new row is also written back, in place, as the cache will return it (dequantized), so the
// prompt's own attention, which reads k_new and v_new, sees the values later decode steps
// see. Rows that a later row of the same call overwrites in a ring (`first`) are only
// rounded.
{{PARAMS}}
const WG: u32 = {{WG}}u;
{{KV}}

@group(0) @binding(0) var<uniform> p: AppendParams;
@group(0) @binding(1) var<storage, read_write> k_new: array<vec4<f32>>; // [batch, n_new, n_kv_heads, d]
@group(0) @binding(2) var<storage, read_write> v_new: array<vec4<f32>>; // [batch, n_new, n_kv_heads, d]
@group(0) @binding(3) var<storage, read_write> kc: array<KV>;           // [batch, capacity, n_kv_heads] rows
@group(0) @binding(4) var<storage, read_write> vc: array<KV>;           // [batch, capacity, n_kv_heads] rows

fn block_k(at: u32) -> array<vec4<f32>, 8> {
    var x: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        x[i] = k_new[at + i];
    }
    return x;
}
fn block_v(at: u32) -> array<vec4<f32>, 8> {
    var x: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        x[i] = v_new[at + i];
    }
    return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let hk = p.row4 / KV_D4;
    if (idx >= p.batch * p.n_new * hk * KV_PAIRS) {
        return;
    }
    let pr = idx % KV_PAIRS;
    let hr = idx / KV_PAIRS; // (b * n_new + i) * hk + h
    let h = hr % hk;
    let i = (hr / hk) % p.n_new;
    let b = hr / (hk * p.n_new);
    let two = 2u * pr + 1u < KV_NB;
    let at = hr * KV_D4 + 16u * pr;
    let k0 = kv_quant(block_k(at));
    let v0 = kv_quant(block_v(at));
    var k1 = k0;
    var v1 = v0;
    if (two) {
        k1 = kv_quant(block_k(at + 8u));
        v1 = kv_quant(block_v(at + 8u));
    }
    for (var c = 0u; c < 8u; c++) {
        k_new[at + c] = kv_dequant(k0, c);
        v_new[at + c] = kv_dequant(v0, c);
        if (two) {
            k_new[at + 8u + c] = kv_dequant(k1, c);
            v_new[at + 8u + c] = kv_dequant(v1, c);
        }
    }
    if (i < p.first) {
        return;
    }
    let r = (b * p.capacity + (p.pos + i) % p.capacity) * hk + h;
    kv_store_k(r, pr, k0, k1, two);
    kv_store_v(r, pr, v0, v1, two);
}
