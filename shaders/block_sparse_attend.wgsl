//! section attend
// {{KEY}}
// Fused attention over the selected key blocks only (online softmax, no score matrix). One
// workgroup owns BQ queries of one query block of one (batch, head), as laid out in
// attention_tile.wgsl. The workgroup visits the union of the blocks its rows selected,
// staging K/V tiles of BK keys of each block in workgroup memory; a row masks the blocks it
// did not select itself (and, if causal, keys after it).
// Appended to the `common` section of block_sparse.wgsl.
{{TILE_DECLS}}
{{BS_TILE_DECLS}}
const MAXW: u32 = {{MAXW}}u; // mask words per row at most (blocks / 32)

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;         // [batch, seq, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;         // [batch, seq, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;         // [batch, seq, n_kv_heads, d]
// [batch, n_heads, rows, words] selection bits (bits_bh = 0: one mask [rows, words] for all heads)
@group(0) @binding(4) var<storage, read> bits: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, seq, n_heads, d]

var<workgroup> wg_union: array<atomic<u32>, MAXW>; // [words] blocks selected by any row
var<workgroup> wg_words: array<u32, MAXW>;     // [words] the same, readable uniformly

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let n_bh = p.batch * p.n_heads;
    if (g >= p.q_tiles * p.n_blocks * n_bh) {
        return;
    }
    let bh = g % n_bh;
    let rest = g / n_bh;
    // The last query blocks go first: under a causal mask they usually see the most keys.
    let qb = p.n_blocks - 1u - rest / p.q_tiles;
    let tile = rest % p.q_tiles;
    let h = bh % p.n_heads;
    let b = bh / p.n_heads;
    let kvh = h / p.group;
    let qcount = block_count(qb);
    // Partial blocks have fewer tiles; the whole workgroup leaves together.
    if (tile * BQ >= qcount) {
        return;
    }

{{ROW_STATE}}
    var qtok: array<u32, R>;
    var mrow: array<u32, R>; // first mask word of each row
    var live: array<bool, R>;
    for (var r = 0u; r < R; r++) {
        let li = tile * BQ + rl + r * RW;
        live[r] = li < qcount;
        let t = block_token(qb, min(li, qcount - 1u));
        qtok[r] = t;
        let row = select(qb, t, p.per_query != 0u);
        mrow[r] = (bh * p.bits_bh * p.rows + row) * p.words;
        let base = ((b * p.seq + t) * p.n_heads + h) * D4 + part;
{{ROW_INIT}}
    }

    if (lid < p.words) {
        atomicStore(&wg_union[lid], 0u);
    }
    if (lid == 0u) {
        atomicStore(&wg_maxq, 0u);
    }
    workgroupBarrier();
    for (var r = 0u; r < R; r++) {
        atomicMax(&wg_maxq, qtok[r]);
        if (live[r]) {
            for (var w = 0u; w < p.words; w++) {
                let bw = bits[mrow[r] + w];
                if (bw != 0u) {
                    atomicOr(&wg_union[w], bw);
                }
            }
        }
    }
    workgroupBarrier();
    if (lid < p.words) {
        wg_words[lid] = atomicLoad(&wg_union[lid]);
    }
    if (lid == 0u) {
        wg_last = atomicLoad(&wg_maxq);
    }
    let last_q = workgroupUniformLoad(&wg_last);

    var sel: array<bool, R>;
    let one_d = p.grid_t * p.grid_h == 1u;
    for (var w = 0u; w < p.words; w++) {
        var word = workgroupUniformLoad(&wg_words[w]);
        while (word != 0u) {
            let bit = firstTrailingBit(word);
            word &= word - 1u;
            let kb = w * 32u + bit;
            let n = block_count(kb);
            for (var r = 0u; r < R; r++) {
                sel[r] = live[r] && ((bits[mrow[r] + w] >> bit) & 1u) != 0u;
            }
            // Under causal masking, tiles whose first key follows every query here are all
            // masked (box elements come in increasing token order).
            for (var t0 = 0u; t0 < n && (p.causal == 0u || block_token(kb, t0) <= last_q);
                 t0 += BK) {
{{STAGE_KEYS}}
                // Every row takes part in the exchange; unselected rows drop the result.
{{TILE_SCORES}}
                for (var r = 0u; r < R; r++) {
                    if (!sel[r]) {
                        continue;
                    }
{{MASK_KEYS}}
{{ONLINE_SOFTMAX}}
                }
            }
        }
    }

    for (var r = 0u; r < R; r++) {
        if (!live[r]) {
            continue;
        }
        // A row that sees no key (a static mask without its own block, under causal) is zero.
        let base = ((b * p.seq + qtok[r]) * p.n_heads + h) * D4 + part;
{{ROW_OUT}}
    }
}
