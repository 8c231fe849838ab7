//! section prefill
// {{KEY}}
// Fused prefill attention (FlashAttention-style online softmax, no score matrix in memory).
// One workgroup owns BQ = (WG / TPR) * R query rows of one (batch, head). TPR invocations share
// a query row, each keeping R rows' query and output accumulators for its D4 / TPR interleaved
// vec4 columns in registers (TPR > 1 trades a workgroup-memory exchange of partial dots for
// fewer registers on large heads). K and V tiles of BK keys are staged in workgroup memory.
// The KV loop only covers the keys some row of the tile may see: [first key of the window,
// last causal key], so sliding windows cost O(window), not O(history).
{{PARAMS}}
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;     // query rows per invocation
const TPR: u32 = {{TPR}}u; // invocations per query row
const DP: u32 = D4 / TPR;  // vec4 columns per invocation
const BQ: u32 = WG / TPR * R; // query rows per workgroup
const BK: u32 = {{BK}}u;   // keys per tile
// Finite "minus infinity": keeps exp(m_old - m_new) well defined before the first key.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;        // [batch, seq_q, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;        // [batch, seq_kv, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;        // [batch, seq_kv, n_kv_heads, d]
@group(0) @binding(4) var<storage, read> kv_lens: array<u32>;        // [batch] valid keys per batch
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, seq_q, n_heads, d]

var<workgroup> kt: array<vec4<f32>, BK * D4>;  // [BK, d] keys of the current tile
var<workgroup> vt: array<vec4<f32>, BK * D4>;  // [BK, d] values of the current tile
var<workgroup> wg_kv_len: u32;
// [R * BK, WG] partial dots exchanged between the TPR invocations of a row (1 float if TPR = 1).
var<workgroup> sp: array<f32, {{SP}}>;

// Whether the query at absolute position `qp` may attend key `j` (the tile loop bounds already
// apply the padding length and the workgroup-wide causal/window limits).
fn allowed(qp: u32, j: u32) -> bool {
    var ok = true;
    if (p.causal != 0u) {
        ok = j <= qp;
    } else if (p.window != 0u) {
        ok = j < qp + p.window;
    }
    if (p.window != 0u) {
        ok = ok && j + p.window > qp;
    }
    return ok;
}

