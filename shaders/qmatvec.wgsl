//! section dequant
// {{KEY}}
// Dequantizes whole rows of a repacked weight: one invocation per 4 elements.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QDequantParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;              // [rows, row_words] repacked
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>; // [rows, k / 4]

{{DEQ}}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    let k4n = p.k / 4u;
    if (i >= p.rows * k4n) {
        return;
    }
    let row = i / k4n;
    out[i] = deq4(row * p.row_words, i % k4n);
}

//! section matvec
// {{KEY}}
// y[m, n_offset + r] = sum_k x[m, k] * W[r, k] for the rows r of one weight segment, M <= 8.
// Gated form: y = act(x W^T) * (x W2^T) with a second weight W2 of W's shape and format (an
// FFN's gate and up projections and its activation in one pass); G = 2 accumulators per output.
// Stacked form: W, W2 (and W3) of one format and K stacked by rows into one output (q, k and v
// projections in one pass): rows below p.part1 read W, below p.part2 W2, the rest W3.
// {{SPLIT_NOTE}}
{{ENABLES}}
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QMatvecParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;           // [rows, row_words] repacked segment
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [M, k / 4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [M, n]
{{W2_DECL}}

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;
const M: u32 = {{M}}u;
const G: u32 = {{G}}u;
const U: u32 = {{U}}u; // vec4s of weights per deqv call (2: 8 weights decoded together)
alias V = {{V}};

{{DEQ}}

{{EPILOGUE}}

{{REDUCE_DECL}}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>{{EXTRA_BUILTINS}}) {
{{GRID_FILL}}    let row0 = {{ROW0}};
    let k4n = p.k / 4u;
    var acc: array<f32, R * M * G>; // [G, R, M]
    // kv walks steps of U vec4s (K is a whole number of blocks, so of steps).
    for (var kv = {{K0}}; kv < k4n / U; kv += {{KSTEP}}) {
        // V is vec4<f32>, or vec4<f16> on the f16 path (products in f16, sums in f32).
        var xv: array<V, M * U>; // [M, U]
        for (var m = 0u; m < M; m++) {
            for (var u = 0u; u < U; u++) {
                xv[m * U + u] = V(x[m * k4n + kv * U + u]);
            }
        }
        for (var r = 0u; r < R; r++) {
            let row = min(row0 + r, p.rows - 1u); // tail rows recompute the last row, unwritten
{{LOAD_W}}
            for (var m = 0u; m < M; m++) {
                for (var u = 0u; u < U; u++) {
                    acc[r * M + m] += f32(dot(V(wv[u]), xv[m * U + u]));
                }
            }
{{ACC2}}
        }
    }
{{REDUCE}}
}

//! section reduce_none_body
    for (var i = 0u; i < R * M; i++) {
        let r = i / M;
        let m = i % M;
        if (row0 + r < p.rows) {
            y[m * p.n + p.n_offset + row0 + r] = {{OUT_NONE}};
        }
    }

//! section reduce_workgroup
var<workgroup> red: array<f32, R * M * G * WG>; // [G * R * M, WG] partial sums

