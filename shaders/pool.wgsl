//! section main
// {{KEY}}
// Mean pooling over the first lens[b] tokens of each sequence (padding excluded), as
// sentence-transformers' mean pooling does. One invocation per (batch, dim element).
{{HEAD}}
override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;  // over [batch, dim] (dim counted in T)
    if (idx >= p.batch * p.dim) {
        return;
    }
    let b = idx / p.dim;
    let d = idx % p.dim;
    let n = min(lens[b], p.seq);
    var s = T(0.0);
    for (var t = 0u; t < n; t++) {
        s += x[(b * p.seq + t) * p.dim + d];
    }
    out[idx] = s / f32(max(n, 1u));
}

//! section rows
// {{KEY}}
// Mean pooling of whole rows: one workgroup per sequence. Each invocation owns COLS columns
// (lid + c * WG) of the pooled vector. With NORM, every row is LayerNorm-normalized on the
// way in: WG rows at a time, invocation i computes the mean and variance of row t0 + i (two
// passes over it), then all add those rows normalized. With L2, the mean is then divided by
// its Euclidean length (at least l2_eps). An encoder's last LayerNorm, its pooling and the
// final normalization of a sentence embedding in one dispatch.
{{HEAD}}
{{NORM_DECL}}
const WG: u32 = {{WG}}u;
const COLS: u32 = {{COLS}}u;
const NORM: bool = {{NORM}};
const L2: bool = {{L2}};

var<workgroup> stat: array<vec2<f32>, WG>; // mean, 1 / std of rows t0 .. t0 + WG
var<workgroup> len_s: u32;

{{HSUM}}
{{REDUCE}}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.x;
    if (lid == 0u) {
        len_s = min(lens[b], p.seq);
    }
    let len = workgroupUniformLoad(&len_s);
    let width = f32(p.dim * {{V}}u);
    var acc: array<T, COLS>;
    for (var t0 = 0u; t0 < len; t0 = t0 + WG) {
        if (NORM) {
            let t = t0 + lid;
            if (t < len) {
                let base = (b * p.seq + t) * p.dim;
                var s = 0.0;
                for (var d = 0u; d < p.dim; d++) {
                    s += hsum(x[base + d]);
                }
                let mean = s / width;
                var v = 0.0;
                for (var d = 0u; d < p.dim; d++) {
                    let c = x[base + d] - T(mean);
                    v += hsum(c * c);
                }
                stat[lid] = vec2<f32>(mean, inverseSqrt(v / width + p.eps));
            }
            workgroupBarrier();
        }
        let rows = min(WG, len - t0);
        for (var j = 0u; j < rows; j++) {
            let base = (b * p.seq + t0 + j) * p.dim;
            for (var c = 0u; c < COLS; c++) {
                let d = lid + c * WG;
                if (d < p.dim) {
                    var v = x[base + d];
{{NORM_APPLY}}
                    acc[c] += v;
                }
            }
        }
        workgroupBarrier();
    }
    let inv = 1.0 / f32(max(len, 1u));
    var ss = 0.0;
    for (var c = 0u; c < COLS; c++) {
        acc[c] = acc[c] * inv;
        if (lid + c * WG < p.dim) {
            ss += hsum(acc[c] * acc[c]);
        }
    }
    var scale = 1.0;
    if (L2) {
        scale = 1.0 / max(sqrt(reduce_sum(ss, lid)), p.l2_eps);
    }
    for (var c = 0u; c < COLS; c++) {
        let d = lid + c * WG;
        if (d < p.dim) {
            out[b * p.dim + d] = acc[c] * scale;
        }
    }
}

//! section head
{{PARAMS}}
alias T = {{T}};

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<T>;          // [batch, seq, dim]
@group(0) @binding(2) var<storage, read> lens: array<u32>;     // [batch]
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // [batch, dim]
//! section norm_decl
@group(0) @binding(4) var<storage, read> ln_g: array<T>;       // [dim]
@group(0) @binding(5) var<storage, read> ln_b: array<T>;       // [dim]
//! section norm_apply
                    v = (v - T(stat[j].x)) * stat[j].y * ln_g[d] + ln_b[d];
//! section hsum_f32
fn hsum(v: T) -> f32 {
    return v;
}
//! section hsum_vec4
fn hsum(v: T) -> f32 {
    return dot(v, vec4<f32>(1.0));
}
