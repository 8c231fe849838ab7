//! section epilogue
// Epilogue (see `Epilogue` in matmul.rs): extra outputs, bias and residual bindings, the
// LayerNorm of A on the way in, and what every output element goes through on its way out.
{{DECLS}}
// Output element (gr, gc), flat index ci of [M, N]: + bias[gc], GELU, + res[ci], in this order.
fn epi(v: f32, ci: u32, gc: u32) -> f32 {
    var y = v;
{{STEPS}}
    return y;
}
{{PUT}}
//! section out_decl
@group(0) @binding({{BINDING}}) var<storage, read_write> c{{I}}: array<f32>; // part {{I}} of the output
//! section bias_decl
@group(0) @binding({{BINDING}}) var<storage, read> bias: array<f32>; // [N]
//! section res_decl
@group(0) @binding({{BINDING}}) var<storage, read> res: array<f32>; // like c
//! section gelu_decl
alias T = f32; // for the math section of elementwise.wgsl
{{MATH}}
//! section bias
    y = y + bias[gc];
//! section gelu
    y = gelu_erf(y);
//! section res
    y = y + res[ci];
//! section put
// Stores output element (gr, gc) at flat index ci of [M, N].
fn put(ci: u32, gr: u32, gc: u32, v: f32) {
    c[ci] = epi(v, ci, gc);
}
//! section put_split
// Stores output element (gr, gc) at its row and column of its part: the output is split into
// PARTS tensors [M, N / PARTS], c, c1, c2, ...
fn put(ci: u32, gr: u32, gc: u32, v: f32) {
    let y = epi(v, ci, gc);
    let nb = p.n / {{PARTS}}u;
    let part = gc / nb;
    let o = gr * nb + gc - part * nb;
    if (part == 0u) {
        c[o] = y;
{{PARTS_STORE}}
    }
}
//! section put_part
    } else if (part == {{I}}u) {
        c{{I}}[o] = y;
//! section norm_pre
    ln_prep(lid, row0, a_base, wid.x == 0u);
//! section norm
// LayerNorm of A: `ln_prep` (statistics of the workgroup's BM rows, LN_G invocations per row,
// and the normalized rows to `xn` when asked) and `nrm(value, row of the tile, LV-wide step
// of K)`.
@group(0) @binding({{B0}}) var<storage, read> ln_g: array<LT>; // [K]
@group(0) @binding({{B1}}) var<storage, read> ln_b: array<LT>; // [K]
@group(0) @binding({{B2}}) var<storage, read_write> xn: array<LT>; // [M, K], A normalized
const LN_G: u32 = {{LN_G}}u; // invocations per row of the tile
var<workgroup> ln_part: array<vec2<f32>, {{WG}}>;
var<workgroup> ln_stat: array<vec2<f32>, {{BM}}>; // mean, 1 / std of each row of the tile
fn nrm(v: LT, r: u32, q: u32) -> LT {
    let s = ln_stat[r];
    return (v - LT(s.x)) * s.y * ln_g[q] + ln_b[q];
}
// Mean and variance of rows row0 .. row0 + {{BM}} of A (shifted by each row's first value, so
// a large mean does not swamp the variance), then, from the first column tile, those rows
// normalized to xn.
fn ln_prep(lid: u32, row0: u32, a_base: u32, store: bool) {
    let kv = p.k / {{LV}}u;
    let ri = lid / LN_G;
    let gi = lid % LN_G;
    let gr = min(row0 + ri, p.m - 1u);
    let base = a_base + gr * kv;
    let shift = first_lane(a[base]);
    var s = vec2<f32>(0.0);
    for (var q = gi; q < kv; q = q + LN_G) {
        let v = a[base + q] - LT(shift);
        s = s + vec2<f32>(lane_sum(v), lane_sum(v * v));
    }
    ln_part[lid] = s;
    workgroupBarrier();
    for (var st = LN_G / 2u; st > 0u; st = st >> 1u) {
        if (gi < st) {
            ln_part[lid] = ln_part[lid] + ln_part[lid + st];
        }
        workgroupBarrier();
    }
    if (gi == 0u) {
        let mean = ln_part[lid].x / f32(p.k);
        let vr = max(ln_part[lid].y / f32(p.k) - mean * mean, 0.0);
        ln_stat[ri] = vec2<f32>(shift + mean, inverseSqrt(vr + p.eps));
    }
    workgroupBarrier();
    if (store && row0 + ri < p.m) {
        for (var q = gi; q < kv; q = q + LN_G) {
            xn[base + q] = nrm(a[base + q], ri, q);
        }
    }
}
