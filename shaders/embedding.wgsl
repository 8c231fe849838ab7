//! section main
// {{KEY}}
// Embedding gather from one segment of a table that may be split over several buffers:
// rows [row_lo, row_lo + seg_rows) live in `table`; ids outside that range are left for the
// dispatch of their own segment. With `add`, output row t also gets row t % add_rows of it.
{{PARAMS}}
alias T = {{T}};

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> ids: array<u32>;      // [n]
@group(0) @binding(2) var<storage, read> table: array<T>;      // [seg_rows, dim]
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // [n, dim]
{{ADD_DECL}}

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;  // over [n, dim] (dim counted in T)
    if (idx >= p.n * p.dim) {
        return;
    }
    let t = idx / p.dim;
    let d = idx % p.dim;
    let id = ids[t];
    if (id < p.row_lo || id - p.row_lo >= p.seg_rows) {
        return;
    }
    out[idx] = table[(id - p.row_lo) * p.dim + d] * p.scale{{ADD}};
}

//! section add_decl
@group(0) @binding(4) var<storage, read> add: array<T>;      // [>= add_rows, dim]
//! section add
 + add[(t % p.add_rows) * p.dim + d]

//! section quantized
// {{KEY}}
// Embedding gather from one row segment of a quantized table (repacked GGUF blocks), with the
// dequantization fused: rows [row_lo, row_lo + seg_rows) live in `w`; ids outside that range
// are left for the dispatch of their own segment. One invocation per 4 output elements.
{{PARAMS}}
@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> ids: array<u32>;             // [n]
@group(0) @binding(2) var<storage, read> w: array<u32>;               // [seg_rows, row_words]
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // [n, dim / 4]

{{DEQ}}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * {{WG}}u;  // over [n, dim / 4]
    if (idx >= p.n * p.dim) {
        return;
    }
    let id = ids[idx / p.dim];
    if (id < p.row_lo || id - p.row_lo >= p.seg_rows) {
        return;
    }
    out[idx] = deq4((id - p.row_lo) * p.pad0, idx % p.dim) * p.scale;
}
