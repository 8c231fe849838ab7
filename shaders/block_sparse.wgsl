//! section common
// Shared by every block-sparse kernel: the token grid [grid_t, grid_h, grid_w] (tokens in
// row-major t, h, w order), its partition into boxes of [box_t, box_h, box_w] tokens (boxes at
// the far edges are partial), and which key blocks a selection row may choose.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: BsParams;

// Finite "minus infinity": keeps exp(m_old - m_new) well defined before the first key.
const NEG: f32 = -3.0e38;
// Gate of a forced pair (see the gate kernel); real gates are finite and far from +-3e38.
const POS: f32 = 3.0e38;

// State of a pair from its gate: 0 hidden, 1 competing, 2 forced.
fn gate_state(g: f32) -> u32 {
    if (g <= NEG) {
        return 0u;
    }
    return select(1u, 2u, g >= POS);
}

// Block (box) index of token `t`; boxes are numbered row-major over the box grid.
fn block_of(t: u32) -> u32 {
    let ti = t / (p.grid_h * p.grid_w);
    let hi = (t / p.grid_w) % p.grid_h;
    let wi = t % p.grid_w;
    return ((ti / p.box_t) * p.nb_h + hi / p.box_h) * p.nb_w + wi / p.box_w;
}

// Extent of block `kb` per axis (partial at the far edges of the grid).
fn block_extent(kb: u32) -> vec3<u32> {
    let bt = kb / (p.nb_h * p.nb_w);
    let bh = (kb / p.nb_w) % p.nb_h;
    let bw = kb % p.nb_w;
    return vec3<u32>(min(p.box_t, p.grid_t - bt * p.box_t), min(p.box_h, p.grid_h - bh * p.box_h),
                     min(p.box_w, p.grid_w - bw * p.box_w));
}

fn block_count(kb: u32) -> u32 {
    let e = block_extent(kb);
    return e.x * e.y * e.z;
}

// Token of the `l`-th element of block `kb`; elements are row-major inside the box, so they
// come in increasing token order.
fn block_token(kb: u32, l: u32) -> u32 {
    if (p.grid_t * p.grid_h == 1u) {
        return kb * p.box_w + l; // 1-D: blocks are runs of box_w tokens
    }
    let e = block_extent(kb);
    let bt = kb / (p.nb_h * p.nb_w);
    let bh = (kb / p.nb_w) % p.nb_h;
    let bw = kb % p.nb_w;
    let t = bt * p.box_t + l / (e.y * e.z);
    let h = bh * p.box_h + (l / e.z) % e.y;
    let w = bw * p.box_w + l % e.z;
    return (t * p.grid_h + h) * p.grid_w + w;
}

// 0: the row may not choose block kb; 1: kb competes by its gate; 2: kb is always attended.
// A row is a query token (per_query) or a query block. Under causal masking the row's own
// block is forced and only blocks whose every token precedes the row's first token compete.
fn block_state(r: u32, kb: u32) -> u32 {
    if (p.causal == 0u) {
        return 1u;
    }
    var own = r;
    var first = block_token(r, 0u);
    if (p.per_query != 0u) {
        own = block_of(r);
        first = r;
    }
    if (kb == own) {
        return 2u;
    }
    if (block_token(kb, block_count(kb) - 1u) < first) {
        return 1u;
    }
    return 0u;
}

//! section means
// {{KEY}}
// Mean vector of every block per head: one invocation per output vec4.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;         // [batch, seq, src_heads, d]
@group(0) @binding(2) var<storage, read_write> mean: array<vec4<f32>>; // [batch, n_blocks, src_heads, d]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.n_blocks * p.src_heads * D4) {
        return;
    }
    let c = i % D4;
    let h = (i / D4) % p.src_heads;
    let kb = (i / (D4 * p.src_heads)) % p.n_blocks;
    let b = i / (D4 * p.src_heads * p.n_blocks);
    let n = block_count(kb);
    var s = vec4<f32>(0.0);
    for (var l = 0u; l < n; l++) {
        s += x[((b * p.seq + block_token(kb, l)) * p.src_heads + h) * D4 + c];
    }
    mean[i] = s / f32(n);
}

//! section gate
// {{KEY}}
// Gate of every (row, key block) pair: scale * q_row . mean(k_block) where the block competes.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
@group(0) @binding(1) var<storage, read> qs: array<vec4<f32>>;          // [batch, rows, n_heads, d]
@group(0) @binding(2) var<storage, read> kmean: array<vec4<f32>>;       // [batch, n_blocks, n_kv_heads, d]
@group(0) @binding(3) var<storage, read_write> gates: array<f32>;       // [batch, n_heads, rows, n_blocks]
// [batch, n_heads, n_blocks] queries per key block, zeroed here for the select kernel (gather).
@group(0) @binding(4) var<storage, read_write> kcount: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.n_heads * p.rows * p.n_blocks) {
        return;
    }
    let kb = i % p.n_blocks;
    let r = (i / p.n_blocks) % p.rows;
    let h = (i / (p.n_blocks * p.rows)) % p.n_heads;
    let b = i / (p.n_blocks * p.rows * p.n_heads);
    if (p.gather != 0u && r == 0u) {
        kcount[i / (p.rows * p.n_blocks) * p.n_blocks + kb] = 0u;
    }
    // Hidden and forced pairs are written as NEG and POS, so the select kernel reads each
    // pair's state from its gate instead of recomputing the block geometry n_blocks^2 times.
    let st = block_state(r, kb);
    var g = select(NEG, POS, st == 2u);
    if (st == 1u) {
        let qo = ((b * p.rows + r) * p.n_heads + h) * D4;
        let ko = ((b * p.n_blocks + kb) * p.n_kv_heads + h / p.group) * D4;
        var d = vec4<f32>(0.0);
        for (var c = 0u; c < D4; c++) {
            d = fma(qs[qo + c], kmean[ko + c], d);
        }
        g = (d.x + d.y + d.z + d.w) * p.scale;
    }
    gates[i] = g;
}