//! section reduce_workgroup_body
    for (var i = 0u; i < R * M * G; i++) {
        red[i * WG + lid] = acc[i];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var i = 0u; i < R * M * G; i++) {
                red[i * WG + lid] += red[i * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid < R * M) {
        let r = lid / M;
        let m = lid % M;
        if (row0 + r < p.rows) {
            y[m * p.n + p.n_offset + row0 + r] = {{OUT_WG}};
        }
    }

//! section reduce_subgroup
const MAX_SG: u32 = {{MAX_SG}}u; // most subgroups a workgroup can hold (WG / min subgroup size)
var<workgroup> red: array<f32, R * M * G * MAX_SG>; // [G * R * M, MAX_SG] subgroup sums

//! section reduce_subgroup_body
    for (var i = 0u; i < R * M * G; i++) {
        let s = subgroupAdd(acc[i]);
        if (sg_lane == 0u) {
            red[i * MAX_SG + sg_id] = s;
        }
    }
    workgroupBarrier();
    if (lid < R * M) {
        var t = 0.0;
        var t2 = 0.0;
        for (var g = 0u; g < n_sg; g++) {
            t += red[lid * MAX_SG + g];
{{T2_SG}}
        }
        let r = lid / M;
        let m = lid % M;
        if (row0 + r < p.rows) {
            y[m * p.n + p.n_offset + row0 + r] = {{OUT_SG}};
        }
    }

//! section gate_epilogue
// The gate's activation (the elementwise kernels' formulas).
fn gelu_tanh(v: f32) -> f32 {
    let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    return v / (1.0 + exp(-2.0 * u));
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

//! section gate_acc
            let wv2 = deqv_2(row * p.row_words, kv);
            for (var m = 0u; m < M; m++) {
                for (var u = 0u; u < U; u++) {
                    acc[(R + r) * M + m] += f32(dot(V(wv2[u]), xv[m * U + u]));
                }
            }

//! section gate_t2_subgroup
            t2 += red[(R * M + lid) * MAX_SG + g];

//! section subgroup_builtins
,
        @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_id) sg_id: u32,
        @builtin(num_subgroups) n_sg: u32
//! section w2_gated
@group(0) @binding(4) var<storage, read> w2: array<u32>;          // [rows, row_words] W2's segment

//! section w2_stacked
@group(0) @binding(4) var<storage, read> w2: array<u32>;          // [rows of part 2, row_words] the second stacked weight

//! section w3_stacked
@group(0) @binding(5) var<storage, read> w3: array<u32>;          // [rows of part 3, row_words] the third stacked weight

//! section load_w
            let wv = deqv(row * p.row_words, kv);

//! section load_w_stacked2
            var wv: array<vec4<f32>, U>;
            if (row < p.part1) {
                wv = deqv(row * p.row_words, kv);
            } else {
                wv = deqv_2((row - p.part1) * p.row_words, kv);
            }

//! section load_w_stacked3
            var wv: array<vec4<f32>, U>;
            if (row < p.part1) {
                wv = deqv(row * p.row_words, kv);
            } else if (row < p.part2) {
                wv = deqv_2((row - p.part1) * p.row_words, kv);
            } else {
                wv = deqv_3((row - p.part2) * p.row_words, kv);
            }

//! section matvec_blocks
// {{KEY}}
// y[m, n_offset + r] = sum_k x[m, k] * W[r, k] for the rows r of one weight segment, M <= 8,
// in f32 like the `matvec` section, with the weights decoded a block of 32 at a time by the
// int8 path's decoders (qmatvec_i8.wgsl): integer codes as signed bytes, a scale per half
// block and an offset. A block adds
//   sa * dot(codes 0-15, x) + sb * dot(codes 16-31, x) + mn * sum(x)
// so the scales leave the inner loop and no dequantized weight is formed; X stays f32.
// Gated and stacked forms as in the `matvec` section.
// {{SPLIT_NOTE}}
{{ENABLES}}
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: QMatvecParams;
@group(0) @binding(1) var<storage, read> w: array<{{WTYPE}}>;     // [rows, row_words] repacked segment (words, or vec4s of them)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [M, k / 4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [M, n]
{{W2_DECL}}

const WG: u32 = {{WG}}u;
const R: u32 = {{R}}u;
const M: u32 = {{M}}u;
const G: u32 = {{G}}u;
const BPS: u32 = {{BPS}}u; // blocks of 32 per step of the K loop

{{DEQ}}

// 4 signed-byte codes as f32 (core WGSL: shifts, no packed-integer builtins).
fn codes4(v: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// One block of 32 weights against X's vec4s xi .. xi + 7.
fn block_dot(wb: W8, xi: u32) -> f32 {
    var da = 0.0;
    var db = 0.0;
    var xs = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let xa = x[xi + i];
        let xb = x[xi + 4u + i];
        da += dot(xa, codes4(wb.a[i]));
        db += dot(xb, codes4(wb.b[i]));
{{XSUM}}
    }
    return wb.sa * da + wb.sb * db{{MN}};
}

// The gated form: W's and W2's blocks against the same X loads.
fn block_dot2(wb: W8, wb2: W8, xi: u32) -> vec2<f32> {
    var da = vec2<f32>(0.0);
    var db = vec2<f32>(0.0);
    var xs = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let xa = x[xi + i];
        let xb = x[xi + 4u + i];
        da += vec2<f32>(dot(xa, codes4(wb.a[i])), dot(xa, codes4(wb2.a[i])));
        db += vec2<f32>(dot(xb, codes4(wb.b[i])), dot(xb, codes4(wb2.b[i])));
{{XSUM}}
    }
    return vec2<f32>(wb.sa * da.x + wb.sb * db.x{{MN}}, wb2.sa * da.y + wb2.sb * db.y{{MN2}});
}

