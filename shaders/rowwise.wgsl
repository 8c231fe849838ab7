//! section main
// {{KEY}}
// Row-wise ops: one workgroup per row, reductions in workgroup memory.
{{PARAMS}}
alias T = {{T}};
const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> x: array<T>;        // [rows, cols]
{{EXTRA_DECL}}
@group(0) @binding({{OUT_BINDING}}) var<storage, read_write> out: array<T>; // [rows, cols]

{{LANES}}
{{REDUCE}}
// This invocation's part of the sum of squares of the row of x at `base`.
fn sum_squares(base: u32, lid: u32) -> f32 {
    var ss = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[base + i];
        ss += hsum(v * v);
    }
    return ss;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
{{EXTRA_BUILTINS}}) {
{{SG_INIT}}
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    // p.cols counts elements of T (vec4s when vectorized); p.n is the true row length.
    let base = row * p.cols;
{{BODY}}
}

//! section rmsnorm_decl
@group(0) @binding(2) var<storage, read> w: array<T>;        // [cols]

//! section rmsnorm
    let ss = sum_squares(base, lid);
    let inv = inverseSqrt(reduce_sum(ss, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        out[base + i] = x[base + i] * inv * (w[i] + p.w_offset);
    }

//! section rmsnorm_add_decl
@group(0) @binding(2) var<storage, read> w: array<T>;        // [cols]
@group(0) @binding(3) var<storage, read> res: array<T>;      // [rows, cols] residual

//! section rmsnorm_add
    let ss = sum_squares(base, lid);
    let inv = inverseSqrt(reduce_sum(ss, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        out[base + i] = res[base + i] + x[base + i] * inv * (w[i] + p.w_offset);
    }

//! section rmsnorm_add_norm_decl
@group(0) @binding(2) var<storage, read> w: array<T>;        // [cols] post-norm weight
@group(0) @binding(3) var<storage, read> res: array<T>;      // [rows, cols] residual
@group(0) @binding(4) var<storage, read> w2: array<T>;       // [cols] the next norm's weight
@group(0) @binding(6) var<storage, read_write> out2: array<T>; // [rows, cols] next norm's output

//! section rmsnorm_add_norm
    // out = res + rmsnorm(x) * w (the residual stream), out2 = rmsnorm(out) * w2 (the next
    // block's input): a post-norm, its residual add and the following pre-norm in one pass.
    let ss = sum_squares(base, lid);
    let inv = inverseSqrt(reduce_sum(ss, lid) / f32(p.n) + p.eps);
    var ss2 = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let y = res[base + i] + x[base + i] * inv * (w[i] + p.w_offset);
        out[base + i] = y;
        ss2 += hsum(y * y);
    }
    next_norm(base, lid, ss2);

//! section next_norm
// out2 = rmsnorm(out) * (w2 + w_offset) for the row at `base`, from this invocation's part
// `ss` of out's sum of squares (the two-output ops).
fn next_norm(base: u32, lid: u32, ss: f32) {
    let inv = inverseSqrt(reduce_sum(ss, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        out2[base + i] = out[base + i] * inv * (w2[i] + p.w_offset);
    }
}

//! section add_norm_decl
@group(0) @binding(2) var<storage, read> res: array<T>;      // [rows, cols] residual
@group(0) @binding(3) var<storage, read> w2: array<T>;       // [cols] the next norm's weight
@group(0) @binding(5) var<storage, read_write> out2: array<T>; // [rows, cols] next norm's output

//! section add_norm
    // out = res + x (the residual stream), out2 = rmsnorm(out) * w2 (the next block's input).
    var ss = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let y = res[base + i] + x[base + i];
        out[base + i] = y;
        ss += hsum(y * y);
    }
    next_norm(base, lid, ss);

//! section layernorm_decl
@group(0) @binding(2) var<storage, read> w: array<T>;        // [cols]
@group(0) @binding(3) var<storage, read> b: array<T>;        // [cols]

//! section layernorm
    var s = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        s += hsum(x[base + i]);
    }
    let mean = reduce_sum(s, lid) / f32(p.n);
    var sq = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let d = x[base + i] - mean;
        sq += hsum(d * d);
    }
    let inv = inverseSqrt(reduce_sum(sq, lid) / f32(p.n) + p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        out[base + i] = (x[base + i] - mean) * inv * (w[i] + p.w_offset) + b[i];
    }

//! section softmax
    var m = -3.402823e38;
    for (var i = lid; i < p.cols; i += WG) {
        m = max(m, hmax(x[base + i]));
    }
    let row_max = reduce_max(m, lid);
    var s = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        s += hsum(exp(x[base + i] - row_max));
    }
    let inv = 1.0 / reduce_sum(s, lid);
    for (var i = lid; i < p.cols; i += WG) {
        out[base + i] = exp(x[base + i] - row_max) * inv;
    }

//! section l2norm
    let ss = sum_squares(base, lid);
    let inv = 1.0 / max(sqrt(reduce_sum(ss, lid)), p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        out[base + i] = x[base + i] * inv;
    }

//! section lanes_f32
// Sum and max of the lanes of a T.
fn hsum(v: T) -> f32 {
    return v;
}

fn hmax(v: T) -> f32 {
    return v;
}
//! section lanes_vec4
// Sum and max of the lanes of a T.
fn hsum(v: T) -> f32 {
    return v.x + v.y + v.z + v.w;
}

fn hmax(v: T) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}
