//! section decode_split
// {{KEY}}
// Decode attention, pass 1 of 2 (split-K): one workgroup per (batch, head, split) covers
// `split_len` cache entries and writes its partial softmax state (max, sum, weighted V).
// Rendered with `store_single` instead (max_splits 1), one workgroup covers the whole cache of
// its head and writes the attention output: one dispatch, no merge pass.
// Scores: TPK invocations per key. Weighted V: invocations form G groups of D4 columns, so V
// rows are read coalesced; each group keeps its own online-softmax state, merged at the end.
// Logical cache entry j lives in slot (kv_start + j) % capacity: for a ring buffer this walks
// the last `kv_len` positions in any order, which softmax does not care about. Cache rows are
// read through load_k / load_v (kv_quant.wgsl), which dequantize quantized formats.
{{PARAMS}}
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const G: u32 = WG / D4;    // key groups in the V phase
const TPK: u32 = {{TPK}}u; // invocations per key in the score phase
const KPB: u32 = WG / TPK; // keys per block
const NEG: f32 = -3.0e38;
{{KV}}

@group(0) @binding(0) var<uniform> p: DecodeParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;              // [batch, n_heads, d]
@group(0) @binding(2) var<storage, read> kc: array<KV>;                    // [batch, capacity, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> vc: array<KV>;                    // [batch, capacity, n_kv_heads, d]
{{OUT_DECL}}

var<workgroup> qs: array<vec4<f32>, D4>;      // [d] the query row, pre-scaled
var<workgroup> sc: array<f32, KPB>;           // logits of the current block of keys
var<workgroup> dots: array<f32, WG>;          // per-invocation parts of those logits
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_l: array<f32, WG>;
var<workgroup> red_acc: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = wid.x + wid.y * nwg.x;
    let split = gi % p.n_split;
    let bh = gi / p.n_split;
    // dispatch_2d may launch a few workgroups past the last (batch, head, split); they leave
    // together before any barrier.
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
    let j_begin = split * p.split_len;
    let j_end = min(j_begin + p.split_len, p.kv_len);
    let grp = lid / D4;
    let col = lid % D4;
    // Score phase: TPK invocations per key, each summing every TPK-th vec4 of the head, so a
    // key's row is read by neighbouring invocations (coalesced) and no invocation walks a
    // whole row alone.
    let kk = lid / TPK;
    let part = lid % TPK;
    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var j0 = j_begin; j0 < j_end; j0 += KPB) {
        let j = j0 + kk;
        var d = vec4<f32>(0.0);
        if (j < j_end) {
            let slot = (p.kv_start + j) % p.capacity;
            let r = (b * p.capacity + slot) * p.n_kv_heads + kvh;
            for (var c = part; c < D4; c += TPK) {
                d = fma(qs[c], load_k(r, c), d);
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
                    l *= alpha;
                    m = st;
                }
                let pj = exp(st - m);
                l += pj;
                let slot = (p.kv_start + j0 + t) % p.capacity;
                acc = fma(vec4<f32>(pj), load_v((b * p.capacity + slot) * p.n_kv_heads + kvh, col), acc);
            }
        }
        workgroupBarrier();
    }
    red_m[lid] = m;
    red_l[lid] = l;
    red_acc[lid] = acc;
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

//! section out_split
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>;  // [batch, n_heads, n_split] (max, sum)
@group(0) @binding(5) var<storage, read_write> part_acc: array<vec4<f32>>; // [batch, n_heads, n_split, d]
//! section store_split
        let slot = bh * p.n_split + split;
        part_acc[slot * D4 + lid] = aa;
        if (lid == 0u) {
            part_ml[slot] = vec2<f32>(mm, ll);
        }
//! section out_single
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;      // [batch, n_heads, d]
//! section store_single
        // Single pass: this workgroup saw every key of its head, so it normalizes and writes
        // the result itself (an empty cache gives zeros, not NaN).
        out[bh * D4 + lid] = aa * select(0.0, 1.0 / ll, ll > 0.0);

