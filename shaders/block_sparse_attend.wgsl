//! section attend
// {{KEY}}
// Fused attention over the selected key blocks only (online softmax, no score matrix). One
// workgroup owns BQ = WG / TPR * R queries of one query block of one (batch, head); TPR
// invocations share a query row, each keeping R rows' query and accumulator for its D4 / TPR
// interleaved vec4 columns in registers. The workgroup visits the union of the
// blocks its rows selected, staging K/V tiles of BK keys of each block in workgroup memory;
// a row masks the blocks it did not select itself (and, if causal, keys after it).
// Appended to the `common` section of block_sparse.wgsl.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;     // query rows per invocation
const TPR: u32 = {{TPR}}u; // invocations per query row
const DP: u32 = D4 / TPR;  // vec4 columns per invocation
const RW: u32 = WG / TPR;  // rows per R block
const BQ: u32 = RW * R;    // query rows per workgroup
const BK: u32 = {{BK}}u;   // keys per tile
const MAXW: u32 = {{MAXW}}u; // mask words per row at most (blocks / 32)

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;         // [batch, seq, n_heads, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;         // [batch, seq, n_kv_heads, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;         // [batch, seq, n_kv_heads, d]
// [batch, n_heads, rows, words] selection bits (bits_bh = 0: one mask [rows, words] for all heads)
@group(0) @binding(4) var<storage, read> bits: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, seq, n_heads, d]

var<workgroup> kt: array<vec4<f32>, BK * D4>;  // [BK, d] keys of the current tile
var<workgroup> vt: array<vec4<f32>, BK * D4>;  // [BK, d] values of the current tile
var<workgroup> ktok: array<u32, BK>;           // [BK] token index of each staged key
var<workgroup> wg_union: array<atomic<u32>, MAXW>; // [words] blocks selected by any row
var<workgroup> wg_words: array<u32, MAXW>;     // [words] the same, readable uniformly
// [R * BK, WG] partial dots exchanged between the TPR invocations of a row (1 float if TPR = 1).
var<workgroup> sp: array<f32, {{SP}}>;
var<workgroup> wg_maxq: atomic<u32>;           // latest query token of the workgroup
var<workgroup> wg_last: u32;                   // the same, readable uniformly

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

    let rl = lid / TPR;   // query row of this invocation within each R block
    let part = lid % TPR; // owns vec4 columns c * TPR + part
    var qr: array<vec4<f32>, R * DP>;
    var acc: array<vec4<f32>, R * DP>;
    var m: array<f32, R>;
    var l: array<f32, R>;
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
        for (var c = 0u; c < DP; c++) {
            qr[r * DP + c] = q[base + c * TPR];
            acc[r * DP + c] = vec4<f32>(0.0);
        }
        m[r] = NEG;
        l[r] = 0.0;
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

    var s: array<f32, R * BK>;
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
                workgroupBarrier();
                // 2-D / 3-D boxes: each key's token once per key (the box geometry costs divisions),
                // at the price of a barrier; 1-D blocks are runs of tokens, computed in place.
                if (!one_d) {
                    for (var j = lid; j < BK; j += WG) {
                        ktok[j] = select(0xffffffffu, block_token(kb, t0 + j), t0 + j < n);
                    }
                    workgroupBarrier();
                }
                for (var i = lid; i < BK * D4; i += WG) {
                    var tk: u32;
                    if (one_d) {
                        let j = t0 + i / D4;
                        tk = select(0xffffffffu, kb * p.box_w + j, j < n);
                        if (i % D4 == 0u) {
                            ktok[i / D4] = tk;
                        }
                    } else {
                        tk = ktok[i / D4];
                    }
                    let ok = tk != 0xffffffffu;
                    let src = ((b * p.seq + select(0u, tk, ok)) * p.n_kv_heads + kvh) * D4 + i % D4;
                    kt[i] = select(vec4<f32>(0.0), k[src], ok);
                    vt[i] = select(vec4<f32>(0.0), v[src], ok);
                }
                workgroupBarrier();
                // Every row takes part in the exchange; unselected rows drop the result.
{{TILE_SCORES}}
                for (var r = 0u; r < R; r++) {
                    if (!sel[r]) {
                        continue;
                    }
                    var mt = m[r];
                    for (var j = 0u; j < BK; j++) {
                        let tk = ktok[j];
                        let ok = tk != 0xffffffffu && (p.causal == 0u || tk <= qtok[r]);
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
                            acc[r * DP + c] =
                                fma(vec4<f32>(pj), vt[j * D4 + c * TPR + part], acc[r * DP + c]);
                        }
                    }
                    l[r] = lsum;
                }
            }
        }
    }

    for (var r = 0u; r < R; r++) {
        if (!live[r]) {
            continue;
        }
        // A row that sees no key (a static mask without its own block, under causal) is zero.
        let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
        let base = ((b * p.seq + qtok[r]) * p.n_heads + h) * D4 + part;
        for (var c = 0u; c < DP; c++) {
            out[base + c * TPR] = acc[r * DP + c] * inv;
        }
    }
}
