//! section decls
// Key tiles of one block, shared by the block-sparse attend and gather kernels (after the
// attention_tile.wgsl declarations).
const NONE: u32 = 0xffffffffu;
var<workgroup> ktok: array<u32, BK>;  // [BK] token of each staged key (NONE: padding)
var<workgroup> wg_maxq: atomic<u32>;  // latest query token of the workgroup
var<workgroup> wg_last: u32;          // the same, readable uniformly

//! section stage
                // Keys t0 .. t0 + BK of block kb (n keys) to kt, vt and their tokens to ktok.
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

//! section mask
                    // Logits of row r: padding keys and, if causal, keys after its query are NEG.
                    for (var j = 0u; j < BK; j++) {
                        let tk = ktok[j];
                        let ok = tk != NONE && (p.causal == 0u || tk <= qtok[r]);
                        s[r * BK + j] = select(NEG, s[r * BK + j] * p.scale, ok);
                    }
