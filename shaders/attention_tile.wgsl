//! section decls
// Tiled attention with an online softmax, shared by the dense prefill kernel (attention.wgsl)
// and the block-sparse attend and gather kernels: one workgroup owns BQ = RW * R query rows;
// TPR invocations share a query row, each keeping R rows' query and output accumulators for
// its DP = D4 / TPR interleaved vec4 columns (c * TPR + part) in registers (TPR > 1 trades a
// workgroup-memory exchange of partial dots for fewer registers on large heads). K and V tiles
// of BK keys are staged in workgroup memory by the kernel.
const D4: u32 = {{D4}}u;   // head_dim / 4
const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;     // query rows per invocation
const TPR: u32 = {{TPR}}u; // invocations per query row
const DP: u32 = D4 / TPR;  // vec4 columns per invocation
const RW: u32 = WG / TPR;  // rows per R block
const BQ: u32 = RW * R;    // query rows per workgroup
const BK: u32 = {{BK}}u;   // keys per tile

var<workgroup> kt: array<vec4<f32>, BK * D4>;  // [BK, d] keys of the current tile
var<workgroup> vt: array<vec4<f32>, BK * D4>;  // [BK, d] values of the current tile
// [R * BK, WG] partial dots exchanged between the TPR invocations of a row (1 float if TPR = 1).
var<workgroup> sp: array<f32, {{SP}}>;

//! section row_state
    // Row r of this invocation is row rl + r * RW of the workgroup's tile.
    let rl = lid / TPR;   // query row of this invocation within each R block
    let part = lid % TPR; // owns vec4 columns c * TPR + part
    var qr: array<vec4<f32>, R * DP>;  // query columns
    var acc: array<vec4<f32>, R * DP>; // softmax-weighted sum of values, unnormalized
    var m: array<f32, R>;              // running max of the logits
    var l: array<f32, R>;              // running sum of exp(logit - m)
    var s: array<f32, R * BK>;         // scores of the current tile

//! section row_init
        // Row r's query columns (from `base`, its first vec4 in q) and an empty softmax state.
        for (var c = 0u; c < DP; c++) {
            qr[r * DP + c] = q[base + c * TPR];
            acc[r * DP + c] = vec4<f32>(0.0);
        }
        m[r] = NEG;
        l[r] = 0.0;

//! section scores
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

//! section online_softmax
            // Online softmax: folds row r's logits of this tile, s[r * BK + j] (NEG where the
            // key is masked), into its running max m[r], sum l[r] and accumulator acc, against
            // the staged values vt.
            var mt = m[r];
            for (var j = 0u; j < BK; j++) {
                mt = max(mt, s[r * BK + j]);
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

//! section row_out
        // Row r normalized, to `out` from `base`, its first vec4 there (a row that saw no key
        // outputs zeros, not NaN).
        let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
        for (var c = 0u; c < DP; c++) {
            out[base + c * TPR] = acc[r * DP + c] * inv;
        }
