//! section gather
// {{KEY}}
// Per-query selection, key-block major (MoBA's own scheme): one workgroup takes BQ of
// the queries that selected key block kb (from the lists the select kernel built), stages the
// block's K/V in tiles of BK keys, and writes each query's unnormalized partial result for that
// block (accumulator, running max and sum) into the query's slot; the merge kernel combines the
// slots. Work is proportional to the selected (query, block) pairs, whatever the neighbours of
// a query selected. Query rows are laid out as in attention_tile.wgsl. Appended to the `common`
// section of block_sparse.wgsl.
{{TILE_DECLS}}
{{BS_TILE_DECLS}}

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;        // [batch, seq, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;        // [batch, seq, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;        // [batch, seq, n_kv_heads, d]
@group(0) @binding(4) var<storage, read> kcount: array<u32>;         // [batch, n_heads, n_blocks]
@group(0) @binding(5) var<storage, read> qlist: array<u32>;          // [batch, n_heads, n_blocks, seq]
@group(0) @binding(6) var<storage, read_write> pacc: array<vec4<f32>>; // [batch, n_heads, seq, slots, d]
@group(0) @binding(7) var<storage, read_write> pml: array<vec2<f32>>;  // [batch, n_heads, seq, slots]

var<workgroup> wg_nq: u32;

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

{{ROW_STATE}}
    var qtok: array<u32, R>;
    var slot: array<u32, R>;
    for (var r = 0u; r < R; r++) {
        let e = chunk * BQ + rl + r * RW;
        let entry = qlist[kq * p.seq + min(e, nq - 1u)];
        qtok[r] = entry / 1024u;
        slot[r] = select(NONE, entry % 1024u, e < nq);
        let base = ((b * p.seq + qtok[r]) * p.n_heads + h) * D4 + part;
{{ROW_INIT}}
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
    for (var t0 = 0u; t0 < n && (p.causal == 0u || block_token(kb, t0) <= last_q); t0 += BK) {
{{STAGE_KEYS}}
{{TILE_SCORES}}
        for (var r = 0u; r < R; r++) {
            if (slot[r] == NONE) {
                continue;
            }
{{MASK_KEYS}}
{{ONLINE_SOFTMAX}}
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