//! section select
// {{KEY}}
// One invocation per (batch, head, row): ranks each competing block of the row against its
// group (the row itself, or every row of the head for global selection) by gate, ties going to
// the lower (row, block) index, and keeps the top ones (top-k) or the smallest prefix whose
// softmax gate mass reaches the threshold. Writes a bit mask and a compact index list.
const WG: u32 = {{WG}}u;
@group(0) @binding(1) var<storage, read> gates: array<f32>;             // [batch, n_heads, rows, n_blocks]
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;        // [batch, n_heads, rows, words]
@group(0) @binding(3) var<storage, read_write> list: array<u32>;        // [batch, n_heads, rows, n_blocks]
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;      // [batch, n_heads, rows]
// Gather mode: queries per key block [batch, n_heads, n_blocks] and their entries
// [batch, n_heads, n_blocks, seq], each query * 1024 + its slot (position in its own list).
@group(0) @binding(5) var<storage, read_write> kcount: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> qlist: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.n_heads * p.rows) {
        return;
    }
    let r = i % p.rows;
    let head = (i / p.rows) * p.rows * p.n_blocks; // first gate of this (batch, head)
    var g_lo = r;
    var g_hi = r + 1u;
    var forced = select(0u, 1u, p.causal != 0u);
    if (p.global_sel != 0u) {
        g_lo = 0u;
        g_hi = p.rows;
        forced = select(0u, p.rows, p.causal != 0u);
    }
    // Softmax statistics over the competing pairs of the group (threshold mode).
    var mx = NEG;
    var tot = 0.0;
    if (p.mode == 1u) {
        for (var gr = g_lo; gr < g_hi; gr++) {
            for (var kb = 0u; kb < p.n_blocks; kb++) {
                let g = gates[head + gr * p.n_blocks + kb];
                if (gate_state(g) == 1u) {
                    mx = max(mx, g);
                }
            }
        }
        for (var gr = g_lo; gr < g_hi; gr++) {
            for (var kb = 0u; kb < p.n_blocks; kb++) {
                let g = gates[head + gr * p.n_blocks + kb];
                if (gate_state(g) == 1u) {
                    tot += exp(g - mx);
                }
            }
        }
    }
    let budget = i32(p.top_k * (g_hi - g_lo)) - i32(forced);
    var word = 0u;
    var n_sel = 0u;
    for (var kb = 0u; kb < p.n_blocks; kb++) {
        let me = r * p.n_blocks + kb;
        let g = gates[head + me];
        let st = gate_state(g);
        var take = st == 2u;
        if (st == 1u) {
            var rank = 0;
            var before = 0.0;
            for (var gr = g_lo; gr < g_hi; gr++) {
                for (var ob = 0u; ob < p.n_blocks; ob++) {
                    let other = gr * p.n_blocks + ob;
                    let go = gates[head + other];
                    if (gate_state(go) == 1u && (go > g || (go == g && other < me))) {
                        rank += 1;
                        before += exp(go - mx);
                    }
                }
            }
            if (p.mode == 0u) {
                take = rank < budget;
            } else {
                take = p.threshold >= 1.0 || before < p.threshold * tot;
            }
        }
        if (take) {
            if (p.gather != 0u) {
                let kq = i / p.rows * p.n_blocks + kb;
                let pos = atomicAdd(&kcount[kq], 1u);
                qlist[kq * p.seq + pos] = r * 1024u + n_sel;
            }
            word |= 1u << (kb % 32u);
            list[i * p.n_blocks + n_sel] = kb;
            n_sel += 1u;
        }
        if (kb % 32u == 31u || kb + 1u == p.n_blocks) {
            bits[i * p.words + kb / 32u] = word;
            word = 0u;
        }
    }
    for (var kb = n_sel; kb < p.n_blocks; kb++) {
        list[i * p.n_blocks + kb] = 0xffffffffu;
    }
    counts[i] = n_sel;
}

//! section merge
// {{KEY}}
// Gather mode: combines each query's per-block partial results (unnormalized accumulators with
// their running max and sum) in slot order, so the sum order is fixed and reruns are bitwise
// equal. One invocation per output vec4.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
@group(0) @binding(1) var<storage, read> counts: array<u32>;         // [batch, n_heads, seq] blocks per query
@group(0) @binding(2) var<storage, read> pacc: array<vec4<f32>>;     // [batch, n_heads, seq, slots, d]
@group(0) @binding(3) var<storage, read> pml: array<vec2<f32>>;      // [batch, n_heads, seq, slots] (max, sum)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [batch, seq, n_heads, d]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.n_heads * p.seq * D4) {
        return;
    }
    let c = i % D4;
    let row = i / D4; // (batch * n_heads + head) * seq + query
    let t = row % p.seq;
    let bh = row / p.seq;
    let n = min(counts[row], p.slots);
    var mx = NEG;
    for (var s = 0u; s < n; s++) {
        let ml = pml[row * p.slots + s];
        if (ml.y > 0.0) {
            mx = max(mx, ml.x);
        }
    }
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < n; s++) {
        let ml = pml[row * p.slots + s];
        let w = select(0.0, exp(ml.x - mx), ml.y > 0.0);
        l += ml.y * w;
        acc += pacc[(row * p.slots + s) * D4 + c] * w;
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let b = bh / p.n_heads;
    let h = bh % p.n_heads;
    out[((b * p.seq + t) * p.n_heads + h) * D4 + c] = acc * inv;
}
