//! section prefill
// {{KEY}}
// Fused prefill attention (FlashAttention-style online softmax, no score matrix in memory).
// One workgroup owns BQ query rows of one (batch, head), as laid out in attention_tile.wgsl.
// The KV loop only covers the keys some row of the tile may see: [first key of the window,
// last causal key], so sliding windows cost O(window), not O(history).
{{PARAMS}}
{{TILE_DECLS}}
// Finite "minus infinity": keeps exp(m_old - m_new) well defined before the first key.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;        // [batch, seq_q, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;        // [batch, seq_kv, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;        // [batch, seq_kv, n_kv_heads, d]
@group(0) @binding(4) var<storage, read> kv_lens: array<u32>;        // [batch] valid keys per batch
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, seq_q, n_heads, d]

var<workgroup> wg_kv_len: u32;

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

{{ROW_STATE}}
    for (var r = 0u; r < R; r++) {
        let row = q0 + rl + r * RW;
        let base = ((b * p.seq_q + min(row, p.seq_q - 1u)) * p.n_heads + h) * D4 + part;
{{ROW_INIT}}
    }

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
            let row = q0 + rl + r * RW;
            if (row >= p.seq_q) {
                continue;
            }
            let qp = row + p.q_pos0;
            // Logits of row r: keys past the tile's end or outside its mask are NEG.
            for (var j = 0u; j < BK; j++) {
                let key = t0 + j;
                let ok = key < kv_end && allowed(qp, key);
                s[r * BK + j] = select(NEG, logit(s[r * BK + j]), ok);
            }
{{ONLINE_SOFTMAX}}
        }
    }

    for (var r = 0u; r < R; r++) {
        let row = q0 + rl + r * RW;
        if (row >= p.seq_q || b >= p.batch) {
            continue;
        }
        // A row with no visible key (padding length 0) outputs zeros.
        let base = ((b * p.seq_q + row) * p.n_heads + h) * D4 + part;
{{ROW_OUT}}
    }
}
