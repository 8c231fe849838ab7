// {{KEY}}
// Fused neighborhood attention (NATTEN semantics), 1-D, 2-D and 3-D with one template: every
// problem is padded to three axes (outermost first; missing axes have length 1, kernel 1).
//
// Dilation groups: positions of an axis with the same index mod dilation form a group; a
// query only sees keys of its own group, and its window is computed on the group's
// sub-sequence (group index = position / dilation). Per axis, in group indices:
//   non-causal: start = clamp(i - k/2, 0, group_len - k), end = start + k - 1 (the window
//               shifts at the borders, so every query sees exactly k keys);
//   causal:     start = max(i - (k - 1), 0), end = i (no shift).
// A workgroup owns a T0 x T1 x T2 tile of group indices of one (batch, head, group). Window
// starts and ends grow with the query index, so the union of the tile's windows is one box:
// [start(first query), end(last query)] per axis. The box's lines along the innermost axis
// are staged in workgroup memory, as many whole lines as fit BK keys (or BK-key chunks of a
// longer line); each query only computes the
// keys of its own window (work is proportional to the window, not the sequence), with an
// online softmax across chunks. An invocation owns R queries adjacent along axis 1: they share
// their windows on axes 0 and 2, so every staged key read serves R dot products.
{{PARAMS}}
const D4: u32 = {{D4}}u;  // head_dim / 4
const T0: u32 = {{T0}}u;  // query tile, outermost axis (group indices)
const T1: u32 = {{T1}}u;
const T2: u32 = {{T2}}u;  // query tile, innermost axis
const R: u32 = {{R}}u;    // queries per invocation, adjacent along axis 1 (share K/V reads)
const WG: u32 = T0 * (T1 / R) * T2;
const BK: u32 = {{BK}}u;  // keys per staged chunk of a line
// Row stride of the staged chunks in vec4: one vec4 of padding, because neighbouring queries
// of a line read neighbouring keys at the same time; with a stride of D4 (a multiple of 128
// bytes for common heads) they would all hit the same shared-memory banks.
const KS: u32 = D4 + 1u;
// Finite "minus infinity": keeps exp(m_old - m_new) defined before the first key.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: NaParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;   // [batch, heads, L0, L1, L2, d]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;   // [batch, heads, L0, L1, L2, d]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;   // [batch, heads, L0, L1, L2, d]
// [heads, 2*k0-1, 2*k1-1, 2*k2-1] additive bias indexed by (key - query) group offset + k - 1
// per axis; any buffer when has_rpb = 0 (never read then).
@group(0) @binding(4) var<storage, read> rpb: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, heads, L0, L1, L2, d]

var<workgroup> kt: array<vec4<f32>, BK * KS>; // [BK, d + 4] keys of the current chunk
var<workgroup> vt: array<vec4<f32>, BK * KS>; // [BK, d + 4] values of the current chunk

// First group index of the window of group index `i` (gl: group length >= ks).
fn win_start(i: vec3<u32>, gl: vec3<u32>, ks: vec3<u32>, causal: vec3<bool>) -> vec3<u32> {
    let nh = ks / 2u;
    let centered = min(max(i, nh) - nh, gl - ks);
    let back = max(i, ks - 1u) - (ks - 1u);
    return select(centered, back, causal);
}

// Last group index (inclusive) of the window of group index `i`.
fn win_end(i: vec3<u32>, gl: vec3<u32>, ks: vec3<u32>, causal: vec3<bool>) -> vec3<u32> {
    return select(win_start(i, gl, ks, causal) + ks - 1u, i, causal);
}

