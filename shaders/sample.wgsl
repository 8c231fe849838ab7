//! section common
// Candidates are ordered by (logit descending, token id ascending), so ties always resolve to
// the lower id (llama.cpp's greedy argmax does the same) and every round of selection is
// deterministic. NaN logits count as -inf.
const NEG_INF: f32 = -3.4028234e38;
const NONE: u32 = 0xffffffffu;

// Is (va, ia) before (vb, ib) in the candidate order?
fn before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

fn clean(v: f32) -> f32 {
    return select(NEG_INF, v, v == v);
}

var<workgroup> red_v: array<f32, {{WG}}>;
var<workgroup> red_i: array<u32, {{WG}}>;

// Workgroup-wide best of each invocation's (v, i); every invocation gets the winner.
fn wg_best(lid: u32, v: f32, i: u32) -> vec2<u32> {
    red_v[lid] = v;
    red_i[lid] = i;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (lid < s && before(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid])) {
            red_v[lid] = red_v[lid + s];
            red_i[lid] = red_i[lid + s];
        }
        workgroupBarrier();
    }
    let out = vec2<u32>(bitcast<u32>(red_v[0]), red_i[0]);
    workgroupBarrier();
    return out;
}

//! section penalize
// {{KEY}}
// Repetition penalty (llama.cpp's rule) applied in place to the logits of the tokens in `hist`
// (unique ids, so no token is penalized twice): positive logits are divided by the penalty,
// negative ones multiplied.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> hist: array<u32>;          // [n_hist]
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;  // [n]

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n_hist) {
        return;
    }
    let id = hist[gid.x];
    if (id >= p.n) {
        return;
    }
    let v = logits[id];
    logits[id] = select(v * p.penalty, v / p.penalty, v > 0.0);
}

//! section partial
// {{KEY}}
// Stage 1 of top-k: workgroup g owns logits [g * chunk, (g + 1) * chunk) and writes its best
// `k` in order to cand[g * KMAX ..]. Round r selects the best element strictly after round
// r-1's winner in the candidate order, so nothing needs to be marked as taken.
{{PARAMS}}
const KMAX: u32 = {{KMAX}}u;
@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // [n]
@group(0) @binding(2) var<storage, read_write> cand: array<vec2<u32>>; // [groups, KMAX] (logit bits, id)

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    let lo = wid.x * p.chunk;
    let hi = min(lo + p.chunk, p.n);
    var prev_v = 3.4028234e38;
    var prev_i = NONE;
    var first = true;
    for (var r = 0u; r < p.k; r++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var j = lo + lid; j < hi; j += {{WG}}u) {
            let v = clean(logits[j]);
            let after_prev = first || before(prev_v, prev_i, v, j);
            if (after_prev && before(v, j, bv, bi)) {
                bv = v;
                bi = j;
            }
        }
        let best = wg_best(lid, bv, bi);
        prev_v = bitcast<f32>(best.x);
        prev_i = best.y;
        first = false;
        if (lid == 0u) {
            cand[wid.x * KMAX + r] = best;
        }
    }
}

//! section final
// {{KEY}}
// Stage 2: one workgroup merges the groups' candidates into the global top k (same rounds as
// stage 1), then samples: greedy when temperature <= 0, else softmax(logit / T) over the top k,
// cut to the smallest prefix whose mass reaches top_p, and drawn with the host's uniform u.
// res: [0] token, [1] candidates kept, [2..2+2*REPORT] top (id, logit bits) pairs.
{{PARAMS}}
const KMAX: u32 = {{KMAX}}u;
const REPORT: u32 = {{REPORT}}u;
@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> cand: array<vec2<u32>>;    // [groups, KMAX]
@group(0) @binding(2) var<storage, read_write> res: array<u32>;     // [2 + 2 * REPORT]

var<workgroup> top_v: array<f32, KMAX>;
var<workgroup> top_i: array<u32, KMAX>;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    // Only the first k slots of each group were written: walk those alone (groups * k
    // entries, not groups * KMAX).
    let total = p.groups * p.k;
    var prev_v = 3.4028234e38;
    var prev_i = NONE;
    var first = true;
    for (var r = 0u; r < p.k; r++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var j = lid; j < total; j += {{WG}}u) {
            let c = cand[(j / p.k) * KMAX + j % p.k];
            let v = bitcast<f32>(c.x);
            if (c.y == NONE) {
                continue;
            }
            let after_prev = first || before(prev_v, prev_i, v, c.y);
            if (after_prev && before(v, c.y, bv, bi)) {
                bv = v;
                bi = c.y;
            }
        }
        let best = wg_best(lid, bv, bi);
        prev_v = bitcast<f32>(best.x);
        prev_i = best.y;
        first = false;
        if (lid == 0u) {
            top_v[r] = prev_v;
            top_i[r] = prev_i;
        }
    }
    workgroupBarrier();
    if (lid != 0u) {
        return;
    }
    for (var r = 0u; r < REPORT; r++) {
        let have = r < p.k && top_i[min(r, KMAX - 1u)] != NONE;
        res[2u + 2u * r] = select(NONE, top_i[min(r, KMAX - 1u)], have);
        res[3u + 2u * r] = select(bitcast<u32>(NEG_INF), bitcast<u32>(top_v[min(r, KMAX - 1u)]), have);
    }
    // Valid candidates (a vocabulary smaller than k leaves NONE slots).
    var n = 0u;
    for (var r = 0u; r < p.k; r++) {
        if (top_i[r] != NONE) {
            n = r + 1u;
        }
    }
    if (p.temperature <= 0.0 || n <= 1u) {
        res[0] = top_i[0];
        res[1] = 1u;
        return;
    }
    // Softmax weights relative to the best logit (no overflow), then the top-p prefix.
    var sum = 0.0;
    for (var r = 0u; r < n; r++) {
        sum += exp((top_v[r] - top_v[0]) / p.temperature);
    }
    var keep = n;
    var cum = 0.0;
    for (var r = 0u; r < n; r++) {
        cum += exp((top_v[r] - top_v[0]) / p.temperature) / sum;
        if (cum >= p.top_p) {
            keep = r + 1u;
            break;
        }
    }
    var kept = 0.0;
    for (var r = 0u; r < keep; r++) {
        kept += exp((top_v[r] - top_v[0]) / p.temperature);
    }
    let goal = p.u * kept;
    var acc = 0.0;
    var pick = keep - 1u;
    for (var r = 0u; r < keep; r++) {
        acc += exp((top_v[r] - top_v[0]) / p.temperature);
        if (goal < acc) {
            pick = r;
            break;
        }
    }
    res[0] = top_i[pick];
    res[1] = keep;
}