{{X_FNS}}

{{EPILOGUE}}

{{REDUCE_DECL}}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>{{EXTRA_BUILTINS}}) {
    let row0 = {{ROW0}};
    let nb = p.k / 32u;
    var acc: array<f32, R * M * G>; // [G, R, M]
{{LOOP}}
{{REDUCE}}
}

//! section blocks_loop
    // Each row's blocks against X read for that row (from cache after the first row).
    for (var j = {{K0}}; j < nb / BPS; j += {{KSTEP}}) {
        for (var r = 0u; r < R; r++) {
            let row = min(row0 + r, p.rows - 1u); // tail rows recompute the last row, unwritten
{{LOAD_WB}}
            for (var u = 0u; u < BPS; u++) {
                for (var m = 0u; m < M; m++) {
                    let xi = (m * nb + j * BPS + u) * 8u;
{{ACC_B}}
                }
            }
        }
    }

//! section blocks_loop_x
    // The R rows' blocks decoded first, then each X block read once for all of them (a
    // quarter of the X loads at R = 4, for more registers).
    for (var j = {{K0}}; j < nb / BPS; j += {{KSTEP}}) {
        var wr: array<array<W8, BPS>, R>;
{{WR2_DECL}}
        for (var r = 0u; r < R; r++) {
            let row = min(row0 + r, p.rows - 1u); // tail rows recompute the last row, unwritten
{{LOAD_WB}}
            wr[r] = wbs;
{{WR2_SET}}
        }
        for (var u = 0u; u < BPS; u++) {
            for (var m = 0u; m < M; m++) {
                let xi = (m * nb + j * BPS + u) * 8u;
                var xa: array<vec4<f32>, 8>;
                for (var i = 0u; i < 8u; i++) {
                    xa[i] = x[xi + i];
                }
{{XSUM_X}}
                for (var r = 0u; r < R; r++) {
                    acc[r * M + m] += block_dot_x(wr[r][u], xa){{MN_X}};
{{ACC2_X}}
                }
            }
        }
    }

//! section blocks_x_fns
// One block of 32 weights against X's block already in registers.
fn block_dot_x(wb: W8, xa: array<vec4<f32>, 8>) -> f32 {
    var da = 0.0;
    var db = 0.0;
    for (var i = 0u; i < 4u; i++) {
        da += dot(xa[i], codes4(wb.a[i]));
        db += dot(xa[4u + i], codes4(wb.b[i]));
    }
    return wb.sa * da + wb.sb * db;
}

//! section blocks_xsum_x
                var xs = vec4<f32>(0.0);
                for (var i = 0u; i < 8u; i++) {
                    xs += xa[i];
                }
                let xsum = xs.x + xs.y + xs.z + xs.w;

//! section blocks_xsum
        xs += xa + xb;

//! section blocks_acc_plain
                    acc[r * M + m] += block_dot(wbs[u], xi);

//! section blocks_acc_gated
                    let s2 = block_dot2(wbs[u], wbs2[u], xi);
                    acc[r * M + m] += s2.x;
                    acc[(R + r) * M + m] += s2.y;

