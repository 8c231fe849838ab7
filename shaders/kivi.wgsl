//! section common
// kivi2 KV cache (KIVI's 2-bit asymmetric quantization; format defined in
// jit/src/kernels/kv_dtype.rs and tests/src/oracle_kivi.rs). A linear cache only.
// kc: key groups [batch, groups, n_kv_heads] of KK_W words (KTW code words per channel
//     laid out [token word][channel], then one (scale, min) half pair per channel),
//     then the residual window [batch, KR, n_kv_heads] of KH_W words (f16 pairs).
// vc: value rows [batch, capacity, n_kv_heads] of KV_W words (2-bit codes, 16 a word,
//     then one (scale, min) half pair per value group), then the residual window as kc's.
// Position P is quantized once its group (P / KG) is complete; until then (and for KR
// positions in all) it is read from residual slot P % KR.
// KG (tokens per key group), KVG (channels per value group) and KR (residual slots) are
// declared by kv_dtype.rs from its KIVI_* constants.
alias KV = u32;
const KD: u32 = KV_D4 * 4u;            // head dim
const KNVG: u32 = (KD + KVG - 1u) / KVG; // value groups per row
const KTW: u32 = KG / 16u;             // code words per channel of a key group
const KK_W: u32 = (KTW + 1u) * KD;     // words of one (batch, group, head) of keys
const KV_W: u32 = KD / 16u + KNVG;     // words of one quantized value row
const KH_W: u32 = KD / 2u;             // words of one residual row
fn kivi_groups(cap: u32) -> u32 {
    return (cap + KG - 1u) / KG;
}
// First word of the residual window in kc / vc.
fn kivi_kres(batch: u32, hk: u32, cap: u32) -> u32 {
    return batch * kivi_groups(cap) * hk * KK_W;
}
fn kivi_vres(batch: u32, hk: u32, cap: u32) -> u32 {
    return batch * cap * hk * KV_W;
}
//! section load
// Decode attention's reads. Row r = (b * capacity + slot) * n_kv_heads + h; a linear cache
// holds position slot in slot, and the complete groups end at the cache's length
// (kv_start + kv_len).
fn kivi_quantized(slot: u32) -> bool {
    return slot < ((p.kv_start + p.kv_len) / KG) * KG;
}
fn kivi_res(base: u32, r: u32) -> u32 {
    let h = r % p.n_kv_heads;
    let bs = r / p.n_kv_heads;
    let b = bs / p.capacity;
    let slot = bs % p.capacity;
    return base + ((b * KR + slot % KR) * p.n_kv_heads + h) * KH_W;
}
fn load_k(r: u32, c: u32) -> vec4<f32> {
    let h = r % p.n_kv_heads;
    let bs = r / p.n_kv_heads;
    let slot = bs % p.capacity;
    if (kivi_quantized(slot)) {
        let b = bs / p.capacity;
        let t = slot % KG;
        let base = ((b * kivi_groups(p.capacity) + slot / KG) * p.n_kv_heads + h) * KK_W;
        let cw = base + (t / 16u) * KD + 4u * c;
        let q = (vec4<u32>(kc[cw], kc[cw + 1u], kc[cw + 2u], kc[cw + 3u]) >> vec4<u32>(2u * (t % 16u))) & vec4<u32>(3u);
        let pw = base + KTW * KD + 4u * c;
        let s0 = unpack2x16float(kc[pw]);
        let s1 = unpack2x16float(kc[pw + 1u]);
        let s2 = unpack2x16float(kc[pw + 2u]);
        let s3 = unpack2x16float(kc[pw + 3u]);
        return vec4<f32>(q) * vec4<f32>(s0.x, s1.x, s2.x, s3.x) + vec4<f32>(s0.y, s1.y, s2.y, s3.y);
    }
    let w = kivi_res(kivi_kres(p.batch, p.n_kv_heads, p.capacity), r) + 2u * c;
    return vec4<f32>(unpack2x16float(kc[w]), unpack2x16float(kc[w + 1u]));
}
fn load_v(r: u32, c: u32) -> vec4<f32> {
    let slot = (r / p.n_kv_heads) % p.capacity;
    if (kivi_quantized(slot)) {
        let base = r * KV_W;
        let q = (vec4<u32>(vc[base + c / 4u]) >> (vec4<u32>(8u * (c % 4u)) + vec4<u32>(0u, 2u, 4u, 6u))) & vec4<u32>(3u);
        let sm = unpack2x16float(vc[base + KD / 16u + 4u * c / KVG]);
        return vec4<f32>(q) * sm.x + sm.y;
    }
    let w = kivi_res(kivi_vres(p.batch, p.n_kv_heads, p.capacity), r) + 2u * c;
    return vec4<f32>(unpack2x16float(vc[w]), unpack2x16float(vc[w + 1u]));
}
//! section append
// {{KEY}}
// Prefill's append to a kivi2 cache: writes the new rows of the last KR positions into the
// residual window as f16 (one invocation per (batch, new row, head, word)). Groups that this
// append completes were quantized by the flush dispatched just before (it reads the old
// residual rows this one may overwrite). The prompt attends its own rows at full precision.
{{PARAMS}}
const WG: u32 = {{WG}}u;
{{KV}}

