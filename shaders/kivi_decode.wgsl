//! section decode
// {{KEY}}
// Decode attention over a kivi2 cache (layout in kivi.wgsl): attention_decode.wgsl's split-K
// pass with the reads of a quantized key and value done without dequantizing them first.
// - A key of group g is k_c = code_c * s_c + m_c with per-channel halves (s_c, m_c) shared by
//   the group's KG tokens, so q . k = sum_c (q_c s_c) code_c + sum_c q_c m_c: the scaled query
//   (kq) and the bias (kbs) are computed once per group and workgroup, and a key then costs
//   one u32 of 16 codes per 16 channels, with no halves to unpack.
// - A value is code * s + m per token and channel run: acc += (p s) * code and m's share
//   p * m goes to a scalar (am) added at the end.
// Slots below `qlim` (the complete groups) are read quantized; the rest from the f16
// residual window. A linear cache: slot = kv_start + entry.
{{PARAMS}}
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const G: u32 = WG / D4;    // key groups in the V phase
const TPK: u32 = {{TPK}}u; // invocations per key in the score phase (KPB <= KG)
const KPB: u32 = WG / TPK; // keys per block
const NEG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;
{{KV}}

@group(0) @binding(0) var<uniform> p: DecodeParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>; // [batch, n_heads, d]
@group(0) @binding(2) var<storage, read> kc: array<u32>;      // kivi2 keys (kivi.wgsl)
@group(0) @binding(3) var<storage, read> vc: array<u32>;      // kivi2 values (kivi.wgsl)
{{OUT_DECL}}

var<workgroup> qs: array<vec4<f32>, D4>;      // [d] the query row, pre-scaled
var<workgroup> kq: array<vec4<f32>, 2u * D4>; // [2, d] query * key scale of group g in g % 2
var<workgroup> kbt: array<f32, 2u * D4>;      // [2, d / 4] query . key min, per vec4
var<workgroup> kbs: array<f32, 2>;            // [2] query . key min of the group
var<workgroup> sc: array<f32, KPB>;           // logits of the current block of keys
var<workgroup> dots: array<f32, WG>;          // per-invocation parts of those logits
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_l: array<f32, WG>;
var<workgroup> red_acc: array<vec4<f32>, WG>;