//! section blocks_load_plain
            let wbs = wblocks(row * p.row_words, j);

//! section blocks_load_gated
            let wbs = wblocks(row * p.row_words, j);
            let wbs2 = wblocks_2(row * p.row_words, j);

//! section blocks_load_stacked2
            var wbs: array<W8, BPS>;
            if (row < p.part1) {
                wbs = wblocks(row * p.row_words, j);
            } else {
                wbs = wblocks_2((row - p.part1) * p.row_words, j);
            }

//! section blocks_load_stacked3
            var wbs: array<W8, BPS>;
            if (row < p.part1) {
                wbs = wblocks(row * p.row_words, j);
            } else if (row < p.part2) {
                wbs = wblocks_2((row - p.part1) * p.row_words, j);
            } else {
                wbs = wblocks_3((row - p.part2) * p.row_words, j);
            }

//! section norm_prologue
// The norm prologue (decode, M = 1): X is not read from memory but made by each workgroup
// from the previous product F [K] (bound as xin) and the residual stream R [K]:
//   H = R + {{H_IS}}, X = rmsnorm(H) * w_pre
// (the rowwise add_norm, which then needs no dispatch of its own). Workgroup 0 writes H, the
// new residual stream, when p.write_res is set. One pass takes the sums both norms need,
// |H|^2 expanded as |R|^2 + 2 c R.G + c^2 |G|^2 with G = F{{G_IS}} and c the factor F is
// scaled by ({{C_IS}}); a second makes H (as the rowwise kernel does) and X.
@group(0) @binding(6) var<storage, read> res: array<vec4<f32>>;           // [K] residual stream R
{{WPOST_DECL}}
@group(0) @binding(8) var<storage, read> wpre: array<vec4<f32>>;          // [K] the pre-norm's weight
@group(0) @binding(9) var<storage, read_write> res_out: array<vec4<f32>>; // [K] H
const K4: u32 = {{K4}}u;
var<workgroup> x: array<vec4<f32>, K4>; // X, read by the K loop as it would read the binding
var<workgroup> nred: array<vec4<f32>, WG>;

{{NSUM}}
fn norm_prologue(lid: u32, first: bool{{SG_PARAMS}}) {
    let eps = bitcast<f32>(p.eps_bits);
    let n = f32(p.k);
    var s = vec4<f32>(0.0); // |F|^2, |R|^2, R.G, |G|^2
    for (var i = lid; i < K4; i += WG) {
        let r = res[i];
        let f = xin[i];
        let g = {{G}};
        s += vec4<f32>(dot(f, f), dot(r, r), dot(r, g), dot(g, g));
    }
    let t = nsum4(s, lid{{SG_ARGS}});
    let c = {{C}};
    let inv = inverseSqrt(max(t.y + 2.0 * c * t.z + c * c * t.w, 0.0) / n + eps);
    let write = first && p.write_res != 0u;
    for (var i = lid; i < K4; i += WG) {
        let h = res[i] + {{F}};
        if (write) {
            res_out[i] = h;
        }
        x[i] = h * inv * wpre[i];
    }
    workgroupBarrier();
}

//! section norm_nsum_tree
// The sum of every invocation's v (a workgroup tree; all invocations get it).
fn nsum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    nred[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            nred[lid] += nred[lid + s];
        }
        workgroupBarrier();
    }
    let t = nred[0];
    workgroupBarrier();
    return t;
}

//! section norm_nsum_subgroup
// The sum of every invocation's v: subgroupAdd, then the subgroups' sums (all invocations get
// it; two barriers where the tree takes one per halving).
fn nsum4(v: vec4<f32>, lid: u32, sg_lane: u32, sg_id: u32, n_sg: u32) -> vec4<f32> {
    let s = subgroupAdd(v);
    if (sg_lane == 0u) {
        nred[sg_id] = s;
    }
    workgroupBarrier();
    var t = vec4<f32>(0.0);
    for (var g = 0u; g < n_sg; g++) {
        t += nred[g];
    }
    workgroupBarrier();
    return t;
}
