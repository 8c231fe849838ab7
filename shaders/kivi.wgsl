//! section common
// kivi2 KV cache (KIVI's 2-bit asymmetric quantization; format defined in
// jit/src/kernels/kv_dtype.rs and tests/src/oracle_kivi.rs). A linear cache only.
// kc: key groups [batch, groups, n_kv_heads] of KK_W words: the codes token by token (KD / 16
//     words a token, 16 channels a word, so a key is read as contiguous words like a value
//     row), then one (scale, min) half pair per channel; then the residual window
//     [batch, KR, n_kv_heads] of KH_W words (f16 pairs).
// vc: value rows [batch, capacity, n_kv_heads] of KV_W words (2-bit codes, 16 a word,
//     then one (scale, min) half pair per value group), then the residual window as kc's.
// Position P is quantized once its group (P / KG) is complete; until then (and for KR
// positions in all) it is read from residual slot P % KR.
// KG (tokens per key group), KVG (channels per value group) and KR (residual slots) are
// declared by kv_dtype.rs from its KIVI_* constants.
alias KV = u32;
const KD: u32 = KV_D4 * 4u;            // head dim
const KNVG: u32 = (KD + KVG - 1u) / KVG; // value groups per row
const KDW: u32 = KD / 16u;             // code words of one token (key or value)
const KK_W: u32 = (KG + 16u) * KDW;    // words of one (batch, group, head) of keys
const KKP: u32 = KG * KDW;             // where a key group's (scale, min) words start
const KV_W: u32 = KDW + KNVG;          // words of one quantized value row
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
// Quantizes groups g0 .. g0 + n_groups of a kivi2 cache: one workgroup per (batch, group, kv
// head) finds every key channel's (scale, min), then writes the key codes token by token and
// quantizes the group's value rows. Position P of a group is read from k_new / v_new (row
// P - pos) when P >= pos, else from the residual window; either way as the f16 the window
// holds, so a group quantizes the same whether it completed in a prompt or a decode step.
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

var<workgroup> ksm: array<vec3<f32>, KD>; // [d] each key channel's (scale, min, 1 / scale)

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
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = wid.x + wid.y * nwg.x;
    // Workgroups past the last (batch, group, head) leave together before any barrier.
    if (gi >= p.batch * p.n_groups * p.hk) {
        return;
    }
    let h = gi % p.hk;
    let g = p.g0 + (gi / p.hk) % p.n_groups;
    let b = gi / (p.hk * p.n_groups);
    let base = ((b * kivi_groups(p.capacity) + g) * p.hk + h) * KK_W;
    for (var ch = lid; ch < KD; ch += WG) {
        var lo = 3.0e38;
        var hi = -3.0e38;
        for (var t = 0u; t < KG; t++) {
            let x = src(true, b, h, g * KG + t, ch);
            lo = min(lo, x);
            hi = max(hi, x);
        }
        let sm = params(lo, hi);
        ksm[ch] = sm;
        kc[base + KKP + ch] = pack2x16float(sm.xy);
    }
    workgroupBarrier();
    // Key codes: word e = t * KDW + w holds channels 16 w .. 16 w + 15 of token t.
    for (var e = lid; e < KKP; e += WG) {
        let t = e / KDW;
        let c0 = 16u * (e % KDW);
        var word = 0u;
        for (var i = 0u; i < 16u; i++) {
            word |= code(src(true, b, h, g * KG + t, c0 + i), ksm[c0 + i]) << (2u * i);
        }
        kc[base + e] = word;
    }
    // Values: one (token, value group) of the group's KG rows at a time.
    for (var e = lid; e < KG * KNVG; e += WG) {
        let pos = g * KG + e / KNVG;
        let vg = e % KNVG;
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
        let row = ((b * p.capacity + pos) * p.hk + h) * KV_W;
        for (var w = c0 / 16u; w < c1 / 16u; w++) {
            var word = 0u;
            for (var i = 0u; i < 16u; i++) {
                word |= code(src(false, b, h, pos, 16u * w + i), sm) << (2u * i);
            }
            vc[row + w] = word;
        }
        vc[row + KDW + vg] = pack2x16float(sm.xy);
    }
}