// Codes of channels 4i .. 4i + 3 of a word of 16.
fn codes4(x: u32, i: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(x) >> (vec4<u32>(8u * i) + vec4<u32>(0u, 2u, 4u, 6u))) & vec4<u32>(3u));
}
fn half4(w: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(kc[w]), unpack2x16float(kc[w + 1u]));
}
// Part of a quantized key's dot product (code words cw.., every TPK-th from `part`) against
// the scaled query at kq[o..].
fn key_dot(cw: u32, o: u32, part: u32) -> vec4<f32> {
    var d = vec4<f32>(0.0);
    for (var w = part; w < KDW; w += TPK) {
        let x = kc[cw + w];
        d = fma(codes4(x, 0u), kq[o + 4u * w], d);
        d = fma(codes4(x, 1u), kq[o + 4u * w + 1u], d);
        d = fma(codes4(x, 2u), kq[o + 4u * w + 2u], d);
        d = fma(codes4(x, 3u), kq[o + 4u * w + 3u], d);
    }
    return d;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = wid.x + wid.y * nwg.x;
    let split = gi % p.n_split;
    let bh = gi / p.n_split;
    if (bh >= p.batch * p.n_heads) {
        return;
    }
    let h = bh % p.n_heads;
    let b = bh / p.n_heads;
    let kvh = h / p.group;
    for (var c = lid; c < D4; c += WG) {
        qs[c] = q[(b * p.n_heads + h) * D4 + c] * p.scale;
    }
    workgroupBarrier();
    let len = p.kv_start + p.kv_len;
    let qlim = (len / KG) * KG;
    let hk = p.n_kv_heads;
    // Key group g of this (batch, kv head) starts at word kg0 + g * kstep.
    let kg0 = (b * kivi_groups(p.capacity) * hk + kvh) * KK_W;
    let kstep = hk * KK_W;
    let vrow0 = (b * p.capacity * hk + kvh) * KV_W;
    let vstep = hk * KV_W;
    let kres = kivi_kres(p.batch, hk, p.capacity) + (b * KR * hk + kvh) * KH_W;
    let vres = kivi_vres(p.batch, hk, p.capacity) + (b * KR * hk + kvh) * KH_W;
    let rstep = hk * KH_W;
    let j_begin = split * p.split_len;
    let j_end = min(j_begin + p.split_len, p.kv_len);
    let grp = lid / D4;
    let col = lid % D4;
    let kk = lid / TPK;
    let part = lid % TPK;
    // The V phase's word, shift and value group of this invocation's 4 channels.
    let vword = col / 4u;
    let vsh = vec4<u32>(8u * (col % 4u)) + vec4<u32>(0u, 2u, 4u, 6u);
    let vpar = KDW + 4u * col / KVG;
    var cached = vec2<u32>(NONE, NONE); // group whose kq / kbs sit in slot 0 / 1
    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    var am = 0.0; // sum of p * value min, added to every channel of acc at the end
    for (var j0 = j_begin; j0 < j_end; j0 += KPB) {
        // The (at most two) key groups this block reads quantized, scaled into kq / kbs.
        let s0 = p.kv_start + j0;
        let s1 = min(p.kv_start + min(j0 + KPB, j_end), qlim);
        if (s0 < s1) {
            let ga = s0 / KG;
            let gb = (s1 - 1u) / KG;
            if (cached[ga % 2u] != ga || cached[gb % 2u] != gb) {
                for (var e = 0u; e < 2u; e++) {
                    let g = select(ga, gb, e == 1u);
                    if (cached[g % 2u] != g) {
                        let pw = kg0 + g * kstep + KKP;
                        let o = (g % 2u) * D4;
                        for (var c = lid; c < D4; c += WG) {
                            let a = unpack2x16float(kc[pw + 4u * c]);
                            let bb = unpack2x16float(kc[pw + 4u * c + 1u]);
                            let cc = unpack2x16float(kc[pw + 4u * c + 2u]);
                            let dd = unpack2x16float(kc[pw + 4u * c + 3u]);
                            kq[o + c] = qs[c] * vec4<f32>(a.x, bb.x, cc.x, dd.x);
                            kbt[o + c] = dot(qs[c], vec4<f32>(a.y, bb.y, cc.y, dd.y));
                        }
                    }
                }
                workgroupBarrier();
                if (lid < 2u) {
                    var t = 0.0;
                    for (var c = 0u; c < D4; c++) {
                        t += kbt[lid * D4 + c];
                    }
                    kbs[lid] = t;
                }
                workgroupBarrier();
                cached[ga % 2u] = ga;
                cached[gb % 2u] = gb;
            }
        }
        // Score phase: TPK invocations per key; a quantized key's invocations take every
        // TPK-th word of 16 codes, a residual key's every TPK-th vec4 of halves.
        let j = j0 + kk;
        var d = vec4<f32>(0.0);
        if (j < j_end) {
            let slot = p.kv_start + j;
            if (slot < qlim) {
                let g = slot / KG;
                let cw = kg0 + g * kstep + (slot % KG) * KDW;
                d = key_dot(cw, (g % 2u) * D4, part);
            } else {
                let rw = kres + (slot % KR) * rstep;
                for (var c = part; c < D4; c += TPK) {
                    d = fma(qs[c], half4(rw + 2u * c), d);
                }
            }
        }
        dots[lid] = d.x + d.y + d.z + d.w;
        workgroupBarrier();
        if (part == 0u) {
            var s = NEG;
            if (j < j_end) {
                s = 0.0;
                for (var t = 0u; t < TPK; t++) {
                    s += dots[lid + t];
                }
                let slot = p.kv_start + j;
                if (slot < qlim) {
                    s += kbs[(slot / KG) % 2u];
                }
                if (p.softcap > 0.0) {
                    s = p.softcap * tanh(s / p.softcap);
                }
            }
            sc[kk] = s;
        }
        workgroupBarrier();
        if (grp < G) {
            for (var t = grp; t < KPB && j0 + t < j_end; t += G) {
                let st = sc[t];
                if (st > m) {
                    let alpha = exp(m - st);
                    acc *= alpha;
                    am *= alpha;
                    l *= alpha;
                    m = st;
                }
                let pj = exp(st - m);
                l += pj;
                let slot = p.kv_start + j0 + t;
                if (slot < qlim) {
                    let row = vrow0 + slot * vstep;
                    let x = vc[row + vword];
                    let sm = unpack2x16float(vc[row + vpar]);
                    let codes = vec4<f32>((vec4<u32>(x) >> vsh) & vec4<u32>(3u));
                    acc = fma(vec4<f32>(pj * sm.x), codes, acc);
                    am = fma(pj, sm.y, am);
                } else {
                    let rw = vres + (slot % KR) * rstep + 2u * col;
                    let x = vec4<f32>(unpack2x16float(vc[rw]), unpack2x16float(vc[rw + 1u]));
                    acc = fma(vec4<f32>(pj), x, acc);
                }
            }
        }
        workgroupBarrier();
    }
    red_m[lid] = m;
    red_l[lid] = l;
    red_acc[lid] = acc + vec4<f32>(am);
    workgroupBarrier();
    if (lid < D4) {
        var mm = NEG;
        for (var g = 0u; g < G; g++) {
            mm = max(mm, red_m[g * D4 + lid]);
        }
        var ll = 0.0;
        var aa = vec4<f32>(0.0);
        for (var g = 0u; g < G; g++) {
            let w = exp(red_m[g * D4 + lid] - mm);
            ll += red_l[g * D4 + lid] * w;
            aa += red_acc[g * D4 + lid] * w;
        }
{{STORE_OUT}}
    }
}