fn flat(bh: u32, pos: vec3<u32>, len: vec3<u32>) -> u32 {
    return (((bh * len.x + pos.x) * len.y + pos.y) * len.z + pos.z) * D4;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = vec3<u32>(p.len0, p.len1, p.len2);
    let ks = vec3<u32>(p.kern0, p.kern1, p.kern2);
    let dil = vec3<u32>(p.dil0, p.dil1, p.dil2);
    let causal = vec3<bool>(p.causal0 != 0u, p.causal1 != 0u, p.causal2 != 0u);
    let tiles = vec3<u32>(p.tiles0, p.tiles1, p.tiles2);
    // Workgroup index = ((bh * G0 + x0) * G1 + x1) * G2 + x2 with Ga = dil_a * tiles_a and
    // x_a = group_a * tiles_a + tile_a.
    let per_axis = dil * tiles;
    var r = wid.x + wid.y * nwg.x;
    let x2 = r % per_axis.z;
    r /= per_axis.z;
    let x1 = r % per_axis.y;
    r /= per_axis.y;
    let x0 = r % per_axis.x;
    let bh = r / per_axis.x;
    let x = vec3<u32>(x0, x1, x2);
    let grp = x / tiles;
    let ts = (x % tiles) * vec3<u32>(T0, T1, T2);
    let gl = (len - grp + dil - 1u) / dil; // group lengths (>= 1 as grp < dil <= len)
    // Whole workgroups leave together (these depend on the workgroup id only), so no barrier
    // below sees a partial workgroup: dispatch_2d's spare groups and tiles past a short group.
    if (bh >= p.batch_heads || any(ts >= gl)) {
        return;
    }
    let h = bh % p.heads;
    let last = min(ts + vec3<u32>(T0, T1, T2), gl) - 1u;
    let ulo = win_start(ts, gl, ks, causal);
    let uhi = win_end(last, gl, ks, causal);

    // This invocation's queries: (lq.x, lq.y * R + r, lq.z) of the tile, r < R. They differ
    // only on axis 1, so windows on axes 0 and 2 are shared.
    let lq = vec3<u32>(lid / ((T1 / R) * T2), (lid / T2) % (T1 / R), lid % T2);
    let i0 = ts + vec3<u32>(lq.x, lq.y * R, lq.z);
    let ic = min(i0, gl - 1u);
    let ws = win_start(ic, gl, ks, causal);
    let we = win_end(ic, gl, ks, causal);
    let xz_valid = i0.x < gl.x && i0.z < gl.z;
    // Bias strides of [heads, 2k0-1, 2k1-1, 2k2-1]; offsets are shifted by k - 1 (>= 0 as keys
    // start at most k - 1 group indices before the query).
    let bw = 2u * ks - 1u;
    let bias_h = h * bw.x * bw.y * bw.z;

    var row_ok: array<bool, R>;
    var row_i1: array<u32, R>;  // clamped group index on axis 1
    var row_ws1: array<u32, R>; // window on axis 1
    var row_we1: array<u32, R>;
    var qr: array<vec4<f32>, R * D4>;
    var acc: array<vec4<f32>, R * D4>;
    var m: array<f32, R>;
    var l: array<f32, R>;
    for (var r = 0u; r < R; r++) {
        let i1 = i0.y + r;
        let c1 = min(i1, gl.y - 1u);
        let icr = vec3<u32>(ic.x, c1, ic.z);
        row_ok[r] = xz_valid && i1 < gl.y;
        row_i1[r] = c1;
        row_ws1[r] = win_start(icr, gl, ks, causal).y;
        row_we1[r] = win_end(icr, gl, ks, causal).y;
        let qbase = flat(bh, grp + dil * icr, len);
        for (var c = 0u; c < D4; c++) {
            qr[r * D4 + c] = q[qbase + c];
            acc[r * D4 + c] = vec4<f32>(0.0);
        }
        m[r] = NEG;
        l[r] = 0.0;
    }
    var s: array<f32, R * BK>;

    // Lines of the union along the innermost axis hold `line` keys. Short lines are staged
    // several at a time (fewer barriers per key); long ones in chunks of BK keys.
    let line = uhi.z + 1u - ulo.z;
    let per_stage = max(BK / line, 1u);
    for (var u0 = ulo.x; u0 <= uhi.x; u0++) {
        let bias_u0 = (u0 + ks.x - 1u - ic.x) * bw.y;
        for (var u1s = ulo.y; u1s <= uhi.y; u1s += per_stage) {
            let n_lines = min(per_stage, uhi.y + 1u - u1s);
            for (var c0 = ulo.z; c0 <= uhi.z; c0 += BK) {
                // Keys of each staged line: only up to the union's end (windows never reach
                // past it); n_lines * n_keys <= BK.
                let n_keys = min(BK, uhi.z + 1u - c0);
                workgroupBarrier();
                for (var t = lid; t < n_lines * n_keys * D4; t += WG) {
                    let row = t / D4;
                    let kp = grp + dil * vec3<u32>(u0, u1s + row / n_keys, c0 + row % n_keys);
                    let src = flat(bh, kp, len) + t % D4;
                    let dst = row * KS + t % D4;
                    kt[dst] = k[src];
                    vt[dst] = v[src];
                }
                workgroupBarrier();
                let lo = max(c0, ws.z);
                let hi = min(c0 + BK - 1u, we.z);
                for (var li = 0u; li < n_lines; li++) {
                    let u1 = u1s + li;
                    let sbase = li * n_keys; // first staged row of this line
                    var row_in: array<bool, R>;
                    var any_in = false;
                    for (var r = 0u; r < R; r++) {
                        row_in[r] = row_ok[r] && u0 >= ws.x && u0 <= we.x && u1 >= row_ws1[r]
                            && u1 <= row_we1[r];
                        any_in = any_in || row_in[r];
                    }
                    // No `continue` here: it would make the next barrier non-uniform.
                    if (any_in && lo <= hi) {
                        var mt: array<f32, R>;
                        for (var r = 0u; r < R; r++) {
                            mt[r] = m[r];
                        }
                        for (var j = lo; j <= hi; j++) {
                            let jj = j - c0;
                            // Zeroed explicitly: Chrome's WGSL compiler (SwiftShader at
                            // least) keeps the previous iteration's value of a loop-scoped
                            // `var` without initializer, so each key's score would include
                            // the keys before it.
                            var d: array<vec4<f32>, R>;
                            for (var r = 0u; r < R; r++) {
                                d[r] = vec4<f32>(0.0);
                            }
                            for (var c = 0u; c < D4; c++) {
                                let kv = kt[(sbase + jj) * KS + c];
                                for (var r = 0u; r < R; r++) {
                                    d[r] = fma(qr[r * D4 + c], kv, d[r]);
                                }
                            }
                            for (var r = 0u; r < R; r++) {
                                var sj = (d[r].x + d[r].y + d[r].z + d[r].w) * p.scale;
                                // Only rows whose window holds this line have an in-range bias
                                // offset (shaders may run without bounds checks).
                                if (p.has_rpb != 0u && row_in[r]) {
                                    let b1 = u1 + ks.y - 1u - row_i1[r];
                                    sj += rpb[bias_h + (bias_u0 + b1) * bw.z + j + ks.z - 1u - ic.z];
                                }
                                // Rows whose window misses this line keep NEG: weight exactly 0.
                                sj = select(NEG, sj, row_in[r]);
                                s[r * BK + jj] = sj;
                                mt[r] = max(mt[r], sj);
                            }
                        }
                        var pw: array<f32, R>;
                        for (var r = 0u; r < R; r++) {
                            let alpha = exp(m[r] - mt[r]);
                            m[r] = mt[r];
                            l[r] *= alpha;
                            for (var c = 0u; c < D4; c++) {
                                acc[r * D4 + c] *= alpha;
                            }
                        }
                        for (var j = lo; j <= hi; j++) {
                            let jj = j - c0;
                            for (var r = 0u; r < R; r++) {
                                pw[r] = select(0.0, exp(s[r * BK + jj] - mt[r]), row_in[r]);
                                l[r] += pw[r];
                            }
                            for (var c = 0u; c < D4; c++) {
                                let vv = vt[(sbase + jj) * KS + c];
                                for (var r = 0u; r < R; r++) {
                                    acc[r * D4 + c] = fma(vec4<f32>(pw[r]), vv, acc[r * D4 + c]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    for (var r = 0u; r < R; r++) {
        if (row_ok[r]) {
            // Every query sees at least itself (causal) or k keys per axis, so l > 0.
            let inv = 1.0 / l[r];
            let qbase = flat(bh, grp + dil * vec3<u32>(ic.x, row_i1[r], ic.z), len);
            for (var c = 0u; c < D4; c++) {
                out[qbase + c] = acc[r * D4 + c] * inv;
            }
        }
    }
}
