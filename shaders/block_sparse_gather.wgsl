//! section gather
// {{KEY}}
// Per-query selection, key-block major (MoBA's own scheme): one workgroup takes BQ of
// the queries that selected key block kb (from the lists the select kernel built), stages the
// block's K/V in tiles of BK keys, and writes each query's unnormalized partial result for that
// block (accumulator, running max and sum) into the query's slot; the merge kernel combines the
// slots. Work is proportional to the selected (query, block) pairs, whatever the neighbours of
// a query selected. TPR invocations share a query row, each owning D4 / TPR interleaved vec4
// columns (as in the dense kernel). Appended to the `common` section of block_sparse.wgsl.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;     // queries per invocation
const TPR: u32 = {{TPR}}u; // invocations per query row
const DP: u32 = D4 / TPR;  // vec4 columns per invocation
const RW: u32 = WG / TPR;  // rows per R block
const BQ: u32 = RW * R;    // queries per workgroup
const BK: u32 = {{BK}}u;   // keys per tile
const NONE: u32 = 0xffffffffu;

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;        // [batch, seq, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;        // [batch, seq, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;        // [batch, seq, n_kv_heads, d]
@group(0) @binding(4) var<storage, read> kcount: array<u32>;         // [batch, n_heads, n_blocks]
@group(0) @binding(5) var<storage, read> qlist: array<u32>;          // [batch, n_heads, n_blocks, seq]
@group(0) @binding(6) var<storage, read_write> pacc: array<vec4<f32>>; // [batch, n_heads, seq, slots, d]
@group(0) @binding(7) var<storage, read_write> pml: array<vec2<f32>>;  // [batch, n_heads, seq, slots]

var<workgroup> kt: array<vec4<f32>, BK * D4>;  // [BK, d] keys of the current tile
var<workgroup> vt: array<vec4<f32>, BK * D4>;  // [BK, d] values of the current tile
var<workgroup> ktok: array<u32, BK>;           // [BK] token of each staged key (NONE: padding)
var<workgroup> wg_nq: u32;
// [R * BK, WG] partial dots exchanged between the TPR invocations of a row (1 float if TPR = 1).
var<workgroup> sp: array<f32, {{SP}}>;
var<workgroup> wg_maxq: atomic<u32>; // latest query token of the workgroup
var<workgroup> wg_last: u32;         // the same, readable uniformly

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let n_bh = p.batch * p.n_heads;
    if (g >= p.q_tiles * p.n_blocks * n_bh) {
        return;
    }
    // Chunk-major: the first chunks of every (head, block) launch first; later chunks exist
    // only for blocks many queries selected and mostly leave at once.
    let chunk = g / (p.n_blocks * n_bh);
    let kq = g % (p.n_blocks * n_bh); // (batch * n_heads + head) * n_blocks + block
    let kb = kq % p.n_blocks;
    let bh = kq / p.n_blocks;
    let h = bh % p.n_heads;
    let b = bh / p.n_heads;
    let kvh = h / p.group;
    if (lid == 0u) {
        wg_nq = kcount[kq];
        atomicStore(&wg_maxq, 0u);
    }
    let nq = workgroupUniformLoad(&wg_nq);
    if (chunk * BQ >= nq) {
        return;
    }

    let rl = lid / TPR;   // query row of this invocation within each R block
    let part = lid % TPR; // owns vec4 columns c * TPR + part
    var qr: array<vec4<f32>, R * DP>;
    var acc: array<vec4<f32>, R * DP>;
    var m: array<f32, R>;
    var l: array<f32, R>;
    var qtok: array<u32, R>;
    var slot: array<u32, R>;
    for (var r = 0u; r < R; r++) {
        let e = chunk * BQ + rl + r * RW;
        let entry = qlist[kq * p.seq + min(e, nq - 1u)];
        qtok[r] = entry / 1024u;
        slot[r] = select(NONE, entry % 1024u, e < nq);
        let base = ((b * p.seq + qtok[r]) * p.n_heads + h) * D4 + part;
        for (var c = 0u; c < DP; c++) {
            qr[r * DP + c] = q[base + c * TPR];
            acc[r * DP + c] = vec4<f32>(0.0);
        }
        m[r] = NEG;
        l[r] = 0.0;
    }

    for (var r = 0u; r < R; r++) {
        atomicMax(&wg_maxq, qtok[r]);
    }
    workgroupBarrier();
    if (lid == 0u) {
        wg_last = atomicLoad(&wg_maxq);
    }
    let last_q = workgroupUniformLoad(&wg_last);

    // Under causal masking, tiles whose first key follows every query here are all masked
    // (box elements come in increasing token order).
    let n = block_count(kb);
    let one_d = p.grid_t * p.grid_h == 1u;
    var s: array<f32, R * BK>;
    for (var t0 = 0u; t0 < n && (p.causal == 0u || block_token(kb, t0) <= last_q); t0 += BK) {
        workgroupBarrier();
        // 2-D / 3-D boxes: each key's token once per key (the box geometry costs divisions),
        // at the price of a barrier; 1-D blocks are runs of tokens, computed in place.
        if (!one_d) {
            for (var j = lid; j < BK; j += WG) {
                ktok[j] = select(NONE, block_token(kb, t0 + j), t0 + j < n);
            }
            workgroupBarrier();
        }
        for (var i = lid; i < BK * D4; i += WG) {
            var tk: u32;
            if (one_d) {
                let j = t0 + i / D4;
                tk = select(NONE, kb * p.box_w + j, j < n);
                if (i % D4 == 0u) {
                    ktok[i / D4] = tk;
                }
            } else {
                tk = ktok[i / D4];
            }
            let ok = tk != NONE;
            let src = ((b * p.seq + select(0u, tk, ok)) * p.n_kv_heads + kvh) * D4 + i % D4;
            kt[i] = select(vec4<f32>(0.0), k[src], ok);
            vt[i] = select(vec4<f32>(0.0), v[src], ok);
        }
        workgroupBarrier();
{{TILE_SCORES}}
        for (var r = 0u; r < R; r++) {
            if (slot[r] == NONE) {
                continue;
            }
            var mt = m[r];
            for (var j = 0u; j < BK; j++) {
                let tk = ktok[j];
                let ok = tk != NONE && (p.causal == 0u || tk <= qtok[r]);
                let sj = select(NEG, s[r * BK + j] * p.scale, ok);
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
                // Masked keys hold NEG and add exactly 0.
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
        if (slot[r] >= p.slots) {
            continue;
        }
        let ps = (bh * p.seq + qtok[r]) * p.slots + slot[r];
        if (part == 0u) {
            pml[ps] = vec2<f32>(m[r], l[r]);
        }
        for (var c = 0u; c < DP; c++) {
            pacc[ps * D4 + c * TPR + part] = acc[r * DP + c];
        }
    }
}
