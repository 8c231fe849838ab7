//! section main
// {{KEY}}
// Mean pooling over the first lens[b] tokens of each sequence (padding excluded), as
// sentence-transformers' mean pooling does. One invocation per (batch, dim element).
{{PARAMS}}
alias T = {{T}};

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<T>;          // [batch, seq, dim]
@group(0) @binding(2) var<storage, read> lens: array<u32>;     // [batch]
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // [batch, dim]

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