@group(0) @binding(0) var<uniform> p: AppendParams;
@group(0) @binding(1) var<storage, read> k_new: array<vec2<f32>>; // [batch, n_new, n_kv_heads, d]
@group(0) @binding(2) var<storage, read> v_new: array<vec2<f32>>; // [batch, n_new, n_kv_heads, d]
@group(0) @binding(3) var<storage, read_write> kc: array<KV>;
@group(0) @binding(4) var<storage, read_write> vc: array<KV>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let hk = p.row4 / KV_D4;
    if (idx >= p.batch * p.n_new * hk * KH_W) {
        return;
    }
    let w = idx % KH_W;
    let hr = idx / KH_W; // (b * n_new + i) * hk + h
    let h = hr % hk;
    let i = (hr / hk) % p.n_new;
    let b = hr / (hk * p.n_new);
    // Only the last KR rows of the call: earlier ones would share their slot with them.
    if (i + KR < p.n_new) {
        return;
    }
    let at = ((b * KR + (p.pos + i) % KR) * hk + h) * KH_W + w;
    kc[kivi_kres(p.batch, hk, p.capacity) + at] = pack2x16float(k_new[idx]);
    vc[kivi_vres(p.batch, hk, p.capacity) + at] = pack2x16float(v_new[idx]);
}
//! section flush
// {{KEY}}
// Quantizes groups g0 .. g0 + n_groups of a kivi2 cache. Position P of a group is read from
// k_new / v_new (row P - pos) when P >= pos, else from the residual window; either way as
// the f16 the window holds, so a group quantizes the same whether it completed in a prompt
// or a decode step. Invocations: first one per (batch, group, head, channel) of keys, then
// one per (batch, position, head, value group) of values.
// A group: m = min, s = (max - m) / 3, both rounded to f16 (pack2x16float), then
// q = clamp(floor((x - m16) / s16 + 0.5), 0, 3) (0 when s16 is 0).
{{PARAMS}}
const WG: u32 = {{WG}}u;
{{KV}}

@group(0) @binding(0) var<uniform> p: KiviFlushParams;
@group(0) @binding(1) var<storage, read> k_new: array<f32>; // [batch, n_new, hk, d]
@group(0) @binding(2) var<storage, read> v_new: array<f32>; // [batch, n_new, hk, d]
@group(0) @binding(3) var<storage, read_write> kc: array<KV>;
@group(0) @binding(4) var<storage, read_write> vc: array<KV>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}
fn src(is_k: bool, b: u32, h: u32, pos: u32, ch: u32) -> f32 {
    if (pos >= p.pos) {
        let at = ((b * p.n_new + pos - p.pos) * p.hk + h) * KD + ch;
        return f16r(select(v_new[at], k_new[at], is_k));
    }
    let at = ((b * KR + pos % KR) * p.hk + h) * KH_W + ch / 2u;
    if (is_k) {
        return unpack2x16float(kc[kivi_kres(p.batch, p.hk, p.capacity) + at])[ch % 2u];
    }
    return unpack2x16float(vc[kivi_vres(p.batch, p.hk, p.capacity) + at])[ch % 2u];
}
// (scale, min) as stored halves, and 1 / scale (0 for a zero scale).
fn params(lo: f32, hi: f32) -> vec3<f32> {
    let w = pack2x16float(vec2<f32>((hi - lo) / 3.0, lo));
    let sm = unpack2x16float(w);
    return vec3<f32>(sm, select(0.0, 1.0 / sm.x, sm.x != 0.0));
}
fn code(x: f32, sm: vec3<f32>) -> u32 {
    return u32(clamp(floor((x - sm.y) * sm.z + 0.5), 0.0, 3.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let n_keys = p.batch * p.n_groups * p.hk * KD;
    if (idx < n_keys) {
        let ch = idx % KD;
        let h = (idx / KD) % p.hk;
        let gi = (idx / (KD * p.hk)) % p.n_groups;
        let b = idx / (KD * p.hk * p.n_groups);
        let g = p.g0 + gi;
        var lo = 3.0e38;
        var hi = -3.0e38;
        for (var t = 0u; t < KG; t++) {
            let x = src(true, b, h, g * KG + t, ch);
            lo = min(lo, x);
            hi = max(hi, x);
        }
        let sm = params(lo, hi);
        let base = ((b * kivi_groups(p.capacity) + g) * p.hk + h) * KK_W;
        for (var tw = 0u; tw < KTW; tw++) {
            var word = 0u;
            for (var t = 0u; t < 16u; t++) {
                word |= code(src(true, b, h, g * KG + 16u * tw + t, ch), sm) << (2u * t);
            }
            kc[base + tw * KD + ch] = word;
        }
        kc[base + KTW * KD + ch] = pack2x16float(sm.xy);
        return;
    }
    let vi = idx - n_keys;
    if (vi >= p.batch * p.n_groups * KG * p.hk * KNVG) {
        return;
    }
    let vg = vi % KNVG;
    let h = (vi / KNVG) % p.hk;
    let t = (vi / (KNVG * p.hk)) % (p.n_groups * KG);
    let b = vi / (KNVG * p.hk * p.n_groups * KG);
    let pos = p.g0 * KG + t;
    let c0 = vg * KVG;
    let c1 = min(KD, c0 + KVG);
    var lo = 3.0e38;
    var hi = -3.0e38;
    for (var c = c0; c < c1; c++) {
        let x = src(false, b, h, pos, c);
        lo = min(lo, x);
        hi = max(hi, x);
    }
    let sm = params(lo, hi);
    let base = ((b * p.capacity + pos) * p.hk + h) * KV_W;
    for (var w = c0 / 16u; w < c1 / 16u; w++) {
        var word = 0u;
        for (var e = 0u; e < 16u; e++) {
            word |= code(src(false, b, h, pos, 16u * w + e), sm) << (2u * e);
        }
        vc[base + w] = word;
    }
    vc[base + KD / 16u + vg] = pack2x16float(sm.xy);
}