//! section kv_f32
// KV cache elements: a vec4 of the cache as stored (f32), loaded and stored as vec4<f32>.
alias KV = vec4<f32>;
fn load(x: KV) -> vec4<f32> {
    return x;
}
fn store(x: vec4<f32>) -> KV {
    return x;
}
//! section kv_f16
// KV cache elements: a vec4 of the cache as stored (4 f16 in 2 u32), loaded and stored as
// vec4<f32>.
alias KV = vec2<u32>;
fn load(x: KV) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(x.x), unpack2x16float(x.y));
}
fn store(x: vec4<f32>) -> KV {
    return vec2<u32>(pack2x16float(x.xy), pack2x16float(x.zw));
}
//! section decode_reduce
// {{KEY}}
// Decode attention, pass 2 of 2: merges the splits' partial softmax states of one (batch, head).
// The splits' weights exp(m_s - max) are computed once, in parallel, into workgroup memory
// (up to MAXS splits; more fall back to recomputing them per column).
{{PARAMS}}
const D4: u32 = {{D4}}u;
const WG: u32 = {{WG}}u;
const MAXS: u32 = 1024u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: DecodeParams;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;   // [batch, n_heads, n_split] (max, sum)
@group(0) @binding(2) var<storage, read> part_acc: array<vec4<f32>>;  // [batch, n_heads, n_split, d]
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // [batch, n_heads, d]

var<workgroup> wts: array<f32, MAXS>;         // [n_split] exp(m_s - max)

{{REDUCE}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let bh = wid.x + wid.y * nwg.x;
    if (bh >= p.batch * p.n_heads) {
        return;
    }
    let first = bh * p.n_split;
    var m_part = NEG;
    for (var s = lid; s < p.n_split; s += WG) {
        m_part = max(m_part, part_ml[first + s].x);
    }
    let mm = reduce_max(m_part, lid);
    var l_part = 0.0;
    for (var s = lid; s < p.n_split; s += WG) {
        let ml = part_ml[first + s];
        let w = exp(ml.x - mm);
        if (s < MAXS) {
            wts[s] = w;
        }
        l_part += ml.y * w;
    }
    let ll = reduce_sum(l_part, lid);
    // An empty cache (kv_len 0) outputs zeros, not NaN.
    let inv = select(0.0, 1.0 / ll, ll > 0.0);
    let cached = min(p.n_split, MAXS);
    for (var c = lid; c < D4; c += WG) {
        var aa = vec4<f32>(0.0);
        for (var s = 0u; s < cached; s++) {
            aa += part_acc[(first + s) * D4 + c] * wts[s];
        }
        for (var s = cached; s < p.n_split; s++) {
            aa += part_acc[(first + s) * D4 + c] * exp(part_ml[first + s].x - mm);
        }
        out[bh * D4 + c] = aa * inv;
    }
}

//! section kv_append
// {{KEY}}
// Appends rows to a KV cache: new row i (absolute position pos + i) goes to slot
// (pos + i) % capacity. Rows that a later new row of the same call overwrites in a ring are
// skipped (`first`), so no two invocations write the same slot.
{{PARAMS}}
const WG: u32 = {{WG}}u;
{{KV}}

@group(0) @binding(0) var<uniform> p: AppendParams;
@group(0) @binding(1) var<storage, read> k_new: array<vec4<f32>>;  // [batch, n_new, n_kv_heads, d]
@group(0) @binding(2) var<storage, read> v_new: array<vec4<f32>>;  // [batch, n_new, n_kv_heads, d]
@group(0) @binding(3) var<storage, read_write> kc: array<KV>;      // [batch, capacity, n_kv_heads, d]
@group(0) @binding(4) var<storage, read_write> vc: array<KV>;      // [batch, capacity, n_kv_heads, d]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    if (idx >= p.batch * p.n_new * p.row4) {
        return;
    }
    let e = idx % p.row4;
    let i = (idx / p.row4) % p.n_new;
    let b = idx / (p.row4 * p.n_new);
    if (i < p.first) {
        return;
    }
    let slot = (p.pos + i) % p.capacity;
    let dst = (b * p.capacity + slot) * p.row4 + e;
    kc[dst] = store(k_new[idx]);
    vc[dst] = store(v_new[idx]);
}
