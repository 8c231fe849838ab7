//! section main
// {{KEY}}
// Prefill: Y[m, n_offset + r] = sum_k X[m, k] W[r, k] over the rows r of one weight segment.
// A workgroup computes a TM x TN tile of Y; each K step stages TM x TK activations and
// TN x TK weights, dequantized once, in workgroup memory; each invocation accumulates an
// RM x RN block in registers. With KS > 1 the K range is split over KS workgroups (wid.z) that
// write partial sums to y as [KS, M, n], summed by the `split_sum` section: more workgroups
// for small outputs with long rows (a 512-token prompt times a 640 x 2048 weight).
{{ENABLES}}
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QMatmulParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;           // [rows, row_words] repacked segment
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [M, k / 4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [KS, M, n]

const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const TK: u32 = {{TK}}u;
const RM: u32 = {{RM}}u;
const RN: u32 = {{RN}}u;
const KS: u32 = {{KS}}u;
const WG: u32 = (TM / RM) * (TN / RN);
const TK4: u32 = TK / 4u;
// V: vec4<f32>, or vec4<f16> on the f16 path (tiles and products in f16, sums in f32).
alias V = {{V}};

var<workgroup> xs: array<V, TM * TK4>; // [TM, TK / 4]
var<workgroup> ws: array<V, TN * TK4>; // [TN, TK / 4]

{{DEQ}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let k4n = p.k / 4u;
    let n0 = wid.x * TN;
    let m0 = wid.y * TM;
    let tx = lid % (TN / RN); // this invocation's columns: n0 + tx + j * (TN / RN)
    let ty = lid / (TN / RN); // rows: m0 + ty + i * (TM / RM)
    var acc: array<array<f32, RN>, RM>;
    // This workgroup's K range in vec4s: KS chunks of whole TK steps, the last one short.
    let chunk = (k4n + KS * TK4 - 1u) / (KS * TK4) * TK4;
    let k_lo = wid.z * chunk;
    let k_hi = min(k4n, k_lo + chunk);
    for (var kb = k_lo; kb < k_hi; kb += TK4) {
        for (var e = lid; e < TM * TK4; e += WG) {
            let r = e / TK4;
            let c = kb + e % TK4;
            var v = vec4<f32>(0.0);
            if (m0 + r < p.m && c < k_hi) {
                v = x[(m0 + r) * k4n + c];
            }
            xs[e] = V(v);
        }
        for (var e = lid; e < TN * TK4; e += WG) {
            let r = e / TK4;
            let c = kb + e % TK4;
            var v = vec4<f32>(0.0);
            if (n0 + r < p.rows && c < k_hi) {
                v = deq4((n0 + r) * p.row_words, c);
            }
            ws[e] = V(v);
        }
        workgroupBarrier();
        for (var c = 0u; c < TK4; c++) {
            var wv: array<V, RN>;
            for (var j = 0u; j < RN; j++) {
                wv[j] = ws[(tx + j * (TN / RN)) * TK4 + c];
            }
            for (var i = 0u; i < RM; i++) {
                let xv = xs[(ty + i * (TM / RM)) * TK4 + c];
                for (var j = 0u; j < RN; j++) {
                    acc[i][j] += f32(dot(xv, wv[j]));
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i++) {
        let m = m0 + ty + i * (TM / RM);
        for (var j = 0u; j < RN; j++) {
            let r = n0 + tx + j * (TN / RN);
            if (m < p.m && r < p.rows) {
                y[(wid.z * p.m + m) * p.n + p.n_offset + r] = acc[i][j];
            }
        }
    }
}

//! section split_sum
// {{KEY}}
// y[i] = sum over s of part[s * len + i]: the K splits' partial sums of a quantized matmul.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: SplitSumParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;        // [splits, len]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;     // [len]

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    if (i >= p.len) {
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += part[k * p.len + i];
    }
    y[i] = s;
}
