//! section main
// {{KEY}}
// One decode step's q/k preparation in one pass: per-head RMSNorm of q and k (Gemma 3's
// q/k norms; skipped when the model has none), RoPE on both, then K and V of the new
// positions written into the KV cache. One workgroup per (token, head) of q and of k; a k
// workgroup also copies its V row. Replaces 2 norms + 2 ropes + 1 append dispatches. Before a
// q8_0 or q4_0 cache, q and k are also rotated by a Walsh-Hadamard matrix after RoPE
// (hadamard.wgsl's butterflies; `KvDType::key_rotation`).
{{PARAMS}}
const WG: u32 = {{WG}}u;
const HD: u32 = {{HD}}u;     // head dim
const HQ: u32 = {{HQ}}u;     // query heads
const HK: u32 = {{HK}}u;     // key/value heads
const HALF_ROT: u32 = {{HALF_ROT}}u;
{{WHT_CONSTS}}
{{KV}}

@group(0) @binding(0) var<uniform> p: QkRopeParams;
// q, k and v start at p.q_off, p.k_off, p.v_off (elements): one packed [q | k | v] row of a
// stacked projection may be bound three times.
@group(0) @binding(1) var<storage, read> q: array<f32>;         // [tokens, HQ, HD] at q_off
@group(0) @binding(2) var<storage, read> k: array<f32>;         // [tokens, HK, HD] at k_off
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;   // [tokens, HK, HD / 4] at v_off / 4
@group(0) @binding(4) var<storage, read> cs: array<vec2<f32>>;  // [tokens, HALF_ROT] (cos, sin)
{{NORM_DECL}}
@group(0) @binding({{B_QOUT}}) var<storage, read_write> q_out: array<f32>; // [tokens, HQ, HD]
@group(0) @binding({{B_KC}}) var<storage, read_write> kc: array<KV>;        // [capacity, HK, HD / 4]
@group(0) @binding({{B_VC}}) var<storage, read_write> vc: array<KV>;        // [capacity, HK, HD / 4]

var<workgroup> row: array<f32, HD>;

{{REDUCE}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x; // over [tokens, HQ + HK]
    if (g >= p.tokens * (HQ + HK)) {
        return;
    }
    let t = g / (HQ + HK);
    let h = g % (HQ + HK);
    let is_q = h < HQ;
    var src = (t * HK + h - HQ) * HD;
    if (is_q) {
        src = (t * HQ + h) * HD;
    }
    var ss = 0.0;
    for (var i = lid; i < HD; i += WG) {
        var x = 0.0;
        if (is_q) {
            x = q[p.q_off + src + i];
        } else {
            x = k[p.k_off + src + i];
        }
        row[i] = x;
        ss += x * x;
    }
{{NORM}}
    workgroupBarrier();
    // Each pair is read and written by one invocation; dims past the rotated ones pass.
    for (var j = lid; j < HALF_ROT; j += WG) {
        let c = cs[t * HALF_ROT + j];
        let i0 = {{I0}};
        let i1 = {{I1}};
        let a = row[i0];
        let b = row[i1];
        row[i0] = a * c.x - b * c.y;
        row[i1] = b * c.x + a * c.y;
    }
    workgroupBarrier();
{{WHT}}
    if (is_q) {
        for (var i = lid; i < HD; i += WG) {
            q_out[src + i] = row[i];
        }
    } else {
        let slot = (p.pos + t) % p.capacity;
{{KV_WRITE}}
    }
}

//! section kv_write_dense
        let dst = (slot * HK + h - HQ) * (HD / 4u);
        for (var e = lid; e < HD / 4u; e += WG) {
            let x = vec4<f32>(row[4u * e], row[4u * e + 1u], row[4u * e + 2u], row[4u * e + 3u]);
            kc[dst + e] = store(x);
            vc[dst + e] = store(v[(p.v_off + src) / 4u + e]);
        }

//! section kv_write_quant
        // Quantized cache: one invocation per pair of 32-value blocks (they share a scale
        // word), K from the rotated row, V straight from the projection.
        let r = slot * HK + h - HQ;
        for (var pr = lid; pr < KV_PAIRS; pr += WG) {
            let two = 2u * pr + 1u < KV_NB;
            var k0: array<vec4<f32>, 8>;
            var k1: array<vec4<f32>, 8>;
            var v0: array<vec4<f32>, 8>;
            var v1: array<vec4<f32>, 8>;
            let vb = (p.v_off + src) / 4u + 16u * pr;
            for (var i = 0u; i < 8u; i++) {
                let e = 64u * pr + 4u * i;
                k0[i] = vec4<f32>(row[e], row[e + 1u], row[e + 2u], row[e + 3u]);
                v0[i] = v[vb + i];
                if (two) {
                    k1[i] = vec4<f32>(row[e + 32u], row[e + 33u], row[e + 34u], row[e + 35u]);
                    v1[i] = v[vb + 8u + i];
                }
            }
            kv_store_k(r, pr, kv_quant(k0), kv_quant(k1), two);
            kv_store_v(r, pr, kv_quant(v0), kv_quant(v1), two);
        }

//! section kv_write_kivi
        // kivi2: the row goes to the f16 residual window (slot position % KR of the
        // residual part, kivi.wgsl); the op flushes a group this step completes.
        let dst = kivi_kres(1u, HK, p.capacity) + (((p.pos + t) % KR) * HK + h - HQ) * KH_W;
        let vdst = kivi_vres(1u, HK, p.capacity) + (((p.pos + t) % KR) * HK + h - HQ) * KH_W;
        for (var e = lid; e < HD / 4u; e += WG) {
            kc[dst + 2u * e] = pack2x16float(vec2<f32>(row[4u * e], row[4u * e + 1u]));
            kc[dst + 2u * e + 1u] = pack2x16float(vec2<f32>(row[4u * e + 2u], row[4u * e + 3u]));
            let x = v[(p.v_off + src) / 4u + e];
            vc[vdst + 2u * e] = pack2x16float(x.xy);
            vc[vdst + 2u * e + 1u] = pack2x16float(x.zw);
        }

//! section norm_decl
@group(0) @binding(5) var<storage, read> qn: array<f32>;        // [HD] q norm weight
@group(0) @binding(6) var<storage, read> kn: array<f32>;        // [HD] k norm weight

//! section norm
    let inv = inverseSqrt(reduce_sum(ss, lid) / f32(HD) + p.eps);
    for (var i = lid; i < HD; i += WG) {
        var w = kn[i];
        if (is_q) {
            w = qn[i];
        }
        row[i] = row[i] * inv * (w + p.w_offset);
    }