fn logit(s: f32) -> f32 {
    let x = s * p.scale;
    if (p.softcap > 0.0) {
        return p.softcap * tanh(x / p.softcap);
    }
    return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let n_bh = p.batch * p.n_heads;
    if (g >= p.q_tiles * n_bh) {
        return;
    }
    // The last query tiles go first, for every (batch, head): under a causal mask they see the
    // most keys, and launching the longest work first keeps the dispatch's tail short.
    let qtile = p.q_tiles - 1u - g / n_bh;
    let bh = g % n_bh;
    let h = bh % p.n_heads;
    let b = bh / p.n_heads;
    let kvh = h / p.group;
    // dispatch_2d may launch a few workgroups past the last (batch, head, tile); the whole
    // workgroup leaves together, so no barrier below sees a partial workgroup.
    if (b >= p.batch) {
        return;
    }
    if (lid == 0u) {
        wg_kv_len = min(kv_lens[b], p.seq_kv);
    }
    let kv_len = workgroupUniformLoad(&wg_kv_len);
    let q0 = qtile * BQ;
    // Absolute positions of the first and last query row of this tile.
    let first_pos = q0 + p.q_pos0;
    let last_pos = min(q0 + BQ, p.seq_q) - 1u + p.q_pos0;
    var kv_end = kv_len;
    var kv_begin = 0u;
    if (p.causal != 0u) {
        kv_end = min(kv_end, last_pos + 1u);
    } else if (p.window != 0u) {
        kv_end = min(kv_end, last_pos + p.window);
    }
    if (p.window != 0u && first_pos + 1u > p.window) {
        kv_begin = first_pos + 1u - p.window;
    }

    let rl = lid / TPR;        // query row of this invocation within each R block
    let part = lid % TPR;      // owns vec4 columns c * TPR + part
    var qr: array<vec4<f32>, R * DP>;
    var acc: array<vec4<f32>, R * DP>;
    var m: array<f32, R>;
    var l: array<f32, R>;
    for (var r = 0u; r < R; r++) {
        let row = q0 + rl + r * (WG / TPR);
        let base = ((b * p.seq_q + min(row, p.seq_q - 1u)) * p.n_heads + h) * D4 + part;
        for (var c = 0u; c < DP; c++) {
            qr[r * DP + c] = q[base + c * TPR];
            acc[r * DP + c] = vec4<f32>(0.0);
        }
        m[r] = NEG;
        l[r] = 0.0;
    }

    var s: array<f32, R * BK>;
    for (var t0 = kv_begin; t0 < kv_end; t0 += BK) {
        workgroupBarrier();
        for (var i = lid; i < BK * D4; i += WG) {
            let j = t0 + i / D4;
            let src = ((b * p.seq_kv + min(j, p.seq_kv - 1u)) * p.n_kv_heads + kvh) * D4 + i % D4;
            let live = j < kv_end;
            kt[i] = select(vec4<f32>(0.0), k[src], live);
            vt[i] = select(vec4<f32>(0.0), v[src], live);
        }
        workgroupBarrier();
{{TILE_SCORES}}
        for (var r = 0u; r < R; r++) {
            let row = q0 + rl + r * (WG / TPR);
            if (row >= p.seq_q) {
                continue;
            }
            let qp = row + p.q_pos0;
            var mt = m[r];
            for (var j = 0u; j < BK; j++) {
                let key = t0 + j;
                let ok = key < kv_end && allowed(qp, key);
                let sj = select(NEG, logit(s[r * BK + j]), ok);
                s[r * BK + j] = sj;
                mt = max(mt, sj);
            }
            let alpha = exp(m[r] - mt);
            m[r] = mt;
            var lsum = l[r] * alpha;
            for (var c = 0u; c < DP; c++) {
                acc[r * DP + c] *= alpha;
            }
            for (var j = 0u; j < BK; j++) {
                // Masked keys hold NEG and give exactly 0 (NEG - mt underflows unless mt is NEG too).
                let sj = s[r * BK + j];
                let pj = select(0.0, exp(sj - mt), sj > NEG);
                lsum += pj;
                for (var c = 0u; c < DP; c++) {
                    acc[r * DP + c] = fma(vec4<f32>(pj), vt[j * D4 + c * TPR + part], acc[r * DP + c]);
                }
            }
            l[r] = lsum;
        }
    }

    for (var r = 0u; r < R; r++) {
        let row = q0 + rl + r * (WG / TPR);
        if (row >= p.seq_q || b >= p.batch) {
            continue;
        }
        // A row with no visible key (padding length 0) outputs zeros, not NaN.
        let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
        let base = ((b * p.seq_q + row) * p.n_heads + h) * D4 + part;
        for (var c = 0u; c < DP; c++) {
            out[base + c * TPR] = acc[r * DP + c] * inv;
        }
    }
}

//! section tile_scores
// Scores of the staged K tile for this invocation's R query rows: s[r * BK + j] = q_r . k_j
// (with TPR > 1 each invocation holds head_dim / TPR columns and the partial dots meet in sp).
        for (var r = 0u; r < R; r++) {
            for (var j = 0u; j < BK; j++) {
                var d = vec4<f32>(0.0);
                for (var c = 0u; c < DP; c++) {
                    d = fma(qr[r * DP + c], kt[j * D4 + c * TPR + part], d);
                }
                let dsum = d.x + d.y + d.z + d.w;
                if (TPR == 1u) {
                    s[r * BK + j] = dsum;
                } else {
                    sp[(r * BK + j) * WG + lid] = dsum;
                }
            }
        }
        if (TPR > 1u) {
            workgroupBarrier();
            for (var i = 0u; i < R * BK; i++) {
                var t = 0.0;
                for (var u = 0u; u < TPR; u++) {
                    t += sp[i * WG + rl * TPR + u];
                }
                s[i] = t;
            }
            // The next tile's partials may only be written once every row has read these.
            workgroupBarrier();
        }
